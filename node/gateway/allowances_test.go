package gateway_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
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
	"github.com/nymvpn/nymvpn/tun/netstack"
	"github.com/nymvpn/nymvpn/wguapi"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// wgClient brings up a WireGuard tunnel with key to the gateway of a
// registration result, on a userspace stack; it waits for the handshake.
func wgClient(t *testing.T, p *paidGateway, res *registration.Result, key transport.Key) (*netstack.Stack, *device.Device) {
	t.Helper()
	st, err := netstack.New(netstack.Config{Addresses: res.Addresses, MTU: 1420, AllowLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	dev := device.NewDevice(st, conn.NewStdNetBind(), device.NewLogger(device.LogLevelSilent, ""))
	t.Cleanup(dev.Close)
	ep := netip.AddrPortFrom(p.gw.WireGuardAddr().Addr(), res.Port)
	err = dev.IpcSet(fmt.Sprintf("private_key=%s\npublic_key=%s\npreshared_key=%s\nendpoint=%s\npersistent_keepalive_interval=1\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\n",
		hex.EncodeToString(key[:]), hex.EncodeToString(res.GatewayKey[:]), hex.EncodeToString(res.PresharedKey[:]), ep))
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := wguapi.Get(dev)
		if err == nil && len(s.Peers) == 1 && !s.Peers[0].LastHandshake.IsZero() {
			return st, dev
		}
		if time.Now().After(deadline) {
			t.Fatal("no WireGuard handshake with the gateway")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bulkServer answers every request with n bytes, on loopback.
func bulkServer(t *testing.T, n int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, n)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

// A paid allowance outlives the gateway: pay, use some, close the gateway,
// open it again on the same database, and the same key registers without a
// ticket, admitted with what it had left. A key without a record still
// needs a ticket, and so does one whose record is used up.
func TestAllowanceSurvivesRestart(t *testing.T) {
	const bandwidth = 1 << 20
	const body = 64 << 10
	p := newPaidGateway(t, func(p *paidGateway) {
		p.bandwidth = map[credential.TicketType]int64{credential.FastExit: bandwidth}
		p.exit = gateway.ExitPolicy{AllowLoopback: true}
	})
	url := bulkServer(t, body)
	book := p.book(t, credential.FastExit, 2)
	key, _ := transport.GenerateKey()
	register := func(ticket []byte, key transport.Key) (*registration.Result, string) {
		t.Helper()
		return registerAt(t, p.gw.RegistrationAddr().String(), p.noise.Public(), p.wg.Public(), registration.RoleExit, ticket, key)
	}
	tk, _ := spend(t, book, 0, p.noise, time.Now())
	res, code := register(tk, key)
	if code != "" || res.Bandwidth != bandwidth {
		t.Fatalf("paid registration: %q %+v", code, res)
	}
	// Use some: a download through the tunnel.
	st, dev := wgClient(t, p, res, key)
	hc := &http.Client{Transport: &http.Transport{DialContext: st.DialContext}, Timeout: 30 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("download through the tunnel: %v", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != body {
		t.Fatalf("downloaded %d bytes (%v), want %d", n, err, body)
	}
	s, _ := wguapi.Get(dev)
	clientTx, clientRx := s.Totals()
	clientUsed := clientTx + clientRx
	dev.Close()

	// A restart: the database keeps what is left.
	p.gw.Close()
	p.start(t)
	res2, code := register(nil, key)
	if code != "" {
		t.Fatalf("the same key without a ticket after a restart: refused %q, want admitted with its stored allowance", code)
	}
	used := bandwidth - res2.Bandwidth
	t.Logf("after the restart: %d left, %d charged, the client counted %d", res2.Bandwidth, used, clientUsed)
	if used < body || used > clientUsed+4096 || used < clientUsed-4096 {
		t.Fatalf("allowance after the restart %d: %d charged, want the download's bytes as the client counted them (%d)", res2.Bandwidth, used, clientUsed)
	}
	if res2.TopUpAt != bandwidth/4 {
		t.Errorf("top-up level after the restart %d, want %d", res2.TopUpAt, bandwidth/4)
	}
	// A ticket adds to the stored allowance.
	tk2, _ := spend(t, book, 1, p.noise, time.Now())
	if res3, code := register(tk2, key); code != "" || res3.Bandwidth != res2.Bandwidth+bandwidth {
		t.Fatalf("top-up after the restart: %q, %d, want %d", code, res3.Bandwidth, res2.Bandwidth+bandwidth)
	}
	// Another key has no record.
	if _, code := register(nil, transport.Key{}); code != registration.CodePaymentRequired {
		t.Fatalf("an unknown key without a ticket after a restart: %q", code)
	}
}

// A record whose allowance is used up does not admit its key after a
// restart.
func TestExhaustedAllowanceNeedsTicketAfterRestart(t *testing.T) {
	const bandwidth = 100 // less than the WireGuard handshake itself
	p := newPaidGateway(t, func(p *paidGateway) {
		p.bandwidth = map[credential.TicketType]int64{credential.FastExit: bandwidth}
	})
	key, _ := transport.GenerateKey()
	tk, _ := spend(t, p.book(t, credential.FastExit, 1), 0, p.noise, time.Now())
	res, code := registerAt(t, p.gw.RegistrationAddr().String(), p.noise.Public(), p.wg.Public(), registration.RoleExit, tk, key)
	if code != "" {
		t.Fatal(code)
	}
	_, dev := wgClient(t, p, res, key)
	dev.Close()
	p.gw.Close()
	p.start(t)
	if _, code := registerAt(t, p.gw.RegistrationAddr().String(), p.noise.Public(), p.wg.Public(), registration.RoleExit, nil, key); code != registration.CodePaymentRequired {
		t.Fatalf("a used-up allowance after a restart: %q, want %q", code, registration.CodePaymentRequired)
	}
}

// A mixnet-entry allowance outlives the gateway too: after a restart the
// recipient key connects without paying again, with what it had left.
func TestMixnetAllowanceSurvivesRestart(t *testing.T) {
	pktLen := int64(sphinx.RegularGeometry().PacketLength)
	lo := netip.MustParseAddr("127.0.0.1")
	p := newPaidGateway(t, func(p *paidGateway) {
		p.roles = []directory.Role{directory.RoleEntry}
		p.mixnet = &gateway.MixnetConfig{Listen: netip.AddrPortFrom(lo, 0), ClientListen: netip.AddrPortFrom(lo, 0), EpochLength: time.Hour}
		p.bandwidth = map[credential.TicketType]int64{credential.MixnetEntry: 100 * pktLen}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, _ := transport.GenerateKey()
	register := func(ticket []byte) (*registration.Result, string) {
		t.Helper()
		return registerAt(t, p.gw.RegistrationAddr().String(), p.noise.Public(), p.wg.Public(), registration.RoleMixnet, ticket, key)
	}
	tk, _ := spend(t, p.book(t, credential.MixnetEntry, 1), 0, p.noise, time.Now())
	if _, code := register(tk); code != "" {
		t.Fatalf("mixnet ticket refused: %s", code)
	}
	node := func() directory.Node {
		n := p.gw.Node()
		n.Country = "DE"
		return n
	}
	c, err := mixnet.Dial(ctx, mixnet.ClientConfig{Gateway: node(), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, pktLen)
	for range 5 {
		if err := c.Send(sphinx.NodeID{1}, 0, pkt); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the gateway charged them: a ticketless registration
	// answers with what is left.
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, code := register(nil)
		if code != "" {
			t.Fatalf("ticketless mixnet registration of a paid key: %q", code)
		}
		if res.Bandwidth <= 95*pktLen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway charged nothing for 5 packets: %d left", res.Bandwidth)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.Close()
	p.gw.Close()
	p.start(t)
	res, code := register(nil)
	if code != "" {
		t.Fatalf("the same key without a ticket after a restart: refused %q, want admitted with its stored allowance", code)
	}
	if res.Bandwidth > 95*pktLen || res.Bandwidth < 90*pktLen {
		t.Fatalf("after a restart %d left; want what was left after 5 packets (≤ %d)", res.Bandwidth, 95*pktLen)
	}
	c2, err := mixnet.Dial(ctx, mixnet.ClientConfig{Gateway: node(), Key: key})
	if err != nil {
		t.Fatalf("mixnet client after a restart, not paying again: %v", err)
	}
	c2.Close()
	other, _ := transport.GenerateKey()
	if _, err := mixnet.Dial(ctx, mixnet.ClientConfig{Gateway: node(), Key: other}); err == nil {
		t.Fatal("a key without a record connected after a restart")
	}
}
