package fast_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/modes/fast"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/localnet"
)

const (
	ticketBytes = 256 << 10 // what one ticket buys on this test network
	chunkBytes  = 32 << 10  // one HTTP answer: well under a quarter ticket
)

// startPaidNet starts a local network whose tickets buy ticketBytes and whose
// gateways count traffic every meterEvery.
func startPaidNet(t *testing.T, meterEvery time.Duration) (*localnet.Network, *directory.Topology) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs one loopback address per node (Linux)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := localnet.DefaultConfig()
	cfg.Logger = testLogger(t)
	cfg.TicketBandwidth = ticketBytes
	cfg.MeterInterval = meterEvery
	n, err := localnet.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start local network: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	topo, err := (&directory.Client{URL: n.DirectoryURL}).Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n, topo
}

// chunkServer answers every request with chunkBytes.
func chunkServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, chunkBytes)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && n != chunkBytes {
		err = fmt.Errorf("got %d bytes, want %d", n, chunkBytes)
	}
	return err
}

// waitFor polls cond until it holds or 30 s pass (readiness, not timing).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// One connection moves more than four tickets' worth of bytes through both
// hops: the tunnel pays again, with the same keys, whenever a gateway's
// allowance falls below a quarter ticket, and the gateways keep the same peer
// and never cut it off. However seldom a gateway counts, the allowance a top-up
// grants is what is left at that moment: a gateway that counts every 20 ms and
// one that counts every 500 ms (dozens of chunks between two counts) agree with
// the client alike.
func TestConnectionOutlivesTicketAndTopsUp(t *testing.T) {
	for _, every := range []time.Duration{20 * time.Millisecond, 500 * time.Millisecond} {
		t.Run(fmt.Sprintf("gateways count every %v", every), func(t *testing.T) { testOutlivesTicket(t, every) })
	}
}

func testOutlivesTicket(t *testing.T, meterEvery time.Duration) {
	n, topo := startPaidNet(t, meterEvery)
	url := chunkServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var topUpErrs atomic.Int64
	tun, err := fast.Connect(ctx, fast.Config{
		Entry: node(t, topo, "entry-de-1"), Exit: node(t, topo, "exit-ch-1"),
		AllowLoopback: true, Logger: testLogger(t), Ticket: n.Ticket, MeterInterval: 10 * time.Millisecond,
		OnTopUp: func(role string, _ int64, err error) {
			if err != nil {
				topUpErrs.Add(1)
			}
		},
	})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer tun.Close()
	entry, exit := tun.Allowances()
	if !entry.Metered || !exit.Metered || exit.Granted != ticketBytes || exit.TopUpAt != ticketBytes/4 {
		t.Fatalf("allowances after connect: entry %+v exit %+v", entry, exit)
	}
	exitAddrs := tun.ExitGrant.Addresses
	c := httpClient(tun)
	const total = 5 * ticketBytes
	for moved := 0; moved < total; moved += chunkBytes {
		if err := get(c, url); err != nil {
			t.Fatalf("after %d KiB: %v", moved>>10, err)
		}
		// Let the tunnel notice and top up before the next chunk.
		waitFor(t, "the allowances to be topped up", func() bool {
			e, x := tun.Allowances()
			return e.Left >= e.TopUpAt && x.Left >= x.TopUpAt
		})
	}
	// Every ticket a gateway accepted is a top-up the client counts: once
	// the traffic stopped, a top-up still on its way (the tunnel pays ahead
	// of a fast flow) lands and then nothing more is bought.
	entryGW, exitGW := n.Gateways["entry-de-1"], n.Gateways["exit-ch-1"]
	waitFor(t, "each ticket accepted to be a top-up the client counts", func() bool {
		entry, exit = tun.Allowances()
		return entryGW.Stats().TicketsAccepted == int64(1+entry.TopUps) && exitGW.Stats().TicketsAccepted == int64(1+exit.TopUps)
	})
	if exit.TopUps < 4 || entry.TopUps < 4 {
		t.Errorf("top-ups: entry %d, exit %d; want ≥4 each for %d KiB over %d KiB tickets", entry.TopUps, exit.TopUps, total>>10, ticketBytes>>10)
	}
	for id := range map[string]bool{"entry-de-1": true, "exit-ch-1": true} {
		st := n.Gateways[id].Stats()
		if st.TicketsRefused != 0 || st.CutOff != 0 {
			t.Errorf("%s: %d tickets refused, %d cut off", id, st.TicketsRefused, st.CutOff)
		}
		if cl := n.Gateways[id].Clients(); len(cl) != 1 {
			t.Errorf("%s has %d clients, want the one peer, extended", id, len(cl))
		}
	}
	if cl := n.Gateways["exit-ch-1"].Clients(); len(cl) == 1 && cl[0].Addresses[0] != exitAddrs[0] {
		t.Errorf("exit addresses changed from %v to %v", exitAddrs, cl[0].Addresses)
	}
	if topUpErrs.Load() != 0 {
		t.Errorf("%d top-ups failed", topUpErrs.Load())
	}
	// Every spent ticket reaches the issuers.
	waitFor(t, "the spent tickets to be reported", func() bool {
		return n.Gateways["entry-de-1"].Stats().ReportsPending == 0 && n.Gateways["exit-ch-1"].Stats().ReportsPending == 0
	})
}

