package mixnet_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	mix "github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/mixnet/ipr"
	"github.com/nymvpn/nymvpn/modes/mixnet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/localnet"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
)

// exitTicketBytes is what one mixnet-exit ticket buys on the paid test
// network: a download of a few hundred kB needs several.
const exitTicketBytes = 64 << 10

// startPaidNet is a local network whose gateways take tickets of its
// issuers: mixnet ingress at the entries (mixnet-entry tickets of the
// type's own size, which a tunnel's constant rate of cover and data spends
// slowly enough for one top-up a second) and the exits' IP packet routers
// (mixnet-exit tickets of exitTicketBytes).
func startPaidNet(t *testing.T) *localnet.Network {
	return startNet(t, func(c *localnet.Config) {
		c.FreePass = false
		c.TicketBandwidths = map[credential.TicketType]int64{credential.MixnetExit: exitTicketBytes}
	})
}

// TestExitTickets runs mixnet mode against exits that take mixnet-exit
// tickets: a client without tickets is refused at the exit in words, one
// whose ticket is of the wrong type hears why; a paying client's connection
// outlives several tickets, topping up at the exit as it goes; and a client
// whose top-ups are refused sees the exit's reason in its health, and Check
// reports it once the allowance is used up.
func TestExitTickets(t *testing.T) {
	n := startPaidNet(t)
	topo := topology(t, n)
	exitNode, _ := topo.Node("exit-ch-1")
	// connectErrKey connects as key (zero: a new one) and returns the error.
	connectErrKey := func(key transport.Key, ticket func(context.Context, string, directory.Node) ([]byte, error)) error {
		t.Helper()
		entry, _ := topo.Node("entry-de-1")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		tun, err := mixnet.Connect(ctx, mixnet.Config{
			Topology: topo, Entry: *entry, Exit: *exitNode, Key: key, Profile: testProfile, AllowLoopback: true,
			RetransmitBase: 500 * time.Millisecond, Ticket: ticket, Logger: logger(),
		})
		if err == nil {
			tun.Close()
		}
		return err
	}
	connectErr := func(ticket func(context.Context, string, directory.Node) ([]byte, error)) error {
		t.Helper()
		return connectErrKey(transport.Key{}, ticket)
	}
	// mixnet-entry tickets where mixnet-exit ones are due.
	wrongType := func(ctx context.Context, role string, gw directory.Node) ([]byte, error) {
		if role == registration.RoleMixnetExit {
			role = registration.RoleMixnet
		}
		return n.Ticket(ctx, role, gw)
	}

	t.Run("no tickets", func(t *testing.T) {
		// Refused at the entry, which charges for mixnet ingress.
		err := connectErr(nil)
		if !errors.Is(err, mix.ErrRefused) || !strings.Contains(err.Error(), "payment required") {
			t.Fatalf("a client without tickets at a paid entry: %v", err)
		}
		t.Logf("refused at the entry: %v", err)
		// A client whose key paid the entry beforehand, with no tickets
		// for the exit: refused there.
		entry, _ := topo.Node("entry-de-1")
		key, _ := transport.GenerateKey()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := mix.PayEntry(ctx, *entry, key, n.Ticket, nil); err != nil {
			t.Fatal(err)
		}
		err = connectErrKey(key, nil)
		var xerr *mixnet.ExitPaymentError
		if !errors.As(err, &xerr) || xerr.Code != ipr.ErrPaymentRequired || !strings.Contains(err.Error(), "mixnet-exit ticket") {
			t.Fatalf("a client without tickets at a paid exit: %v", err)
		}
		t.Logf("refused at the exit: %v", err)
	})

	t.Run("wrong ticket", func(t *testing.T) {
		err := connectErr(wrongType)
		var xerr *mixnet.ExitPaymentError
		if !errors.As(err, &xerr) || xerr.Code != ipr.ErrTicketRefused || !strings.Contains(xerr.Reason, registration.CodeTicketWrongType) ||
			!strings.Contains(err.Error(), "refused the ticket") {
			t.Fatalf("a mixnet-entry ticket at the exit: %v", err)
		}
		t.Logf("refused: %v", err)
	})

	t.Run("top-ups", func(t *testing.T) {
		router := n.IPRouters["exit-ch-1"]
		before, gwBefore := router.Stats(), n.Gateways["exit-ch-1"].Stats()
		tun := connect(t, n, func(c *mixnet.Config) { c.Ticket = n.Ticket })
		waitFor(t, "the exit's allowance", func() bool { _, metered := tun.ExitAllowance(); return metered })
		if a, _ := tun.ExitAllowance(); a.Left > exitTicketBytes || a.TopUpAt != exitTicketBytes/4 {
			t.Fatalf("allowance after the Open %+v", a)
		}
		const size = 4 * exitTicketBytes
		download(t, httpClient(tun), bulkServer(t), size)
		st, r, gw := tun.Stats(), router.Stats(), n.Gateways["exit-ch-1"].Stats()
		t.Logf("%d exit tickets spent; router: %d accepted, %d NeedTicket, %d packets dropped unpaid", st.ExitTickets,
			r.Tickets-before.Tickets, r.NeedTickets-before.NeedTickets, r.Unpaid-before.Unpaid)
		// The download alone is 4 tickets' worth: the Open's and at least
		// three top-ups.
		if st.ExitTickets < 4 || r.Tickets-before.Tickets < 4 || r.NeedTickets == before.NeedTickets ||
			gw.TicketsAccepted-gwBefore.TicketsAccepted < 4 {
			t.Errorf("exit tickets: client %d, router %+v, gateway %+v", st.ExitTickets, r, gw)
		}
		if r.TicketsRefused != before.TicketsRefused {
			t.Errorf("%d tickets refused", r.TicketsRefused-before.TicketsRefused)
		}
		if h := tun.Health(); h.Payment != nil || h.Err != nil {
			t.Errorf("health %+v", h)
		}
	})

	t.Run("refused top-up", func(t *testing.T) {
		// The Open's ticket is good, every top-up the wrong type.
		var exitTickets atomic.Int32
		tun := connect(t, n, func(c *mixnet.Config) {
			c.Ticket = func(ctx context.Context, role string, gw directory.Node) ([]byte, error) {
				if role == registration.RoleMixnetExit && exitTickets.Add(1) > 1 {
					return wrongType(ctx, role, gw)
				}
				return n.Ticket(ctx, role, gw)
			}
		})
		c := httpClient(tun)
		base := bulkServer(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/%d", base, 2*exitTicketBytes), nil)
		go func() {
			if resp, err := c.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		var payErr *mixnet.ExitPaymentError
		waitFor(t, "the refusal in the tunnel's health", func() bool {
			return errors.As(tun.Health().Payment, &payErr)
		})
		if payErr.Code != ipr.ErrTicketRefused || !strings.Contains(payErr.Reason, registration.CodeTicketWrongType) {
			t.Fatalf("health's payment error %v", payErr)
		}
		waitFor(t, "Check to report the used-up allowance", func() bool { return tun.Check(time.Now()) != nil })
		err := tun.Check(time.Now())
		if !strings.Contains(err.Error(), "allowance is used up") || !strings.Contains(err.Error(), "refused the ticket") {
			t.Errorf("Check: %v", err)
		}
		t.Logf("Check: %v", err)
	})
}
