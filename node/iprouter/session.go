package iprouter

import (
	"crypto/sha256"
	"net/netip"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/mixnet/ipr"
	"github.com/nymvpn/nymvpn/tun/netstack"
)

// writeHeadroom is the space left in front of each packet written to the
// exit device: its kernel TUN writes a virtio-net header there.
const writeHeadroom = 16

// maxBundleFragments bounds the reply fragments of one bundle: a lost
// fragment loses the bundle.
const maxBundleFragments = 8

// session is one client's state at the router; mu guards it.
type session struct {
	r      *Router
	tag    ipr.Tag
	index  uint32
	v4, v6 netip.Addr
	closed bool

	mu       sync.Mutex
	reasm    ipr.Reassembler
	lastSeen time.Time
	surbs    []*mixnet.SURB // oldest first
	nextMsg  uint32

	// order releases the client's IP packets in message order; orderTimer
	// gives up its gaps.
	order      ipr.Reorderer[[][]byte]
	orderTimer *time.Timer
	// bundle is how long a reply bundle may wait to fill.
	bundle time.Duration

	// held are packets for the client not yet sent: the bundle being
	// filled, and more while SURBs are short.
	held      [][]byte
	heldBytes int
	timer     *time.Timer
	askedAt   time.Time

	// Payment (Config.Pay): metered once a ticket opened the session; left
	// is the allowance of IP bytes both ways (a bundle may take it below
	// zero), topUpAt the level below which NeedTicket goes out, askedTicket
	// when it last did (zero: not since the last crossing), toldDry whether
	// the client was told its packets are dropped.
	metered     bool
	left        int64
	topUpAt     int64
	askedTicket time.Time
	toldDry     bool
	// paidWith is the hash of the last ticket accepted: the same ticket
	// again (a client repeating an Open whose answer it missed) is
	// answered as paid, not refused as spent.
	paidWith [32]byte
}

// message handles complete message id from the client.
func (s *session) message(id uint32, msg []byte) {
	r := s.r
	known := !s.closed && s.v4.IsValid()
	opened := false
	var out [][]byte // packets for the exit device
	var replies []byte
	unknownData, dry := false, false
	// refusal answers an Open the router refused, once the rest of the
	// message (the SURBs that come after the Open) is in; nothing else of
	// the message is taken.
	var refusal []byte
	for rest := msg; len(rest) > 0; {
		k, body, next, err := ipr.NextItem(rest)
		if err != nil {
			r.st.malformed.Add(1)
			break
		}
		rest = next
		if refusal != nil && k != ipr.KindSURB {
			continue
		}
		switch k {
		case ipr.KindOpen:
			o, err := ipr.ParseOpen(body)
			if err != nil {
				r.st.malformed.Add(1)
				continue
			}
			items, ok := s.open(&o)
			if !ok {
				refusal = items
				continue
			}
			known, opened = true, true
			replies = ipr.AppendWelcome(replies, &ipr.Welcome{IPv4: s.v4, IPv6: s.v6, Router4: r.dev.Addr4, Router6: r.dev.Addr6, MTU: uint16(r.cfg.MTU)})
			replies = append(replies, items...)
		case ipr.KindTicket:
			tk, err := ipr.ParseTicket(body)
			if err != nil {
				r.st.malformed.Add(1)
				continue
			}
			if !known {
				unknownData = true
				continue
			}
			if r.cfg.Pay == nil {
				continue // a free router takes no tickets
			}
			replies = append(replies, s.pay(tk)...)
		case ipr.KindSURB:
			sb, err := r.parseSURB(body)
			if err != nil {
				r.st.malformed.Add(1)
				continue
			}
			r.st.surbsIn.Add(1)
			s.addSURB(sb)
		case ipr.KindIP:
			if !known {
				unknownData = true
				continue
			}
			src, _, ok := netstack.PacketAddrs(body)
			if !ok || (src != s.v4 && src != s.v6) || len(body) > r.cfg.MTU {
				r.st.spoofed.Add(1)
				continue
			}
			if s.metered {
				if s.left <= 0 {
					r.st.unpaid.Add(1)
					dry = true
					continue
				}
				s.left -= int64(len(body))
			}
			buf := make([]byte, writeHeadroom+len(body))
			copy(buf[writeHeadroom:], body)
			out = append(out, buf)
			r.st.ipIn.Add(1)
			r.st.bytesIn.Add(uint64(len(body)))
		case ipr.KindPing:
			if _, err := ipr.ParseU64(body); err != nil {
				r.st.malformed.Add(1)
				continue
			}
			if !known {
				unknownData = true
				continue
			}
			r.st.pings.Add(1)
			replies = ipr.AppendItem(replies, ipr.KindPong, body)
		case ipr.KindClose:
			if known {
				s.mu.Unlock()
				r.free(s)
				s.mu.Lock()
			}
			return
		default:
			r.st.malformed.Add(1)
		}
	}
	if refusal != nil {
		// Through a SURB that came with the Open, if any.
		s.reply(refusal, true)
		return
	}
	if unknownData {
		// The router restarted or freed the session: tell the client, if
		// it sent a SURB to do it with.
		r.st.unknown.Add(1)
		if len(s.surbs) > 0 {
			s.reply(ipr.AppendError(nil, ipr.ErrUnknownSession, "no session for this tag: open again"), true)
		}
		return
	}
	replies = s.paymentItems(replies, dry)
	var ready [][][]byte
	if opened {
		// The client's messages after the Open are in order from here.
		ready = s.order.Reset(id + 1)
		ready = append(ready, out)
	} else {
		ready = s.order.Push(id, out, r.cfg.Now())
	}
	s.write(ready)
	s.armOrder()
	if len(replies) > 0 {
		s.reply(replies, true)
	}
	// New SURBs may release held packets.
	s.pump(false)
}

