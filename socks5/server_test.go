package socks5

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

func echoThrough(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

func TestConnectIPv4(t *testing.T) {
	ts := newTestServer(t, nil)
	echo, _ := startEcho(t, "tcp4", "127.0.0.1:0")
	c, err := DialThrough(context.Background(), ts.Addr, "tcp", echo)
	if err != nil {
		t.Fatalf("DialThrough: %v", err)
	}
	defer c.Close()
	echoThrough(t, c, "hello over IPv4")
	if q := ts.Resolver.Queries(); len(q) != 0 {
		t.Errorf("IP target caused resolver queries %v", q)
	}
	st := ts.Stats()
	if st.ConnectRequests != 1 || st.ConnectionsActive != 1 || st.MalformedRequests != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestConnectByName(t *testing.T) {
	ts := newTestServer(t, nil)
	echo, _ := startEcho(t, "tcp4", "127.0.0.1:0")
	target := fmt.Sprintf("echo.test:%d", port(t, echo))
	c, err := DialThrough(context.Background(), ts.Addr, "tcp", target)
	if err != nil {
		t.Fatalf("DialThrough(%s): %v", target, err)
	}
	defer c.Close()
	echoThrough(t, c, "hello by name")
	if q := ts.Resolver.Queries(); !slices.Equal(q, []string{"echo.test"}) {
		t.Errorf("resolver queries = %v, want [echo.test]", q)
	}

	// A name that is an IP literal is used as is, without the resolver.
	c2, err := DialThrough(context.Background(), ts.Addr, "tcp", echo)
	if err != nil {
		t.Fatalf("DialThrough: %v", err)
	}
	c2.Close()

	_, err = DialThrough(context.Background(), ts.Addr, "tcp", "nxdomain.test:80")
	var re *ReplyError
	if !errors.As(err, &re) || re.Code != ReplyHostUnreachable {
		t.Errorf("unknown name: err = %v, want host unreachable", err)
	}
}

func TestConnectIPv6(t *testing.T) {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("IPv6 loopback not available: %v", err)
	}
	l.Close()
	echo, _ := startEcho(t, "tcp6", "[::1]:0")

	for _, tc := range []struct{ name, proxyNet, proxyAddr string }{
		{"proxy on IPv4", "tcp4", "127.0.0.1:0"},
		{"proxy on IPv6", "tcp6", "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServerOn(t, tc.proxyNet, tc.proxyAddr, nil)
			c, err := DialThrough(context.Background(), ts.Addr, "tcp6", echo)
			if err != nil {
				t.Fatalf("DialThrough(%s): %v", echo, err)
			}
			defer c.Close()
			echoThrough(t, c, "hello over IPv6")

			c2, err := DialThrough(context.Background(), ts.Addr, "tcp", fmt.Sprintf("echo6.test:%d", port(t, echo)))
			if err != nil {
				t.Fatalf("DialThrough by name: %v", err)
			}
			defer c2.Close()
			echoThrough(t, c2, "hello over IPv6 by name")
		})
	}
}

func TestConnectBoundAddress(t *testing.T) {
	ts := newTestServer(t, nil)
	echo, peers := startEcho(t, "tcp4", "127.0.0.1:0")
	c := dialRaw(t, ts.Addr)
	if _, err := c.Write(cat(noAuthGreeting, req(cmdConnect, AddrFromAddrPort(netip.MustParseAddrPort(echo))))); err != nil {
		t.Fatal(err)
	}
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil {
		t.Fatal(err)
	}
	code, bnd, err := readReply(c)
	if err != nil || code != ReplySucceeded {
		t.Fatalf("reply %v: %v", code, err)
	}
	peer := <-peers
	if got := netip.AddrPortFrom(bnd.IP, bnd.Port); got != peer {
		t.Errorf("bound address %v, upstream saw the proxy as %v", got, peer)
	}
}

func TestConnectHalfClose(t *testing.T) {
	ts := newTestServer(t, nil)
	// Upstream reads until EOF, then answers with the byte count.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "got %d", n)
	}()
	c, err := DialThrough(context.Background(), ts.Addr, "tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	payload := bytes.Repeat([]byte("x"), 100000)
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "got 100000" {
		t.Fatalf("answer %q, %v", got, err)
	}
}

