package gateway_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/node/gateway"
	"github.com/nymvpn/nymvpn/tun/netstack"
	"golang.org/x/net/dns/dnsmessage"
	"golang.zx2c4.com/wireguard/tun"
)

// pump copies packets from one device to the other until either closes.
func pump(from, to tun.Device) {
	bufs := make([][]byte, from.BatchSize())
	sizes := make([]int, len(bufs))
	for i := range bufs {
		bufs[i] = make([]byte, 16+65535)
	}
	for {
		n, err := from.Read(bufs, sizes, 16)
		if err != nil && n == 0 {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		out := make([][]byte, n)
		for i := range n {
			out[i] = bufs[i][:16+sizes[i]]
		}
		if _, err := to.Write(out, 16); err != nil && errors.Is(err, os.ErrClosed) {
			return
		}
	}
}

// TestExitDevice runs a client stack back to back with an exit device in
// userspace mode: a flow to an allowed server is carried and leaves from the
// outbound address, DNS to the device's address is relayed, and the policy
// refuses what it must.
func TestExitDevice(t *testing.T) {
	up, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go fakeDNS(up)
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, c.RemoteAddr().String())
			c.Close()
		}
	}()
	denied, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Skip("needs 127.0.0.3 (Linux routes all of 127/8 to lo)")
	}
	defer denied.Close()

	dev, err := gateway.NewExitDevice(gateway.ExitDeviceConfig{
		Pool4: netip.MustParsePrefix("10.0.0.0/16"), Pool6: netip.MustParsePrefix("fc00::/112"),
		Policy: gateway.ExitPolicy{AllowLoopback: true, OutboundAddr: netip.MustParseAddr("127.0.0.1"),
			Deny: []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}, DNSUpstream: netip.MustParseAddrPort(up.LocalAddr().String())},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if dev.Addr4 != netip.MustParseAddr("10.0.0.1") || dev.Addr6 != netip.MustParseAddr("fc00::1") || dev.Kernel() != "" {
		t.Fatalf("device addresses %v %v, kernel %q", dev.Addr4, dev.Addr6, dev.Kernel())
	}
	client, err := netstack.New(netstack.Config{Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fc00::2")},
		MTU: 1500, AllowLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	go pump(client, dev)
	go pump(dev, client)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, "tcp", srv.Addr().String())
	if err != nil {
		t.Fatalf("allowed flow: %v", err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if !strings.HasPrefix(string(b), "127.0.0.1:") {
		t.Errorf("the server saw %q, want the outbound address 127.0.0.1", b)
	}

	// DNS through the device's own address.
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return client.DialContext(ctx, "udp", "10.0.0.1:53")
	}}
	addrs, err := r.LookupNetIP(ctx, "ip4", "web.test")
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.0.2.7") {
		t.Errorf("DNS through the exit device: %v %v", addrs, err)
	}

	for _, dst := range []string{denied.Addr().String(), "10.0.0.9:80", "169.254.1.1:80", "[fc00::9]:80"} {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := client.DialContext(dctx, "tcp", dst)
		dcancel()
		if err == nil {
			c.Close()
			t.Errorf("flow to %s was carried; the policy must refuse it", dst)
		}
	}
	st := dev.Stats()
	if st.Flows < 1 || st.Refused < 4 {
		t.Errorf("stats %+v: want the TCP flow and ≥ 4 refusals", st)
	}
}

// fakeDNS answers every A question with 192.0.2.7.
func fakeDNS(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true})
		b.StartQuestions()
		b.Question(q)
		b.StartAnswers()
		if q.Type == dnsmessage.TypeA {
			b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: [4]byte{192, 0, 2, 7}})
		}
		if msg, err := b.Finish(); err == nil {
			pc.WriteTo(msg, from)
		}
	}
}