// write hands released packets to the exit device.
func (s *session) write(ready [][][]byte) {
	var out [][]byte
	for _, pkts := range ready {
		out = append(out, pkts...)
	}
	if len(out) == 0 {
		return
	}
	if _, err := s.r.dev.Write(out, writeHeadroom); err != nil {
		s.r.log.Debug("exit device write", "err", err)
	}
}

// armOrder sets the timer that gives up the reorderer's gaps.
func (s *session) armOrder() {
	d := s.order.Deadline()
	if d.IsZero() || s.orderTimer != nil {
		return
	}
	s.orderTimer = time.AfterFunc(max(0, d.Sub(s.r.cfg.Now())), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.orderTimer = nil
		if s.closed {
			return
		}
		s.write(s.order.Expire(s.r.cfg.Now()))
		s.armOrder()
	})
}

// open starts or resumes the session. It returns the items to send after
// the Welcome (the allowance a ticket bought), or, with false, the Error
// item of a refusal.
func (s *session) open(o *ipr.Open) ([]byte, bool) {
	r := s.r
	s.order.Hold = time.Duration(o.Hold) * time.Millisecond
	if o.Hold == 0 {
		s.order.Hold = DefaultHold
	}
	s.bundle = r.cfg.FlushDelay
	if o.Bundle != ipr.DefaultBundle {
		s.bundle = time.Duration(o.Bundle) * time.Millisecond
	}
	if o.Flags&ipr.OpenResetSURBs != 0 {
		r.st.surbsExpired.Add(uint64(len(s.surbs)))
		s.surbs = nil
	}
	if s.v4.IsValid() && !s.closed {
		// Already open: Open is idempotent, and a ticket in it tops the
		// allowance up.
		if len(o.Ticket) > 0 && r.cfg.Pay != nil {
			return s.pay(o.Ticket), true
		}
		return nil, true
	}
	if r.cfg.Pay != nil && len(o.Ticket) == 0 {
		r.st.refused.Add(1)
		r.st.paymentRequired.Add(1)
		return ipr.AppendError(nil, ipr.ErrPaymentRequired,
			"this exit gateway takes tickets: open the session with a mixnet-exit ticket bound to its key"), false
	}
	if err := r.allocate(s, o.Want4, o.Want6); err != nil {
		r.st.refused.Add(1)
		return ipr.AppendError(nil, ipr.ErrPoolExhausted, err.Error()), false
	}
	var items []byte
	if r.cfg.Pay != nil {
		// Addresses first: a ticket is not spent on a full pool.
		items = s.pay(o.Ticket)
		if !s.metered {
			r.release(s)
			r.st.refused.Add(1)
			return items, false
		}
	}
	s.closed = false
	s.lastSeen = r.cfg.Now()
	r.st.opened.Add(1)
	r.log.Debug("session opened", "addr4", s.v4, "addr6", s.v6, "metered", s.metered)
	return items, true
}

