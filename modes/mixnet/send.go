package mixnet

import (
	"container/heap"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"os"
	"time"

	mix "github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/mixnet/ipr"
	"github.com/nymvpn/nymvpn/sphinx"
	"golang.zx2c4.com/wireguard/tun"
)

// sendLoop is the main stream. Paced (Profile.SendInterval > 0), it sends
// one packet per Poisson draw: a retransmission that is due, the next
// fragment of a message, a new message from the queued items, or else a
// cover loop packet. Unpaced, it sends real packets as they come and wakes
// for retransmissions.
func (t *Tunnel) sendLoop() {
	defer t.wg.Done()
	rng := newRand()
	interval := t.profile.SendInterval
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	next := time.Now()
	for {
		if interval > 0 {
			next = next.Add(mix.ExpDelay(rng, interval, 0))
			now := time.Now()
			if next.Before(now.Add(-time.Second)) {
				next = now // far behind (a slow machine): do not burst to catch up
			}
			timer.Reset(max(0, next.Sub(now)))
			select {
			case <-timer.C:
			case <-t.ctx.Done():
				return
			}
			if !t.sendReal(rng, true) {
				t.sendLoopPacket(rng, &t.stats.cover)
			}
			continue
		}
		for t.sendReal(rng, false) {
			if t.ctx.Err() != nil {
				return
			}
		}
		timer.Reset(t.untilDue())
		select {
		case <-t.wake:
		case <-timer.C:
		case <-t.ctx.Done():
			return
		}
	}
}

// untilDue is the time until the next retransmission deadline.
func (t *Tunnel) untilDue() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.st.retx) == 0 {
		return time.Hour
	}
	return max(0, time.Until(t.st.retx[0].due))
}

// loopCoverLoop is the loop-cover stream: loop packets at Poisson times.
func (t *Tunnel) loopCoverLoop() {
	defer t.wg.Done()
	if t.profile.LoopCover <= 0 {
		return
	}
	rng := newRand()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Reset(mix.ExpDelay(rng, t.profile.LoopCover, 0))
		select {
		case <-timer.C:
		case <-t.ctx.Done():
			return
		}
		t.sendLoopPacket(rng, &t.stats.loops)
	}
}

// sendLoopPacket sends one loop packet to this client through the mixes
// and its entry gateway, counting it in counter.
func (t *Tunnel) sendLoopPacket(rng *mrand.Rand, counter interface{ Add(uint64) uint64 }) {
	now := time.Now()
	rt, err := t.routes.toSelf(rng, t.profile.HopDelay, now)
	if err != nil {
		t.log.Debug("loop route", "err", err)
		return
	}
	id := randomID()
	pkt, err := t.geo.NewPacket(rand.Reader, rt.hops, &sphinx.Destination{Recipient: t.me, SURBID: id}, nil)
	if err != nil {
		t.log.Debug("loop packet", "err", err)
		return
	}
	t.mu.Lock()
	t.st.loops[id] = now
	t.mu.Unlock()
	if t.send(rt.hops[0].ID, rt.epoch, pkt) {
		counter.Add(1)
	}
}

// send hands one Sphinx packet to the entry gateway.
func (t *Tunnel) send(first sphinx.NodeID, epoch uint64, pkt []byte) bool {
	c := t.conn.Load()
	if c == nil {
		t.stats.sendFailed.Add(1)
		return false
	}
	if err := c.Send(first, epoch, pkt); err != nil {
		t.stats.sendFailed.Add(1)
		t.log.Debug("send to the entry gateway", "err", err)
		return false
	}
	t.meter.count(mix.RecordHeaderLength + sphinx.NodeIDLength + mix.EpochLength + len(pkt))
	return true
}

// sendReal sends the next real fragment, if there is one; slot says it
// fills a Poisson slot.
func (t *Tunnel) sendReal(rng *mrand.Rand, slot bool) bool {
	fr, plan := t.pick(time.Now(), slot)
	if fr == nil && plan == nil {
		return false
	}
	if plan != nil {
		if fr = t.compose(rng, plan); fr == nil {
			return false
		}
	}
	t.transmit(rng, fr)
	return true
}

// plan is a message being composed: the items taken from the queues, and
// how many SURBs to add (built outside the lock).
type plan struct {
	msg   []byte
	pings []uint64
	surbs int
	open  bool
}

// slotSURBs × Profile.SURBs is what the exit may hold when Poisson slots
// that would carry cover carry SURBs instead.
const slotSURBs = 4