// A tunnel that cannot pay again is cut off by the gateway once its allowance
// is spent, and stays off.
func TestExhaustedPeerCutOff(t *testing.T) {
	n, topo := startPaidNet(t, 20*time.Millisecond)
	url := chunkServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var calls atomic.Int64
	tun, err := fast.Connect(ctx, fast.Config{
		Entry: node(t, topo, "entry-de-1"), Exit: node(t, topo, "exit-ch-1"),
		AllowLoopback: true, Logger: testLogger(t), MeterInterval: 10 * time.Millisecond,
		Ticket: func(ctx context.Context, role string, gw directory.Node) ([]byte, error) {
			if calls.Add(1) > 2 {
				return nil, errors.New("no tickets left")
			}
			return n.Ticket(ctx, role, gw)
		},
	})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer tun.Close()
	c := httpClient(tun)
	c.Timeout = 5 * time.Second
	exitGW := n.Gateways["exit-ch-1"]
	for moved := 0; exitGW.Stats().CutOff == 0 && n.Gateways["entry-de-1"].Stats().CutOff == 0; moved += chunkBytes {
		if moved > 4*ticketBytes {
			t.Fatalf("moved %d KiB on one %d KiB ticket without being cut off", moved>>10, ticketBytes>>10)
		}
		if err := get(c, url); err != nil {
			// Cut off mid-request: the gateway counts before the client does.
			waitFor(t, "the cut-off to be counted", func() bool {
				return exitGW.Stats().CutOff+n.Gateways["entry-de-1"].Stats().CutOff > 0
			})
			break
		}
	}
	if err := get(c, url); err == nil {
		t.Fatal("a request went through after the peer was cut off")
	}
}

// A top-up that cannot get a ticket still registers, without one: the
// gateway answers with what it counts left, and the client's count starts
// again from that (so a client that counted fewer bytes than the gateway
// learns it); once the gateway has cut the hop off, the answer is
// payment_required and the client sees nothing left.
func TestTopUpWithoutTicketLearnsGatewayCount(t *testing.T) {
	n, topo := startPaidNet(t, 20*time.Millisecond)
	url := chunkServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var broke atomic.Bool
	tun, err := fast.Connect(ctx, fast.Config{
		Entry: node(t, topo, "entry-de-1"), Exit: node(t, topo, "exit-ch-1"),
		AllowLoopback: true, Logger: testLogger(t), MeterInterval: time.Hour, // top-ups by hand only
		Ticket: func(ctx context.Context, role string, gw directory.Node) ([]byte, error) {
			if broke.Load() {
				return nil, errors.New("no tickets left")
			}
			return n.Ticket(ctx, role, gw)
		},
	})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer tun.Close()
	c := httpClient(tun)
	if err := get(c, url); err != nil {
		t.Fatal(err)
	}
	_, before := tun.Allowances()
	broke.Store(true)
	if _, err := tun.TopUp(ctx, "exit"); err == nil || !strings.Contains(err.Error(), "no tickets left") {
		t.Fatalf("top-up without a ticket: %v, want the ticket's error", err)
	}
	_, after := tun.Allowances()
	if after.TopUps != before.TopUps || after.Granted == before.Granted || after.Granted > before.Granted-chunkBytes {
		t.Fatalf("after a top-up without a ticket: %+v (before %+v): want a new grant of what the gateway has left", after, before)
	}
	if d := after.Left - before.Left; d > 4096 || d < -4096 {
		t.Errorf("the gateway counts %d left, the client counted %d", after.Left, before.Left)
	}
	// Spend the rest; a gateway cuts its hop off, and says so.
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
	role := "exit"
	if entryGW.Stats().CutOff > 0 {
		role = "entry"
	}
	if _, err := tun.TopUp(ctx, role); err == nil {
		t.Fatal("top-up without a ticket succeeded")
	}
	e, x := tun.Allowances()
	if role == "entry" {
		x = e
	}
	if x.Left > 0 {
		t.Fatalf("after the %s gateway cut the hop off the client counts %d left", role, x.Left)
	}
}
