package fast_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/modes/fast"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/localnet"
	"github.com/nymvpn/nymvpn/transport"
)

// ticketCounter pays with the network's tickets and counts what it handed
// out per role and gateway.
type ticketCounter struct {
	n    *localnet.Network
	mu   sync.Mutex
	paid map[string]int // "role gateway"
}

func (c *ticketCounter) ticket(ctx context.Context, role string, gw directory.Node) ([]byte, error) {
	c.mu.Lock()
	c.paid[role+" "+gw.ID]++
	c.mu.Unlock()
	return c.n.Ticket(ctx, role, gw)
}

func (c *ticketCounter) count(role, id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paid[role+" "+id]
}

// A reconnect with the keys of the session's previous attempt (Resume) after
// the entry gateway restarted spends no ticket: the restarted entry admits
// the key with the allowance it kept on disk, the exit (which still holds the
// peer) with what it has left, and traffic flows. Keys a gateway does not know
// are refused there without a ticket (payment_required), and the resumed
// connection pays as a fresh one does.
func TestReconnectResumesPaidAllowance(t *testing.T) {
	n, topo := startPaidNet(t, 20*time.Millisecond)
	url := chunkServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	tc := &ticketCounter{n: n, paid: map[string]int{}}
	var entryKey, exitKey transport.Key
	for _, k := range []*transport.Key{&entryKey, &exitKey} {
		var err error
		if *k, err = transport.GenerateKey(); err != nil {
			t.Fatal(err)
		}
	}
	connect := func(entry, exit string, ek, xk transport.Key, resume bool) *fast.Tunnel {
		t.Helper()
		tun, err := fast.Connect(ctx, fast.Config{
			Entry: node(t, topo, entry), Exit: node(t, topo, exit), EntryKey: ek, ExitKey: xk, Resume: resume,
			AllowLoopback: true, Logger: testLogger(t), Ticket: tc.ticket, MeterInterval: 10 * time.Millisecond,
		})
		if err != nil {
			t.Fatalf("connect to %s and %s (resume %v): %v", entry, exit, resume, err)
		}
		return tun
	}

	// The first attempt pays both hops, and uses some of what it paid.
	tun := connect("entry-de-1", "exit-ch-1", entryKey, exitKey, false)
	c := httpClient(tun)
	for range 2 {
		if err := get(c, url); err != nil {
			t.Fatal(err)
		}
	}
	first, _ := tun.Allowances()
	tun.Close()
	if tc.count("entry", "entry-de-1") != 1 || tc.count("exit", "exit-ch-1") != 1 {
		t.Fatalf("first connection paid %v, want one ticket per hop", tc.paid)
	}
	if first.TopUps != 0 {
		t.Fatalf("the entry hop topped up (%+v): the test needs the first ticket's allowance left", first)
	}

	// The entry gateway restarts; the reconnect resumes with the same keys.
	if err := n.RestartGateway("entry-de-1"); err != nil {
		t.Fatal(err)
	}
	tun = connect("entry-de-1", "exit-ch-1", entryKey, exitKey, true)
	defer tun.Close()
	c = httpClient(tun)
	if err := get(c, url); err != nil {
		t.Fatalf("traffic after the resumed reconnect: %v", err)
	}
	if got := n.Gateways["entry-de-1"].Stats().TicketsAccepted; got != 0 {
		t.Errorf("the restarted entry accepted %d tickets on the reconnect, want 0 (its stored allowance)", got)
	}
	if got := n.Gateways["exit-ch-1"].Stats().TicketsAccepted; got != 1 {
		t.Errorf("the exit accepted %d tickets in all, want the first connection's 1", got)
	}
	if tc.count("entry", "entry-de-1") != 1 || tc.count("exit", "exit-ch-1") != 1 {
		t.Errorf("tickets taken after the reconnect: %v, want none more", tc.paid)
	}
	if ek, xk := tun.Keys(); ek != entryKey || xk != exitKey {
		t.Error("the resumed tunnel uses other keys")
	}
	entry, exit := tun.Allowances()
	if !entry.Metered || !exit.Metered || entry.Granted >= ticketBytes || entry.Granted <= 0 || exit.Granted >= ticketBytes {
		t.Errorf("resumed allowances: entry %+v exit %+v, want what was left of one ticket each", entry, exit)
	}

	// Other gateways do not know the keys: resuming there pays, and a
	// fresh connection there pays too.
	for _, resume := range []bool{true, false} {
		ek, xk := entryKey, exitKey
		if !resume {
			ek, xk = transport.Key{}, transport.Key{} // fresh keys
		}
		before := n.Gateways["entry-ch-1"].Stats().TicketsAccepted
		other := connect("entry-ch-1", "exit-de-1", ek, xk, resume)
		if err := get(httpClient(other), url); err != nil {
			t.Errorf("traffic through other gateways (resume %v): %v", resume, err)
		}
		other.Close()
		if got := n.Gateways["entry-ch-1"].Stats().TicketsAccepted - before; got != 1 {
			t.Errorf("other entry (resume %v): %d tickets accepted, want 1", resume, got)
		}
	}
	if tc.count("entry", "entry-ch-1") != 2 || tc.count("exit", "exit-de-1") != 2 {
		t.Errorf("tickets for the other gateways: %v, want one per hop and connection", tc.paid)
	}
}

