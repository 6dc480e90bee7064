package iprouter

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/mixnet/ipr"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/gateway"
	"github.com/nymvpn/nymvpn/node/mixnode"
	"github.com/nymvpn/nymvpn/sphinx"
)

const epochLength = time.Hour

// harness is a router whose Forward hands packets to the test: acks as they
// are, replies unwrapped by the one-hop "gateway" the test's SURBs route
// through and decrypted with the SURB keys.
type harness struct {
	t       *testing.T
	r       *Router
	node    *sphinx.Node
	nodeID  sphinx.NodeID
	nodePub sphinx.PublicKey
	now     atomic.Int64 // unix nanoseconds of the router's clock

	mu      sync.Mutex
	keys    map[sphinx.SURBID]*sphinx.SURBKeys
	acks    int
	replies chan ipr.ReplyFragment
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	k, err := sphinx.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	node, err := sphinx.NewNode(k)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, node: node, nodePub: k.Public(), nodeID: sphinx.NodeID{7}, keys: map[sphinx.SURBID]*sphinx.SURBKeys{},
		replies: make(chan ipr.ReplyFragment, 64)}
	h.now.Store(time.Now().UnixNano())
	cfg := Config{
		Forward: h.forward, EpochLength: epochLength, FlushDelay: -1,
		Policy: gateway.ExitPolicy{AllowLoopback: true}, Now: h.clock, Logger: slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	h.r, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.r.Close() })
	return h
}

func (h *harness) clock() time.Time { return time.Unix(0, h.now.Load()) }

func (h *harness) epoch() uint64 {
	e, _ := directory.EpochAt(h.clock(), epochLength)
	return e
}

func (h *harness) forward(next sphinx.NodeID, epoch uint64, pkt []byte) bool {
	if len(pkt) == sphinx.AckGeometry().PacketLength {
		h.mu.Lock()
		h.acks++
		h.mu.Unlock()
		return true
	}
	res, err := h.node.Unwrap(bytes.Clone(pkt), nil)
	if err != nil || !res.Final || !res.IsReply {
		h.t.Errorf("reply packet: %v %+v", err, res)
		return false
	}
	h.mu.Lock()
	keys := h.keys[res.SURBID]
	h.mu.Unlock()
	msg, err := sphinx.RegularGeometry().DecryptReply(keys, res.Payload)
	if err != nil {
		h.t.Errorf("decrypt reply: %v", err)
		return false
	}
	f, err := ipr.ParseReply(msg)
	if err != nil {
		h.t.Errorf("reply fragment: %v", err)
		return false
	}
	f.Data = bytes.Clone(f.Data)
	h.replies <- f
	return true
}

// surbs makes n SURB items for epoch.
func (h *harness) surbs(n int, epoch uint64) []byte {
	var out []byte
	for range n {
		var id sphinx.SURBID
		rand.Read(id[:])
		sb, keys, err := sphinx.RegularGeometry().NewSURB(rand.Reader, []sphinx.Hop{{ID: h.nodeID, PublicKey: h.nodePub}},
			&sphinx.Destination{SURBID: id})
		if err != nil {
			h.t.Fatal(err)
		}
		h.mu.Lock()
		h.keys[id] = keys
		h.mu.Unlock()
		out = ipr.AppendItem(out, ipr.KindSURB, (&mixnet.SURB{Epoch: epoch, SURB: sb}).Bytes())
	}
	return out
}

// send delivers msg as message id of tag's session, in fragments.
func (h *harness) send(tag ipr.Tag, id uint32, msg []byte) {
	h.t.Helper()
	parts, err := ipr.Split(msg, ipr.ForwardData)
	if err != nil {
		h.t.Fatal(err)
	}
	for i, p := range parts {
		b, err := ipr.AppendForward(nil, &ipr.ForwardFragment{
			Ack: ipr.SURBAck{FirstHop: h.nodeID, Epoch: h.epoch(), Packet: make([]byte, sphinx.AckGeometry().PacketLength)},
			Tag: tag, MsgID: id, Index: uint8(i), Count: uint8(len(parts)), Data: p,
		})
		if err != nil {
			h.t.Fatal(err)
		}
		h.r.Deliver(&mixnode.Delivery{Epoch: h.epoch(), Payload: b})
	}
}

// reply waits for the next reply and returns its items by kind.
func (h *harness) reply() (ipr.ReplyFragment, map[ipr.Kind][]byte) {
	h.t.Helper()
	select {
	case f := <-h.replies:
		items := map[ipr.Kind][]byte{}
		for rest := f.Data; len(rest) > 0; {
			k, body, next, err := ipr.NextItem(rest)
			if err != nil {
				h.t.Fatal(err)
			}
			items[k], rest = body, next
		}
		return f, items
	case <-time.After(30 * time.Second):
		h.t.Fatal("no reply from the router")
	}
	return ipr.ReplyFragment{}, nil
}

