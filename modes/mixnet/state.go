package mixnet

import (
	"container/heap"
	"time"

	"github.com/nymvpn/nymvpn/mixnet/ipr"
	"github.com/nymvpn/nymvpn/sphinx"
)

// state is what the sender, the receiver and the health check share, under
// Tunnel.mu.
type state struct {
	welcome ipr.Welcome

	// Sending: control items go first, then IP packets; fragments of a
	// message longer than one go out one per send; fragments in flight
	// wait for their acks in retx, ordered by deadline.
	control  []controlItem
	ipq      [][]byte
	ipqBytes int
	ipqMax   int
	pending  []*fragment
	inflight map[sphinx.SURBID]*fragment // by ack id, every send's
	retx     fragHeap
	nextMsg  uint32

	// SURBs handed to the exit and not used yet, by id, and in the order
	// they were made (for pruning).
	surbs     map[sphinx.SURBID]*surbEntry
	surbOrder []sphinx.SURBID
	// exitReported is what the last reply said the exit holds (-1: no
	// report since the SURBs were reset); sentSince what went out after it.
	exitReported, sentSince int
	// needed is what the exit asked for and has not been sent yet.
	needed int

	reasm ipr.Reassembler
	loops map[sphinx.SURBID]time.Time
	pings map[uint64]*pingEntry
	// nextPing numbers pings; pingQueued is set while one waits to be sent.
	nextPing   uint64
	pingQueued bool
	openQueued bool

	// Paying the exit (Config.Ticket set; exitpay.go): openWanted is an
	// Open waiting for its ticket (openReset: with OpenResetSURBs);
	// exitAllowance what the exit last reported, exitMetered whether it
	// did; exitWants is set while the exit asks for a ticket, exitDry
	// while it drops the session's packets; ticketSent is when the last
	// Ticket item was queued (zero once answered); payErr the last failure
	// to pay, payBackoff and payRetryAt the wait before the next attempt;
	// payMsg is the newest reply message with payment news (payMsgSet once
	// there is one).
	openWanted, openReset  bool
	openTicket             []byte // the last Open's, until the exit answers
	openTicketAt           time.Time
	payMsg                 uint32
	payMsgSet              bool
	exitAllowance          ipr.Allowance
	exitMetered            bool
	exitWants, exitDry     bool
	ticketSent, payRetryAt time.Time
	payErr                 error
	payBackoff             time.Duration

	// Health.
	lastLoop, lastAck, lastPong time.Time
	openedAt                    time.Time
	unhealthySince              time.Time
	fatal                       error
}

// controlItem is an item that goes before IP packets.
type controlItem struct {
	item  []byte
	ping  uint64 // the ping's id, for a Ping
	surbs int    // SURBs to send with it in the same message
	open  bool
}

// fragment is one fragment of a message, from its composition until its
// ack, or until it counts as lost.
type fragment struct {
	msgID        uint32
	index, count uint8
	data         []byte
	sends        int
	due          time.Time
	sentAt       time.Time
	acks         []sphinx.SURBID
	pings        []uint64
	hidx         int // index in retx, -1 when not there
	done         bool
}

type surbEntry struct {
	keys    *sphinx.SURBKeys
	epoch   uint64
	delays  time.Duration
	created time.Time
}

type pingEntry struct {
	queued, sent time.Time
	delays       time.Duration // of the packet that carried it
	resent       bool
}

func (s *state) init(p Profile) {
	s.inflight = map[sphinx.SURBID]*fragment{}
	s.surbs = map[sphinx.SURBID]*surbEntry{}
	s.loops = map[sphinx.SURBID]time.Time{}
	s.pings = map[uint64]*pingEntry{}
	s.exitReported = -1
	s.nextMsg = 1
	// Half a second of the stream's packets, or 512 packets unpaced: a
	// longer queue only adds delay that TCP mistakes for a slow path.
	s.ipqMax = 512
	if p.SendInterval > 0 {
		s.ipqMax = max(16, int(500*time.Millisecond/p.SendInterval))
	}
}

// surbDeficit is how many SURBs the exit should get now to hold target.
func (s *state) surbDeficit(target int) int {
	est := len(s.surbs)
	if s.exitReported >= 0 {
		est = min(est, s.exitReported+s.sentSince)
	}
	return max(target-est, s.needed, 0)
}

// addSURBs records SURBs handed to the exit.
func (s *state) addSURBs(es map[sphinx.SURBID]*surbEntry, target int) {
	for id, e := range es {
		s.surbs[id] = e
		s.surbOrder = append(s.surbOrder, id)
	}
	s.sentSince += len(es)
	s.needed = max(0, s.needed-len(es))
	// Replies lost in the mixnet leave their SURBs here: keep at most
	// 4 × target, forgetting the oldest.
	for len(s.surbOrder) > 4*target+64 {
		delete(s.surbs, s.surbOrder[0])
		s.surbOrder = s.surbOrder[1:]
	}
	if cap(s.surbOrder) > 8*len(s.surbOrder)+1024 {
		s.surbOrder = append([]sphinx.SURBID(nil), s.surbOrder...)
	}
}

// resetSURBs starts counting the exit's SURBs from zero: it is told to drop
// them. Their keys stay: a message sent before the reset and retransmitted
// may still bring SURBs the exit keeps and uses; SURBs that never come back
// are pruned with the oldest.
func (s *state) resetSURBs() {
	s.exitReported, s.sentSince, s.needed = 0, 0, 0
}

// fragHeap orders fragments in flight by their retransmission deadline.
type fragHeap []*fragment

func (h fragHeap) Len() int           { return len(h) }
func (h fragHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h fragHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *fragHeap) Push(x any) {
	f := x.(*fragment)
	f.hidx = len(*h)
	*h = append(*h, f)
}
func (h *fragHeap) Pop() any {
	old := *h
	f := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	f.hidx = -1
	return f
}

func (h *fragHeap) remove(f *fragment) {
	if f.hidx >= 0 && f.hidx < len(*h) && (*h)[f.hidx] == f {
		heap.Remove(h, f.hidx)
	}
}
