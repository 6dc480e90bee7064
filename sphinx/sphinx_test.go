package sphinx

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"testing"
	"time"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	"golang.org/x/crypto/curve25519"
)

func TestGeometrySizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		g    *Geometry
		want Geometry
	}{
		{"regular", RegularGeometry(), Geometry{
			NrHops: 5, PlaintextLength: 2048, PerHopRoutingInfoLength: 60, RoutingInfoLength: 300,
			HeaderLength: 348, PayloadOverhead: 17, PayloadLength: 2065, PacketLength: 2413,
			SURBLength: 412, SURBKeysLength: 210,
		}},
		{"ack", AckGeometry(), Geometry{
			NrHops: 5, PlaintextLength: 21, PerHopRoutingInfoLength: 60, RoutingInfoLength: 300,
			HeaderLength: 348, PayloadOverhead: 17, PayloadLength: 38, PacketLength: 386,
			SURBLength: 412, SURBKeysLength: 210,
		}},
	} {
		if *tc.g != tc.want {
			t.Errorf("%s geometry:\n got %+v\nwant %+v", tc.name, *tc.g, tc.want)
		}
	}
	g, err := NewGeometry(3, 100)
	if err != nil {
		t.Fatal(err)
	}
	if g.HeaderLength != 32+180+16 || g.PacketLength != g.HeaderLength+117 {
		t.Errorf("NewGeometry(3, 100) = %v", g)
	}
	for _, bad := range [][2]int{{0, 2048}, {33, 2048}, {5, 15}, {5, 1<<16 + 1}} {
		if _, err := NewGeometry(bad[0], bad[1]); !errors.Is(err, ErrInvalidGeometry) {
			t.Errorf("NewGeometry(%d, %d): err %v, want ErrInvalidGeometry", bad[0], bad[1], err)
		}
	}
	// The ack SURB must fit a regular packet next to a fragment.
	if AckGeometry().SURBLength > RegularGeometry().PlaintextLength/4 {
		t.Errorf("ack SURB of %d bytes", AckGeometry().SURBLength)
	}
}

func TestPublicKeyMatchesX25519(t *testing.T) {
	r := newDetRand("x25519")
	for i := range 20 {
		var raw, other [32]byte
		r.Read(raw[:])
		r.Read(other[:])
		k, err := NewPrivateKey(raw[:])
		if err != nil {
			t.Fatal(err)
		}
		want, err := curve25519.X25519(raw[:], curve25519.Basepoint)
		if err != nil {
			t.Fatal(err)
		}
		if pk := k.Public(); !bytes.Equal(pk[:], want) {
			t.Fatalf("%d: public key %x, X25519 %x", i, pk, want)
		}
		if !bytes.Equal(k.Bytes(), raw[:]) {
			t.Fatalf("Bytes() does not round-trip")
		}
		// The node-side DH equals X25519.
		peer, _ := curve25519.X25519(other[:], curve25519.Basepoint)
		want, _ = curve25519.X25519(raw[:], peer)
		var got [32]byte
		ladder(&got, &k.clamped, 255, (*[32]byte)(peer))
		if !bytes.Equal(got[:], want) {
			t.Fatalf("%d: ladder %x, X25519 %x", i, got, want)
		}
	}
	if _, err := NewPrivateKey(make([]byte, 31)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("short private key: %v", err)
	}
	if _, err := GenerateKey(bytes.NewReader(make([]byte, 5))); !errors.Is(err, ErrRandom) {
		t.Errorf("short randomness: %v", err)
	}
}

