package mixnet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nymvpn/nymvpn/mixnet/ipr"
	"github.com/nymvpn/nymvpn/registration"
)

// Paying the exit gateway (Config.Ticket set): every Open carries a
// mixnet-exit ticket bound to the exit's key (registration.RoleMixnetExit),
// and the exit's NeedTicket is answered with a Ticket item. Tickets may take
// a while to come (the wallet refills over HTTP), so they are fetched outside
// t.mu: Connect fetches the first, payLoop the rest, with back-off after a
// failure or a refusal.

const (
	// ticketTimeout bounds one ticket fetch (a wallet refill included).
	ticketTimeout = time.Minute
	// ticketWait is how long a Ticket sent to the exit may stay unanswered
	// (its answer lost) before another is sent while the exit still asks.
	ticketWait = 10 * time.Second
	// maxPayBackoff bounds the wait between failed attempts to pay.
	maxPayBackoff = 30 * time.Second
	// reuseOpenTicket is how long an Open's ticket the exit has not
	// answered goes into the next Open (a repair while the exit does not
	// answer) instead of a new one: well inside the gateways' ±30 s. If the
	// exit did take it, it refuses it as spent (the same payment info: no
	// double spend), and the next Open gets a new one.
	reuseOpenTicket = 20 * time.Second
)

// ExitPaymentError is the exit gateway's refusal to carry the session's
// packets: it wants a ticket (ipr.ErrPaymentRequired: the Open carried none,
// or the allowance ran out) or refused the one it got (ipr.ErrTicketRefused,
// with the gateway's reason).
type ExitPaymentError struct {
	Exit   string // the exit gateway's id
	Code   uint8
	Reason string // the exit's words
}

func (e *ExitPaymentError) Error() string {
	if e.Code == ipr.ErrTicketRefused {
		return fmt.Sprintf("exit gateway %s refused the ticket: %s", e.Exit, e.Reason)
	}
	return fmt.Sprintf("exit gateway %s wants payment: %s", e.Exit, e.Reason)
}

// errExitDry: the exit said the allowance ran out, and the tunnel is
// paying again.
var errExitDry = errors.New("the exit gateway's allowance ran out; paying again")

// ExitAllowance is the session's allowance at the exit gateway, as its last
// Allowance or NeedTicket said; metered is false while the exit has not
// reported one (it serves for free, or the tunnel does not pay).
func (t *Tunnel) ExitAllowance() (a ipr.Allowance, metered bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st.exitAllowance, t.st.exitMetered
}

// exitTicket spends one ticket for the exit gateway.
func (t *Tunnel) exitTicket(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, ticketTimeout)
	defer cancel()
	exit := t.routes.exitNode()
	tk, err := t.cfg.Ticket(ctx, registration.RoleMixnetExit, exit)
	if err != nil {
		return nil, fmt.Errorf("mixnet: ticket for exit gateway %s: %w", exit.ID, err)
	}
	if len(tk) == 0 || len(tk) > ipr.MaxTicket {
		return nil, fmt.Errorf("mixnet: ticket for exit gateway %s of %d bytes", exit.ID, len(tk))
	}
	t.stats.exitTickets.Add(1)
	return tk, nil
}

func (t *Tunnel) kickPay() {
	select {
	case t.payWake <- struct{}{}:
	default:
	}
}

// payLoop fetches the tickets the exit's payment calls for until the
// tunnel closes.
func (t *Tunnel) payLoop() {
	defer t.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-t.payWake:
		case <-tick.C:
		case <-t.ctx.Done():
			return
		}
		t.payExit()
	}
}

