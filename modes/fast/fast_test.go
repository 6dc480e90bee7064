package fast_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/modes/fast"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/localnet"
)

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("NYMVPN_TEST_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startNet starts a local network and returns it with its fetched topology.
func startNet(t testing.TB) (*localnet.Network, *directory.Topology) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := localnet.DefaultConfig()
	cfg.Logger = testLogger(t)
	n, err := localnet.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start local network: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	topo, err := (&directory.Client{URL: n.DirectoryURL}).Fetch(ctx)
	if err != nil {
		t.Fatalf("fetch directory: %v", err)
	}
	return n, topo
}

func node(t testing.TB, topo *directory.Topology, id string) directory.Node {
	t.Helper()
	n, ok := topo.Node(id)
	if !ok {
		t.Fatalf("directory lists no %s", id)
	}
	return *n
}

// seenServer is an HTTP server on loopback that answers with the address it
// saw the request come from.
func seenServer(t testing.TB) (addr string, seen chan netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seen = make(chan netip.AddrPort, 16)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap := netip.MustParseAddrPort(r.RemoteAddr)
		select {
		case seen <- ap:
		default:
		}
		fmt.Fprintf(w, "hello %s", ap.Addr())
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), seen
}

func httpClient(tun *fast.Tunnel) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: tun.Net.DialContext}, Timeout: 30 * time.Second}
}

// TestWholePath sends an HTTP request client → entry → exit → server and
// checks every hop carried it: the server sees the exit's address, the exit
// sees the entry (never the client) and each gateway forwarded the flow.
func TestWholePath(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs one loopback address per node (Linux)")
	}
	n, topo := startNet(t)
	srvAddr, seen := seenServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var stages []fast.Stage
	tun, err := fast.Connect(ctx, fast.Config{
		Entry: node(t, topo, "entry-de-1"), Exit: node(t, topo, "exit-ch-1"),
		AllowLoopback: true, Logger: testLogger(t), Ticket: n.Ticket,
		Progress: func(s fast.Stage) { stages = append(stages, s) },
	})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer tun.Close()
	if len(stages) != 5 {
		t.Errorf("progress stages = %q, want all 5", stages)
	}

	resp, err := httpClient(tun).Get("http://" + srvAddr + "/")
	if err != nil {
		t.Fatalf("GET through the tunnel: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	exitAddr, entryAddr := n.Addrs["exit-ch-1"], n.Addrs["entry-de-1"]
	from := <-seen
	if from.Addr() != exitAddr {
		t.Errorf("server saw the request from %v, want the exit gateway %v", from.Addr(), exitAddr)
	}
	if want := "hello " + exitAddr.String(); string(body) != want {
		t.Errorf("body = %q, want %q", body, want)
	}

	exitClients := n.Gateways["exit-ch-1"].Clients()
	if len(exitClients) != 1 || exitClients[0].Remote.Addr() != entryAddr {
		t.Errorf("exit's clients = %+v, want one registered from the entry %v", exitClients, entryAddr)
	}
	entryClients := n.Gateways["entry-de-1"].Clients()
	if len(entryClients) != 1 || entryClients[0].Role != "entry" || entryClients[0].Remote.Addr().IsUnspecified() {
		t.Errorf("entry's clients = %+v, want one entry client", entryClients)
	}
	if es := n.Gateways["entry-de-1"].Stats(); es.EntryFlows < 2 || es.ExitFlows != 0 {
		t.Errorf("entry forwarded %d entry flows and %d exit flows, want ≥2 (registration + WireGuard) and 0", es.EntryFlows, es.ExitFlows)
	}
	if xs := n.Gateways["exit-ch-1"].Stats(); xs.ExitFlows < 1 {
		t.Errorf("exit forwarded %d flows, want ≥1", xs.ExitFlows)
	}
	for _, id := range []string{"entry-ch-1", "exit-de-1"} {
		if s := n.Gateways[id].Stats(); s.Registered != 0 || s.Stack.PacketsIn != 0 {
			t.Errorf("unused gateway %s saw traffic: %+v", id, s)
		}
	}
	st := tun.Stats()
	if st.EntryTx <= st.ExitTx || st.ExitRx == 0 {
		t.Errorf("hop counters %+v: the entry hop must carry at least the exit hop's bytes", st)
	}
}
