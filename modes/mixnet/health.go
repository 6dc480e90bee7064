package mixnet

import (
	"fmt"
	"time"
)

// Health is what the tunnel's checks last saw.
type Health struct {
	// LastLoop is when a loop packet last came back (the mixnet path to the
	// entry gateway and back works); LastAck when an ack did (the exit got a
	// fragment); LastPong when the exit answered a ping (the whole path).
	LastLoop, LastAck, LastPong time.Time
	// Mixnet and Exit judge them over the last HealthWindow.
	Mixnet, Exit bool
	// UnhealthySince is when the exit stopped answering (zero while it
	// answers).
	UnhealthySince time.Time
	// Err is a failure self-repair cannot fix (the exit refused the
	// session, or gave it other addresses).
	Err error
	// Payment is the last problem paying the exit gateway, which the
	// tunnel keeps trying to fix with back-off: the exit refused a ticket
	// (an *ExitPaymentError with its reason), the wallet gave none, or the
	// exit said the allowance ran out. Nil once the exit accepts a ticket.
	Payment error
}

// healthLoop pings the exit, judges the paths, repairs what it can,
// refreshes the topology and prunes old state.
func (t *Tunnel) healthLoop() {
	defer t.wg.Done()
	tick := time.NewTicker(t.cfg.HealthInterval)
	defer tick.Stop()
	lastRefresh := time.Now()
	for {
		select {
		case <-tick.C:
		case <-t.ctx.Done():
			return
		}
		now := time.Now()
		t.mu.Lock()
		t.queuePing(now)
		repairExit, repairEntry := t.judge(now)
		t.prune(now)
		t.mu.Unlock()
		if repairExit {
			// The exit may have restarted with new keys: route with a
			// fresh directory, then open the session again.
			t.log.Info("the exit gateway does not answer through the mixnet; opening the session again", "exit", t.Exit.ID)
			t.refresh()
			lastRefresh = now
			t.mu.Lock()
			t.stats.reopens.Add(1)
			t.queueOpen(true)
			t.mu.Unlock()
		}
		if repairEntry {
			if c := t.conn.Load(); c != nil {
				t.log.Info("nothing comes back through the mixnet; reconnecting to the entry gateway", "gateway", t.Entry.ID)
				c.Close() // entryLoop connects again
			}
		}
		if every := max(t.routes.epochLength()/4, 10*time.Second); now.Sub(lastRefresh) > min(every, 5*time.Minute) {
			lastRefresh = now
			t.refresh()
		}
	}
}

// judge decides what to repair. t.mu is held.
func (t *Tunnel) judge(now time.Time) (exit, entry bool) {
	s := &t.st
	recent := func(at time.Time) bool { return now.Sub(at) <= HealthWindow }
	if recent(s.lastPong) {
		s.unhealthySince = time.Time{}
		return false, false
	}
	if s.unhealthySince.IsZero() {
		s.unhealthySince = now
	}
	// Give the last repair time to work.
	if recent(s.openedAt) || s.openQueued {
		return false, false
	}
	if recent(s.lastLoop) || recent(s.lastAck) {
		return true, false
	}
	return false, now.Sub(s.unhealthySince) > HealthWindow
}

// prune forgets loops, pings and SURBs that will not come back. t.mu is
// held.
func (t *Tunnel) prune(now time.Time) {
	s := &t.st
	const keep = 30 * time.Second
	for id, at := range s.loops {
		if now.Sub(at) > keep {
			delete(s.loops, id)
		}
	}
	for id, p := range s.pings {
		if !p.queued.IsZero() && now.Sub(p.queued) > keep {
			delete(s.pings, id)
		}
	}
	cur := currentEpoch(t.routes.topology(), now)
	for id, e := range s.surbs {
		if e.epoch+1 < cur {
			delete(s.surbs, id)
			t.stats.surbsExpired.Add(1)
		}
	}
}

// Health reports the tunnel's health.
func (t *Tunnel) Health() Health {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.st
	return Health{
		LastLoop: s.lastLoop, LastAck: s.lastAck, LastPong: s.lastPong,
		Mixnet:         now.Sub(s.lastLoop) <= HealthWindow || now.Sub(s.lastAck) <= HealthWindow,
		Exit:           now.Sub(s.lastPong) <= HealthWindow,
		UnhealthySince: s.unhealthySince, Err: s.fatal, Payment: t.paymentHealth(),
	}
}

// Check reports why the tunnel is no longer usable: a failure repair cannot
// fix, or no answer from the exit for DeadAfter while repairing. It does
// not block.
func (t *Tunnel) Check(now time.Time) error {
	h := t.Health()
	if h.Err != nil {
		return h.Err
	}
	t.mu.Lock()
	dry, payErr := t.st.exitDry, t.st.payErr
	t.mu.Unlock()
	if dry && payErr != nil {
		// As in fast mode: the allowance is used up and paying again
		// failed; a new connection fetches tickets, or says why not.
		return fmt.Errorf("the exit gateway's allowance is used up and paying again failed: %w", payErr)
	}
	if !h.UnhealthySince.IsZero() && now.Sub(h.UnhealthySince) > DeadAfter {
		what := "the exit gateway"
		if !h.Mixnet {
			what = "the mixnet"
		}
		return fmt.Errorf("no answer from %s for %v", what, now.Sub(h.UnhealthySince).Round(time.Second))
	}
	return nil
}