func TestConnectTriesAddressesInOrder(t *testing.T) {
	var mu sync.Mutex
	var attempts []string
	ts := newTestServer(t, func(s *Server) {
		s.Dial = func(ctx context.Context, network, address string) (net.Conn, error) {
			mu.Lock()
			attempts = append(attempts, network+" "+address)
			mu.Unlock()
			switch {
			case strings.HasPrefix(address, "192.0.2.1:"):
				return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
			case network == "tcp6":
				return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("network is unreachable")}
			}
			return (&net.Dialer{}).DialContext(ctx, network, address)
		}
	})
	ts.Resolver.names["multi.test"] = []netip.Addr{
		netip.MustParseAddr("192.0.2.1"),
		netip.MustParseAddr("::ffff:0.0.0.0"), // unusable: skipped
		netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("127.0.0.1"),
	}
	ts.Resolver.names["dead.test"] = ts.Resolver.names["multi.test"][:3]
	echo, _ := startEcho(t, "tcp4", "127.0.0.1:0")
	p := port(t, echo)

	c, err := DialThrough(context.Background(), ts.Addr, "tcp", fmt.Sprintf("multi.test:%d", p))
	if err != nil {
		t.Fatalf("DialThrough: %v", err)
	}
	defer c.Close()
	echoThrough(t, c, "third time lucky")
	mu.Lock()
	want := []string{
		fmt.Sprintf("tcp4 192.0.2.1:%d", p),
		fmt.Sprintf("tcp6 [2001:db8::1]:%d", p),
		fmt.Sprintf("tcp4 127.0.0.1:%d", p),
	}
	if !slices.Equal(attempts, want) {
		t.Errorf("attempts = %q, want %q", attempts, want)
	}
	mu.Unlock()

	// When all fail, the first error decides the reply.
	_, err = DialThrough(context.Background(), ts.Addr, "tcp", fmt.Sprintf("dead.test:%d", p))
	var re *ReplyError
	if !errors.As(err, &re) || re.Code != ReplyConnectionRefused {
		t.Errorf("all addresses failing: err = %v, want connection refused", err)
	}
}

