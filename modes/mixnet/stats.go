package mixnet

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nymvpn/nymvpn/node/directory"
)

// counters are the tunnel's live statistics.
type counters struct {
	real, cover, loops, loopsBack, retransmissions, acked, lost atomic.Uint64
	messages, replies, badReplies, unknown, sendFailed          atomic.Uint64
	surbsSent, surbsUsed, surbsExpired, needSURBs               atomic.Uint64
	ipOut, ipIn, bytesOut, bytesIn, ipDropped                   atomic.Uint64
	pongs, reconnects, reopens                                  atomic.Uint64
	exitTickets                                                 atomic.Uint64

	loopRTT, ackRTT, exitRTT, overhead, sendWait, mixDelays samples
}

// Stats is a snapshot of a tunnel's statistics.
type Stats struct {
	Profile string
	// Sphinx packets sent: Real fragments (first sends and
	// Retransmissions), Cover from the main stream, Loops from the
	// loop-cover stream; LoopsBack came back. Acked fragments, Lost ones
	// (given up after MaxRetransmits).
	Real, Retransmissions, Cover, Loops, LoopsBack, Acked, Lost uint64
	// Messages composed; Replies from the exit (one SURB each);
	// BadReplies that did not decrypt or parse; Unknown deliveries (late
	// acks, forgotten SURBs); SendFailed packets the entry connection did
	// not take.
	Messages, Replies, BadReplies, Unknown, SendFailed uint64
	// SURBs sent to the exit, used by its replies, expired unused; the
	// exit's requests for more; the exit's last count.
	SURBsSent, SURBsUsed, SURBsExpired, NeedSURBs uint64
	ExitSURBs                                     int
	// IP packets and bytes to the exit (Out) and from it (In); IPDropped
	// packets that did not fit the send queue.
	IPOut, IPIn, BytesOut, BytesIn, IPDropped uint64
	// Pongs from the exit; Reconnects to the entry gateway; Reopens of the
	// exit session.
	Pongs, Reconnects, Reopens uint64
	// ExitTickets spent on the exit gateway (in Opens and Ticket items).
	ExitTickets uint64
	// Medians of the recent round trips: loop packets, acks (fragment sent
	// → ack back), exit pings (queued → pong). Overhead is the median of a
	// ping's round trip less its wait for a send slot (SendWait) and the
	// delays asked of the mixes both ways (MixDelays): the cost of
	// everything but the configured delays.
	LoopRTT, AckRTT, ExitRTT, Overhead, SendWait, MixDelays time.Duration
}

// Stats returns the tunnel's statistics.
func (t *Tunnel) Stats() Stats {
	c := &t.stats
	t.mu.Lock()
	exitSURBs := t.st.exitReported
	t.mu.Unlock()
	return Stats{
		Profile: t.profile.Name,
		Real:    c.real.Load(), Retransmissions: c.retransmissions.Load(), Cover: c.cover.Load(), Loops: c.loops.Load(),
		LoopsBack: c.loopsBack.Load(), Acked: c.acked.Load(), Lost: c.lost.Load(),
		Messages: c.messages.Load(), Replies: c.replies.Load(), BadReplies: c.badReplies.Load(), Unknown: c.unknown.Load(),
		SendFailed: c.sendFailed.Load(),
		SURBsSent:  c.surbsSent.Load(), SURBsUsed: c.surbsUsed.Load(), SURBsExpired: c.surbsExpired.Load(), NeedSURBs: c.needSURBs.Load(),
		ExitSURBs: exitSURBs,
		IPOut:     c.ipOut.Load(), IPIn: c.ipIn.Load(), BytesOut: c.bytesOut.Load(), BytesIn: c.bytesIn.Load(), IPDropped: c.ipDropped.Load(),
		Pongs: c.pongs.Load(), Reconnects: c.reconnects.Load(), Reopens: c.reopens.Load(),
		LoopRTT: c.loopRTT.median(), AckRTT: c.ackRTT.median(), ExitRTT: c.exitRTT.median(),
		Overhead: c.overhead.median(), SendWait: c.sendWait.median(), MixDelays: c.mixDelays.median(),
		ExitTickets: c.exitTickets.Load(),
	}
}

// Samples returns the recent overhead samples (see Stats.Overhead), for
// benchmarks.
func (t *Tunnel) Samples() (exitRTT, overhead []time.Duration) {
	return t.stats.exitRTT.all(), t.stats.overhead.all()
}

// samples keeps the last sampleCount durations.
type samples struct {
	mu   sync.Mutex
	ring []time.Duration
	next int
}

const sampleCount = 512

func (s *samples) add(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ring) < sampleCount {
		s.ring = append(s.ring, d)
		return
	}
	s.ring[s.next] = d
	s.next = (s.next + 1) % sampleCount
}

func (s *samples) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ring)
}

func (s *samples) median() time.Duration {
	v := s.all()
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// currentEpoch is the epoch now in t's timeline.
func currentEpoch(t *directory.Topology, now time.Time) uint64 {
	if t == nil || t.EpochLength <= 0 {
		return 0
	}
	e, _ := directory.EpochAt(now, time.Duration(t.EpochLength))
	return e
}