// A hop the gateway cut off (its key in debt: the tunnel overdrew before the
// cut-off) has nothing to resume: the gateway answers payment_required, and
// the hop starts afresh with a new key and one ticket, as a new connection
// does, rather than paying the debt (a key in debt is granted 1 byte per
// ticket until it is paid, and a hop that started on that would stay cut
// off).
func TestResumeAfterCutOffStartsAfresh(t *testing.T) {
	n, topo := startPaidNet(t, 20*time.Millisecond)
	url := chunkServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	entryKey, _ := transport.GenerateKey()
	exitKey, _ := transport.GenerateKey()
	var broke atomic.Bool
	cfg := fast.Config{
		Entry: node(t, topo, "entry-de-1"), Exit: node(t, topo, "exit-ch-1"), EntryKey: entryKey, ExitKey: exitKey,
		AllowLoopback: true, Logger: testLogger(t), MeterInterval: 10 * time.Millisecond,
		Ticket: func(ctx context.Context, role string, gw directory.Node) ([]byte, error) {
			if broke.Load() {
				return nil, errors.New("no tickets left")
			}
			return n.Ticket(ctx, role, gw)
		},
	}
	tun, err := fast.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	broke.Store(true)
	c := httpClient(tun)
	c.Timeout = 5 * time.Second
	entryGW, exitGW := n.Gateways["entry-de-1"], n.Gateways["exit-ch-1"]
	cut := func() bool { return entryGW.Stats().CutOff+exitGW.Stats().CutOff > 0 }
	for moved := 0; !cut(); moved += chunkBytes {
		if moved > 4*ticketBytes {
			t.Fatalf("moved %d KiB on one %d KiB ticket without being cut off", moved>>10, ticketBytes>>10)
		}
		if get(c, url) != nil {
			waitFor(t, "the cut-off", cut)
		}
	}
	tun.Close()
	cutGW, cutKey, hop := entryGW, entryKey, "entry"
	if entryGW.Stats().CutOff == 0 {
		cutGW, cutKey, hop = exitGW, exitKey, "exit"
	}
	before := cutGW.Stats().TicketsAccepted

	broke.Store(false)
	cfg.Resume = true
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	tun, err = fast.Connect(cctx, cfg)
	if err != nil {
		t.Fatalf("resume after the cut-off: %v", err)
	}
	defer tun.Close()
	c = httpClient(tun)
	c.Timeout = 10 * time.Second
	if err := get(c, url); err != nil {
		t.Fatalf("traffic after resuming: %v", err)
	}
	ek, xk := tun.Keys()
	if k := map[string]transport.Key{"entry": ek, "exit": xk}[hop]; k == cutKey || k.IsZero() {
		t.Errorf("the cut-off %s hop resumed with its old key", hop)
	}
	if got := cutGW.Stats().TicketsAccepted - before; got != 1 {
		t.Errorf("the cut-off %s hop paid %d tickets, want 1 for a new key", hop, got)
	}
	entry, exit := tun.Allowances()
	if entry.Granted < entry.TopUpAt || exit.Granted < exit.TopUpAt {
		t.Errorf("resumed allowances below the top-up level: entry %+v exit %+v", entry, exit)
	}
}