func TestConnectReplyCodes(t *testing.T) {
	gvisor := func(msg string) error { return &net.OpError{Op: "connect", Net: "tcp", Err: errors.New(msg)} }
	dialErr := map[string]error{
		"192.0.2.1":  &net.OpError{Op: "dial", Net: "tcp", Err: &net.OpError{Err: syscall.ECONNREFUSED}},
		"192.0.2.2":  gvisor("connection was refused"),
		"192.0.2.3":  &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ENETUNREACH},
		"192.0.2.4":  gvisor("network is unreachable"),
		"192.0.2.5":  &net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH},
		"192.0.2.6":  gvisor("no route to host"),
		"192.0.2.7":  fmt.Errorf("dialing: %w", context.DeadlineExceeded),
		"192.0.2.8":  &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ETIMEDOUT},
		"192.0.2.9":  gvisor("operation timed out"),
		"192.0.2.10": errors.New("tunnel is down"),
	}
	want := map[string]ReplyCode{
		"192.0.2.1": ReplyConnectionRefused, "192.0.2.2": ReplyConnectionRefused,
		"192.0.2.3": ReplyNetworkUnreachable, "192.0.2.4": ReplyNetworkUnreachable,
		"192.0.2.5": ReplyHostUnreachable, "192.0.2.6": ReplyHostUnreachable,
		"192.0.2.7": ReplyTTLExpired, "192.0.2.8": ReplyTTLExpired, "192.0.2.9": ReplyTTLExpired,
		"192.0.2.10": ReplyGeneralFailure,
	}
	ts := newTestServer(t, func(s *Server) {
		s.Dial = func(ctx context.Context, network, address string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(address)
			if err, ok := dialErr[host]; ok {
				return nil, err
			}
			return (&net.Dialer{}).DialContext(ctx, network, address)
		}
	})
	for host, code := range want {
		t.Run(host, func(t *testing.T) {
			_, err := DialThrough(context.Background(), ts.Addr, "tcp", host+":80")
			var re *ReplyError
			if !errors.As(err, &re) || re.Code != code {
				t.Errorf("err = %v, want reply %v", err, code)
			}
		})
	}

	t.Run("real refused port", func(t *testing.T) {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := l.Addr().String()
		l.Close()
		_, err = DialThrough(context.Background(), ts.Addr, "tcp", closed)
		var re *ReplyError
		if !errors.As(err, &re) || re.Code != ReplyConnectionRefused {
			t.Errorf("err = %v, want connection refused", err)
		}
	})
	if st := ts.Stats(); st.ConnectFailures != uint64(len(want))+1 || st.MalformedRequests != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestMapDialError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want ReplyCode
	}{
		{syscall.ECONNREFUSED, ReplyConnectionRefused},
		{errors.New("No connection could be made because the target machine actively refused it."), ReplyConnectionRefused},
		{syscall.ENETUNREACH, ReplyNetworkUnreachable},
		{errors.New("A socket operation was attempted to an unreachable network."), ReplyNetworkUnreachable},
		{syscall.EHOSTUNREACH, ReplyHostUnreachable},
		{syscall.EHOSTDOWN, ReplyHostUnreachable},
		{&net.DNSError{Err: "no such host", IsNotFound: true}, ReplyHostUnreachable},
		{&net.DNSError{Err: "i/o timeout", IsTimeout: true}, ReplyTTLExpired},
		{syscall.EACCES, ReplyNotAllowed},
		{context.DeadlineExceeded, ReplyTTLExpired},
		{fmt.Errorf("wrapped: %w", syscall.ETIMEDOUT), ReplyTTLExpired},
		{errors.New("connection was refused"), ReplyConnectionRefused},
		{context.Canceled, ReplyGeneralFailure},
		{errors.New("boom"), ReplyGeneralFailure},
	} {
		if got := mapDialError(tc.err); got != tc.want {
			t.Errorf("mapDialError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestAuth(t *testing.T) {
	ts := newTestServer(t, func(s *Server) { s.Username, s.Password = "alice", "s3cret" })
	echo, _ := startEcho(t, "tcp4", "127.0.0.1:0")

	t.Run("success", func(t *testing.T) {
		cl := &Client{Addr: ts.Addr, Username: "alice", Password: "s3cret"}
		c, err := cl.DialContext(context.Background(), "tcp", echo)
		if err != nil {
			t.Fatalf("DialContext: %v", err)
		}
		defer c.Close()
		echoThrough(t, c, "authenticated")
	})
	t.Run("wrong password", func(t *testing.T) {
		cl := &Client{Addr: ts.Addr, Username: "alice", Password: "guess"}
		if _, err := cl.DialContext(context.Background(), "tcp", echo); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("err = %v, want ErrAuthFailed", err)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		if _, err := DialThrough(context.Background(), ts.Addr, "tcp", echo); !errors.Is(err, ErrNoAcceptableMethod) {
			t.Errorf("err = %v, want ErrNoAcceptableMethod", err)
		}
	})
	t.Run("raw", func(t *testing.T) {
		userPass := func(ver byte, u, p string) []byte {
			return cat([]byte{ver, byte(len(u))}, []byte(u), []byte{byte(len(p))}, []byte(p))
		}
		selUserPass := []byte{5, 2}
		for _, tc := range []struct {
			name      string
			send, got []byte
			malformed uint64
		}{
			{"bad subnegotiation version", cat([]byte{5, 1, 2}, userPass(5, "alice", "s3cret")), cat(selUserPass, []byte{1, 1}), 1},
			{"truncated password", cat([]byte{5, 1, 2}, userPass(1, "alice", "s3cret")[:9]), cat(selUserPass, []byte{1, 1}), 1},
			{"empty username", cat([]byte{5, 1, 2}, userPass(1, "", "s3cret")), cat(selUserPass, []byte{1, 1}), 0},
			{"closed after method selection", []byte{5, 1, 2}, selUserPass, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := ts.Stats().MalformedRequests
				if got := exchangeRaw(t, ts.Addr, tc.send); !bytes.Equal(got, tc.got) {
					t.Errorf("server sent %x, want %x", got, tc.got)
				}
				if d := ts.Stats().MalformedRequests - before; d != tc.malformed {
					t.Errorf("malformed counter moved by %d, want %d", d, tc.malformed)
				}
			})
		}
	})
	if st := ts.Stats(); st.AuthFailures != 3 {
		t.Errorf("AuthFailures = %d, want 3", st.AuthFailures)
	}
}

// TestInteropXNetProxy checks the server against an independent client,
// golang.org/x/net/proxy.
func TestInteropXNetProxy(t *testing.T) {
	ts := newTestServer(t, func(s *Server) { s.Username, s.Password = "u", "p" })
	echo, _ := startEcho(t, "tcp4", "127.0.0.1:0")
	d, err := proxy.SOCKS5("tcp", ts.Addr, &proxy.Auth{User: "u", Password: "p"}, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.(proxy.ContextDialer).DialContext(context.Background(), "tcp", fmt.Sprintf("echo.test:%d", port(t, echo)))
	if err != nil {
		t.Fatalf("x/net/proxy dial: %v", err)
	}
	defer c.Close()
	echoThrough(t, c, "interop")
}

func TestRejectedRequests(t *testing.T) {
	ts := newTestServer(t, nil)
	ok := []byte{5, 0}
	v4 := AddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:80"))
	for _, tc := range []struct {
		name      string
		send, got []byte
		malformed uint64
	}{
		{"greeting version 4", []byte{4, 1, 0, 80, 127, 0, 0, 1, 0}, nil, 1},
		{"HTTP instead of SOCKS", []byte("GET / HTTP/1.1\r\n\r\n"), nil, 1},
		{"no methods", []byte{5, 0}, []byte{5, 0xFF}, 1},
		{"only unknown methods", []byte{5, 2, 0x80, 0x03}, []byte{5, 0xFF}, 0},
		{"request version 4", cat(noAuthGreeting, []byte{4, 1, 0}, v4.appendTo(nil)), cat(ok, failReply(ReplyGeneralFailure)), 1},
		{"reserved byte set", cat(noAuthGreeting, []byte{5, 1, 1}, v4.appendTo(nil)), cat(ok, failReply(ReplyGeneralFailure)), 1},
		{"unknown address type", cat(noAuthGreeting, []byte{5, 1, 0, 2, 1, 2, 3, 4, 0, 80}), cat(ok, failReply(ReplyAddressNotSupported)), 1},
		{"empty domain name", cat(noAuthGreeting, []byte{5, 1, 0, 3, 0, 0, 80}), cat(ok, failReply(ReplyGeneralFailure)), 1},
		{"control characters in name", cat(noAuthGreeting, req(cmdConnect, Addr{Name: "a\x00b", Port: 80})), cat(ok, failReply(ReplyHostUnreachable)), 1},
		{"port zero", cat(noAuthGreeting, req(cmdConnect, Addr{IP: v4.IP})), cat(ok, failReply(ReplyGeneralFailure)), 1},
		{"BIND", cat(noAuthGreeting, req(cmdBind, v4)), cat(ok, failReply(ReplyCommandNotSupported)), 0},
		{"unknown command", cat(noAuthGreeting, req(0x09, v4)), cat(ok, failReply(ReplyCommandNotSupported)), 1},
		{"closed before greeting", nil, nil, 0},
		{"closed before request", noAuthGreeting, ok, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := ts.Stats().MalformedRequests
			if got := exchangeRaw(t, ts.Addr, tc.send); !bytes.Equal(got, tc.got) {
				t.Errorf("server sent %x, want %x", got, tc.got)
			}
			if d := ts.Stats().MalformedRequests - before; d != tc.malformed {
				t.Errorf("malformed counter moved by %d, want %d", d, tc.malformed)
			}
		})
	}
}

func TestTruncatedRequests(t *testing.T) {
	ts := newTestServer(t, nil)
	full := map[string][]byte{
		"IPv4":   cat(noAuthGreeting, req(cmdConnect, Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 80})),
		"IPv6":   cat(noAuthGreeting, req(cmdConnect, Addr{IP: netip.MustParseAddr("2001:db8::1"), Port: 80})),
		"domain": cat([]byte{5, 2, 0, 2}, req(cmdConnect, Addr{Name: "example.test", Port: 443})),
	}
	for name, msg := range full {
		greetingLen := int(msg[1]) + 2
		for n := 1; n < len(msg); n++ {
			if n == greetingLen {
				continue // a complete greeting; covered by TestRejectedRequests
			}
			t.Run(fmt.Sprintf("%s/%d", name, n), func(t *testing.T) {
				var want []byte
				if n > greetingLen {
					want = cat([]byte{5, 0}, failReply(ReplyGeneralFailure))
				}
				before := ts.Stats().MalformedRequests
				if got := exchangeRaw(t, ts.Addr, msg[:n]); !bytes.Equal(got, want) {
					t.Errorf("server sent %x, want %x", got, want)
				}
				if d := ts.Stats().MalformedRequests - before; d != 1 {
					t.Errorf("malformed counter moved by %d, want 1", d)
				}
			})
		}
	}
}

