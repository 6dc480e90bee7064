package fast

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// simHop is a hop on a simulated clock: a flow moving rate bytes per
// second, counted alike by the client's device and the gateway (which
// starts from what a ticket buys and may never reach zero: with the
// gateway's grace ignored, that is a cut-off), and top-ups that take
// topUpTakes of that clock.
type simHop struct {
	now        time.Time
	rate       int64 // bytes per second
	ticket     int64
	topUpTakes time.Duration

	total    int64 // the client device's bytes, both ways
	gwLeft   int64 // what the gateway counts left
	minLeft  int64
	grant    int64
	baseline int64
	tickets  int
}

func newSimHop(rate, ticket int64, topUpTakes time.Duration) *simHop {
	h := &simHop{now: time.Unix(1_800_000_000, 0), rate: rate, ticket: ticket, topUpTakes: topUpTakes}
	h.gwLeft, h.minLeft, h.grant, h.tickets = ticket, ticket, ticket, 1
	return h
}

func (h *simHop) advance(d time.Duration) {
	moved := h.rate * int64(d) / int64(time.Second)
	h.total += moved
	h.gwLeft -= moved
	h.now = h.now.Add(d)
	h.minLeft = min(h.minLeft, h.gwLeft)
}

func (h *simHop) state() (Allowance, int64) {
	used := h.total - h.baseline
	return Allowance{Metered: true, Granted: h.grant, Used: used, Left: h.grant - used, TopUpAt: h.ticket / 4}, h.total
}

// topUp is Tunnel.topUp's arithmetic: the client reads its counters, the
// request travels while the flow goes on, the gateway charges that traffic
// and grants what is left plus the ticket.
func (h *simHop) topUp(context.Context) (int64, error) {
	baseline := h.total
	h.advance(h.topUpTakes)
	h.gwLeft += h.ticket
	h.grant, h.baseline = h.gwLeft, baseline
	h.tickets++
	return h.grant, nil
}

// run drives a hopPayer every interval for d and returns the hop.
func (h *simHop) run(every, d time.Duration) *simHop {
	p := &hopPayer{
		role: "entry", pace: hopPacer{every: every, took: initialTopUpTime},
		now: func() time.Time { return h.now }, state: h.state, topUp: h.topUp,
		log: slog.New(slog.DiscardHandler),
	}
	end := h.now.Add(d)
	for h.now.Before(end) {
		p.check(context.Background())
		// The next tick (a ticker drops the ticks a long check spans).
		next := every - time.Duration(h.now.UnixNano()%int64(every))
		h.advance(next)
	}
	return h
}

// The cut-off under load, reproduced on a simulated clock: the daemon
// checks every 250 ms, a test ticket buys 2 MB (top_up_at 500 kB), a
// download moves 4 MB/s and a top-up takes 100 ms. Checking "left below
// top_up_at" alone, the client sees 1 MB left at one check and nothing at
// the next: the gateway reaches zero before any ticket is even asked for,
// and cuts the peer off. Pacing by the measured rate, the client pays before
// the margin runs out (several tickets at once when one does not last until
// the next check), the gateway never reaches zero, and the client buys no
// more than the traffic needs plus the lead it keeps. (Faster flows on such
// small tickets spend a whole ticket between two checks; the gateway's
// grace covers that. Real tickets buy 500 MB.)
func TestTopUpKeepsAheadOfFastFlow(t *testing.T) {
	const (
		ticket = 2_000_000
		every  = 250 * time.Millisecond
		took   = 100 * time.Millisecond
	)
	for _, rate := range []int64{100_000, 1_000_000, 4_000_000} {
		t.Run(fmt.Sprintf("%d B/s", rate), func(t *testing.T) {
			h := newSimHop(rate, ticket, took).run(every, 20*time.Second)
			if h.minLeft <= 0 {
				t.Fatalf("the gateway's count reached %d: cut off (the client bought %d tickets)", h.minLeft, h.tickets)
			}
			moved := h.total
			// What the traffic needs, plus what the lead keeps at this rate
			// (the check interval and twice the first estimate of a
			// top-up), plus a ticket of rounding.
			lead := float64(rate) * (every + 2*initialTopUpTime).Seconds()
			if limit := float64(moved+ticket)/ticket + lead/ticket + 1; float64(h.tickets) > limit {
				t.Errorf("bought %d tickets for %d bytes, want at most %.1f", h.tickets, moved, limit)
			}
			t.Logf("rate %d B/s: %d tickets for %d bytes; the gateway's lowest count %d", rate, h.tickets, moved, h.minLeft)
		})
	}
}

// Slow traffic pays at the gateway's top_up_at, as before: the rate adds
// nothing while a top-up's time moves less than the margin.
func TestTopUpAtMarginWhenSlow(t *testing.T) {
	p := hopPacer{every: 250 * time.Millisecond, took: initialTopUpTime}
	now := time.Unix(1_800_000_000, 0)
	p.observe(now, 0)
	p.observe(now.Add(time.Second), 10_000) // 10 kB/s
	for _, c := range []struct {
		left int64
		due  bool
	}{{2_000_000, false}, {500_000, false}, {499_999, true}, {0, true}} {
		if got := p.due(Allowance{Metered: true, Left: c.left, TopUpAt: 500_000}); got != c.due {
			t.Errorf("left %d: due %v, want %v", c.left, got, c.due)
		}
	}
	if p.due(Allowance{Left: -1}) {
		t.Error("an unmetered hop is due")
	}
}