// The ladder with an unclamped scalar agrees with edwards25519.
func TestLadderUnclamped(t *testing.T) {
	r := newDetRand("ladder")
	for i := range 20 {
		var w [64]byte
		r.Read(w[:])
		k, _ := new(edwards25519.Scalar).SetUniformBytes(w[:])
		r.Read(w[:])
		p, _ := new(edwards25519.Scalar).SetUniformBytes(w[:])
		P := new(edwards25519.Point).ScalarBaseMult(p)
		want := new(edwards25519.Point).ScalarMult(k, P).BytesMontgomery()
		var u, kb, got [32]byte
		copy(u[:], P.BytesMontgomery())
		copy(kb[:], k.Bytes())
		ladder(&got, &kb, 253, &u)
		if !bytes.Equal(got[:], want) {
			t.Fatalf("%d: ladder %x, edwards25519 %x", i, got, want)
		}
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Low-order points of Curve25519 (Montgomery u), canonical encodings.
var lowOrderU = []string{
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0100000000000000000000000000000000000000000000000000000000000000",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

// torsioned returns P+T for P = r*G and T a point of order 8.
func torsioned(t *testing.T, r *edwards25519.Scalar) (clean, dirty PublicKey) {
	t.Helper()
	// A point of order 8 on edwards25519.
	T, err := new(edwards25519.Point).SetBytes(mustHex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"))
	if err != nil {
		t.Fatal(err)
	}
	P := new(edwards25519.Point).ScalarBaseMult(r)
	copy(clean[:], P.BytesMontgomery())
	copy(dirty[:], new(edwards25519.Point).Add(P, T).BytesMontgomery())
	return clean, dirty
}

// twistPoint returns a u-coordinate on the quadratic twist.
func twistPoint(t *testing.T) PublicKey {
	t.Helper()
	var A, one field.Element
	A.Mult32(one.One(), 486662)
	for v := uint32(2); v < 100; v++ {
		var u, u2, rhs, tmp field.Element
		u.Mult32(&one, v)
		u2.Square(&u)
		rhs.Multiply(&u2, &u) // u^3
		tmp.Multiply(&A, &u2) // A u^2
		rhs.Add(&rhs, &tmp)   //
		rhs.Add(&rhs, &u)     // + u
		_, sq := new(field.Element).SqrtRatio(&rhs, &one)
		if sq == 0 {
			var pk PublicKey
			copy(pk[:], u.Bytes())
			return pk
		}
	}
	t.Fatal("no twist point found")
	return PublicKey{}
}

func TestParsePublicKey(t *testing.T) {
	k, _ := GenerateKey(newDetRand("parse"))
	pk := k.Public()
	if got, err := ParsePublicKey(pk[:]); err != nil || got != pk {
		t.Fatalf("valid key: %v", err)
	}
	for _, h := range lowOrderU {
		if _, err := ParsePublicKey(mustHex(h)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("low-order %s accepted: %v", h, err)
		}
	}
	for _, h := range []string{
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p+1
		"0900000000000000000000000000000000000000000000000000000000000080", // top bit set
	} {
		if _, err := ParsePublicKey(mustHex(h)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("non-canonical %s accepted: %v", h, err)
		}
	}
	clean, dirty := torsioned(t, scalarFromUint(12345))
	if _, err := ParsePublicKey(clean[:]); err != nil {
		t.Errorf("prime-order point rejected: %v", err)
	}
	if _, err := ParsePublicKey(dirty[:]); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("point with torsion accepted: %v", err)
	}
	tw := twistPoint(t)
	if _, err := ParsePublicKey(tw[:]); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("twist point %x accepted: %v", tw, err)
	}
	if _, err := ParsePublicKey(pk[:31]); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("short key accepted: %v", err)
	}
}

// The subgroup check scalar k = 8*(8^-1 mod l) is neither 1 nor -1 modulo
// the prime part l' of the twist's order 4*l', so no twist point of large
// order passes ParsePublicKey.
func TestSubgroupCheckScalarVsTwist(t *testing.T) {
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	twist := new(big.Int).Sub(new(big.Int).Mul(big.NewInt(2), new(big.Int).Add(p, big.NewInt(1))), new(big.Int).Mul(big.NewInt(8), l))
	lt := new(big.Int).Div(twist, big.NewInt(4))
	if new(big.Int).Mul(lt, big.NewInt(4)).Cmp(twist) != 0 || !lt.ProbablyPrime(32) {
		t.Fatalf("twist order %v is not 4 * prime", twist)
	}
	kb := make([]byte, 32)
	for i := range kb {
		kb[i] = subgroupCheckScalar[31-i]
	}
	k := new(big.Int).SetBytes(kb)
	if new(big.Int).Mod(k, l).Cmp(big.NewInt(1)) != 0 || new(big.Int).Mod(k, big.NewInt(8)).Sign() != 0 {
		t.Fatalf("k = %v is not 1 mod l and 0 mod 8", k)
	}
	for _, d := range []int64{1, -1} {
		if new(big.Int).Mod(new(big.Int).Sub(k, big.NewInt(d)), lt).Sign() == 0 {
			t.Fatalf("k = %d mod l'", d)
		}
	}
}

func TestRoundTripAllLengths(t *testing.T) {
	for _, g := range []*Geometry{RegularGeometry(), AckGeometry()} {
		for hops := 1; hops <= g.NrHops; hops++ {
			t.Run(fmt.Sprintf("%d-byte/%d-hops", g.PacketLength, hops), func(t *testing.T) {
				nodes, route := testRoute(t, fmt.Sprintf("rt%d", hops), hops)
				msg := make([]byte, g.PlaintextLength)
				newDetRand("msg").Read(msg)
				dest := &Destination{Recipient: Recipient{1, 2, 3}, SURBID: SURBID{9, 8, 7}}
				pkt, err := g.NewPacket(newDetRand("pkt"), route, dest, msg)
				if err != nil {
					t.Fatal(err)
				}
				if len(pkt) != g.PacketLength {
					t.Fatalf("packet of %d bytes, want %d", len(pkt), g.PacketLength)
				}
				res := walk(t, nodes, route, pkt)
				if res.IsReply || res.Recipient != dest.Recipient || res.SURBID != dest.SURBID {
					t.Fatalf("final: %+v", res)
				}
				if !bytes.Equal(res.Payload, msg) {
					t.Fatalf("payload mismatch")
				}
			})
		}
	}
}

func TestMessageSizes(t *testing.T) {
	g := RegularGeometry()
	nodes, route := testRoute(t, "sizes", RouteHops)
	for _, msg := range [][]byte{
		nil, {0}, {1}, {0, 0, 1, 0}, []byte("hello"),
		bytes.Repeat([]byte{0}, g.PlaintextLength),
		bytes.Repeat([]byte{1}, g.PlaintextLength-1),
	} {
		pkt, err := g.NewPacket(newDetRand("sizes"), route, nil, msg)
		if err != nil {
			t.Fatal(err)
		}
		res := walk(t, nodes, route, pkt)
		if !bytes.Equal(res.Payload, msg) || len(res.Payload) != len(msg) {
			t.Fatalf("message of %d bytes came back as %d bytes", len(msg), len(res.Payload))
		}
	}
	_, err := g.NewPacket(newDetRand("sizes"), route, nil, make([]byte, g.PlaintextLength+1))
	if !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("oversized message: %v", err)
	}
}