func TestHandshakeTimeout(t *testing.T) {
	ts := newTestServer(t, func(s *Server) { s.HandshakeTimeout = 10 * time.Millisecond })
	c := dialRaw(t, ts.Addr)
	// Send half a greeting and stall: the server must give up on its own.
	if _, err := c.Write([]byte{5}); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || len(got) != 0 {
		t.Fatalf("got %x, %v; want a silent close", got, err)
	}
	waitFor(t, "connection to be released", func() bool { return ts.Stats().ConnectionsActive == 0 })
	if st := ts.Stats(); st.MalformedRequests != 1 {
		t.Errorf("MalformedRequests = %d, want 1", st.MalformedRequests)
	}
}

func TestNilFunctions(t *testing.T) {
	ts := newTestServer(t, func(s *Server) { s.Dial, s.Resolve, s.ListenPacket = nil, nil, nil })
	v4 := AddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:80"))
	ok := []byte{5, 0}
	if got := exchangeRaw(t, ts.Addr, cat(noAuthGreeting, req(cmdConnect, v4))); !bytes.Equal(got, cat(ok, failReply(ReplyCommandNotSupported))) {
		t.Errorf("CONNECT without Dial: %x", got)
	}
	if got := exchangeRaw(t, ts.Addr, cat(noAuthGreeting, req(cmdUDPAssociate, Addr{}))); !bytes.Equal(got, cat(ok, failReply(ReplyCommandNotSupported))) {
		t.Errorf("UDP ASSOCIATE without ListenPacket: %x", got)
	}
	ts2 := newTestServer(t, func(s *Server) { s.Resolve = nil })
	if got := exchangeRaw(t, ts2.Addr, cat(noAuthGreeting, req(cmdConnect, Addr{Name: "echo.test", Port: 80}))); !bytes.Equal(got, cat(ok, failReply(ReplyAddressNotSupported))) {
		t.Errorf("name without Resolve: %x", got)
	}
}

