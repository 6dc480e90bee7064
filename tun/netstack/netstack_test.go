package netstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

func TestTCPForwardDirect(t *testing.T) {
	for _, tc := range []struct {
		name, network, listen string
		local                 netip.Addr
	}{
		{"ipv4", "tcp4", "127.0.0.1:0", gwLocal},
		{"ipv6", "tcp6", "[::1]:0", netip.IPv6Loopback()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, peers := tcpEchoServer(t, tc.network, tc.listen)
			client, gw := newPair(t, &DirectForwarder{LocalAddr: tc.local}, nil)

			c, err := client.DialContext(testContext(t), "tcp", srv.String())
			if err != nil {
				t.Fatalf("dial through tunnel: %v", err)
			}
			defer c.Close()
			peer := <-peers
			if peer.Addr() != tc.local {
				t.Errorf("server saw source %v, want the gateway's LocalAddr %v", peer, tc.local)
			}

			// Bulk echo with a half-close: the server sees EOF only if
			// the stack propagates CloseWrite upstream, and the client
			// sees EOF only if the server's close comes back.
			msg := make([]byte, 4<<20)
			rand.Read(msg)
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(msg)
				if err == nil {
					err = c.(interface{ CloseWrite() error }).CloseWrite()
				}
				werr <- err
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read echo: %v", err)
			}
			if err := <-werr; err != nil {
				t.Fatalf("write: %v", err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("echo mismatch: got %d bytes, want %d", len(got), len(msg))
			}
			c.Close()
			waitFor(t, "forwarded flow to close", func() bool { return gw.Stats().FlowsOpen == 0 })
			st := gw.Stats()
			if st.FlowsTotal != 1 || st.PacketsIn == 0 || st.PacketsOut == 0 || st.BytesIn < uint64(len(msg)) {
				t.Errorf("gateway stats = %+v", st)
			}
		})
	}
}

func TestUDPForwardDirect(t *testing.T) {
	srv, peers := udpEchoServer(t, "udp4", "127.0.0.1:0")
	srv6, peers6 := udpEchoServer(t, "udp6", "[::1]:0")
	client, gw := newPair(t, &DirectForwarder{LocalAddr: gwLocal}, nil)

	t.Run("connected", func(t *testing.T) {
		c, err := client.DialContext(testContext(t), "udp4", srv.String())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		for i := range 10 {
			udpRoundTrip(t, c, []byte{byte(i), 'h', 'e', 'l', 'l', 'o'})
		}
		if p := <-peers; p.Addr() != gwLocal {
			t.Errorf("server saw source %v, want %v", p, gwLocal)
		}
	})

	t.Run("unconnected", func(t *testing.T) {
		pc, err := client.ListenUDP(netip.AddrPort{})
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		defer pc.Close()
		buf := make([]byte, 2048)
		for _, dst := range []netip.AddrPort{srv, srv6} {
			msg := []byte("to " + dst.String())
			if _, err := pc.WriteTo(msg, net.UDPAddrFromAddrPort(dst)); err != nil {
				t.Fatalf("WriteTo %v: %v", dst, err)
			}
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				t.Fatalf("ReadFrom: %v", err)
			}
			if ua := from.(*net.UDPAddr); ua.AddrPort() != dst || !bytes.Equal(buf[:n], msg) {
				t.Fatalf("got %q from %v, want %q from %v", buf[:n], from, msg, dst)
			}
		}
		if p := <-peers6; !p.Addr().IsLoopback() {
			t.Errorf("IPv6 server saw source %v", p)
		}
	})
	if st := gw.Stats(); st.FlowsTotal < 3 {
		t.Errorf("FlowsTotal = %d, want >= 3", st.FlowsTotal)
	}
}

