package mixnet

import (
	"context"
	"fmt"
	"time"

	mix "github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/mixnet/ipr"
	"github.com/nymvpn/nymvpn/sphinx"
)

// entryLoop receives from the entry gateway and, when the connection ends,
// connects again (with a fresh directory when it can) until the tunnel
// closes.
func (t *Tunnel) entryLoop(c *mix.Client) {
	defer t.wg.Done()
	for {
		t.receive(c)
		if t.ctx.Err() != nil {
			return
		}
		t.log.Warn("lost the entry gateway; connecting again", "gateway", t.Entry.ID, "err", c.Err())
		t.conn.CompareAndSwap(c, nil)
		backoff := 50 * time.Millisecond
		for {
			if t.ctx.Err() != nil {
				return
			}
			t.refresh()
			ctx, cancel := context.WithTimeout(t.ctx, mix.DialTimeout)
			nc, err := t.dial(ctx)
			cancel()
			if err == nil {
				c = nc
				break
			}
			t.log.Debug("connecting to the entry gateway", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-t.ctx.Done():
				return
			}
			backoff = min(2*backoff, 5*time.Second)
		}
		t.stats.reconnects.Add(1)
		t.fac.invalidate()
		t.conn.Store(c)
		// The SURBs, acks and loops in flight may have been built for the
		// gateway's old keys (a restarted gateway makes new ones): the
		// exit drops its SURBs and gets new ones; lost fragments are sent
		// again when their deadline passes.
		t.mu.Lock()
		t.st.loops = map[sphinx.SURBID]time.Time{}
		t.queueOpen(true)
		t.mu.Unlock()
		t.log.Info("connected to the entry gateway again", "gateway", t.Entry.ID)
	}
}

// refresh fetches a fresh topology, if the tunnel can.
func (t *Tunnel) refresh() {
	if t.cfg.Refresh == nil {
		return
	}
	ctx, cancel := context.WithTimeout(t.ctx, 15*time.Second)
	defer cancel()
	topo, err := t.cfg.Refresh(ctx)
	if err != nil {
		t.log.Debug("refreshing the directory", "err", err)
		return
	}
	if err := t.routes.set(topo, t.Entry.ID, t.Exit.ID); err != nil {
		t.log.Warn("fresh directory", "err", err)
		return
	}
	// Keys may have changed (a restarted gateway): build afresh.
	t.fac.invalidate()
}

// receive handles the deliveries of one connection until it ends.
func (t *Tunnel) receive(c *mix.Client) {
	for d := range c.Deliveries() {
		t.meter.count(mix.DeliverRecordLength(d.Payload))
		now := time.Now()
		if d.Reply {
			t.reply(&d, now)
			continue
		}
		t.mu.Lock()
		if sent, ok := t.st.loops[d.SURBID]; ok {
			delete(t.st.loops, d.SURBID)
			t.st.lastLoop = now
			t.stats.loopsBack.Add(1)
			t.stats.loopRTT.add(now.Sub(sent))
		} else if !t.acked(d.SURBID, now) {
			t.stats.unknown.Add(1)
		}
		t.mu.Unlock()
	}
}

// reply handles one SURB reply from the exit.
func (t *Tunnel) reply(d *mix.Delivery, now time.Time) {
	t.mu.Lock()
	e := t.st.surbs[d.SURBID]
	delete(t.st.surbs, d.SURBID)
	t.mu.Unlock()
	if e == nil {
		t.stats.unknown.Add(1)
		return
	}
	msg, err := t.geo.DecryptReply(e.keys, d.Payload)
	if err != nil {
		t.stats.badReplies.Add(1)
		t.log.Debug("reply", "err", err)
		return
	}
	f, err := ipr.ParseReply(msg)
	if err != nil {
		t.stats.badReplies.Add(1)
		t.log.Debug("reply", "err", err)
		return
	}
	t.stats.replies.Add(1)
	t.stats.surbsUsed.Add(1)
	t.mu.Lock()
	s := &t.st
	s.exitReported, s.sentSince = int(f.SURBsLeft), 0
	whole, _, err := s.reasm.Add(f.MsgID, f.Index, f.Count, f.Data, now)
	t.mu.Unlock()
	if err != nil || whole == nil {
		return
	}
	t.message(f.MsgID, whole, e, now)
}

// message handles whole message id from the exit; e is the SURB its last
// fragment came in. IP packets go to the inner device in message order.
func (t *Tunnel) message(id uint32, msg []byte, e *surbEntry, now time.Time) {
	var pkts [][]byte
	welcome := false
	for rest := msg; len(rest) > 0; {
		k, body, next, err := ipr.NextItem(rest)
		if err != nil {
			t.stats.badReplies.Add(1)
			break
		}
		rest = next
		switch k {
		case ipr.KindIP:
			b := make([]byte, headroom+len(body))
			copy(b[headroom:], body)
			pkts = append(pkts, b)
			t.stats.ipIn.Add(1)
			t.stats.bytesIn.Add(uint64(len(body)))
		case ipr.KindWelcome:
			w, err := ipr.ParseWelcome(body)
			if err != nil {
				t.stats.badReplies.Add(1)
				continue
			}
			t.welcomed(id, w)
			welcome = true
		case ipr.KindPong:
			id, err := ipr.ParseU64(body)
			if err != nil {
				continue
			}
			t.pong(id, e, now)
		case ipr.KindNeedSURBs:
			n, err := ipr.ParseNeedSURBs(body)
			if err != nil {
				continue
			}
			t.stats.needSURBs.Add(1)
			t.mu.Lock()
			t.st.needed = max(t.st.needed, int(n))
			t.mu.Unlock()
			t.signal()
		case ipr.KindError:
			code, text, err := ipr.ParseError(body)
			if err != nil {
				continue
			}
			t.exitError(id, code, text)
		case ipr.KindNeedTicket:
			left, err := ipr.ParseNeedTicket(body)
			if err != nil {
				t.stats.badReplies.Add(1)
				continue
			}
			t.mu.Lock()
			t.needTicket(id, left)
			t.mu.Unlock()
		case ipr.KindAllowance:
			a, err := ipr.ParseAllowance(body)
			if err != nil {
				t.stats.badReplies.Add(1)
				continue
			}
			t.mu.Lock()
			t.allowance(id, a)
			t.mu.Unlock()
		default:
			t.stats.badReplies.Add(1)
		}
	}
	t.orderMu.Lock()
	defer t.orderMu.Unlock()
	var ready [][][]byte
	if welcome {
		// A (re)opened session numbers its replies afresh after this one.
		ready = append(t.order.Reset(id+1), pkts)
	} else {
		ready = t.order.Push(id, pkts, now)
	}
	t.deliver(ready)
	t.armOrder()
}