// pay redeems a ticket for the session and returns the answer: Allowance,
// or Error ErrTicketRefused with the reason.
func (s *session) pay(ticket []byte) []byte {
	r := s.r
	h := sha256.Sum256(ticket)
	if s.metered && h == s.paidWith {
		return ipr.AppendAllowance(nil, ipr.Allowance{Left: uint64(max(s.left, 0)), TopUpAt: uint64(max(s.topUpAt, 0))})
	}
	bw, topUpAt, err := r.cfg.Pay(ticket)
	if err != nil {
		r.st.ticketsRefused.Add(1)
		r.log.Debug("ticket refused", "err", err)
		return ipr.AppendError(nil, ipr.ErrTicketRefused, err.Error())
	}
	r.st.tickets.Add(1)
	// What a bundle took beyond zero is forgiven, as at the entry.
	s.metered, s.left, s.topUpAt, s.paidWith = true, max(s.left, 0)+bw, topUpAt, h
	r.log.Debug("ticket accepted", "allowance", s.left)
	s.toldDry = false
	if s.left >= s.topUpAt {
		s.askedTicket = time.Time{} // the next crossing asks at once
	}
	return ipr.AppendAllowance(nil, ipr.Allowance{Left: uint64(s.left), TopUpAt: uint64(max(topUpAt, 0))})
}

// paymentItems appends what the session's allowance calls for: Error
// ErrPaymentRequired once when dry (packets were dropped for want of
// allowance), NeedTicket below the top-up level (at most every
// NeedTicketEvery).
func (s *session) paymentItems(dst []byte, dry bool) []byte {
	r := s.r
	if !s.metered {
		return dst
	}
	if dry && !s.toldDry {
		s.toldDry = true
		r.st.paymentRequired.Add(1)
		dst = ipr.AppendError(dst, ipr.ErrPaymentRequired,
			"the session's allowance ran out: its packets are dropped until a mixnet-exit ticket comes")
	}
	now := r.cfg.Now()
	if s.left < s.topUpAt && (s.askedTicket.IsZero() || now.Sub(s.askedTicket) >= NeedTicketEvery) {
		s.askedTicket = now
		r.st.needTickets.Add(1)
		dst = ipr.AppendNeedTicket(dst, uint64(max(s.left, 0)))
	}
	return dst
}

// addSURB keeps a SURB unless its epoch is dead or the session holds enough.
func (s *session) addSURB(sb *mixnet.SURB) {
	r := s.r
	if !r.epochOK(sb.Epoch) {
		r.st.surbsExpired.Add(1)
		return
	}
	if len(s.surbs) >= r.cfg.MaxSURBs {
		r.st.surbsExtra.Add(1)
		return
	}
	s.surbs = append(s.surbs, sb)
}

// takeSURB returns the oldest live SURB, or nil; control replies may use
// the reserve, data may not.
func (s *session) takeSURB(control bool) *mixnet.SURB {
	r := s.r
	for len(s.surbs) > 0 {
		if !control && len(s.surbs) <= r.cfg.SURBReserve {
			return nil
		}
		sb := s.surbs[0]
		s.surbs[0] = nil
		s.surbs = s.surbs[1:]
		if r.epochOK(sb.Epoch) {
			return sb
		}
		r.st.surbsExpired.Add(1)
	}
	return nil
}

// reply sends one message to the client, one SURB per fragment; it reports
// whether it went.
func (s *session) reply(msg []byte, control bool) bool {
	r := s.r
	parts, err := ipr.Split(msg, ipr.ReplyData)
	if err != nil {
		r.log.Warn("reply too large", "bytes", len(msg), "err", err)
		return false
	}
	if !control && len(s.surbs) < len(parts)+r.cfg.SURBReserve {
		return false
	}
	id := s.nextMsg
	s.nextMsg++
	var buf []byte
	for i, p := range parts {
		sb := s.takeSURB(control)
		if sb == nil {
			return false
		}
		buf, err = ipr.AppendReply(buf[:0], &ipr.ReplyFragment{MsgID: id, Index: uint8(i), Count: uint8(len(parts)),
			SURBsLeft: uint16(min(len(s.surbs), 0xffff)), Data: p})
		if err != nil {
			return false
		}
		pkt, err := r.geo.NewPacketFromSURB(sb.SURB, buf)
		if err != nil {
			r.log.Debug("reply packet", "err", err)
			continue
		}
		r.st.surbsUsed.Add(1)
		if r.cfg.Forward(sb.SURB.FirstHop, sb.Epoch, pkt) {
			r.st.replies.Add(1)
		}
	}
	return true
}