// pick returns a fragment to send now (a due retransmission, or the next
// fragment of a message), or a plan for a new message, or neither. slot
// says a Poisson slot is to be filled, with cover if nothing else.
func (t *Tunnel) pick(now time.Time, slot bool) (*fragment, *plan) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.st
	// An Open goes first: it is how the tunnel repairs itself, and the
	// retransmissions of a broken path must not starve it.
	opening := len(s.control) > 0 && s.control[0].open
	for !opening && len(s.retx) > 0 && !s.retx[0].due.After(now) {
		fr := heap.Pop(&s.retx).(*fragment)
		if fr.sends > t.cfg.MaxRetransmits {
			t.giveUp(fr)
			continue
		}
		t.stats.retransmissions.Add(1)
		for _, id := range fr.pings {
			if p := s.pings[id]; p != nil {
				p.resent = true
			}
		}
		return fr, nil
	}
	if !opening && len(s.pending) > 0 {
		fr := s.pending[0]
		s.pending[0] = nil
		s.pending = s.pending[1:]
		return fr, nil
	}
	p := &plan{}
	room := ipr.ForwardData
	for len(s.control) > 0 && ipr.ItemLength(len(s.control[0].item)) <= room-len(p.msg) {
		c := s.control[0]
		s.control[0] = controlItem{}
		s.control = s.control[1:]
		p.msg = append(p.msg, c.item...)
		if c.ping != 0 {
			p.pings = append(p.pings, c.ping)
			s.pingQueued = false
		}
		if c.open {
			s.openQueued = false
			p.open = true
		}
		p.surbs += c.surbs
	}
	for len(s.ipq) > 0 && ipr.ItemLength(len(s.ipq[0])) <= room-len(p.msg) {
		pkt := s.ipq[0]
		s.ipq[0] = nil
		s.ipq = s.ipq[1:]
		s.ipqBytes -= len(pkt)
		p.msg = ipr.AppendItem(p.msg, ipr.KindIP, pkt)
	}
	surbItem := ipr.ItemLength(mix.SURBLength(t.geo))
	if p.surbs == 0 {
		// Fill what is left of the fragment with the SURBs the exit needs.
		p.surbs = min(s.surbDeficit(t.profile.SURBs), (room-len(p.msg))/surbItem)
		if slot && len(p.msg) == 0 && p.surbs == 0 {
			// A Poisson slot with nothing to send would carry cover: a
			// message of SURBs looks the same on the wire and lets the
			// exit answer a burst (TCP's window) without waiting for them.
			p.surbs = min(s.surbDeficit(slotSURBs*t.profile.SURBs), room/surbItem)
		}
	}
	if len(p.msg) == 0 && p.surbs == 0 {
		return nil, nil
	}
	return nil, p
}