// headroom is left in front of packets written to the inner device (a
// kernel TUN writes a virtio-net header there).
const headroom = 16

// deliver writes released packets to the inner device. t.orderMu is held.
func (t *Tunnel) deliver(ready [][][]byte) {
	var out [][]byte
	for _, p := range ready {
		out = append(out, p...)
	}
	if len(out) == 0 {
		return
	}
	dev := t.innerDev()
	if dev == nil {
		return // Connect has not finished: the exit sends nothing yet
	}
	if _, err := dev.Write(out, headroom); err != nil && t.ctx.Err() == nil {
		t.log.Debug("inner device write", "err", err)
	}
}

// armOrder sets the timer that gives up the reorderer's gaps. t.orderMu is
// held.
func (t *Tunnel) armOrder() {
	d := t.order.Deadline()
	if d.IsZero() || t.orderTimer != nil {
		return
	}
	t.orderTimer = time.AfterFunc(max(0, time.Until(d)), func() {
		t.orderMu.Lock()
		defer t.orderMu.Unlock()
		t.orderTimer = nil
		t.deliver(t.order.Expire(time.Now()))
		t.armOrder()
	})
}

// welcomed takes the exit's Welcome, in reply message id: the first
// completes Connect; a later one (the session reopened) must give the same
// addresses.
func (t *Tunnel) welcomed(id uint32, w ipr.Welcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.st
	s.lastPong = time.Now()
	// The exit may number its replies afresh (it restarted).
	s.payMsg, s.payMsgSet = id, true
	s.openTicket = nil // answered
	if !s.welcome.IPv4.IsValid() {
		select {
		case t.welcome <- w:
		default:
		}
		return
	}
	if w.IPv4 != s.welcome.IPv4 || w.IPv6 != s.welcome.IPv6 {
		s.fatal = fmt.Errorf("the exit gateway gave new addresses (%v, %v) after a restart; reconnect", w.IPv4, w.IPv6)
		t.log.Warn("exit session reopened with other addresses", "was4", s.welcome.IPv4, "now4", w.IPv4)
		return
	}
	t.log.Info("exit session reopened", "addr4", w.IPv4, "addr6", w.IPv6)
}

// pong takes the exit's answer to a ping: the whole path works. The
// overhead is the round trip less the wait for a send slot and the delays
// asked of the mixes both ways.
func (t *Tunnel) pong(id uint64, e *surbEntry, now time.Time) {
	t.mu.Lock()
	p := t.st.pings[id]
	delete(t.st.pings, id)
	t.st.lastPong = now
	t.mu.Unlock()
	t.stats.pongs.Add(1)
	if p == nil || p.sent.IsZero() {
		return
	}
	t.stats.exitRTT.add(now.Sub(p.queued))
	if !p.resent {
		t.stats.overhead.add(now.Sub(p.sent) - p.delays - e.delays)
		t.stats.sendWait.add(p.sent.Sub(p.queued))
		t.stats.mixDelays.add(p.delays + e.delays)
	}
}

// exitError handles an Error from the exit, in reply message id.
func (t *Tunnel) exitError(id uint32, code uint8, text string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch code {
	case ipr.ErrUnknownSession:
		t.log.Info("the exit gateway lost the session; opening it again", "exit", t.Exit.ID)
		t.stats.reopens.Add(1)
		t.queueOpen(false)
	case ipr.ErrPaymentRequired, ipr.ErrTicketRefused:
		e := &ExitPaymentError{Exit: t.Exit.ID, Code: code, Reason: text}
		if !t.st.welcome.IPv4.IsValid() {
			t.fail(fmt.Errorf("mixnet: %w", e)) // Connect fails with it
			return
		}
		// A refusal answers the ticket in flight even when news of the
		// exit's payment came after it; a stale "ran out" is old news.
		if t.freshPayment(id) || code == ipr.ErrTicketRefused {
			t.exitPayment(e)
		}
	default:
		t.fail(fmt.Errorf("mixnet: exit gateway %s refused: %s (code %d)", t.Exit.ID, text, code))
	}
}

// fail records a failure self-repair cannot fix: Connect returns it, Check
// reports it. t.mu is held.
func (t *Tunnel) fail(err error) {
	t.st.fatal = err
	select {
	case t.failed <- err:
	default:
	}
	t.log.Warn("exit gateway refused", "err", err)
}
