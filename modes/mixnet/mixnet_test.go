package mixnet_test

import (
	"bytes"
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

	"github.com/nymvpn/nymvpn/modes/mixnet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/localnet"
	"github.com/nymvpn/nymvpn/tun/netstack"
)

// testProfile keeps the shape of the max profile with small delays, so
// tests run quickly on a loaded machine.
var testProfile = mixnet.Profile{Name: "test", HopDelay: time.Millisecond, SendInterval: 5 * time.Millisecond,
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
	return &http.Client{Timeout: 3 * time.Minute, Transport: &http.Transport{
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
	body := getEventually(t, httpClient(tun), n.WebURL)
	if !strings.Contains(body, "(exit-ch-1)") {
		t.Errorf("the web host saw %q; want the exit gateway exit-ch-1", body)
	}
	// Health: loops and the exit answer.
	// Cover goes out once the exit holds SURBs enough (until then the
	// slots carry SURBs).
	waitFor(t, "pongs, loops and cover", func() bool {
		h, st := tun.Health(), tun.Stats()
		return h.Exit && h.Mixnet && st.Pongs >= 3 && st.Cover > 0
	})
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

// bulkServer answers /N with N bytes.
func bulkServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, n)
			return
		}
		var n int
		fmt.Sscanf(r.URL.Path, "/%d", &n)
		w.Write(bytes.Repeat([]byte("m"), n))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func download(t testing.TB, c *http.Client, base string, n int) {
	t.Helper()
	body := get(t, c, fmt.Sprintf("%s/%d", base, n))
	if len(body) != n || strings.Trim(body, "m") != "" {
		t.Fatalf("downloaded %d bytes, want %d", len(body), n)
	}
}

// TestFragmentLossAndRetransmission stops a mix of layer 2 while an upload
// runs: every packet routed through it is lost, and every ack; the client
// sends those fragments again over other routes until they are acked, so
// the upload completes. (Replies through it are lost too; TCP recovers
// those end to end.)
func TestFragmentLossAndRetransmission(t *testing.T) {
	n := startNet(t, nil)
	// Every fragment is acked in the end: 25% of tries get through both
	// ways, and 40 tries leave a fragment lost once in 10^5.
	tun := connect(t, n, func(c *mixnet.Config) { c.RetransmitBase = 200 * time.Millisecond; c.MaxRetransmits = 40 })
	c := httpClient(tun)
	base := bulkServer(t)
	download(t, c, base, 10_000)
	if r := n.IPRouters["exit-ch-1"].Stats(); r.Messages >= r.Fragments {
		t.Errorf("router put %d messages together from %d fragments; the Open with its SURBs spans several", r.Messages, r.Fragments)
	}
	layer2 := n.Directory.Topology().Layer(2)
	if len(layer2) < 2 {
		t.Fatalf("layer 2 has %d mixes", len(layer2))
	}
	dead := layer2[0].ID
	if err := n.Mixnodes[dead].Close(); err != nil {
		t.Fatal(err)
	}
	before, rbefore := tun.Stats(), n.IPRouters["exit-ch-1"].Stats()
	const size = 50_000
	resp, err := c.Post(base+"/upload", "application/octet-stream", bytes.NewReader(bytes.Repeat([]byte("u"), size)))
	if err != nil {
		t.Fatalf("upload with a dead mix: %v", err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != fmt.Sprint(size) {
		t.Fatalf("the server got %q bytes, want %d", got, size)
	}
	st, r := tun.Stats(), n.IPRouters["exit-ch-1"].Stats()
	t.Logf("with mix %s down: %d fragments sent, %d retransmissions, %d lost, %d acked; the exit saw %d fragments, %d duplicates",
		dead, st.Real-before.Real, st.Retransmissions-before.Retransmissions, st.Lost-before.Lost, st.Acked-before.Acked,
		r.Fragments-rbefore.Fragments, r.Duplicates-rbefore.Duplicates)
	if st.Retransmissions == before.Retransmissions {
		t.Errorf("no retransmission with a dead mix in layer 2")
	}
}

// TestSURBExhaustionAndRefill keeps few SURBs at the exit: a download uses
// them faster than the client sends more, the exit holds the packets and
// asks (NeedSURBs), the client answers, and everything arrives.
func TestSURBExhaustionAndRefill(t *testing.T) {
	n := startNet(t, nil)
	p := testProfile
	p.SURBs = 8
	// No Poisson stream: its cover slots would carry SURBs ahead of need
	// and keep the exit stocked, which is the point in use but not here.
	p.SendInterval = 0
	tun := connect(t, n, func(c *mixnet.Config) { c.Profile = p })
	download(t, httpClient(tun), bulkServer(t), 200_000)
	st, r := tun.Stats(), n.IPRouters["exit-ch-1"].Stats()
	t.Logf("client: %d SURBs sent, %d used, %d requests; router: %d held, %d requests, %d SURBs in", st.SURBsSent, st.SURBsUsed, st.NeedSURBs, r.Held, r.NeedSURBs, r.SURBsIn)
	if r.Held == 0 || r.NeedSURBs == 0 || st.NeedSURBs == 0 {
		t.Errorf("the exit never ran short of SURBs (held %d, asked %d, client heard %d)", r.Held, r.NeedSURBs, st.NeedSURBs)
	}
	if st.SURBsUsed < 100 {
		t.Errorf("only %d SURBs used for 200 kB", st.SURBsUsed)
	}
}

// TestExitPolicyRefusals: the exit's policy holds for mixnet clients: no
// link-local destination, no other client of the router (IPv4 or IPv6);
// allowed flows still work. (The rest of the policy: node/gateway's
// TestExitDevice.)
func TestExitPolicyRefusals(t *testing.T) {
	n := startNet(t, nil)
	tun := connect(t, n, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, dst := range []string{"169.254.169.254:80", "10.0.0.77:80", "[fc00::77]:80"} {
		dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
		c, err := tun.Net.DialContext(dctx, "tcp", dst)
		dcancel()
		if err == nil {
			c.Close()
			t.Errorf("TCP to %s through the exit succeeded; the exit policy must refuse it", dst)
		}
	}
	r := n.IPRouters["exit-ch-1"].Stats()
	if r.Device.Refused < 3 {
		t.Errorf("the exit device refused %d flows, want 3", r.Device.Refused)
	}
	getEventually(t, httpClient(tun), n.WebURL)
}

// TestGatewayRestarts restarts the entry gateway, then the exit gateway,
// while a tunnel is up: the client connects again, the exit session is
// opened again with the same addresses, and traffic flows each time
// without the caller doing anything.
func TestGatewayRestarts(t *testing.T) {
	n := startNet(t, nil)
	tun := connect(t, n, nil)
	c := httpClient(tun)
	addrs := tun.Addresses()
	getEventually(t, c, n.WebURL)

	if err := n.RestartGateway("entry-de-1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the client to reconnect to the restarted entry", func() bool { return tun.Stats().Reconnects >= 1 })
	getEventually(t, c, n.WebURL)

	if err := n.RestartGateway("exit-ch-1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the client to reopen its session at the restarted exit", func() bool {
		return n.IPRouters["exit-ch-1"].Stats().Opened >= 1
	})
	getEventually(t, c, n.WebURL)
	if got := tun.Addresses(); got[0] != addrs[0] || got[1] != addrs[1] {
		t.Errorf("addresses %v after the exit restarted, want %v", got, addrs)
	}
	if err := tun.Check(time.Now()); err != nil {
		t.Errorf("Check after recovery: %v", err)
	}
	st := tun.Stats()
	t.Logf("reconnects %d, reopens %d, retransmissions %d, lost %d", st.Reconnects, st.Reopens, st.Retransmissions, st.Lost)
}

// getEventually retries a GET (new connections) until one succeeds and
// returns the body: the flows of a restarted gateway are gone, and a DNS
// answer lost in the mixnet (replies are not retransmitted) costs the
// resolver's whole timeout on a loaded machine.
func getEventually(t testing.TB, c *http.Client, url string) string {
	t.Helper()
	var last error
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		cancel()
		if err == nil {
			return string(body)
		}
		last = err
		t.Logf("GET %s: %v", url, err)
	}
	t.Fatalf("GET %s never worked: %v", url, last)
	return ""
}
