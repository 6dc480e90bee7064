package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/credential/wallet"
	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/tunnelstate"
	"github.com/nymvpn/nymvpn/mixnet/ipr"
	"github.com/nymvpn/nymvpn/modes/mixnet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/registration"
)

// TestPayMixnetFetchesBothBooks: a mixnet-mode attempt fetches the books it
// spends, mixnet-entry and mixnet-exit (not the fast ones), and its ticket
// function pays the exit's IP packet router (RoleMixnetExit).
func TestPayMixnetFetchesBothBooks(t *testing.T) {
	n := startIssuers(t)
	a := openAccounts(t.TempDir(), 0, func() string { return n.dirURL }, slog.New(slog.DiscardHandler))
	if a.openErr != nil {
		t.Fatal(a.openErr)
	}
	if _, err := a.w.CreateAccount(); err != nil {
		t.Fatal(err)
	}
	n.grant(t, a.w.Account().ID(), 200)
	ctx := context.Background()
	allow := func(context.Context, ...tunnelstate.Endpoint) error { return nil }
	p, err := a.payFor(ctx, mixnetPayTypes, n.topo(), func() {}, allow)
	if err != nil || p.ticket == nil {
		t.Fatalf("mixnet payment: %v", err)
	}
	c := a.w.Counts()
	if c[credential.MixnetEntry] != wallet.DefaultBookSize || c[credential.MixnetExit] != wallet.DefaultBookSize ||
		c[credential.FastEntry] != 0 || c[credential.FastExit] != 0 {
		t.Fatalf("counts after a mixnet attempt %v", c)
	}
	gw := directory.Node{ID: "gw", NoiseKey: directory.Key32{7}}
	if tk, err := p.ticket(ctx, registration.RoleMixnetExit, gw); err != nil || len(tk) == 0 {
		t.Fatalf("mixnet-exit ticket: %v", err)
	}
	if c := a.w.Counts()[credential.MixnetExit]; c != wallet.DefaultBookSize-1 {
		t.Fatalf("mixnet-exit left %d after a spend", c)
	}
}

// TestPaymentClassifyExit: the exit's refusals of mixnet-mode payment end
// the attempt for good, in words; other errors are not its business.
func TestPaymentClassifyExit(t *testing.T) {
	withAccount := &payment{ticket: func(context.Context, string, directory.Node) ([]byte, error) { return nil, nil }}
	without := &payment{}
	exitErr := func(code uint8, reason string) error {
		return fmt.Errorf("mixnet: %w", &mixnet.ExitPaymentError{Exit: "gw-exit", Code: code, Reason: reason})
	}
	for _, c := range []struct {
		name string
		p    *payment
		err  error
		code string // "": not an exit refusal
		msg  string
	}{
		{"no account", without, exitErr(ipr.ErrPaymentRequired, "takes tickets"), api.CodeNoAccount, "nymvpn account create"},
		{"payment required", withAccount, exitErr(ipr.ErrPaymentRequired, "takes tickets"), api.CodeUnavailable, "wants payment"},
		{"spent", withAccount, exitErr(ipr.ErrTicketRefused, "ticket_spent: this ticket was spent before"), api.CodeTicketRefused, "exit gateway gw-exit refused the ticket: ticket_spent"},
		{"stale", withAccount, exitErr(ipr.ErrTicketRefused, "ticket_stale: 40s off"), api.CodeTicketRefused, "clock"},
		{"other", withAccount, errors.New("mixnet: no answer from exit gateway"), "", ""},
	} {
		got := c.p.classifyExit(c.err)
		if c.code == "" {
			if got != nil {
				t.Errorf("%s: %v, want nil", c.name, got)
			}
			continue
		}
		var perm *tunnelstate.PermanentError
		if !errors.As(got, &perm) || perm.Code != c.code || !strings.Contains(got.Error(), c.msg) {
			t.Errorf("%s: %v, want permanent %s with %q", c.name, got, c.code, c.msg)
		}
	}
}
