package gateway_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/gateway"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/sphinx"
	"github.com/nymvpn/nymvpn/transport"
)

// Mixnet ingress at an entry gateway that takes tickets: a client is refused
// until its recipient key has an allowance (registration role mixnet with a
// mixnet-entry ticket), is charged for what it sends, and is disconnected
// when the allowance runs out; a fast ticket does not pay for it.
func TestMixnetIngressPaid(t *testing.T) {
	pktLen := int64(sphinx.RegularGeometry().PacketLength)
	lo := netip.MustParseAddr("127.0.0.1")
	p := newPaidGateway(t, func(p *paidGateway) {
		p.roles = []directory.Role{directory.RoleEntry}
		p.mixnet = &gateway.MixnetConfig{Listen: netip.AddrPortFrom(lo, 0), ClientListen: netip.AddrPortFrom(lo, 0), EpochLength: time.Hour}
		p.bandwidth = map[credential.TicketType]int64{credential.MixnetEntry: 10 * pktLen}
	})
	node := p.gw.Node()
	node.Country = "DE"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, _ := transport.GenerateKey()
	if _, err := mixnet.Dial(ctx, mixnet.ClientConfig{Gateway: node, Key: key}); !errors.Is(err, mixnet.ErrRefused) {
		t.Fatalf("unpaid mixnet client: %v, want refused", err)
	}
	addr := p.gw.RegistrationAddr().String()
	fastTicket, _ := spend(t, p.book(t, credential.FastEntry, 1), 0, p.noise, time.Now())
	if _, code := registerAt(t, addr, p.noise.Public(), p.wg.Public(), registration.RoleMixnet, fastTicket, key); code != registration.CodeTicketWrongType {
		t.Fatalf("fast ticket for the mixnet: %q", code)
	}
	book := p.book(t, credential.MixnetEntry, 2)
	tk, _ := spend(t, book, 0, p.noise, time.Now())
	res, code := registerAt(t, addr, p.noise.Public(), p.wg.Public(), registration.RoleMixnet, tk, key)
	if code != "" {
		t.Fatalf("mixnet ticket refused: %s", code)
	}
	if !res.PaymentOnly() || res.Bandwidth != 10*pktLen {
		t.Fatalf("mixnet grant %+v", res.Grant)
	}
	c, err := mixnet.Dial(ctx, mixnet.ClientConfig{Gateway: node, Key: key})
	if err != nil {
		t.Fatalf("paid mixnet client: %v", err)
	}
	defer c.Close()
	pkt := make([]byte, pktLen)
	for i := 0; i < 20; i++ {
		if err := c.Send(sphinx.NodeID{1}, 0, pkt); err != nil {
			break // disconnected
		}
	}
	select {
	case _, ok := <-c.Deliveries():
		for ok {
			_, ok = <-c.Deliveries()
		}
	case <-ctx.Done():
		t.Fatal("a client that sent twice its allowance is still connected")
	}
	// A top-up: the same key pays again and may reconnect.
	tk2, _ := spend(t, book, 1, p.noise, time.Now())
	if _, code := registerAt(t, addr, p.noise.Public(), p.wg.Public(), registration.RoleMixnet, tk2, key); code != "" {
		t.Fatalf("top-up refused: %s", code)
	}
	c2, err := mixnet.Dial(ctx, mixnet.ClientConfig{Gateway: node, Key: key})
	if err != nil {
		t.Fatalf("reconnect after the top-up: %v", err)
	}
	c2.Close()
}

// The exit's IP packet router pays with mixnet-exit tickets through
// ExitPayment: bound to this gateway, of that type, once; what one buys is
// the type's bandwidth (overridable) with the top-up level at a quarter, and
// every ticket counts in the gateway's ticket stats. RoleMixnetExit names no
// registration role. A free-pass gateway has no hook; one without payments
// refuses every ticket.
func TestMixnetExitTickets(t *testing.T) {
	p := newPaidGateway(t, func(p *paidGateway) {
		p.bandwidth = map[credential.TicketType]int64{credential.MixnetExit: 64 << 10}
	})
	pay := p.gw.ExitPayment()
	if pay == nil {
		t.Fatal("a gateway that takes tickets has no exit payment hook")
	}
	refusal := func(ticket []byte) string {
		t.Helper()
		_, _, err := pay(ticket)
		var xerr *gateway.ExitTicketError
		if !errors.As(err, &xerr) {
			t.Fatalf("refusal %v is not an ExitTicketError", err)
		}
		if want := xerr.Refusal.Code + ": "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("refusal text %q does not start with its code", err)
		}
		return xerr.Refusal.Code
	}
	now := time.Now()
	fast, _ := spend(t, p.book(t, credential.FastExit, 1), 0, p.noise, now)
	if code := refusal(fast); code != registration.CodeTicketWrongType {
		t.Errorf("fast-exit ticket at the IP packet router: %s", code)
	}
	book := p.book(t, credential.MixnetExit, 3)
	other, _ := transport.GenerateKey()
	elsewhere, _ := spend(t, book, 0, other, now)
	if code := refusal(elsewhere); code != registration.CodeTicketWrongGateway {
		t.Errorf("ticket bound to another gateway: %s", code)
	}
	good, _ := spend(t, book, 1, p.noise, now)
	bw, topUp, err := pay(good)
	if err != nil || bw != 64<<10 || topUp != 16<<10 {
		t.Fatalf("mixnet-exit ticket: %d, %d, %v", bw, topUp, err)
	}
	if code := refusal(good); code != registration.CodeTicketSpent {
		t.Errorf("the same ticket again: %s", code)
	}
	if st := p.gw.Stats(); st.TicketsAccepted != 1 || st.TicketsRefused != 3 {
		t.Errorf("ticket stats %+v", st)
	}
	tk, _ := spend(t, book, 2, p.noise, now)
	if _, code := p.register(t, registration.RoleMixnetExit, tk); code != registration.CodeMalformed {
		t.Errorf("registration for %q: %q, want %q", registration.RoleMixnetExit, code, registration.CodeMalformed)
	}

	lo := netip.MustParseAddr("127.0.0.1")
	for _, free := range []bool{true, false} {
		gw, err := gateway.New(gateway.Config{
			ID: "unpaid", Roles: []directory.Role{directory.RoleExit}, NoiseKey: p.noise, WireGuardKey: p.wg, FreePass: free,
			WireGuardListen: netip.AddrPortFrom(lo, 0), RegistrationListen: netip.AddrPortFrom(lo, 0),
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		hook := gw.ExitPayment()
		if free && hook != nil {
			t.Error("a free-pass gateway has an exit payment hook")
		}
		if !free {
			if _, _, err := hook(tk); err == nil || !strings.Contains(err.Error(), registration.CodePaymentRequired) {
				t.Errorf("a gateway without payments: %v", err)
			}
		}
		gw.Close()
	}
}
