package socks5

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

// ioTimeout only keeps a broken test from hanging forever; no test asserts
// on elapsed time.
const ioTimeout = 30 * time.Second

// testLogger formats every record (so logging code runs) and prints it
// only when SOCKS5_TEST_LOG is set. It never uses t.Log: handlers may log
// after a test has returned.
func testLogger() *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("SOCKS5_TEST_LOG") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fakeResolver maps names to fixed addresses and records queries.
type fakeResolver struct {
	mu      sync.Mutex
	names   map[string][]netip.Addr
	queries []string
}

func (r *fakeResolver) Resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries = append(r.queries, host)
	if ips, ok := r.names[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r *fakeResolver) Queries() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.queries...)
}

// testServer is a Server listening on 127.0.0.1 with a loopback "tunnel".
type testServer struct {
	*Server
	Addr     string
	Resolver *fakeResolver
	served   chan error
}

func newTestServer(t testing.TB, configure func(*Server)) *testServer {
	t.Helper()
	return newTestServerOn(t, "tcp4", "127.0.0.1:0", configure)
}

func newTestServerOn(t testing.TB, network, addr string, configure func(*Server)) *testServer {
	t.Helper()
	res := &fakeResolver{names: map[string][]netip.Addr{
		"echo.test":  {netip.MustParseAddr("127.0.0.1")},
		"echo6.test": {netip.MustParseAddr("::1")},
	}}
	srv := &Server{
		Dial:    (&net.Dialer{}).DialContext,
		Resolve: res.Resolve,
		ListenPacket: func(ctx context.Context) (net.PacketConn, error) {
			return net.ListenPacket("udp4", "127.0.0.1:0")
		},
		Logger: testLogger(),
	}
	if configure != nil {
		configure(srv)
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ts := &testServer{Server: srv, Addr: l.Addr().String(), Resolver: res, served: make(chan error, 1)}
	go func() { ts.served <- srv.Serve(l) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-ts.served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ts
}

// waitFor polls cond until it holds; it is how tests wait for state that
// has no event to block on. It fails the test only if the condition never
// becomes true within ioTimeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitStats waits until cond holds for the server's counters. Counters of
// relayed datagrams are updated just after the datagram is sent on, so a
// test that has just received a datagram may see them lag briefly.
func waitStats(t testing.TB, s *Server, cond func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for st := s.Stats(); !cond(st); st = s.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats never reached the expected values: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
}

// startEcho runs a TCP echo server and reports each accepted peer address
// on the returned channel (buffered, best effort).
func startEcho(t testing.TB, network, addr string) (string, <-chan netip.AddrPort) {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("echo listen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	peers := make(chan netip.AddrPort, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case peers <- addrPortOf(c.RemoteAddr()):
			default:
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String(), peers
}

// startUDPEcho runs a UDP echo server.
func startUDPEcho(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatalf("UDP echo listen: %v", err)
	}
	uc := pc.(*net.UDPConn)
	t.Cleanup(func() { uc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := uc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = uc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return uc
}

// dialRaw opens a plain TCP connection to the proxy.
func dialRaw(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	return c.(*net.TCPConn)
}

// exchangeRaw sends msg, half-closes and returns everything the server
// sends until it closes the connection.
func exchangeRaw(t testing.TB, addr string, msg []byte) []byte {
	t.Helper()
	c := dialRaw(t, addr)
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (got %x)", err, got)
	}
	return got
}

// req builds a request (or reply) for addr.
func req(cmd byte, a Addr) []byte { return appendMessage(nil, cmd, a) }

// failReply is the reply the server sends for a failure code.
func failReply(code ReplyCode) []byte { return appendMessage(nil, byte(code), Addr{}) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var noAuthGreeting = []byte{5, 1, 0}

// associateRaw performs a no-auth UDP ASSOCIATE declaring declared and
// returns the control connection and the relay address.
func associateRaw(t testing.TB, proxy string, declared Addr) (*net.TCPConn, netip.AddrPort) {
	t.Helper()
	c := dialRaw(t, proxy)
	if _, err := c.Write(cat(noAuthGreeting, req(cmdUDPAssociate, declared))); err != nil {
		t.Fatalf("write associate: %v", err)
	}
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil || sel != [2]byte{5, 0} {
		t.Fatalf("method selection %x: %v", sel, err)
	}
	code, bnd, err := readReply(c)
	if err != nil || code != ReplySucceeded {
		t.Fatalf("associate reply %v %v: %v", code, bnd, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, netip.AddrPortFrom(bnd.IP, bnd.Port)
}

// udpPacket builds a SOCKS UDP datagram.
func udpPacket(frag byte, dst Addr, payload string) []byte {
	b := appendUDPHeader(nil, dst)
	b[2] = frag
	return append(b, payload...)
}

// listenUDP opens a client-side UDP socket.
func listenUDP(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("listen UDP %s: %v", addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

// readDatagram reads one relayed datagram and returns its source and
// payload.
func readDatagram(t testing.TB, c *net.UDPConn) (Addr, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read datagram: %v", err)
	}
	frag, src, payload, err := parseUDPDatagram(buf[:n])
	if err != nil || frag != 0 {
		t.Fatalf("relayed datagram %x: frag %d, %v", buf[:n], frag, err)
	}
	return src, string(payload)
}

func port(t testing.TB, addr string) uint16 {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatalf("parse %s: %v", addr, err)
	}
	return ap.Port()
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
