package mixnet_test

import (
	"context"
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

	"github.com/nymvpn/nymvpn/modes/mixnet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/localnet"
	"github.com/nymvpn/nymvpn/tun/netstack"
)

// testProfile keeps the shape of the max profile with small delays, so
// tests run quickly on a loaded machine.
var testProfile = mixnet.Profile{Name: "test", HopDelay: time.Millisecond, SendInterval: 2 * time.Millisecond,
	LoopCover: 50 * time.Millisecond, SURBs: 32}

func logger() *slog.Logger {
	if testing.Verbose() && os.Getenv("MIXNET_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startNet(t testing.TB, mod func(*localnet.Config)) *localnet.Network {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs one loopback address per node (Linux)")
	}
	cfg := localnet.DefaultConfig()
	cfg.EpochLength = time.Hour // no rotation during a test
	cfg.FreePass = true
	cfg.ExitFlushDelay = time.Millisecond
	cfg.Logger = logger()
	if mod != nil {
		mod(&cfg)
	}
	n, err := localnet.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func topology(t testing.TB, n *localnet.Network) *directory.Topology {
	t.Helper()
	topo, err := (&directory.Client{URL: n.DirectoryURL}).Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// connect opens a tunnel from entry-de-1 to exit-ch-1.
func connect(t testing.TB, n *localnet.Network, mod func(*mixnet.Config)) *mixnet.Tunnel {
	t.Helper()
	topo := topology(t, n)
	entry, _ := topo.Node("entry-de-1")
	exit, _ := topo.Node("exit-ch-1")
	cfg := mixnet.Config{
		Topology: topo, Entry: *entry, Exit: *exit, Profile: testProfile, AllowLoopback: true,
		Refresh:        (&directory.Client{URL: n.DirectoryURL}).Fetch,
		RetransmitBase: 500 * time.Millisecond, HealthInterval: 200 * time.Millisecond,
		Logger: logger(),
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tun, err := mixnet.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tun.Close() })
	return tun
}

// httpClient fetches through the tunnel's stack, resolving names with its
// DNS servers.
func httpClient(tun *mixnet.Tunnel) *http.Client {
	r := resolver(tun.Net, tun.DNSServers())
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			addrs, err := r.LookupNetIP(ctx, "ip4", host)
			if err != nil {
				return nil, err
			}
			return tun.Net.DialContext(ctx, "tcp", net.JoinHostPort(addrs[0].String(), port))
		},
	}}
}

func resolver(stack *netstack.Stack, servers []netip.Addr) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return stack.DialContext(ctx, "udp", netip.AddrPortFrom(servers[0], 53).String())
	}}
}

func get(t testing.TB, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s through the mixnet: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(b)
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMixnetPath runs the whole path in one process: a client on a
// netstack, entry gateway, three mix layers, exit gateway with its IP
// packet router, DNS and the web host. The web host sees the exit.
func TestMixnetPath(t *testing.T) {
	n := startNet(t, nil)
	tun := connect(t, n, nil)
	addrs := tun.Addresses()
	if len(addrs) != 2 || !addrs[0].Is4() || !addrs[1].Is6() {
		t.Fatalf("tunnel addresses %v", addrs)
	}
	if dns := tun.DNSServers(); len(dns) != 2 || dns[0] != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("DNS servers %v", dns)
	}
	body := get(t, httpClient(tun), n.WebURL)
	if !strings.Contains(body, "(exit-ch-1)") {
		t.Errorf("the web host saw %q; want the exit gateway exit-ch-1", body)
	}
	// Health: loops and the exit answer.
	waitFor(t, "pongs and loops", func() bool { h := tun.Health(); return h.Exit && h.Mixnet && tun.Stats().Pongs >= 3 })
	st := tun.Stats()
	t.Logf("stats: %+v", st)
	if st.Real == 0 || st.Cover == 0 || st.Acked == 0 || st.Replies == 0 || st.SURBsSent == 0 || st.IPOut == 0 || st.IPIn == 0 {
		t.Errorf("stats %+v: want real and cover packets, acks, replies, SURBs and IP both ways", st)
	}
	if err := tun.Check(time.Now()); err != nil {
		t.Errorf("Check: %v", err)
	}
	r := n.IPRouters["exit-ch-1"].Stats()
	if r.Sessions != 1 || r.Opened != 1 || r.Acks == 0 || r.Replies == 0 || r.IPIn == 0 {
		t.Errorf("router stats %+v", r)
	}
}