// payExit fetches a ticket if one is called for now: for an Open waiting
// for one, or for the exit's request (unless a Ticket sent for it is still
// unanswered), once the back-off after a failure has passed.
func (t *Tunnel) payExit() {
	now := time.Now()
	t.mu.Lock()
	s := &t.st
	want := s.openWanted || (s.exitWants && s.welcome.IPv4.IsValid() && (s.ticketSent.IsZero() || now.Sub(s.ticketSent) > ticketWait))
	due := !now.Before(s.payRetryAt)
	if s.openWanted && s.openTicket != nil && now.Sub(s.openTicketAt) < reuseOpenTicket {
		s.openWanted = false
		t.pushOpen(s.openReset, s.openTicket)
		s.openReset = false
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	if !want || !due {
		return
	}
	tk, err := t.exitTicket(t.ctx)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		if t.ctx.Err() == nil {
			t.payFailed(err)
		}
		return
	}
	// The ticket goes where it is needed now: an Open comes first.
	if s.openWanted {
		s.openWanted = false
		t.pushOpen(s.openReset, tk)
		s.openReset = false
		s.openTicket, s.openTicketAt = tk, now
		return
	}
	s.control = append(s.control, controlItem{item: ipr.AppendTicket(nil, tk)})
	s.ticketSent = time.Now()
	t.log.Debug("ticket for the exit gateway queued", "exit", t.Exit.ID, "left", s.exitAllowance.Left)
	t.signal()
}

// payFailed records a failure to pay the exit and backs off. t.mu is held.
func (t *Tunnel) payFailed(err error) {
	s := &t.st
	s.payErr = err
	s.payBackoff = min(max(2*s.payBackoff, time.Second), maxPayBackoff)
	s.payRetryAt = time.Now().Add(s.payBackoff)
	s.ticketSent = time.Time{}
	t.log.Warn("paying the exit gateway failed", "exit", t.Exit.ID, "err", err, "retry_in", s.payBackoff)
}

// freshPayment reports whether reply message id is not older than the
// last one with news of the exit's payment (Allowance, NeedTicket, payment
// errors), and records it: replies overtake each other in the mixnet, and
// a NeedTicket sent before the allowance a ticket bought must not spend
// another. t.mu is held.
func (t *Tunnel) freshPayment(id uint32) bool {
	s := &t.st
	if s.payMsgSet && int32(id-s.payMsg) < 0 {
		t.log.Debug("stale payment news from the exit", "msg", id, "newest", s.payMsg)
		return false
	}
	s.payMsg, s.payMsgSet = id, true
	return true
}

// allowance takes the exit's Allowance (in reply message id): a ticket was
// accepted. t.mu is held.
func (t *Tunnel) allowance(id uint32, a ipr.Allowance) {
	s := &t.st
	if !t.freshPayment(id) {
		// It answers the ticket in flight all the same: a NeedTicket the
		// exit sent after it may have overtaken it, and calls for the
		// next one.
		s.ticketSent = time.Time{}
		t.kickPay()
		return
	}
	if s.payErr != nil || s.exitDry {
		t.log.Info("the exit gateway accepted a ticket again", "exit", t.Exit.ID, "allowance", a.Left)
	}
	s.openTicket = nil
	s.exitAllowance, s.exitMetered = a, true
	s.exitWants, s.exitDry = a.Left < a.TopUpAt, false
	s.ticketSent, s.payErr, s.payBackoff, s.payRetryAt = time.Time{}, nil, 0, time.Time{}
}

// needTicket takes the exit's NeedTicket (in reply message id). t.mu is
// held.
func (t *Tunnel) needTicket(id uint32, left uint64) {
	s := &t.st
	if !t.freshPayment(id) {
		return
	}
	s.exitAllowance.Left, s.exitMetered, s.exitWants = left, true, true
	t.log.Debug("the exit gateway asks for a ticket", "exit", t.Exit.ID, "left", left)
	t.kickPay()
}

// exitPayment handles the exit's payment errors on an open session (before
// the Welcome they fail Connect). t.mu is held.
func (t *Tunnel) exitPayment(e *ExitPaymentError) {
	s := &t.st
	s.openTicket = nil
	if t.cfg.Ticket == nil {
		t.fail(fmt.Errorf("mixnet: %w", e))
		return
	}
	switch e.Code {
	case ipr.ErrTicketRefused:
		t.payFailed(e)
	default:
		s.exitDry, s.exitWants = true, true
		s.exitAllowance.Left = 0
		t.log.Warn("the exit gateway's allowance ran out: it drops the tunnel's packets until a ticket comes", "exit", t.Exit.ID, "reason", e.Reason)
	}
	t.kickPay()
}

// paymentHealth is the exit payment's part of Health. t.mu is held.
func (t *Tunnel) paymentHealth() error {
	s := &t.st
	if s.payErr != nil {
		return s.payErr
	}
	if s.exitDry {
		return errExitDry
	}
	return nil
}
