package gateway

import (
	"errors"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/registration"
)

// ExitPayment is the payment hook of the IP packet router an exit gateway
// runs in mixnet mode (iprouter.Config.Pay): it redeems a mixnet-exit
// ticket bound to this gateway's Noise key, with the same checks and serial
// store as a registration's (registration.RoleMixnetExit), counts it in the
// gateway's ticket stats and returns the IP bytes it buys and the top-up
// level. A gateway without a PaymentConfig refuses every ticket, as it
// refuses registrations. With FreePass it returns nil: the router serves
// for free.
func (g *Gateway) ExitPayment() func(ticket []byte) (bandwidth, topUpAt int64, err error) {
	if g.cfg.FreePass {
		return nil
	}
	return g.redeemExit
}

func (g *Gateway) redeemExit(ticket []byte) (int64, int64, error) {
	if g.pay == nil {
		g.stats.ticketsRefused.Add(1)
		return 0, 0, &ExitTicketError{g.noTickets()}
	}
	bought, err := g.pay.redeem(ticket, registration.RoleMixnetExit)
	if err != nil {
		g.stats.ticketsRefused.Add(1)
		var rerr *registration.Error
		if !errors.As(err, &rerr) {
			// The ticket database failed: the client hears no detail.
			g.log.Warn("mixnet-exit ticket not recorded", "err", err)
			rerr = registration.Errorf(registration.CodePaymentUnavailable, "the gateway could not record the ticket; try again")
		}
		return 0, 0, &ExitTicketError{rerr}
	}
	g.stats.tickets.Add(1)
	return bought, g.pay.topUpAt(credential.MixnetExit), nil
}

// noTickets is the refusal of a gateway without a PaymentConfig or
// FreePass: it can neither redeem a ticket nor serve for free.
func (g *Gateway) noTickets() *registration.Error {
	return registration.Errorf(registration.CodePaymentRequired, "gateway %s takes no tickets (no issuers configured) and has no free pass", g.cfg.ID)
}

// ExitTicketError is the exit's refusal of a mixnet-exit ticket: the
// refusal a registration would get, in words the IP packet router sends on
// to the client ("ticket_spent: this ticket was spent before").
type ExitTicketError struct {
	Refusal *registration.Error
}

func (e *ExitTicketError) Error() string { return e.Refusal.Code + ": " + e.Refusal.Message }

func (e *ExitTicketError) Unwrap() error { return e.Refusal }