func TestMaxConns(t *testing.T) {
	ts := newTestServer(t, func(s *Server) { s.MaxConns = 1 })
	echo, _ := startEcho(t, "tcp4", "127.0.0.1:0")
	c, err := DialThrough(context.Background(), ts.Addr, "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := DialThrough(context.Background(), ts.Addr, "tcp", echo); err == nil {
		t.Fatal("second connection accepted over MaxConns=1")
	}
	if st := ts.Stats(); st.ConnectionsRejected != 1 {
		t.Errorf("ConnectionsRejected = %d, want 1", st.ConnectionsRejected)
	}
	echoThrough(t, c, "first still works")
}

func TestCloseStopsServe(t *testing.T) {
	srv := &Server{Dial: (&net.Dialer{}).DialContext, Logger: testLogger()}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	echo, _ := startEcho(t, "tcp4", "127.0.0.1:0")
	c, err := DialThrough(context.Background(), l.Addr().String(), "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoThrough(t, c, "before close")

	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v, want ErrServerClosed", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("active connection still open after Close (read %d bytes)", n)
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Error("listener still accepting after Close")
	}
	if err := srv.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close = %v", err)
	}
	waitFor(t, "connections to drain", func() bool { return srv.Stats().ConnectionsActive == 0 })
}

func TestServeReturnsWhenListenerClosed(t *testing.T) {
	srv := &Server{}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	l.Close()
	if err := <-served; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve = %v, want net.ErrClosed", err)
	}
}

func TestServeConnContextCancel(t *testing.T) {
	srv := &Server{Dial: (&net.Dialer{}).DialContext, Logger: testLogger()}
	defer srv.Close()
	echo, _ := startEcho(t, "tcp4", "127.0.0.1:0")
	client, server := net.Pipe()
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(ctx, server) }()

	// net.Pipe is synchronous: write the whole request, then read.
	go func() {
		_, _ = client.Write(cat(noAuthGreeting, req(cmdConnect, AddrFromAddrPort(netip.MustParseAddrPort(echo)))))
	}()
	reply := make([]byte, 2+10)
	if _, err := io.ReadFull(client, reply); err != nil || reply[3] != byte(ReplySucceeded) {
		t.Fatalf("reply %x: %v", reply, err)
	}
	echoThrough(t, client, "over a pipe")
	cancel()
	<-done
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Error("pipe still open after cancel")
	}
}

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Addr
		ok   bool
	}{
		{"1.2.3.4:80", Addr{IP: netip.MustParseAddr("1.2.3.4"), Port: 80}, true},
		{"[2001:db8::1]:443", Addr{IP: netip.MustParseAddr("2001:db8::1"), Port: 443}, true},
		{"example.com:53", Addr{Name: "example.com", Port: 53}, true},
		{"[fe80::1%eth0]:1", Addr{}, false},
		{"example.com:http", Addr{}, false},
		{"example.com:65536", Addr{}, false},
		{"example.com", Addr{}, false},
		{":80", Addr{}, false},
		{string(bytes.Repeat([]byte("a"), 256)) + ":1", Addr{}, false},
	} {
		got, err := ParseAddr(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseAddr(%q) = %v, %v", tc.in, got, err)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
}
