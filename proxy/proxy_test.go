package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/node/localnet"
	"github.com/nymvpn/nymvpn/proxy"
	"github.com/nymvpn/nymvpn/socks5"
)

func logger() *slog.Logger {
	if os.Getenv("NYMVPN_TEST_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startNet(t testing.TB) *localnet.Network {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs one loopback address per node (Linux)")
	}
	cfg := localnet.DefaultConfig()
	cfg.Logger = logger()
	n, err := localnet.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("local network: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// startProxy runs the proxy until the test ends and returns it once ready.
func startProxy(t testing.TB, n *localnet.Network, out io.Writer) *proxy.Proxy {
	t.Helper()
	return startProxyWith(t, n, out, nil)
}

// startProxyWith is startProxy with changes to the configuration.
func startProxyWith(t testing.TB, n *localnet.Network, out io.Writer, mod func(*proxy.Config)) *proxy.Proxy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *proxy.Proxy, 1)
	done := make(chan error, 1)
	cfg := proxy.Config{
		DirectoryURL: n.DirectoryURL, Entry: "DE", Exit: "CH", Listen: "127.0.0.1:0",
		Out: out, Logger: logger(), Ready: func(p *proxy.Proxy) { ready <- p }, Ticket: n.Ticket,
	}
	if mod != nil {
		mod(&cfg)
	}
	go func() {
		done <- proxy.Run(ctx, cfg)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy.Run: %v", err)
		}
	})
	select {
	case p := <-ready:
		return p
	case err := <-done:
		t.Fatalf("proxy stopped before ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("proxy not ready after 60 s")
	}
	return nil
}

func webServer(t testing.TB) uint16 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "you came from %s", netip.MustParseAddrPort(r.RemoteAddr).Addr())
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return netip.MustParseAddrPort(ln.Addr().String()).Port()
}

func TestProxyConnectWithRemoteDNS(t *testing.T) {
	n := startNet(t)
	port := webServer(t)
	var out strings.Builder
	p := startProxy(t, n, &out)
	if p.Entry.Country != "DE" || p.Exit.Country != "CH" {
		t.Fatalf("route %s → %s, want DE → CH", p.Entry.ID, p.Exit.ID)
	}
	if !strings.Contains(out.String(), "route: you → entry "+p.Entry.ID) {
		t.Errorf("output does not show the route:\n%s", out.String())
	}
	getWebThrough(t, p, n, port, 30*time.Second)
}

// getWebThrough fetches web.localnet through the proxy's SOCKS5 port and
// checks that the web server saw the exit gateway. The name exists only in
// the local network's DNS, reached through the exit: resolving it proves
// remote DNS.
func getWebThrough(t *testing.T, p *proxy.Proxy, n *localnet.Network, port uint16, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := socks5.DialThrough(ctx, p.Addr.String(), "tcp", fmt.Sprintf("web.localnet:%d", port))
	if err != nil {
		t.Fatalf("CONNECT web.localnet through the proxy: %v", err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: web.localnet\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if want := "you came from " + n.Addrs[p.Exit.ID].String(); string(body) != want {
		t.Errorf("server answered %q, want %q", body, want)
	}
}

// TestProxyMixnetMode: the same SOCKS5 proxy over a mixnet tunnel: a name
// resolved at the exit, and the server sees the exit gateway.
func TestProxyMixnetMode(t *testing.T) {
	n := startNet(t)
	port := webServer(t)
	var out strings.Builder
	p := startProxyWith(t, n, &out, func(c *proxy.Config) { c.Mode = "mixnet"; c.Profile = "fast" })
	if p.Mixnet == nil || p.Tunnel != nil || p.Entry.Country != "DE" || p.Exit.Country != "CH" {
		t.Fatalf("proxy %+v", p)
	}
	if !strings.Contains(out.String(), "3 mix layers") || !strings.Contains(out.String(), "privacy profile fast") {
		t.Errorf("output does not show the mixnet route:\n%s", out.String())
	}
	getWebThrough(t, p, n, port, 60*time.Second)
}

func TestProxyUDPAssociate(t *testing.T) {
	n := startNet(t)
	echo, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			k, from, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			echo.WriteToUDPAddrPort([]byte(from.Addr().String()+" "+string(buf[:k])), from)
		}
	}()
	p := startProxy(t, n, io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := socks5.AssociateUDP(ctx, p.Addr.String())
	if err != nil {
		t.Fatalf("UDP ASSOCIATE: %v", err)
	}
	defer a.Close()
	buf := make([]byte, 2048)
	// UDP may be lost: retry until an answer arrives or the deadline passes.
	for attempt := 0; ; attempt++ {
		if _, err := a.WriteTo([]byte("ping"), echo.LocalAddr().String()); err != nil {
			t.Fatal(err)
		}
		a.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, from, err := a.ReadFrom(buf)
		if err == nil {
			if want := n.Addrs[p.Exit.ID].String() + " ping"; string(buf[:k]) != want || from != echo.LocalAddr().String() {
				t.Fatalf("got %q from %s, want %q from %s", buf[:k], from, want, echo.LocalAddr())
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("no UDP answer through the proxy: %v", err)
		}
	}
}

// BenchmarkProxyFirstByte is the time from starting the proxy to the first
// byte of a web page fetched through it: directory fetch, both
// registrations, both tunnels, the exit handshake, the SOCKS5 request with a
// name resolved at the exit, and the HTTP exchange.
func BenchmarkProxyFirstByte(b *testing.B) {
	n := startNet(b)
	port := webServer(b)
	target := fmt.Sprintf("web.localnet:%d", port)
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan *proxy.Proxy, 1)
		done := make(chan error, 1)
		go func() {
			done <- proxy.Run(ctx, proxy.Config{DirectoryURL: n.DirectoryURL, Listen: "127.0.0.1:0", Logger: logger(), Ticket: n.Ticket,
				Ready: func(p *proxy.Proxy) { ready <- p }})
		}()
		var p *proxy.Proxy
		select {
		case p = <-ready:
		case err := <-done:
			b.Fatal(err)
		}
		c, err := socks5.DialThrough(ctx, p.Addr.String(), "tcp", target)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
		if _, err := c.Read(make([]byte, 1)); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		c.Close()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