// queue holds a packet for the client.
func (s *session) queue(pkt []byte) {
	r := s.r
	if s.closed || len(pkt) > ipr.ReplyData-ipr.ItemHeaderLength {
		return
	}
	if s.metered && s.left <= 0 {
		r.st.unpaid.Add(1)
		if msg := s.paymentItems(nil, true); len(msg) > 0 {
			s.reply(msg, true)
		}
		return
	}
	s.held = append(s.held, append([]byte(nil), pkt...))
	s.heldBytes += len(pkt)
	for s.heldBytes > DefaultHeld && len(s.held) > 1 {
		s.heldBytes -= len(s.held[0])
		s.held[0] = nil
		s.held = s.held[1:]
		r.st.heldDropped.Add(1)
	}
}

// pump sends the held packets as bundles: full bundles at once, the last
// one when force is set, FlushDelay has passed or no delay is configured.
// Without SURBs it asks the client for more.
func (s *session) pump(force bool) {
	r := s.r
	for len(s.held) > 0 && !s.closed {
		if s.metered && s.left <= 0 {
			// The allowance ran out while these waited.
			r.st.unpaid.Add(uint64(len(s.held)))
			clear(s.held)
			s.held, s.heldBytes = s.held[:0], 0
			if msg := s.paymentItems(nil, true); len(msg) > 0 {
				s.reply(msg, true)
			}
			break
		}
		// A bundle may span several reply fragments, which it then fills:
		// 1500-byte packets one per fragment would leave a quarter of
		// each empty, and every fragment costs a SURB.
		frags := min(maxBundleFragments, max(1, len(s.surbs)-r.cfg.SURBReserve))
		n, size := 0, 0
		for n < len(s.held) && size+ipr.ItemLength(len(s.held[n])) <= frags*ipr.ReplyData {
			size += ipr.ItemLength(len(s.held[n]))
			n++
		}
		if n == 0 {
			// A packet larger than the room of the fragments there are
			// SURBs for: wait for SURBs.
			s.askForSURBs()
			return
		}
		// Full: no MTU-sized packet would fit in what is left of its last
		// fragment.
		room := (size+ipr.ReplyData-1)/ipr.ReplyData*ipr.ReplyData - size
		full := n < len(s.held) || room < ipr.ItemLength(r.cfg.MTU)
		if !full && !force && s.bundle > 0 {
			if s.timer == nil {
				s.timer = time.AfterFunc(s.bundle, s.flush)
			}
			return
		}
		msg := make([]byte, 0, size)
		for _, p := range s.held[:n] {
			msg = ipr.AppendItem(msg, ipr.KindIP, p)
		}
		if !s.reply(msg, false) {
			s.askForSURBs()
			return
		}
		for i := range n {
			r.st.ipOut.Add(1)
			r.st.bytesOut.Add(uint64(len(s.held[i])))
			s.held[i] = nil
		}
		s.held = s.held[n:]
		sent := size - n*ipr.ItemHeaderLength
		s.heldBytes -= sent
		if s.metered {
			s.left -= int64(sent)
			if msg := s.paymentItems(nil, false); len(msg) > 0 {
				s.reply(msg, true)
			}
		}
	}
	s.stopTimer()
}

// flush is the bundle timer.
func (s *session) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timer = nil
	s.pump(true)
}

func (s *session) stopTimer() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

// stopTimers stops the bundle and reorder timers (the session is freed).
func (s *session) stopTimers() {
	s.stopTimer()
	if s.orderTimer != nil {
		s.orderTimer.Stop()
		s.orderTimer = nil
	}
}

// askForSURBs sends NeedSURBs from the reserve, at most every
// NeedSURBsEvery; the packets stay held meanwhile.
func (s *session) askForSURBs() {
	r := s.r
	r.st.held.Add(1)
	now := r.cfg.Now()
	if now.Sub(s.askedAt) < NeedSURBsEvery {
		return
	}
	want := uint16(min(256, len(s.held)+64))
	if s.reply(ipr.AppendNeedSURBs(nil, want), true) {
		s.askedAt = now
		r.st.needSURBs.Add(1)
	}
	// If nothing arrives, the timer tries again.
	if s.timer == nil {
		s.timer = time.AfterFunc(NeedSURBsEvery, s.flush)
	}
}