func (h *harness) open(tag ipr.Tag, id uint32, o *ipr.Open, surbs int) ipr.Welcome {
	h.t.Helper()
	h.send(tag, id, append(ipr.AppendOpen(nil, o), h.surbs(surbs, h.epoch())...))
	_, items := h.reply()
	w, err := ipr.ParseWelcome(items[ipr.KindWelcome])
	if err != nil {
		h.t.Fatalf("welcome: %v (items %v)", err, items)
	}
	return w
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSessions: an Open (several fragments with its SURBs) gets addresses
// and an ack per fragment; a second client the next pair; a Ping a Pong
// that counts the SURBs left; Close frees the addresses, which a resumed
// session may ask for again.
func TestSessions(t *testing.T) {
	h := newHarness(t, nil)
	a, b := ipr.Tag{1}, ipr.Tag{2}
	wa := h.open(a, 1, &ipr.Open{}, 10)
	if wa.IPv4 != netip.MustParseAddr("10.0.0.2") || wa.IPv6 != netip.MustParseAddr("fc00::2") ||
		wa.Router4 != netip.MustParseAddr("10.0.0.1") || wa.MTU != DefaultMTU {
		t.Fatalf("welcome %+v", wa)
	}
	if st := h.r.Stats(); st.Fragments < 3 || st.Acks != st.Fragments || st.Messages != 1 {
		t.Errorf("an Open with 10 SURBs: %+v", st)
	}
	wb := h.open(b, 1, &ipr.Open{}, 4)
	if wb.IPv4 != netip.MustParseAddr("10.0.0.3") {
		t.Fatalf("second client got %v", wb.IPv4)
	}
	// Open again: the same addresses.
	if w := h.open(a, 2, &ipr.Open{}, 1); w.IPv4 != wa.IPv4 {
		t.Fatalf("a repeated Open gave %v", w.IPv4)
	}
	h.send(a, 3, ipr.AppendU64(nil, ipr.KindPing, 42))
	f, items := h.reply()
	if v, _ := ipr.ParseU64(items[ipr.KindPong]); v != 42 {
		t.Fatalf("pong %v", items)
	}
	// 10 + 1 SURBs, 3 used (welcome, welcome, pong).
	if f.SURBsLeft != 8 {
		t.Errorf("SURBs left %d, want 8", f.SURBsLeft)
	}
	h.send(a, 4, ipr.AppendItem(nil, ipr.KindClose))
	waitFor(t, "the session to close", func() bool { return h.r.Stats().Sessions == 1 })
	// A new session may take the freed pair back by asking for it.
	if w := h.open(ipr.Tag{3}, 1, &ipr.Open{Want4: wa.IPv4, Want6: wa.IPv6}, 2); w.IPv4 != wa.IPv4 || w.IPv6 != wa.IPv6 {
		t.Errorf("wanted %v, got %v", wa.IPv4, w.IPv4)
	}
	// Wanting another client's pair gets a free one.
	if w := h.open(ipr.Tag{4}, 1, &ipr.Open{Want4: wb.IPv4, Want6: wb.IPv6}, 2); w.IPv4 == wb.IPv4 {
		t.Errorf("got another session's address %v", w.IPv4)
	}
	// Fragments that come twice (a lost ack) are taken once.
	h.send(b, 2, ipr.AppendU64(nil, ipr.KindPing, 1))
	h.reply()
	h.send(b, 2, ipr.AppendU64(nil, ipr.KindPing, 1))
	waitFor(t, "the duplicate", func() bool { return h.r.Stats().Duplicates == 1 })
	if st := h.r.Stats(); st.Pings != 2 {
		t.Errorf("pings answered %d, want 2 (no answer to the duplicate)", st.Pings)
	}
}

// TestUnknownSession: data for a tag the router does not know (it
// restarted) is answered with ErrUnknownSession through a SURB that came
// with it.
func TestUnknownSession(t *testing.T) {
	h := newHarness(t, nil)
	h.send(ipr.Tag{9}, 77, append(ipr.AppendU64(nil, ipr.KindPing, 1), h.surbs(1, h.epoch())...))
	_, items := h.reply()
	code, _, err := ipr.ParseError(items[ipr.KindError])
	if err != nil || code != ipr.ErrUnknownSession {
		t.Fatalf("error item %v: %v", items, err)
	}
	if st := h.r.Stats(); st.Unknown != 1 || st.Pings != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestSURBEpochs: SURBs older than the previous epoch are dropped when
// they come and when they would be used; NeedSURBs goes out from the
// reserve when data has none left.
func TestSURBEpochs(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.SURBReserve = 1 })
	tag := ipr.Tag{5}
	h.open(tag, 1, &ipr.Open{}, 3) // 3 SURBs, one used by the Welcome
	cur := h.epoch()
	h.send(tag, 2, h.surbs(2, cur-2)) // dead on arrival
	waitFor(t, "dead SURBs dropped", func() bool { return h.r.Stats().SURBsExpired == 2 })
	// Two epochs later the session's SURBs are dead too.
	h.now.Add(int64(2 * epochLength))
	h.send(tag, 3, append(ipr.AppendU64(nil, ipr.KindPing, 1), h.surbs(1, h.epoch())...))
	f, items := h.reply()
	if _, ok := items[ipr.KindPong]; !ok || f.SURBsLeft != 0 {
		t.Fatalf("pong through the fresh SURB: %v, %d left", items, f.SURBsLeft)
	}
	if st := h.r.Stats(); st.SURBsExpired != 4 {
		t.Errorf("%d SURBs expired, want 4", st.SURBsExpired)
	}
}

