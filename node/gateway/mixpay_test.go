package gateway_test

import (
	"context"
	"errors"
	"net/netip"
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
