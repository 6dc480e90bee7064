package mixnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
)

// TicketFunc returns a ticket that pays gw in a registration role:
// registration.RoleMixnet at an entry gateway for mixnet ingress (a
// mixnet-entry ticket), registration.RoleMixnetExit at an exit. A wallet's
// Ticket method (package credential/wallet) is one.
type TicketFunc = func(ctx context.Context, role string, gw directory.Node) ([]byte, error)

// PayTimeout bounds connecting to the entry gateway's registration endpoint
// and the registration itself (not fetching the ticket).
const PayTimeout = 30 * time.Second

// ErrPaymentRequired: the entry gateway admits mixnet clients only with an
// allowance bought with tickets, and the client has no ticket source.
var ErrPaymentRequired = errors.New("the entry gateway requires payment")

// PayEntry buys mixnet ingress at the entry gateway gw for the client whose
// recipient key is key's public key: a registration.RoleMixnet registration
// carrying a ticket from ticket. The gateway credits what the ticket buys to
// that key; the client then connects with the same key (ClientConfig.Key),
// and pays again the same way to top up. The grant's Bandwidth is the
// allowance left after this payment (1<<62: the gateway does not meter),
// TopUpAt the level below which to pay again. dial opens the TCP connection
// to gw's registration address (nil: a net.Dialer).
func PayEntry(ctx context.Context, gw directory.Node, key transport.Key, ticket TicketFunc, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*registration.Grant, error) {
	if ticket == nil {
		return nil, fmt.Errorf("mixnet: pay entry gateway %s: no ticket source", gw.ID)
	}
	tk, err := ticket(ctx, registration.RoleMixnet, gw)
	if err != nil {
		return nil, fmt.Errorf("mixnet: ticket for entry gateway %s: %w", gw.ID, err)
	}
	return registerMixnet(ctx, gw, key, tk, dial)
}

// registerMixnet runs one registration.RoleMixnet registration for key at gw
// with tk (nil: none, which asks the gateway what it wants).
func registerMixnet(ctx context.Context, gw directory.Node, key transport.Key, tk []byte, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*registration.Grant, error) {
	if gw.RegistrationAddr == "" {
		return nil, fmt.Errorf("mixnet: entry gateway %s publishes no registration address to pay at", gw.ID)
	}
	if dial == nil {
		d := &net.Dialer{}
		dial = d.DialContext
	}
	rctx, cancel := context.WithTimeout(ctx, PayTimeout)
	defer cancel()
	c, err := dial(rctx, "tcp", gw.RegistrationAddr)
	if err != nil {
		return nil, fmt.Errorf("mixnet: connect to entry gateway %s at %s: %w", gw.ID, gw.RegistrationAddr, err)
	}
	res, err := registration.Register(rctx, c, registration.Gateway{
		NoiseKey: transport.Key(gw.NoiseKey), WireGuardKey: transport.Key(gw.WireGuardKey),
	}, registration.Params{Role: registration.RoleMixnet, WireGuardKey: key, Ticket: tk})
	if err != nil {
		return nil, fmt.Errorf("mixnet: pay entry gateway %s: %w", gw.ID, err)
	}
	return &res.Grant, nil
}

// paymentRequired asks gw, by a registration without a ticket, whether it
// wants payment from key's client: it returns an error wrapping
// ErrPaymentRequired and the gateway's registration.Error if so, else nil.
func paymentRequired(ctx context.Context, gw directory.Node, key transport.Key, dial func(ctx context.Context, network, addr string) (net.Conn, error)) error {
	_, err := registerMixnet(ctx, gw, key, nil, dial)
	var re *registration.Error
	if errors.As(err, &re) && re.Code == registration.CodePaymentRequired {
		return fmt.Errorf("%w: %w", ErrPaymentRequired, re)
	}
	return nil
}
