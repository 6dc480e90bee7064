package socks5

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestUDPAssociateRoundTrip(t *testing.T) {
	ts := newTestServer(t, nil)
	echo := startUDPEcho(t, "udp4", "127.0.0.1:0")
	echoAddr := echo.LocalAddr().String()

	a, err := AssociateUDP(context.Background(), ts.Addr)
	if err != nil {
		t.Fatalf("AssociateUDP: %v", err)
	}
	defer a.Close()
	if got := a.RelayAddr().Addr(); got != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("relay bound on %v, want the control connection's IP 127.0.0.1", got)
	}
	_ = a.SetReadDeadline(time.Now().Add(ioTimeout))
	buf := make([]byte, 65535)
	for i, target := range []string{echoAddr, fmt.Sprintf("echo.test:%d", port(t, echoAddr))} {
		msg := fmt.Sprintf("datagram %d", i)
		if n, err := a.WriteTo([]byte(msg), target); err != nil || n != len(msg) {
			t.Fatalf("WriteTo(%s) = %d, %v", target, n, err)
		}
		n, from, err := a.ReadFrom(buf)
		if err != nil {
			t.Fatalf("ReadFrom: %v", err)
		}
		if string(buf[:n]) != msg || from != echoAddr {
			t.Errorf("got %q from %s, want %q from %s", buf[:n], from, msg, echoAddr)
		}
	}
	// A large datagram survives the header wrapping in both directions.
	big := make([]byte, 60000)
	for i := range big {
		big[i] = byte(i)
	}
	if _, err := a.WriteTo(big, echoAddr); err != nil {
		t.Fatalf("WriteTo big: %v", err)
	}
	n, _, err := a.ReadFrom(buf)
	if err != nil || n != len(big) || string(buf[:n]) != string(big) {
		t.Fatalf("big datagram: n=%d err=%v", n, err)
	}

	waitStats(t, ts.Server, func(st Stats) bool {
		return st.UDPDatagramsOut == 3 && st.UDPDatagramsIn == 3 && st.UDPAssociationsActive == 1 && st.UDPDatagramsDropped == 0
	})
	if q := ts.Resolver.Queries(); len(q) != 1 || q[0] != "echo.test" {
		t.Errorf("resolver queries = %v", q)
	}
}

func TestUDPAssociateIPv6(t *testing.T) {
	if l, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("IPv6 loopback not available: %v", err)
	} else {
		l.Close()
	}
	ts := newTestServerOn(t, "tcp6", "[::1]:0", func(s *Server) {
		s.ListenPacket = func(ctx context.Context) (net.PacketConn, error) { return net.ListenPacket("udp6", "[::1]:0") }
	})
	echo6 := startUDPEcho(t, "udp6", "[::1]:0").LocalAddr().String()
	a, err := AssociateUDP(context.Background(), ts.Addr)
	if err != nil {
		t.Fatalf("AssociateUDP: %v", err)
	}
	defer a.Close()
	if got := a.RelayAddr().Addr(); got != netip.IPv6Loopback() {
		t.Errorf("relay bound on %v, want ::1", got)
	}
	_ = a.SetReadDeadline(time.Now().Add(ioTimeout))
	buf := make([]byte, 2048)
	for _, target := range []string{echo6, fmt.Sprintf("echo6.test:%d", port(t, echo6))} {
		if _, err := a.WriteTo([]byte("v6 "+target), target); err != nil {
			t.Fatalf("WriteTo: %v", err)
		}
		n, from, err := a.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "v6 "+target || from != echo6 {
			t.Errorf("got %q from %s (%v), want echo from %s", buf[:n], from, err, echo6)
		}
	}
}