// Every relay emits an alpha in the prime-order subgroup.
func TestBlindedAlphaInSubgroup(t *testing.T) {
	g := RegularGeometry()
	nodes, route := testRoute(t, "subgroup", MaxHops)
	pkt, err := g.NewPacket(newDetRand("subgroup"), route, nil, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes[:len(nodes)-1] {
		res, err := n.Unwrap(pkt, nil)
		if err != nil {
			t.Fatalf("hop %d: %v", i, err)
		}
		if _, err := ParsePublicKey(res.Packet[:32]); err != nil {
			t.Fatalf("hop %d: blinded alpha: %v", i, err)
		}
	}
	// Blinding with 8*b removes a torsion component.
	clean, dirty := torsioned(t, scalarFromUint(777))
	b := scalarFromUint(31337)
	var k, a, c [32]byte
	times8(&k, b)
	ladder(&a, &k, 256, (*[32]byte)(&dirty))
	ladder(&c, &k, 256, (*[32]byte)(&clean))
	if a != c {
		t.Fatalf("cofactor not cleared")
	}
}

func TestTamperedHeader(t *testing.T) {
	g := RegularGeometry()
	nodes, route := testRoute(t, "tamper", RouteHops)
	pkt, err := g.NewPacket(newDetRand("tamper"), route, nil, []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pos := range []int{0, 5, 31, 32, 100, 331, 332, 347} {
		bad := bytes.Clone(pkt)
		bad[pos] ^= 0x04
		if _, err := nodes[0].Unwrap(bad, nil); !errors.Is(err, ErrInvalidMAC) {
			t.Errorf("byte %d flipped: err %v, want ErrInvalidMAC", pos, err)
		}
	}
	// Top bit of alpha: non-canonical encoding.
	bad := bytes.Clone(pkt)
	bad[31] ^= 0x80
	if _, err := nodes[0].Unwrap(bad, nil); !errors.Is(err, ErrInvalidPacket) {
		t.Errorf("alpha top bit: %v", err)
	}
	// Tamper after the first hop: the second hop notices.
	res, err := nodes[0].Unwrap(bytes.Clone(pkt), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Packet[200] ^= 1
	if _, err := nodes[1].Unwrap(res.Packet, nil); !errors.Is(err, ErrInvalidMAC) {
		t.Errorf("tampered at hop 2: %v", err)
	}
	// Small-order alpha: rejected before the MAC.
	for _, h := range lowOrderU {
		bad := bytes.Clone(pkt)
		copy(bad, mustHex(h))
		if _, err := nodes[0].Unwrap(bad, nil); !errors.Is(err, ErrInvalidPacket) {
			t.Errorf("low-order alpha %s: %v", h[:8], err)
		}
	}
	// Torsion added to alpha by someone on the wire: the MAC covers alpha.
	var w [64]byte
	newDetRand("torsion").Read(w[:])
	r, _ := new(edwards25519.Scalar).SetUniformBytes(w[:])
	_, dirty := torsioned(t, r)
	bad = bytes.Clone(pkt)
	copy(bad, dirty[:])
	if _, err := nodes[0].Unwrap(bad, nil); err == nil {
		t.Errorf("foreign alpha accepted")
	}
}

func TestTamperedPayload(t *testing.T) {
	g := RegularGeometry()
	nodes, route := testRoute(t, "tamper-payload", RouteHops)
	for _, pos := range []int{g.HeaderLength, g.HeaderLength + 40, g.PacketLength - 1} {
		pkt, err := g.NewPacket(newDetRand("tp"), route, nil, []byte("payload"))
		if err != nil {
			t.Fatal(err)
		}
		pkt[pos] ^= 0x10
		for i, n := range nodes {
			res, err := n.Unwrap(pkt, nil)
			if i < len(nodes)-1 {
				if err != nil {
					t.Fatalf("relay %d: %v", i, err)
				}
				pkt = res.Packet
				continue
			}
			if !errors.Is(err, ErrPayloadIntegrity) {
				t.Errorf("payload byte %d flipped: final hop err %v, want ErrPayloadIntegrity", pos, err)
			}
		}
	}
}

func TestWrongKey(t *testing.T) {
	g := RegularGeometry()
	nodes, route := testRoute(t, "wrong", RouteHops)
	other, _ := testRoute(t, "other", 1)
	pkt, err := g.NewPacket(newDetRand("wrong"), route, nil, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other[0].Unwrap(bytes.Clone(pkt), nil); !errors.Is(err, ErrInvalidMAC) {
		t.Errorf("wrong key: %v", err)
	}
	// Right key, wrong position in the route.
	if _, err := nodes[1].Unwrap(bytes.Clone(pkt), nil); !errors.Is(err, ErrInvalidMAC) {
		t.Errorf("second hop first: %v", err)
	}
}

func TestReplayTag(t *testing.T) {
	g := RegularGeometry()
	nodes, route := testRoute(t, "replay", RouteHops)
	pkt, err := g.NewPacket(newDetRand("replay"), route, nil, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	r1, err := nodes[0].Unwrap(bytes.Clone(pkt), nil)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := nodes[0].Unwrap(bytes.Clone(pkt), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r1.ReplayTag != r2.ReplayTag {
		t.Fatalf("same packet, different tags")
	}
	if !bytes.Equal(r1.Packet, r2.Packet) {
		t.Fatalf("processing is not deterministic")
	}
	pkt2, _ := g.NewPacket(newDetRand("replay2"), route, nil, []byte("x"))
	r3, err := nodes[0].Unwrap(pkt2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r3.ReplayTag == r1.ReplayTag {
		t.Fatalf("different packets, same tag")
	}
	// With a filter: the second copy is refused before decryption.
	f := mapFilter{}
	if _, err := nodes[0].Unwrap(bytes.Clone(pkt), f); err != nil {
		t.Fatal(err)
	}
	copy2 := bytes.Clone(pkt)
	res, err := nodes[0].Unwrap(copy2, f)
	if !errors.Is(err, ErrReplay) || res.ReplayTag != r1.ReplayTag {
		t.Fatalf("replay: %v", err)
	}
	if !bytes.Equal(copy2, pkt) {
		t.Fatalf("replayed packet was modified")
	}
}

func TestSURBRoundTrip(t *testing.T) {
	for _, g := range []*Geometry{RegularGeometry(), AckGeometry()} {
		for hops := 1; hops <= g.NrHops; hops++ {
			t.Run(fmt.Sprintf("%d-byte/%d-hops", g.PacketLength, hops), func(t *testing.T) {
				nodes, route := testRoute(t, fmt.Sprintf("surb%d", hops), hops)
				dest := &Destination{Recipient: Recipient{0xc1}, SURBID: SURBID{0x51, 0x52}}
				surb, keys, err := g.NewSURB(newDetRand("surb"), route, dest)
				if err != nil {
					t.Fatal(err)
				}
				if surb.FirstHop != route[0].ID || keys.ID() != dest.SURBID || keys.Hops() != hops {
					t.Fatalf("SURB %+v keys %v/%d", surb.FirstHop, keys.ID(), keys.Hops())
				}
				wire := surb.Bytes()
				if len(wire) != g.SURBLength {
					t.Fatalf("SURB of %d bytes, want %d", len(wire), g.SURBLength)
				}
				parsed, err := g.ParseSURB(wire)
				if err != nil {
					t.Fatal(err)
				}
				kb, err := keys.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				var keys2 SURBKeys
				if err := keys2.UnmarshalBinary(kb); err != nil {
					t.Fatal(err)
				}
				msg := make([]byte, g.PlaintextLength)
				newDetRand("reply").Read(msg)
				pkt, err := g.NewPacketFromSURB(parsed, msg)
				if err != nil {
					t.Fatal(err)
				}
				res := walk(t, nodes, route, pkt)
				if !res.IsReply || res.SURBID != dest.SURBID || res.Recipient != dest.Recipient {
					t.Fatalf("final: reply=%v id=%x", res.IsReply, res.SURBID)
				}
				if len(res.Payload) != g.PayloadLength {
					t.Fatalf("reply payload of %d bytes", len(res.Payload))
				}
				// Wrong keys first (on a copy), then the right ones.
				_, otherKeys, _ := g.NewSURB(newDetRand("other"), route, dest)
				if _, err := g.DecryptReply(otherKeys, bytes.Clone(res.Payload)); !errors.Is(err, ErrPayloadIntegrity) {
					t.Fatalf("wrong SURB keys: %v", err)
				}
				got, err := g.DecryptReply(&keys2, res.Payload)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("reply mismatch")
				}
			})
		}
	}
}

// SURB-ACK: a regular packet carries an ack SURB to the exit gateway, which
// answers with a 386-byte ack packet built from it.
func TestSURBAck(t *testing.T) {
	reg, ack := RegularGeometry(), AckGeometry()
	fwdNodes, fwdRoute := testRoute(t, "ack-fwd", RouteHops)
	backNodes, backRoute := testRoute(t, "ack-back", RouteHops)
	client := Recipient{0xcc}
	ackID := SURBID{0xac, 0x01}
	surb, keys, err := ack.NewSURB(newDetRand("ack-surb"), backRoute, &Destination{Recipient: client, SURBID: ackID})
	if err != nil {
		t.Fatal(err)
	}
	fragment := bytes.Repeat([]byte("fragment"), 100)
	msg := append(surb.Bytes(), fragment...)
	pkt, err := reg.NewPacket(newDetRand("ack-pkt"), fwdRoute, &Destination{Recipient: Recipient{0xee}}, msg)
	if err != nil {
		t.Fatal(err)
	}
	res := walk(t, fwdNodes, fwdRoute, pkt)
	if !bytes.Equal(res.Payload[ack.SURBLength:], fragment) {
		t.Fatal("fragment mismatch")
	}
	gotSURB, err := ack.ParseSURB(res.Payload[:ack.SURBLength])
	if err != nil {
		t.Fatal(err)
	}
	ackMsg := []byte("ack:\x00\x00\x00\x2a")
	ackPkt, err := ack.NewPacketFromSURB(gotSURB, ackMsg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ackPkt) != 386 {
		t.Fatalf("ack packet of %d bytes", len(ackPkt))
	}
	if gotSURB.FirstHop != backRoute[0].ID {
		t.Fatal("ack first hop")
	}
	ares := walk(t, backNodes, backRoute, ackPkt)
	if !ares.IsReply || ares.SURBID != ackID || ares.Recipient != client {
		t.Fatalf("ack final: %+v", ares)
	}
	got, err := ack.DecryptReply(keys, ares.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ackMsg) {
		t.Fatalf("ack message %q", got)
	}
}

func TestSURBErrors(t *testing.T) {
	g := RegularGeometry()
	_, route := testRoute(t, "surberr", 2)
	surb, keys, err := g.NewSURB(newDetRand("s"), route, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AckGeometry().NewPacketFromSURB(&SURB{Header: make([]byte, 10)}, nil); !errors.Is(err, ErrInvalidSURB) {
		t.Errorf("short header: %v", err)
	}
	if _, err := g.NewPacketFromSURB(surb, make([]byte, g.PlaintextLength+1)); !errors.Is(err, ErrPayloadTooLarge) {
		t.Errorf("oversized reply: %v", err)
	}
	if _, err := g.ParseSURB(surb.Bytes()[1:]); !errors.Is(err, ErrInvalidSURB) {
		t.Errorf("short SURB: %v", err)
	}
	if _, err := g.DecryptReply(keys, make([]byte, 10)); !errors.Is(err, ErrInvalidPacket) {
		t.Errorf("short reply payload: %v", err)
	}
	kb, _ := keys.MarshalBinary()
	for _, bad := range [][]byte{nil, {2, 1}, {1, 0}, {1, 33}, kb[:len(kb)-1], append(bytes.Clone(kb), 0)} {
		var k SURBKeys
		if err := k.UnmarshalBinary(bad); !errors.Is(err, ErrInvalidSURB) {
			t.Errorf("UnmarshalBinary(%x): %v", bad, err)
		}
	}
	if _, _, err := g.NewSURB(bytes.NewReader(bytes.Repeat([]byte{0x42}, 64+180)), route, nil); !errors.Is(err, ErrRandom) {
		t.Errorf("short randomness for SURB key: %v", err)
	}
}

func TestRouteErrors(t *testing.T) {
	g := RegularGeometry()
	_, route := testRoute(t, "routeerr", 6)
	for _, r := range [][]Hop{nil, route} {
		if _, err := g.NewPacket(newDetRand("x"), r, nil, nil); !errors.Is(err, ErrInvalidRoute) {
			t.Errorf("%d hops: %v", len(r), err)
		}
	}
	neg := append([]Hop(nil), route[:3]...)
	neg[1].Delay = -time.Second
	if _, err := g.NewPacket(newDetRand("x"), neg, nil, nil); !errors.Is(err, ErrInvalidRoute) {
		t.Errorf("negative delay: %v", err)
	}
	bad := append([]Hop(nil), route[:3]...)
	for _, h := range lowOrderU {
		copy(bad[2].PublicKey[:], mustHex(h))
		if _, err := g.NewPacket(newDetRand("x"), bad, nil, nil); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("low-order key %s in route: %v", h[:8], err)
		}
	}
	for _, n := range []int{0, 63, 64 + 60} {
		if _, err := g.NewPacket(bytes.NewReader(bytes.Repeat([]byte{0x42}, n)), route[:3], nil, nil); !errors.Is(err, ErrRandom) {
			t.Errorf("%d bytes of randomness: %v", n, err)
		}
	}
	// Exactly enough randomness: 64 + (5-3)*60.
	r := bytes.NewReader(bytes.Repeat([]byte{0x42}, 64+120))
	if _, err := g.NewPacket(r, route[:3], nil, nil); err != nil || r.Len() != 0 {
		t.Errorf("exact randomness: %v, %d left", err, r.Len())
	}
}

func TestNodeGeometries(t *testing.T) {
	k, _ := GenerateKey(newDetRand("ng"))
	if _, err := NewNode(k, RegularGeometry(), RegularGeometry()); !errors.Is(err, ErrInvalidGeometry) {
		t.Errorf("duplicate geometries: %v", err)
	}
	if _, err := NewNode(nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("nil key: %v", err)
	}
	n, err := NewNode(k)
	if err != nil {
		t.Fatal(err)
	}
	if n.PublicKey() != k.Public() {
		t.Fatal("PublicKey")
	}
	for _, size := range []int{0, 385, 387, 2412, 2414} {
		if _, err := n.Unwrap(make([]byte, size), nil); !errors.Is(err, ErrInvalidPacket) {
			t.Errorf("%d-byte packet: %v", size, err)
		}
	}
	// A custom geometry.
	g, _ := NewGeometry(3, 500)
	nodes, route := testRoute(t, "custom", 3, g)
	pkt, err := g.NewPacket(newDetRand("c"), route, nil, []byte("custom"))
	if err != nil {
		t.Fatal(err)
	}
	if res := walk(t, nodes, route, pkt); string(res.Payload) != "custom" {
		t.Fatalf("custom geometry payload %q", res.Payload)
	}
	if _, err := nodes[0].Unwrap(make([]byte, RegularGeometry().PacketLength), nil); !errors.Is(err, ErrInvalidPacket) {
		t.Errorf("regular packet at a custom-only node: %v", err)
	}
}

func TestRoutingCommand(t *testing.T) {
	for _, c := range []routingCommand{
		{delay: 1500 * time.Microsecond, addr: [32]byte{1}, tail: [16]byte{2}},
		{deliver: true, delay: 0, addr: [32]byte{3}, tail: [16]byte{4}},
		{deliver: true, reply: true, delay: 10 * time.Second},
		{delay: time.Duration(maxDelayMicros) * time.Microsecond},
	} {
		var b [PerHopRoutingInfoLength]byte
		if err := c.encode(b[:]); err != nil {
			t.Fatal(err)
		}
		var d routingCommand
		if err := d.decode(b[:]); err != nil {
			t.Fatal(err)
		}
		if d != c {
			t.Errorf("round trip %+v -> %+v", c, d)
		}
	}
	// Sub-microsecond delays are truncated.
	var b [PerHopRoutingInfoLength]byte
	c := routingCommand{delay: 1999 * time.Nanosecond}
	c.encode(b[:])
	var d routingCommand
	d.decode(b[:])
	if d.delay != time.Microsecond {
		t.Errorf("delay %v", d.delay)
	}
	if err := (&routingCommand{delay: -1}).encode(b[:]); !errors.Is(err, ErrInvalidRoute) {
		t.Errorf("negative delay: %v", err)
	}
	for name, mutate := range map[string]func(b []byte){
		"command":  func(b []byte) { b[0] = 3 },
		"relay fl": func(b []byte) { b[1] = 1 },
		"reserved": func(b []byte) { b[3] = 1 },
		"overflow": func(b []byte) { copy(b[4:12], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) },
	} {
		var b [PerHopRoutingInfoLength]byte
		(&routingCommand{}).encode(b[:])
		mutate(b[:])
		if err := new(routingCommand).decode(b[:]); !errors.Is(err, ErrInvalidPacket) {
			t.Errorf("%s: %v", name, err)
		}
	}
	b = [PerHopRoutingInfoLength]byte{cmdDeliver, 0x80}
	if err := new(routingCommand).decode(b[:]); !errors.Is(err, ErrInvalidPacket) {
		t.Errorf("deliver flags: %v", err)
	}
	if err := new(routingCommand).decode(b[:10]); !errors.Is(err, ErrInvalidPacket) {
		t.Errorf("short: %v", err)
	}
}

func TestLioness(t *testing.T) {
	var key [lionessKeyLength]byte
	newDetRand("lioness").Read(key[:])
	for _, n := range []int{33, 38, 2065} {
		plain := make([]byte, n)
		newDetRand("block").Read(plain)
		block := bytes.Clone(plain)
		lionessEncrypt(&key, block)
		if bytes.Equal(block, plain) {
			t.Fatal("no-op")
		}
		c2 := bytes.Clone(block)
		lionessDecrypt(&key, block)
		if !bytes.Equal(block, plain) {
			t.Fatalf("%d bytes: decrypt(encrypt(x)) != x", n)
		}
		// Wide block: one flipped bit changes every part of the output.
		c2[n-1] ^= 1
		lionessDecrypt(&key, c2)
		if bytes.Equal(c2[:16], plain[:16]) || bytes.Equal(c2[n-16:n-1], plain[n-16:n-1]) {
			t.Fatalf("%d bytes: not a wide block", n)
		}
	}
}

var _ io.Reader = (*detRand)(nil)

func TestHKDFAndHMACMatchStdlib(t *testing.T) {
	r := newDetRand("hkdf")
	for _, n := range []int{0, 1, 32, 100, 500, 1024, 1025, 3000} {
		secret := make([]byte, 32)
		msg := make([]byte, n)
		r.Read(secret)
		r.Read(msg)
		got := make([]byte, hopKeysLength)
		hkdfSHA256(got, secret, hopKeysInfo)
		want, err := hkdf.Key(sha256.New, secret, nil, hopKeysInfo, hopKeysLength)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("hkdf differs")
		}
		h := hmac.New(sha256.New, secret)
		h.Write(msg)
		mac := hmacSHA256(secret, msg[:n/3], msg[n/3:])
		if !bytes.Equal(mac[:], h.Sum(nil)) {
			t.Fatalf("hmac of %d bytes differs", n)
		}
	}
}

// One Node serves many goroutines.
func TestConcurrentUnwrap(t *testing.T) {
	g := RegularGeometry()
	nodes, route := testRoute(t, "concurrent", RouteHops)
	pkts := make([][]byte, 16)
	for i := range pkts {
		var err error
		if pkts[i], err = g.NewPacket(newDetRand(fmt.Sprint("c", i)), route, nil, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, len(pkts))
	for i, p := range pkts {
		go func() {
			for h, n := range nodes {
				res, err := n.Unwrap(p, nil)
				if err != nil {
					errs <- fmt.Errorf("packet %d hop %d: %w", i, h, err)
					return
				}
				if res.Final {
					if !bytes.Equal(res.Payload, []byte{byte(i)}) {
						errs <- fmt.Errorf("packet %d: payload %x", i, res.Payload)
						return
					}
				}
				p = res.Packet
			}
			errs <- nil
		}()
	}
	for range pkts {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
