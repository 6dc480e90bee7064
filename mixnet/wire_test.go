package mixnet

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/sphinx"
	"github.com/nymvpn/nymvpn/transport"
)

func TestRecordsRoundTrip(t *testing.T) {
	reg, ack := sphinx.RegularGeometry(), sphinx.AckGeometry()
	p1 := bytes.Repeat([]byte{1}, reg.PacketLength)
	p2 := bytes.Repeat([]byte{2}, ack.PacketLength)
	var msg []byte
	msg = AppendPacket(msg, 7, p1)
	msg = AppendSend(msg, sphinx.NodeID{9}, 8, p2)
	msg = AppendHello(msg, sphinx.Recipient{3}, [ProofLength]byte{4})
	msg = AppendRecord(msg, KindWelcome)
	msg = AppendDeliver(msg, &Delivery{Reply: true, SURBID: sphinx.SURBID{5}, Payload: []byte("pay")})
	msg = AppendError(msg, string(bytes.Repeat([]byte{'x'}, 1000)))
	if len(msg) != PacketRecordLength(p1)+RecordHeaderLength+32+8+len(p2)+RecordHeaderLength+64+RecordHeaderLength+
		DeliverRecordLength([]byte("pay"))+RecordHeaderLength+MaxErrorText {
		t.Fatalf("message of %d bytes", len(msg))
	}
	var kinds []Kind
	for rest := msg; len(rest) > 0; {
		k, body, r, err := NextRecord(rest)
		if err != nil {
			t.Fatal(err)
		}
		rest = r
		kinds = append(kinds, k)
		switch k {
		case KindPacket:
			e, p, err := ParsePacket(body)
			if err != nil || e != 7 || !bytes.Equal(p, p1) {
				t.Errorf("packet: %d %v", e, err)
			}
		case KindSend:
			f, e, p, err := ParseSend(body)
			if err != nil || f != (sphinx.NodeID{9}) || e != 8 || !bytes.Equal(p, p2) {
				t.Errorf("send: %v", err)
			}
		case KindHello:
			r, pr, err := ParseHello(body)
			if err != nil || r != (sphinx.Recipient{3}) || pr != ([ProofLength]byte{4}) {
				t.Errorf("hello: %v", err)
			}
		case KindDeliver:
			d, err := ParseDeliver(body)
			if err != nil || !d.Reply || d.SURBID != (sphinx.SURBID{5}) || string(d.Payload) != "pay" {
				t.Errorf("deliver: %+v %v", d, err)
			}
		case KindError:
			if len(body) != MaxErrorText {
				t.Errorf("error text of %d bytes", len(body))
			}
		}
	}
	if fmt.Sprint(kinds) != "[packet send hello welcome deliver error]" {
		t.Errorf("kinds %v", kinds)
	}
	// Malformed bodies.
	for name, err := range map[string]error{
		"short header": func() error { _, _, _, err := NextRecord([]byte{1, 0}); return err }(),
		"long length":  func() error { _, _, _, err := NextRecord([]byte{1, 0, 5, 0}); return err }(),
		"packet size":  func() error { _, _, err := ParsePacket(make([]byte, 8+100)); return err }(),
		"send size":    func() error { _, _, _, err := ParseSend(make([]byte, 40+reg.PacketLength-1)); return err }(),
		"hello size":   func() error { _, _, err := ParseHello(make([]byte, 63)); return err }(),
		"deliver flag": func() error { _, err := ParseDeliver(append([]byte{2}, make([]byte, 16)...)); return err }(),
		"deliver long": func() error { _, err := ParseDeliver(make([]byte, 17+reg.PayloadLength+1)); return err }(),
	} {
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestHelloProof(t *testing.T) {
	gw, _ := transport.GenerateKey()
	cl, _ := transport.GenerateKey()
	hash := []byte("handshake hash")
	proof, err := HelloProof(cl, gw.Public(), hash)
	if err != nil {
		t.Fatal(err)
	}
	if !VerifyHello(gw, Recipient(cl), hash, proof) {
		t.Fatal("valid proof refused")
	}
	other, _ := transport.GenerateKey()
	if VerifyHello(gw, Recipient(other), hash, proof) {
		t.Error("proof accepted for another recipient")
	}
	if VerifyHello(gw, Recipient(cl), []byte("other channel"), proof) {
		t.Error("proof accepted on another channel")
	}
	if VerifyHello(gw, sphinx.Recipient{}, hash, proof) {
		t.Error("low-order recipient accepted")
	}
}

func TestSURBEncoding(t *testing.T) {
	g := sphinx.AckGeometry()
	k, _ := sphinx.GenerateKey(rand.Reader)
	s, _, err := g.NewSURB(rand.Reader, []sphinx.Hop{{ID: sphinx.NodeID{1}, PublicKey: k.Public()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := (&SURB{Epoch: 42, SURB: s}).Bytes()
	if len(b) != SURBLength(g) {
		t.Fatalf("%d bytes", len(b))
	}
	back, err := ParseSURB(g, b)
	if err != nil || back.Epoch != 42 || !bytes.Equal(back.SURB.Bytes(), s.Bytes()) {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := ParseSURB(g, b[:10]); !errors.Is(err, ErrMalformed) {
		t.Errorf("short SURB: %v", err)
	}
}

func testTopology(t testing.TB, perLayer int) *directory.Topology {
	epoch, start := directory.EpochAt(time.Now(), time.Hour)
	top := &directory.Topology{Epoch: epoch, EpochStart: start, EpochLength: directory.Duration(time.Hour)}
	for i := range 3 * perLayer {
		k, _ := sphinx.GenerateKey(rand.Reader)
		nk, _ := transport.GenerateKey()
		top.Nodes = append(top.Nodes, directory.Node{ID: fmt.Sprintf("mix-%d", i), Roles: []directory.Role{directory.RoleMixnode},
			NoiseKey: directory.Key32(nk.Public()), MixAddr: "127.0.0.1:1", Layer: i%3 + 1,
			SphinxKeys: []directory.SphinxKey{{Epoch: epoch, PublicKey: directory.Key32(k.Public())}}})
	}
	return top
}

func TestRoutes(t *testing.T) {
	top := testTopology(t, 2)
	layers, err := Mixes(top, top.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	if got := probeRoutes(&layers, RoutesAuto); len(got) != 8 {
		t.Errorf("auto on 2×2×2: %d routes, want all 8", len(got))
	}
	cover := probeRoutes(&layers, RoutesCover)
	if len(cover) != 2 {
		t.Errorf("cover on 2×2×2: %d routes", len(cover))
	}
	seen := map[string]bool{}
	for _, r := range cover {
		for l, n := range r {
			if n.Layer != l+1 {
				t.Errorf("%s in position %d is in layer %d", n.ID, l, n.Layer)
			}
			seen[n.ID] = true
		}
	}
	if len(seen) != 6 {
		t.Errorf("cover crosses %d of 6 mixes", len(seen))
	}
	big := testTopology(t, 5) // 125 routes: auto covers
	bl, _ := Mixes(big, big.Epoch)
	if got := probeRoutes(&bl, RoutesAuto); len(got) != 5 {
		t.Errorf("auto on 5×5×5: %d routes", len(got))
	}
	var kc KeyCache
	hops, err := kc.Hops(cover[0], top.Epoch)
	if err != nil || len(hops) != 3 || hops[0].ID != NodeID(&cover[0][0]) {
		t.Fatalf("hops: %v", err)
	}
	if _, err := kc.Hops(cover[0], top.Epoch+5); !errors.Is(err, ErrNoRoute) {
		t.Errorf("no key for the epoch: %v", err)
	}
	top.Nodes = top.Nodes[:2]
	if _, err := Mixes(top, top.Epoch); !errors.Is(err, ErrNoRoute) {
		t.Errorf("empty layer: %v", err)
	}
}

func TestRouteEpoch(t *testing.T) {
	top := testTopology(t, 1)
	if e := RouteEpoch(top, top.EpochStart.Add(time.Minute)); e != top.Epoch {
		t.Errorf("same epoch: %d", e)
	}
	if e := RouteEpoch(top, top.EpochStart.Add(time.Hour+time.Minute)); e != top.Epoch+1 {
		t.Errorf("next epoch: %d", e)
	}
	if e := RouteEpoch(top, top.EpochStart.Add(5*time.Hour)); e != top.Epoch {
		t.Errorf("far ahead: %d", e)
	}
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	m, p, mx := percentiles(d)
	if m != 50 || p != 95 || mx != 100 {
		t.Errorf("%v %v %v", m, p, mx)
	}
	if m, p, mx := percentiles(nil); m != 0 || p != 0 || mx != 0 {
		t.Error("empty")
	}
	if m, p, _ := percentiles([]time.Duration{7}); m != 7 || p != 7 {
		t.Error("one")
	}
}

func TestExpDelay(t *testing.T) {
	r, _ := NewRand(rand.Reader)
	var sum time.Duration
	const n = 20000
	for range n {
		d := ExpDelay(r, 10*time.Millisecond, time.Second)
		if d < 0 || d > time.Second {
			t.Fatalf("delay %v", d)
		}
		sum += d
	}
	if mean := sum / n; mean < 9*time.Millisecond || mean > 11*time.Millisecond {
		t.Errorf("mean %v, want about 10ms", mean)
	}
	if ExpDelay(r, 0, time.Second) != 0 {
		t.Error("zero mean")
	}
}

// FuzzRecords parses arbitrary messages as a gateway and a client would.
func FuzzRecords(f *testing.F) {
	f.Add(AppendPacket(nil, 1, make([]byte, sphinx.AckGeometry().PacketLength)))
	f.Add(AppendHello(nil, sphinx.Recipient{1}, [ProofLength]byte{2}))
	f.Add(AppendDeliver(nil, &Delivery{Payload: []byte("x")}))
	f.Add([]byte{2, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, msg []byte) {
		total := 0
		for rest := msg; len(rest) > 0; {
			k, body, r, err := NextRecord(rest)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatal(err)
				}
				return
			}
			if len(r) >= len(rest) {
				t.Fatal("no progress")
			}
			total += RecordHeaderLength + len(body)
			rest = r
			switch k {
			case KindPacket:
				if _, p, err := ParsePacket(body); err == nil && !PacketLengthOK(len(p)) {
					t.Fatal("bad packet accepted")
				}
			case KindSend:
				if _, _, p, err := ParseSend(body); err == nil && !PacketLengthOK(len(p)) {
					t.Fatal("bad packet accepted")
				}
			case KindHello:
				ParseHello(body)
			case KindDeliver:
				if d, err := ParseDeliver(body); err == nil {
					re := AppendDeliver(nil, &d)
					if !bytes.Equal(re[RecordHeaderLength:], body) {
						t.Fatal("deliver does not round-trip")
					}
				}
			}
		}
		if total != len(msg) {
			t.Fatalf("records cover %d of %d bytes", total, len(msg))
		}
	})
}