func TestUDPForeignSourceIgnored(t *testing.T) {
	echo := netip.MustParseAddrPort(startUDPEcho(t, "udp4", "127.0.0.1:0").LocalAddr().String())
	dst := AddrFromAddrPort(echo)

	t.Run("learned from first datagram", func(t *testing.T) {
		ts := newTestServer(t, nil)
		_, relay := associateRaw(t, ts.Addr, Addr{IP: netip.IPv4Unspecified()})
		client := listenUDP(t, "127.0.0.1:0")
		other := listenUDP(t, "127.0.0.1:0")
		send := func(c *net.UDPConn, payload string) {
			t.Helper()
			if _, err := c.WriteToUDPAddrPort(udpPacket(0, dst, payload), relay); err != nil {
				t.Fatal(err)
			}
		}
		send(client, "one")
		if _, got := readDatagram(t, client); got != "one" {
			t.Fatalf("got %q, want one", got)
		}
		send(other, "foreign")
		send(client, "two")
		if src, got := readDatagram(t, client); got != "two" || netip.AddrPortFrom(src.IP, src.Port) != echo {
			t.Fatalf("got %q from %v, want two from %v", got, src, echo)
		}
		if st := ts.Stats(); st.ForeignDatagrams != 1 || st.UDPDatagramsDropped != 1 {
			t.Errorf("stats = %+v", st)
		}
		waitStats(t, ts.Server, func(st Stats) bool { return st.UDPDatagramsOut == 2 && st.UDPDatagramsIn == 2 })
	})

	t.Run("declared port", func(t *testing.T) {
		ts := newTestServer(t, nil)
		client := listenUDP(t, "127.0.0.1:0")
		other := listenUDP(t, "127.0.0.1:0")
		cp := netip.MustParseAddrPort(client.LocalAddr().String()).Port()
		// The declared IP is ignored in favour of the control connection's.
		_, relay := associateRaw(t, ts.Addr, Addr{IP: netip.MustParseAddr("192.0.2.7"), Port: cp})
		if _, err := other.WriteToUDPAddrPort(udpPacket(0, dst, "foreign"), relay); err != nil {
			t.Fatal(err)
		}
		if _, err := client.WriteToUDPAddrPort(udpPacket(0, dst, "mine"), relay); err != nil {
			t.Fatal(err)
		}
		if _, got := readDatagram(t, client); got != "mine" {
			t.Fatalf("got %q, want mine", got)
		}
		if st := ts.Stats(); st.ForeignDatagrams != 1 {
			t.Errorf("stats = %+v", st)
		}
		waitStats(t, ts.Server, func(st Stats) bool { return st.UDPDatagramsOut == 1 })
	})

	t.Run("other IP", func(t *testing.T) {
		ts := newTestServer(t, nil)
		pc, err := net.ListenPacket("udp4", "127.0.0.2:0")
		if err != nil {
			t.Skipf("cannot bind 127.0.0.2 on this system: %v", err)
		}
		other := pc.(*net.UDPConn)
		defer other.Close()
		client := listenUDP(t, "127.0.0.1:0")
		_, relay := associateRaw(t, ts.Addr, Addr{IP: netip.IPv4Unspecified()})
		// The foreign IP arrives first, so it would have been learned as
		// the client if the IP were not checked.
		if _, err := other.WriteToUDPAddrPort(udpPacket(0, dst, "foreign"), relay); err != nil {
			t.Fatal(err)
		}
		if _, err := client.WriteToUDPAddrPort(udpPacket(0, dst, "mine"), relay); err != nil {
			t.Fatal(err)
		}
		if _, got := readDatagram(t, client); got != "mine" {
			t.Fatalf("got %q, want mine", got)
		}
		if st := ts.Stats(); st.ForeignDatagrams != 1 {
			t.Errorf("stats = %+v", st)
		}
	})
}