func TestUDPIdleTimeout(t *testing.T) {
	srv, _ := udpEchoServer(t, "udp4", "127.0.0.1:0")
	client, gw := newPair(t, &DirectForwarder{}, func(c *Config) { c.UDPIdleTimeout = 50 * time.Millisecond })
	c, err := client.DialContext(testContext(t), "udp", srv.String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	udpRoundTrip(t, c, []byte("ping"))
	waitFor(t, "idle UDP flow to close", func() bool { return gw.Stats().FlowsOpen == 0 })
	// A new datagram opens a new flow.
	udpRoundTrip(t, c, []byte("again"))
	if st := gw.Stats(); st.FlowsTotal < 2 {
		t.Errorf("FlowsTotal = %d, want >= 2", st.FlowsTotal)
	}
}

func TestPolicyRefusal(t *testing.T) {
	tcpSrv, tcpPeers := tcpEchoServer(t, "tcp4", "127.0.0.1:0")
	allowedUDP, _ := udpEchoServer(t, "udp4", "127.0.0.1:0")
	deniedUDP, deniedPeers := udpEchoServer(t, "udp4", "127.0.0.1:0")

	var mu sync.Mutex
	var asked []string
	allow := AllowOnly(ProtoUDP, allowedUDP)
	pf := &PolicyForwarder{
		Allow: func(f Flow, proto string) error {
			mu.Lock()
			asked = append(asked, proto+" "+f.Dst.String())
			mu.Unlock()
			return allow(f, proto)
		},
		Next: &DirectForwarder{LocalAddr: gwLocal},
	}
	client, gw := newPair(t, pf, nil)

	// TCP: the gateway answers the SYN with RST, so the dial fails.
	if c, err := client.DialContext(testContext(t), "tcp", tcpSrv.String()); err == nil {
		c.Close()
		t.Fatal("TCP dial to a denied destination succeeded")
	} else {
		t.Logf("denied TCP dial: %v", err)
	}
	select {
	case p := <-tcpPeers:
		t.Fatalf("denied TCP flow reached the server from %v", p)
	default:
	}

	// UDP: the allowed destination echoes.
	c, err := client.DialContext(testContext(t), "udp", allowedUDP.String())
	if err != nil {
		t.Fatalf("dial allowed: %v", err)
	}
	defer c.Close()
	udpRoundTrip(t, c, []byte("allowed"))

	// UDP: the denied destination's datagrams are dropped at the gateway.
	before := gw.Stats().DroppedPolicy
	d, err := client.DialContext(testContext(t), "udp", deniedUDP.String())
	if err != nil {
		t.Fatalf("dial denied: %v", err)
	}
	defer d.Close()
	if _, err := d.Write([]byte("denied")); err != nil {
		t.Fatalf("write: %v", err)
	}
	waitFor(t, "UDP policy drop", func() bool { return gw.Stats().DroppedPolicy > before })
	select {
	case p := <-deniedPeers:
		t.Fatalf("denied UDP datagram reached the server from %v", p)
	default:
	}

	mu.Lock()
	defer mu.Unlock()
	want := map[string]bool{"tcp " + tcpSrv.String(): false, "udp " + allowedUDP.String(): false, "udp " + deniedUDP.String(): false}
	for _, a := range asked {
		if _, ok := want[a]; ok {
			want[a] = true
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("policy was not asked about %s (asked: %v)", k, asked)
		}
	}
}

func TestPolicyForwarderErrors(t *testing.T) {
	f := Flow{Src: netip.MustParseAddrPort("10.0.0.2:1000"), Dst: netip.MustParseAddrPort("192.0.2.1:53")}
	ctx := context.Background()
	var nilPolicy PolicyForwarder
	if _, err := nilPolicy.DialUDP(ctx, f); !errors.Is(err, ErrDenied) {
		t.Errorf("nil Allow: err = %v, want ErrDenied", err)
	}
	custom := errors.New("custom")
	p := &PolicyForwarder{Allow: func(Flow, string) error { return custom }, Next: refuseAll{}}
	if err := p.Ping(ctx, f, nil); !errors.Is(err, ErrDenied) || !errors.Is(err, custom) {
		t.Errorf("err = %v, want ErrDenied wrapping custom", err)
	}
	allow := AllowOnly(ProtoICMP, netip.MustParseAddrPort("192.0.2.1:0"))
	if err := allow(f, ProtoICMP); err != nil {
		t.Errorf("AllowOnly icmp: %v", err)
	}
	if err := allow(f, ProtoUDP); !errors.Is(err, ErrDenied) {
		t.Errorf("AllowOnly other proto: %v", err)
	}
}

func TestTCPUpstreamRefusedGivesRST(t *testing.T) {
	// A port nobody listens on: the upstream dial fails, so must the
	// tunnel-side handshake.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	client, gw := newPair(t, &DirectForwarder{}, nil)
	if c, err := client.DialContext(testContext(t), "tcp", dead); err == nil {
		c.Close()
		t.Fatal("dial to a closed upstream port succeeded")
	}
	if st := gw.Stats(); st.DroppedPolicy == 0 || st.FlowsTotal != 0 {
		t.Errorf("stats = %+v", st)
	}
}

// TestHostStacks checks the client role: two ordinary stacks talking TCP
// and UDP to each other's own addresses, IPv4 and IPv6.
func TestHostStacks(t *testing.T) {
	a, err := New(Config{Addresses: []netip.Addr{clientV4, clientV6}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Addresses: []netip.Addr{gwV4, gwV6}})
	if err != nil {
		t.Fatal(err)
	}
	joinDevices(t, a, b)
	for _, srvAddr := range []netip.Addr{gwV4, gwV6} {
		ln, err := b.ListenTCP(netip.AddrPortFrom(srvAddr, 0))
		if err != nil {
			t.Fatalf("ListenTCP: %v", err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); io.Copy(c, c) }()
			}
		}()
		c, err := a.DialContext(testContext(t), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("dial %v: %v", ln.Addr(), err)
		}
		msg := bytes.Repeat([]byte("netstack"), 10000)
		go c.Write(msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("tcp echo over %v: err=%v equal=%v", srvAddr, err, bytes.Equal(got, msg))
		}
		c.Close()
	}

	// UDP: an unspecified-address listener on b answers both families.
	pc, err := b.ListenUDP(netip.AddrPortFrom(netip.Addr{}, 5353))
	if err != nil {
		t.Fatalf("ListenUDP: %v", err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	for _, dst := range []string{"10.64.0.1:5353", "[fd00::1]:5353"} {
		c, err := a.DialContext(testContext(t), "udp", dst)
		if err != nil {
			t.Fatalf("dial udp %s: %v", dst, err)
		}
		udpRoundTrip(t, c, []byte("hi "+dst))
		c.Close()
	}

	// Bad dial arguments are errors, not panics.
	for _, bad := range [][2]string{{"tcp", "example.com:80"}, {"tcp4", "[fd00::1]:80"}, {"sctp", "10.64.0.1:1"}, {"udp", "10.64.0.1:0"}} {
		if c, err := a.DialContext(context.Background(), bad[0], bad[1]); err == nil {
			c.Close()
			t.Errorf("DialContext(%q, %q) succeeded", bad[0], bad[1])
		}
	}
}

func TestMalformedPacketsDropped(t *testing.T) {
	s, err := New(Config{Addresses: []netip.Addr{gwV4, gwV6}, Forward: refuseAll{}, AllowLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go drain(s)

	valid := udpPacket(netip.MustParseAddrPort("10.64.0.2:1000"), netip.MustParseAddrPort("192.0.2.1:53"), []byte("q"))
	badCsum := bytes.Clone(valid)
	badCsum[10] ^= 0xff
	longTotal := bytes.Clone(valid)
	longTotal[3] += 10 // total length beyond the buffer (checksum irrelevant)
	shortTotal := bytes.Clone(valid)
	shortTotal[2], shortTotal[3] = 0, 10
	badIHL := bytes.Clone(valid)
	badIHL[0] = 0x44
	bigIHL := bytes.Clone(valid)
	bigIHL[0] = 0x4f
	v6 := udpPacket(netip.MustParseAddrPort("[fd00::2]:1000"), netip.MustParseAddrPort("[2001:db8::1]:53"), []byte("q"))
	v6Long := bytes.Clone(v6)
	v6Long[5] += 100
	v6Jumbo := bytes.Clone(v6)
	v6Jumbo[4], v6Jumbo[5] = 0, 0
	badEcho := echoRequestPacket(netip.MustParseAddr("10.64.0.2"), netip.MustParseAddr("192.0.2.1"), 1, 1, []byte("x"))
	badEcho[len(badEcho)-1] ^= 0xff // ICMP checksum now wrong

	malformed := [][]byte{
		{},
		{0x45},
		{0x00, 1, 2, 3},
		bytes.Repeat([]byte{0x75}, 60), // IP version 7
		valid[:19],
		badCsum, longTotal, shortTotal, badIHL, bigIHL,
		v6[:39], v6Long, v6Jumbo,
		badEcho,
	}
	if _, err := s.Write(malformed, 0); err != nil {
		t.Fatalf("Write: %v", err)
	}
	// An offset beyond the buffer is malformed too.
	if _, err := s.Write([][]byte{make([]byte, 4)}, 8); err != nil {
		t.Fatalf("Write with offset: %v", err)
	}
	if got, want := s.Stats().DroppedMalformed, uint64(len(malformed)+1); got != want {
		t.Errorf("DroppedMalformed = %d, want %d", got, want)
	}
	if got := s.Stats().PacketsIn; got != 0 {
		t.Errorf("PacketsIn = %d, want 0", got)
	}
	// Valid packets with trailing padding are accepted.
	padded := append(bytes.Clone(valid), 0, 0, 0, 0)
	if _, err := s.Write([][]byte{padded, v6}, 0); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().PacketsIn; got != 2 {
		t.Errorf("PacketsIn = %d, want 2", got)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	s, err := New(Config{Addresses: []netip.Addr{clientV4}})
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-s.Events(); ev != 1 /* tun.EventUp */ {
		t.Errorf("first event = %v, want EventUp", ev)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := s.Read([][]byte{make([]byte, 2048)}, []int{0}, 0)
		errc <- err
	}()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Close: %v, want os.ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Write([][]byte{{0x45}}, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if _, ok := <-s.Events(); ok {
		t.Error("Events not closed")
	}
	if _, err := s.DialContext(context.Background(), "tcp", "10.0.0.1:1"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("DialContext after Close: %v", err)
	}
}

// TestCloseWithOpenFlows closes a gateway while a forwarded TCP flow and a
// UDP flow are open: Close must tear them down and return.
func TestCloseWithOpenFlows(t *testing.T) {
	tcpSrv, _ := tcpEchoServer(t, "tcp4", "127.0.0.1:0")
	udpSrv, _ := udpEchoServer(t, "udp4", "127.0.0.1:0")
	client, gw := newPair(t, &DirectForwarder{}, nil)
	c, err := client.DialContext(testContext(t), "tcp", tcpSrv.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u, err := client.DialContext(testContext(t), "udp", udpSrv.String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	udpRoundTrip(t, u, []byte("x"))
	waitFor(t, "two open flows", func() bool { return gw.Stats().FlowsOpen == 2 })
	if err := gw.Close(); err != nil {
		t.Fatal(err)
	}
	if st := gw.Stats(); st.FlowsOpen != 0 {
		t.Errorf("FlowsOpen after Close = %d", st.FlowsOpen)
	}
}

// TestReadBatch checks that Read returns several queued packets at once.
func TestReadBatch(t *testing.T) {
	s, err := New(Config{Addresses: []netip.Addr{clientV4}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pc, err := s.ListenUDP(netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	dst := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.64.0.1:9"))
	for i := range 8 {
		if _, err := pc.WriteTo([]byte{byte(i)}, dst); err != nil {
			t.Fatal(err)
		}
	}
	bufs := make([][]byte, 16)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, 16)
	// The UDP writes above queued their packets synchronously, so one Read
	// returns all of them.
	n, err := s.Read(bufs, sizes, 4)
	if err != nil {
		t.Fatal(err)
	}
	if n != 8 {
		t.Fatalf("Read returned %d packets, want 8", n)
	}
	for i := range n {
		p := bufs[i][4 : 4+sizes[i]]
		if info, ok := parsePacket(p); !ok || info.dst != netip.MustParseAddr("10.64.0.1") {
			t.Fatalf("packet %d: bad %x", i, p)
		}
	}
}

// TestTCPResetPropagates: when the upstream server resets the connection,
// the tunnel peer sees a reset, not a clean end of stream.
func TestTCPResetPropagates(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 5)
		io.ReadFull(c, buf)
		c.Write([]byte("partial"))
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	client, gw := newPair(t, &DirectForwarder{}, nil)
	c, err := client.DialContext(testContext(t), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err == nil {
		t.Fatalf("read %q then clean EOF; want a reset", got)
	}
	t.Logf("read %q, then %v", got, err)
	waitFor(t, "flow to close", func() bool { return gw.Stats().FlowsOpen == 0 })
}