// compose builds the plan's SURBs, makes the message and its fragments,
// queues all but the first and returns the first.
func (t *Tunnel) compose(rng *mrand.Rand, p *plan) *fragment {
	now := time.Now()
	entries := map[sphinx.SURBID]*surbEntry{}
	for range p.surbs {
		sb := t.fac.surb(rng, now)
		if sb == nil {
			break
		}
		p.msg = ipr.AppendItem(p.msg, ipr.KindSURB, sb.surb.Bytes())
		entries[sb.id] = sb.entry
	}
	parts, err := ipr.Split(p.msg, ipr.ForwardData)
	if err != nil {
		t.log.Warn("message too large for the mixnet", "bytes", len(p.msg), "err", err)
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.st
	s.addSURBs(entries, t.profile.SURBs)
	t.stats.surbsSent.Add(uint64(len(entries)))
	if p.open {
		s.openedAt = now
	}
	id := s.nextMsg
	s.nextMsg++
	frs := make([]*fragment, len(parts))
	for i, part := range parts {
		frs[i] = &fragment{msgID: id, index: uint8(i), count: uint8(len(parts)), data: part, hidx: -1}
	}
	frs[0].pings = p.pings
	s.pending = append(s.pending, frs[1:]...)
	t.stats.messages.Add(1)
	return frs[0]
}

// transmit builds the Sphinx packet of a fragment, with a new SURB-ACK and
// new routes, sends it and arms its retransmission deadline.
func (t *Tunnel) transmit(rng *mrand.Rand, fr *fragment) {
	now := time.Now()
	fwd, err := t.routes.toExit(rng, t.profile.HopDelay, now)
	var ack *readyAck
	if err == nil {
		if ack = t.fac.ack(rng, now); ack == nil {
			err = errNoRoute
		}
	}
	var ackID sphinx.SURBID
	var back time.Duration
	var pkt []byte
	if err == nil {
		ackID, back = ack.id, ack.delays
		var b []byte
		b, err = ipr.AppendForward(make([]byte, 0, sphinx.RegularPlaintextLength), &ipr.ForwardFragment{
			Ack: ipr.SURBAck{FirstHop: ack.first, Epoch: ack.epoch, Packet: ack.pkt},
			Tag: t.tag, MsgID: fr.msgID, Index: fr.index, Count: fr.count, Data: fr.data,
		})
		if err == nil {
			// The exit is the final hop: no recipient, no SURB id.
			pkt, err = t.geo.NewPacket(rand.Reader, fwd.hops, &sphinx.Destination{}, b)
		}
	}
	t.mu.Lock()
	s := &t.st
	fr.sends++
	// Without a packet (no route now) the fragment waits for its deadline
	// like a lost one.
	timeout := time.Duration(1.5*float64(fwd.delays+back)) + t.cfg.RetransmitBase
	fr.due = now.Add(timeout)
	fr.sentAt = now
	if err != nil {
		t.log.Debug("building a packet", "err", err)
	} else {
		fr.acks = append(fr.acks, ackID)
		s.inflight[ackID] = fr
		for _, id := range fr.pings {
			if p := s.pings[id]; p != nil && p.sent.IsZero() {
				p.sent, p.delays = now, fwd.delays
			}
		}
	}
	heap.Push(&s.retx, fr)
	t.mu.Unlock()
	if pkt != nil && t.send(fwd.hops[0].ID, fwd.epoch, pkt) {
		t.stats.real.Add(1)
	}
}

// giveUp drops a fragment that was sent too often.
func (t *Tunnel) giveUp(fr *fragment) {
	for _, id := range fr.acks {
		delete(t.st.inflight, id)
	}
	fr.done = true
	t.stats.lost.Add(1)
}

// acked marks the fragment of an ack id delivered.
func (t *Tunnel) acked(id sphinx.SURBID, now time.Time) bool {
	s := &t.st
	fr := s.inflight[id]
	if fr == nil {
		return false
	}
	for _, a := range fr.acks {
		delete(s.inflight, a)
	}
	if !fr.done {
		fr.done = true
		s.retx.remove(fr)
		t.stats.acked.Add(1)
		t.stats.ackRTT.add(now.Sub(fr.sentAt))
	}
	s.lastAck = now
	return true
}

// queueOpen queues an Open (with SURBs), once; reset makes the exit drop
// the SURBs it holds. When the tunnel pays the exit, the Open waits for the
// ticket payLoop fetches. t.mu is held.
func (t *Tunnel) queueOpen(reset bool) {
	s := &t.st
	if s.openQueued {
		return
	}
	if t.cfg.Ticket != nil {
		s.openQueued, s.openWanted = true, true
		s.openReset = s.openReset || reset
		t.kickPay()
		return
	}
	t.pushOpen(reset, nil)
}

// pushOpen puts an Open with ticket (nil: none) first among the control
// items. t.mu is held.
func (t *Tunnel) pushOpen(reset bool, ticket []byte) {
	s := &t.st
	o := ipr.Open{Want4: s.welcome.IPv4, Want6: s.welcome.IPv6,
		Hold: uint16(t.profile.Hold() / time.Millisecond), Bundle: uint16(t.profile.Bundle / time.Millisecond), Ticket: ticket}
	if reset {
		o.Flags |= ipr.OpenResetSURBs
		s.resetSURBs()
	}
	s.control = append([]controlItem{{item: ipr.AppendOpen(nil, &o), surbs: openSURBs, open: true}}, s.control...)
	s.openQueued = true
	t.signal()
}

// queuePing queues a Ping to the exit unless one is waiting. t.mu is held.
func (t *Tunnel) queuePing(now time.Time) {
	s := &t.st
	if s.pingQueued {
		return
	}
	s.nextPing++
	id := s.nextPing
	s.pings[id] = &pingEntry{queued: now}
	s.control = append(s.control, controlItem{item: ipr.AppendU64(nil, ipr.KindPing, id), ping: id})
	s.pingQueued = true
	t.signal()
}

// readInner queues the inner device's packets for the sender.
func (t *Tunnel) readInner() {
	defer t.wg.Done()
	const headroom = 16
	n := max(1, t.inner.BatchSize())
	bufs := make([][]byte, n)
	sizes := make([]int, n)
	for i := range bufs {
		bufs[i] = make([]byte, headroom+65535)
	}
	mtu := t.MTU()
	for {
		k, err := t.inner.Read(bufs, sizes, headroom)
		if k > 0 {
			t.mu.Lock()
			for i := range k {
				pkt := bufs[i][headroom : headroom+sizes[i]]
				if len(pkt) == 0 || len(pkt) > mtu {
					t.stats.ipDropped.Add(1)
					continue
				}
				if len(t.st.ipq) >= t.st.ipqMax {
					t.stats.ipDropped.Add(1)
					continue
				}
				t.st.ipq = append(t.st.ipq, append([]byte(nil), pkt...))
				t.st.ipqBytes += len(pkt)
				t.stats.ipOut.Add(1)
				t.stats.bytesOut.Add(uint64(len(pkt)))
			}
			t.mu.Unlock()
			t.signal()
		}
		if err != nil {
			if errors.Is(err, os.ErrClosed) || t.ctx.Err() != nil {
				return
			}
			if errors.Is(err, tun.ErrTooManySegments) {
				continue
			}
			t.log.Debug("inner device read", "err", err)
		}
	}
}

func newRand() *mrand.Rand {
	r, err := mix.NewRand(rand.Reader)
	if err != nil {
		// crypto/rand does not fail on the systems Go supports.
		panic(err)
	}
	return r
}

// errNoRoute: no ack could be built (no route for the epoch).
var errNoRoute = errors.New("mixnet: no route back for an ack")

func randomID() sphinx.SURBID {
	var id sphinx.SURBID
	rand.Read(id[:])
	return id
}