func TestUDPMalformedDatagramsDropped(t *testing.T) {
	ts := newTestServer(t, nil)
	echo := netip.MustParseAddrPort(startUDPEcho(t, "udp4", "127.0.0.1:0").LocalAddr().String())
	dst := AddrFromAddrPort(echo)
	client := listenUDP(t, "127.0.0.1:0")
	cp := netip.MustParseAddrPort(client.LocalAddr().String()).Port()
	_, relay := associateRaw(t, ts.Addr, Addr{IP: netip.IPv4Unspecified(), Port: cp})

	bad := [][]byte{
		udpPacket(1, dst, "fragment 1"),
		udpPacket(0x81, dst, "last fragment"),
		append([]byte{0, 1}, udpPacket(0, dst, "reserved")[2:]...),
		{0, 0, 0, 1, 127, 0},                      // truncated address
		{0, 0, 0, 9, 1, 2, 3, 4, 0, 7},            // unknown address type
		{0, 0, 0, 3, 0, 0, 7},                     // empty name
		udpPacket(0, Addr{IP: echo.Addr()}, "p0"), // port 0
		udpPacket(0, Addr{IP: netip.IPv4Unspecified(), Port: 9}, "unspecified"),
		{0, 0},
	}
	for _, b := range bad {
		if _, err := client.WriteToUDPAddrPort(b, relay); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.WriteToUDPAddrPort(udpPacket(0, dst, "good"), relay); err != nil {
		t.Fatal(err)
	}
	if _, got := readDatagram(t, client); got != "good" {
		t.Fatalf("got %q, want good", got)
	}
	st := ts.Stats()
	if st.MalformedDatagrams != uint64(len(bad)) || st.UDPDatagramsDropped != uint64(len(bad)) {
		t.Errorf("stats = %+v, want %d malformed", st, len(bad))
	}
	waitStats(t, ts.Server, func(st Stats) bool { return st.UDPDatagramsOut == 1 })
}

func TestUDPUnresolvableNameDropped(t *testing.T) {
	ts := newTestServer(t, nil)
	echo := netip.MustParseAddrPort(startUDPEcho(t, "udp4", "127.0.0.1:0").LocalAddr().String())
	client := listenUDP(t, "127.0.0.1:0")
	_, relay := associateRaw(t, ts.Addr, Addr{IP: netip.IPv4Unspecified()})
	for _, pkt := range [][]byte{
		udpPacket(0, Addr{Name: "nxdomain.test", Port: 53}, "lost"),
		udpPacket(0, Addr{Name: "echo.test", Port: echo.Port()}, "found"),
	} {
		if _, err := client.WriteToUDPAddrPort(pkt, relay); err != nil {
			t.Fatal(err)
		}
	}
	if _, got := readDatagram(t, client); got != "found" {
		t.Fatalf("got %q, want found", got)
	}
	if st := ts.Stats(); st.UDPDatagramsDropped != 1 || st.MalformedDatagrams != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestUDPAssociationEndsWithControlConnection(t *testing.T) {
	ts := newTestServer(t, nil)
	ctrl, relay := associateRaw(t, ts.Addr, Addr{IP: netip.IPv4Unspecified()})
	if ts.Stats().UDPAssociationsActive != 1 {
		t.Fatalf("association not active: %+v", ts.Stats())
	}
	ctrl.Close()
	waitFor(t, "association to end", func() bool { return ts.Stats().UDPAssociationsActive == 0 })
	// The relay port is released.
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(relay))
	if err != nil {
		t.Fatalf("relay port still bound after association ended: %v", err)
	}
	pc.Close()
}

func TestUDPAssociationEndsOnServerClose(t *testing.T) {
	ts := newTestServer(t, nil)
	a, err := AssociateUDP(context.Background(), ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ts.Close()
	<-a.Done()
	if _, _, err := a.ReadFrom(make([]byte, 10)); !errors.Is(err, ErrAssociationClosed) {
		t.Errorf("ReadFrom after close = %v", err)
	}
}

func TestUDPIdleTimeout(t *testing.T) {
	ts := newTestServer(t, func(s *Server) { s.UDPIdleTimeout = 10 * time.Millisecond })
	a, err := AssociateUDP(context.Background(), ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	<-a.Done() // the server closes the control connection when idle
	waitFor(t, "association to end", func() bool { return ts.Stats().UDPAssociationsActive == 0 })
}
