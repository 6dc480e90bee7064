package ipr

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/sphinx"
)

func TestSizes(t *testing.T) {
	if SURBAckLength != sphinx.NodeIDLength+8+sphinx.AckGeometry().PacketLength {
		t.Fatalf("SURBAckLength %d does not match the ack geometry (%d-byte packets)", SURBAckLength, sphinx.AckGeometry().PacketLength)
	}
	if ForwardData != 1599 || ReplyData != 2039 {
		t.Fatalf("ForwardData %d, ReplyData %d", ForwardData, ReplyData)
	}
	// A full 1500-byte IP packet fits one forward fragment, with room
	// for a TCP ACK beside it.
	if ItemLength(1500)+ItemLength(52) > ForwardData {
		t.Fatal("an MTU-sized packet and an ACK do not fit one forward fragment")
	}
}

func testFragment() *ForwardFragment {
	ack := bytes.Repeat([]byte{7}, sphinx.AckGeometry().PacketLength)
	return &ForwardFragment{Ack: SURBAck{FirstHop: sphinx.NodeID{1, 2}, Epoch: 42, Packet: ack}, Tag: Tag{9, 9}, MsgID: 77, Index: 1, Count: 3, Data: []byte("data")}
}

func TestForwardRoundTrip(t *testing.T) {
	f := testFragment()
	b, err := AppendForward(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != ForwardHeaderLength+4 {
		t.Fatalf("%d bytes", len(b))
	}
	g, err := ParseForward(b)
	if err != nil {
		t.Fatal(err)
	}
	if g.Ack.FirstHop != f.Ack.FirstHop || g.Ack.Epoch != 42 || !bytes.Equal(g.Ack.Packet, f.Ack.Packet) || g.Tag != f.Tag ||
		g.MsgID != 77 || g.Index != 1 || g.Count != 3 || string(g.Data) != "data" {
		t.Fatalf("round trip: %+v", g)
	}
	full := *f
	full.Data = make([]byte, ForwardData)
	if b, err := AppendForward(nil, &full); err != nil || len(b) != sphinx.RegularPlaintextLength {
		t.Fatalf("full fragment: %d bytes, %v", len(b), err)
	}
	full.Data = make([]byte, ForwardData+1)
	if _, err := AppendForward(nil, &full); err == nil {
		t.Error("an oversized fragment was encoded")
	}
	bad := *f
	bad.Ack.Packet = bad.Ack.Packet[1:]
	if _, err := AppendForward(nil, &bad); err == nil {
		t.Error("a short ack packet was encoded")
	}
	bad = *f
	bad.Index = 3
	if _, err := AppendForward(nil, &bad); err == nil {
		t.Error("index == count was encoded")
	}
	for name, in := range map[string][]byte{
		"short":   b[:ForwardHeaderLength-1],
		"version": append([]byte{2}, b[1:]...),
		"count 0": func() []byte { c := bytes.Clone(b); c[ForwardHeaderLength-1] = 0; return c }(),
		"long":    append(bytes.Clone(b), make([]byte, sphinx.RegularPlaintextLength)...),
	} {
		if _, err := ParseForward(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestReplyRoundTrip(t *testing.T) {
	f := &ReplyFragment{MsgID: 5, Index: 0, Count: 1, SURBsLeft: 300, Data: []byte("hi")}
	b, err := AppendReply(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseReply(b)
	if err != nil || g.MsgID != 5 || g.Count != 1 || g.SURBsLeft != 300 || string(g.Data) != "hi" {
		t.Fatalf("%+v %v", g, err)
	}
	f.Data = make([]byte, ReplyData+1)
	if _, err := AppendReply(nil, f); err == nil {
		t.Error("oversized reply encoded")
	}
	for name, in := range map[string][]byte{
		"short":   b[:ReplyHeaderLength-1],
		"version": append([]byte{0}, b[1:]...),
		"index":   func() []byte { c := bytes.Clone(b); c[5] = 1; return c }(),
	} {
		if _, err := ParseReply(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestItems(t *testing.T) {
	w := &Welcome{IPv4: netip.MustParseAddr("10.0.0.2"), IPv6: netip.MustParseAddr("fc00::2"),
		Router4: netip.MustParseAddr("10.0.0.1"), Router6: netip.MustParseAddr("fc00::1"), MTU: 1500}
	o := &Open{Flags: OpenResetSURBs, Hold: 100, Bundle: DefaultBundle, Want4: w.IPv4, Want6: w.IPv6, Ticket: []byte("ticket")}
	var msg []byte
	msg = AppendItem(msg, KindIP, []byte{0x45, 0})
	msg = AppendOpen(msg, o)
	msg = AppendOpen(msg, &Open{})
	msg = AppendU64(msg, KindPing, 99)
	msg = AppendWelcome(msg, w)
	msg = AppendNeedSURBs(msg, 12)
	msg = AppendError(msg, ErrUnknownSession, string(bytes.Repeat([]byte("x"), 1000)))
	msg = AppendItem(msg, KindClose)
	msg = AppendTicket(msg, []byte("a ticket"))
	msg = AppendNeedTicket(msg, 1<<40+7)
	msg = AppendAllowance(msg, Allowance{Left: 100 << 20, TopUpAt: 25 << 20})
	var kinds []string
	opens := 0
	for rest := msg; len(rest) > 0; {
		k, body, r, err := NextItem(rest)
		if err != nil {
			t.Fatal(err)
		}
		rest = r
		kinds = append(kinds, k.String())
		switch k {
		case KindOpen:
			got, err := ParseOpen(body)
			if err != nil {
				t.Fatal(err)
			}
			if opens == 0 && (got.Flags != OpenResetSURBs || got.Hold != 100 || got.Bundle != DefaultBundle || got.Want4 != o.Want4 || got.Want6 != o.Want6 || string(got.Ticket) != "ticket") {
				t.Errorf("open: %+v", got)
			}
			if opens == 1 && (got.Want4.IsValid() || got.Want6.IsValid() || got.Ticket != nil) {
				t.Errorf("empty open: %+v", got)
			}
			opens++
		case KindPing:
			if v, err := ParseU64(body); err != nil || v != 99 {
				t.Errorf("ping %d %v", v, err)
			}
		case KindWelcome:
			if got, err := ParseWelcome(body); err != nil || got != *w {
				t.Errorf("welcome %+v %v", got, err)
			}
		case KindNeedSURBs:
			if n, err := ParseNeedSURBs(body); err != nil || n != 12 {
				t.Errorf("need %d %v", n, err)
			}
		case KindError:
			if c, text, err := ParseError(body); err != nil || c != ErrUnknownSession || len(text) != MaxErrorText {
				t.Errorf("error %d %d %v", c, len(text), err)
			}
		case KindTicket:
			if tk, err := ParseTicket(body); err != nil || string(tk) != "a ticket" {
				t.Errorf("ticket %q %v", tk, err)
			}
		case KindNeedTicket:
			if left, err := ParseNeedTicket(body); err != nil || left != 1<<40+7 {
				t.Errorf("need-ticket %d %v", left, err)
			}
		case KindAllowance:
			if a, err := ParseAllowance(body); err != nil || a != (Allowance{Left: 100 << 20, TopUpAt: 25 << 20}) {
				t.Errorf("allowance %+v %v", a, err)
			}
		}
	}
	if fmt.Sprint(kinds) != "[ip open open ping welcome need-surbs error close ticket need-ticket allowance]" {
		t.Errorf("kinds %v", kinds)
	}
	for name, err := range map[string]error{
		"short header":  func() error { _, _, _, err := NextItem([]byte{1, 0}); return err }(),
		"long length":   func() error { _, _, _, err := NextItem([]byte{1, 0, 9, 1}); return err }(),
		"open short":    func() error { _, err := ParseOpen(make([]byte, 24)); return err }(),
		"open flags":    func() error { _, err := ParseOpen(append([]byte{2}, make([]byte, 24)...)); return err }(),
		"open hold":     func() error { _, err := ParseOpen(AppendOpen(nil, &Open{Hold: MaxWait + 1})[3:]); return err }(),
		"open bundle":   func() error { _, err := ParseOpen(AppendOpen(nil, &Open{Bundle: MaxWait + 1})[3:]); return err }(),
		"welcome zero":  func() error { _, err := ParseWelcome(make([]byte, 42)); return err }(),
		"welcome size":  func() error { _, err := ParseWelcome(make([]byte, 41)); return err }(),
		"welcome mtu":   func() error { x := *w; x.MTU = 100; _, err := ParseWelcome(AppendWelcome(nil, &x)[3:]); return err }(),
		"ping size":     func() error { _, err := ParseU64(make([]byte, 7)); return err }(),
		"need size":     func() error { _, err := ParseNeedSURBs(make([]byte, 3)); return err }(),
		"error empty":   func() error { _, _, err := ParseError(nil); return err }(),
		"error too big": func() error { _, _, err := ParseError(make([]byte, 2+MaxErrorText)); return err }(),
		"ticket empty":  func() error { _, err := ParseTicket(nil); return err }(),
		"ticket big":    func() error { _, err := ParseTicket(make([]byte, MaxTicket+1)); return err }(),
		"need-ticket":   func() error { _, err := ParseNeedTicket(make([]byte, 9)); return err }(),
		"allowance":     func() error { _, err := ParseAllowance(make([]byte, 8)); return err }(),
	} {
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct{ n, size, want int }{{0, 10, 1}, {1, 10, 1}, {10, 10, 1}, {11, 10, 2}, {255 * 10, 10, 255}} {
		msg := make([]byte, tc.n)
		for i := range msg {
			msg[i] = byte(i)
		}
		parts, err := Split(msg, tc.size)
		if err != nil || len(parts) != tc.want {
			t.Fatalf("%d/%d: %d parts, %v", tc.n, tc.size, len(parts), err)
		}
		if got := bytes.Join(parts, nil); !bytes.Equal(got, msg) {
			t.Fatalf("%d/%d: parts do not join to the message", tc.n, tc.size)
		}
	}
	if _, err := Split(make([]byte, 2561), 10); err == nil {
		t.Error("a message of 257 fragments was split")
	}
	if _, err := Split(nil, 0); err == nil {
		t.Error("size 0 accepted")
	}
}

func TestReassembler(t *testing.T) {
	now := time.Unix(1000, 0)
	var r Reassembler
	rng := rand.New(rand.NewPCG(1, 2))
	// Messages of 1..5 fragments, fragments shuffled across messages and
	// each sent twice: every message comes out once, whole.
	type frag struct {
		id          uint32
		index, cnt  uint8
		data        []byte
		wantMessage []byte
	}
	var frags []frag
	want := map[uint32][]byte{}
	for id := uint32(1); id <= 300; id++ {
		msg := make([]byte, rng.IntN(50))
		for i := range msg {
			msg[i] = byte(rng.Uint32())
		}
		want[id] = msg
		parts, _ := Split(msg, 10)
		for i, p := range parts {
			frags = append(frags, frag{id, uint8(i), uint8(len(parts)), p, msg})
		}
	}
	frags = append(frags, frags...)
	rng.Shuffle(len(frags), func(i, j int) { frags[i], frags[j] = frags[j], frags[i] })
	got := map[uint32][]byte{}
	dups := 0
	for _, f := range frags {
		msg, dup, err := r.Add(f.id, f.index, f.cnt, f.data, now)
		if err != nil {
			t.Fatal(err)
		}
		if dup {
			dups++
		}
		if msg != nil {
			if _, ok := got[f.id]; ok {
				t.Fatalf("message %d completed twice", f.id)
			}
			got[f.id] = msg
		}
	}
	for id, msg := range want {
		if !bytes.Equal(got[id], msg) {
			t.Fatalf("message %d: got %x, want %x", id, got[id], msg)
		}
	}
	if dups != len(frags)/2 || r.Pending() != 0 {
		t.Errorf("%d duplicates of %d, %d pending", dups, len(frags)/2, r.Pending())
	}
	// A count that changes is malformed.
	if _, _, err := r.Add(1000, 0, 2, nil, now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Add(1000, 1, 3, nil, now); !errors.Is(err, ErrMalformed) {
		t.Errorf("changed count: %v", err)
	}
	// Far ahead: the window moves; old ids are duplicates.
	if msg, _, _ := r.Add(1_000_000, 0, 1, []byte("x"), now); string(msg) != "x" {
		t.Fatal("far id not delivered")
	}
	if _, dup, _ := r.Add(1_000_000-Window, 0, 1, nil, now); !dup {
		t.Error("an id a window behind was delivered")
	}
	if msg, dup, _ := r.Add(1_000_000-Window+1, 0, 1, []byte("y"), now); dup || string(msg) != "y" {
		t.Error("an id inside the window was not delivered")
	}
	if _, dup, _ := r.Add(1_000_000-Window+1, 0, 1, nil, now); !dup {
		t.Error("a repeated id inside the window was delivered")
	}
}

func TestReassemblerShift(t *testing.T) {
	now := time.Unix(0, 0)
	for _, step := range []uint32{1, 63, 64, 65, 127, 1000} {
		var r Reassembler
		var ids []uint32
		for id := uint32(1); id < 3*Window; id += step {
			ids = append(ids, id)
			if _, dup, _ := r.Add(id, 0, 1, nil, now); dup {
				t.Fatalf("step %d: id %d taken for a duplicate", step, id)
			}
		}
		for _, id := range ids {
			if _, dup, _ := r.Add(id, 0, 1, nil, now); !dup {
				t.Fatalf("step %d: id %d delivered twice", step, id)
			}
		}
	}
}

func TestReassemblerLimits(t *testing.T) {
	now := time.Unix(0, 0)
	r := Reassembler{MaxPending: 4, MaxAge: time.Second}
	for id := uint32(1); id <= 10; id++ {
		r.Add(id, 0, 2, []byte{1}, now)
	}
	if r.Pending() != 4 || r.Dropped != 6 {
		t.Fatalf("pending %d, dropped %d", r.Pending(), r.Dropped)
	}
	// The newest survived.
	if msg, _, _ := r.Add(10, 1, 2, []byte{2}, now); !bytes.Equal(msg, []byte{1, 2}) {
		t.Fatalf("newest message lost: %v", msg)
	}
	r.Add(11, 0, 2, nil, now.Add(2*time.Second))
	if r.Pending() != 1 {
		t.Fatalf("old messages not expired: %d pending", r.Pending())
	}
}

func TestReorderer(t *testing.T) {
	now := time.Unix(0, 0)
	r := Reorderer[int]{Hold: time.Second, Max: 4}
	var got []int
	push := func(id uint32) { got = append(got, r.Push(id, int(id), now)...) }
	push(1)
	push(3)
	push(4)
	if fmt.Sprint(got) != "[1]" || r.Held() != 2 {
		t.Fatalf("got %v, held %d", got, r.Held())
	}
	push(2)
	if fmt.Sprint(got) != "[1 2 3 4]" {
		t.Fatalf("got %v", got)
	}
	// A gap that never fills is given up after Hold.
	push(6)
	push(7)
	if d := r.Deadline(); !d.Equal(now.Add(time.Second)) {
		t.Fatalf("deadline %v", d)
	}
	got = append(got, r.Expire(now.Add(999*time.Millisecond))...)
	if len(got) != 4 {
		t.Fatalf("expired early: %v", got)
	}
	got = append(got, r.Expire(now.Add(time.Second))...)
	if fmt.Sprint(got) != "[1 2 3 4 6 7]" || r.Held() != 0 || !r.Deadline().IsZero() {
		t.Fatalf("got %v, held %d", got, r.Held())
	}
	// The missing one, late, still goes.
	push(5)
	if got[len(got)-1] != 5 {
		t.Fatalf("late message held: %v", got)
	}
	// Beyond Max, the oldest gap is given up.
	got = nil
	for _, id := range []uint32{9, 10, 11, 12, 13} {
		push(id)
	}
	if fmt.Sprint(got) != "[9 10 11 12 13]" {
		t.Fatalf("over Max: %v", got)
	}
	// Reset releases what came before and waits from there.
	got = nil
	push(16)
	got = append(got, r.Reset(20)...)
	push(21)
	push(20)
	if fmt.Sprint(got) != "[16 20 21]" {
		t.Fatalf("after reset: %v", got)
	}
}