// TestSpoofedSource: IP packets must come from the session's own addresses.
func TestSpoofedSource(t *testing.T) {
	h := newHarness(t, nil)
	tag := ipr.Tag{6}
	w := h.open(tag, 1, &ipr.Open{}, 2)
	pkt := func(src netip.Addr) []byte {
		b := make([]byte, 28)
		b[0], b[9] = 0x45, 17 // IPv4, UDP
		binary.BigEndian.PutUint16(b[2:], 28)
		copy(b[12:16], src.AsSlice())
		copy(b[16:20], netip.MustParseAddr("127.0.0.1").AsSlice())
		return b
	}
	h.send(tag, 2, ipr.AppendItem(nil, ipr.KindIP, pkt(netip.MustParseAddr("10.0.0.99"))))
	h.send(tag, 3, ipr.AppendItem(nil, ipr.KindIP, pkt(w.IPv4)))
	waitFor(t, "both packets", func() bool { st := h.r.Stats(); return st.Spoofed == 1 && st.IPIn == 1 })
}

// TestIdleSessionsFreed: a session that sends nothing for IdleTimeout is
// freed with its addresses.
func TestIdleSessionsFreed(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.IdleTimeout = 100 * time.Millisecond })
	h.open(ipr.Tag{8}, 1, &ipr.Open{}, 1)
	h.now.Add(int64(time.Second))
	waitFor(t, "the idle session to be freed", func() bool { st := h.r.Stats(); return st.Sessions == 0 && st.FreedIdle == 1 })
	if w := h.open(ipr.Tag{9}, 1, &ipr.Open{}, 1); w.IPv4 != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("the freed address was not given again: %v", w.IPv4)
	}
}

// FuzzMessage feeds arbitrary messages to a session, as any sender on the
// mixnet can: the router must not panic, and keeps its bounds. Messages of
// odd length go to a router that takes tickets (those starting with "good"
// buy 3000 bytes).
func FuzzMessage(f *testing.F) {
	f.Add(ipr.AppendOpen(nil, &ipr.Open{Hold: 10}))
	f.Add(ipr.AppendU64(ipr.AppendItem(nil, ipr.KindIP, []byte{0x45, 0, 0, 20}), ipr.KindPing, 3))
	f.Add(ipr.AppendItem(ipr.AppendItem(nil, ipr.KindSURB, make([]byte, mixnet.SURBLength(sphinx.RegularGeometry()))), ipr.KindClose))
	f.Add([]byte{3, 0, 21})
	f.Add(ipr.AppendTicket(ipr.AppendOpen(nil, &ipr.Open{Ticket: []byte("good")}), []byte("good")))
	f.Add(ipr.AppendItem(ipr.AppendTicket(ipr.AppendOpen(nil, &ipr.Open{Ticket: []byte("bad")}), []byte("x")), ipr.KindIP, []byte{0x45, 0, 0, 20}))
	var routers [2]*Router
	for i := range routers {
		cfg := Config{Forward: func(sphinx.NodeID, uint64, []byte) bool { return true }, EpochLength: epochLength,
			FlushDelay: -1, Logger: slog.New(slog.DiscardHandler)}
		if i == 1 {
			cfg.Pay = func(ticket []byte) (int64, int64, error) {
				if bytes.HasPrefix(ticket, []byte("good")) {
					return 3000, 1000, nil
				}
				return 0, 0, errors.New("refused")
			}
		}
		r, err := New(cfg)
		if err != nil {
			f.Fatal(err)
		}
		defer r.Close()
		routers[i] = r
	}
	var id atomic.Uint32
	f.Fuzz(func(t *testing.T, msg []byte) {
		r := routers[len(msg)%2]
		s := r.session(ipr.Tag{byte(len(msg))}, time.Now())
		if s == nil {
			return
		}
		s.mu.Lock()
		s.message(id.Add(1), msg)
		s.mu.Unlock()
		if st := r.Stats(); st.Sessions > int(r.maxIndex)+1 {
			t.Fatalf("%d sessions", st.Sessions)
		}
	})
}
