package sphinx

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzNode is the fixed node every Unwrap fuzz target talks to; route hop 0
// of fuzzRoute(n).
func fuzzNode(t testing.TB) *Node {
	nodes, _ := testRoute(t, "fuzz", 1)
	return nodes[0]
}

func fuzzRoute(t testing.TB, n int) []Hop {
	_, route := testRoute(t, "fuzz", n)
	return route
}

// knownErr reports whether err is one of the package's sentinels.
func knownErr(err error) bool {
	for _, s := range []error{ErrInvalidPacket, ErrInvalidMAC, ErrPayloadIntegrity} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func checkResult(t *testing.T, data []byte, res Result, err error) {
	if err != nil {
		if !knownErr(err) {
			t.Fatalf("unexpected error class: %v", err)
		}
		return
	}
	if res.Geometry == nil || len(data) != res.Geometry.PacketLength {
		t.Fatalf("accepted a %d-byte packet", len(data))
	}
	if res.Final {
		if !res.IsReply && len(res.Payload) > res.Geometry.PlaintextLength {
			t.Fatalf("payload of %d bytes", len(res.Payload))
		}
	} else if len(res.Packet) != len(data) {
		t.Fatalf("relay output of %d bytes", len(res.Packet))
	}
}

// FuzzUnwrap feeds arbitrary bytes to a node with a fixed key.
func FuzzUnwrap(f *testing.F) {
	n := fuzzNode(f)
	f.Add([]byte{})
	f.Add(make([]byte, RegularGeometry().PacketLength))
	f.Add(make([]byte, AckGeometry().PacketLength))
	f.Fuzz(func(t *testing.T, data []byte) {
		buf := bytes.Clone(data)
		res, err := n.Unwrap(buf, nil)
		checkResult(t, data, res, err)
	})
}

// FuzzUnwrapAuthenticated gets past the MAC: the fuzzer picks the decrypted
// routing information and the payload as the node will see them, and the
// target encrypts and authenticates them for the fixed node, so routing
// command decoding and payload checks see arbitrary input.
func FuzzUnwrapAuthenticated(f *testing.F) {
	n := fuzzNode(f)
	g := RegularGeometry()
	var alpha [32]byte
	a, _ := GenerateKey(newDetRand("fuzz-alpha"))
	alpha = [32]byte(a.Public())
	var secret [32]byte
	ladder(&secret, &n.key.clamped, 255, &alpha)
	var keys hopKeys
	deriveHopKeys(&keys, &secret)
	f.Add(make([]byte, g.RoutingInfoLength), []byte("payload"))
	f.Fuzz(func(t *testing.T, beta, payload []byte) {
		pkt := make([]byte, g.PacketLength)
		copy(pkt, alpha[:])
		b := pkt[g.betaOffset():g.gammaOffset()]
		copy(b, beta)
		keys.headerStream().XORKeyStream(b, b)
		var gamma [MACLength]byte
		keys.headerMAC(&gamma, alpha[:], b)
		copy(pkt[g.gammaOffset():], gamma[:])
		p := pkt[g.HeaderLength:]
		copy(p, payload)
		lionessEncrypt(&keys.payloadKey, p)
		res, err := n.Unwrap(pkt, nil)
		if errors.Is(err, ErrInvalidMAC) {
			t.Fatalf("MAC rejected: %v", err)
		}
		checkResult(t, pkt, res, err)
		if err == nil && res.Final && !res.IsReply {
			// The delivered message is what the fuzzer put after the tag.
			var want [RegularPlaintextLength + PayloadOverhead]byte
			copy(want[:], payload)
			if !bytes.Equal(res.Payload, want[PayloadTagLength:PayloadTagLength+len(res.Payload)]) {
				t.Fatalf("payload mismatch")
			}
		}
	})
}

// FuzzParseSURB decodes arbitrary bytes as a SURB of either geometry.
func FuzzParseSURB(f *testing.F) {
	f.Add(make([]byte, RegularGeometry().SURBLength))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, g := range []*Geometry{RegularGeometry(), AckGeometry()} {
			s, err := g.ParseSURB(data)
			if err != nil {
				if !errors.Is(err, ErrInvalidSURB) {
					t.Fatalf("error class: %v", err)
				}
				continue
			}
			if !bytes.Equal(s.Bytes(), data) {
				t.Fatalf("SURB does not round-trip")
			}
			if _, err := g.NewPacketFromSURB(s, data[:min(len(data), g.PlaintextLength)]); err != nil {
				t.Fatalf("NewPacketFromSURB: %v", err)
			}
		}
	})
}

// FuzzSURBKeys decodes arbitrary bytes as SURBKeys and decrypts a reply.
func FuzzSURBKeys(f *testing.F) {
	f.Add([]byte{1, 1})
	g := AckGeometry()
	f.Fuzz(func(t *testing.T, data []byte) {
		var k SURBKeys
		if err := k.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrInvalidSURB) {
				t.Fatalf("error class: %v", err)
			}
			return
		}
		out, err := k.MarshalBinary()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("SURBKeys do not round-trip: %v", err)
		}
		payload := make([]byte, g.PayloadLength)
		copy(payload, data)
		if _, err := g.DecryptReply(&k, payload); err != nil &&
			!errors.Is(err, ErrPayloadIntegrity) && !errors.Is(err, ErrInvalidSURB) {
			t.Fatalf("DecryptReply: %v", err)
		}
	})
}

// FuzzRoutingCommand decodes arbitrary bytes as one hop slot.
func FuzzRoutingCommand(f *testing.F) {
	f.Add(make([]byte, PerHopRoutingInfoLength))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c routingCommand
		if err := c.decode(data); err != nil {
			if !errors.Is(err, ErrInvalidPacket) {
				t.Fatalf("error class: %v", err)
			}
			return
		}
		var out [PerHopRoutingInfoLength]byte
		if err := c.encode(out[:]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out[:], data[:PerHopRoutingInfoLength]) {
			t.Fatalf("routing command does not round-trip:\n%x\n%x", data, out)
		}
	})
}

// TestFuzzSeeds writes the committed seed corpora (with -update) and checks
// that every committed seed file parses and names an existing target.
func TestFuzzSeeds(t *testing.T) {
	if *update {
		writeFuzzSeeds(t)
	}
	targets := map[string]int{
		"FuzzUnwrap": 1, "FuzzUnwrapAuthenticated": 2, "FuzzParseSURB": 1,
		"FuzzSURBKeys": 1, "FuzzRoutingCommand": 1,
	}
	for name, args := range targets {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", name, "*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Errorf("%s: no committed seeds (regenerate with -update)", name)
		}
		for _, p := range files {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			if lines[0] != "go test fuzz v1" || len(lines) != 1+args {
				t.Errorf("%s: not a go test fuzz v1 file with %d values", p, args)
			}
		}
	}
}

func writeSeed(t *testing.T, target string, values ...[]byte) {
	t.Helper()
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, v := range values {
		fmt.Fprintf(&b, "[]byte(%q)\n", v)
	}
	sum := sha256.Sum256([]byte(b.String()))
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "seed-"+hex.EncodeToString(sum[:8])), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFuzzSeeds(t *testing.T) {
	reg, ack := RegularGeometry(), AckGeometry()
	for _, target := range []string{"FuzzUnwrap", "FuzzUnwrapAuthenticated", "FuzzParseSURB", "FuzzSURBKeys", "FuzzRoutingCommand"} {
		os.RemoveAll(filepath.Join("testdata", "fuzz", target))
	}
	dest := &Destination{Recipient: Recipient{7}, SURBID: SURBID{8}}

	// FuzzUnwrap: valid packets whose first (or only) hop is the fuzz node.
	for _, tc := range []struct {
		g    *Geometry
		hops int
	}{{reg, 4}, {reg, 1}, {ack, 4}, {ack, 1}} {
		pkt, err := tc.g.NewPacket(newDetRand("seed"), fuzzRoute(t, tc.hops), dest, []byte("seed message"))
		if err != nil {
			t.Fatal(err)
		}
		writeSeed(t, "FuzzUnwrap", pkt)
	}
	surb, keys, err := ack.NewSURB(newDetRand("seed-surb"), fuzzRoute(t, 1), dest)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := ack.NewPacketFromSURB(surb, []byte("ack"))
	if err != nil {
		t.Fatal(err)
	}
	writeSeed(t, "FuzzUnwrap", reply)
	writeSeed(t, "FuzzUnwrap", []byte("short"))

	// FuzzUnwrapAuthenticated: decrypted beta as the node sees it.
	var relay, deliver, replyCmd [PerHopRoutingInfoLength]byte
	(&routingCommand{delay: 15000, addr: NodeID{1}, tail: [16]byte{2}}).encode(relay[:])
	(&routingCommand{deliver: true, addr: [32]byte{3}, tail: [16]byte{4}}).encode(deliver[:])
	(&routingCommand{deliver: true, reply: true, addr: [32]byte{3}}).encode(replyCmd[:])
	plain := make([]byte, reg.PayloadLength)
	padPayload(plain, []byte("hello"))
	for _, cmd := range [][]byte{relay[:], deliver[:], replyCmd[:]} {
		beta := make([]byte, reg.RoutingInfoLength)
		copy(beta, cmd)
		writeSeed(t, "FuzzUnwrapAuthenticated", beta, plain)
	}
	writeSeed(t, "FuzzUnwrapAuthenticated", deliver[:], []byte{1})

	for _, g := range []*Geometry{reg, ack} {
		s, _, err := g.NewSURB(newDetRand(fmt.Sprintf("seed-surb-%d", g.PacketLength)), fuzzRoute(t, 4), dest)
		if err != nil {
			t.Fatal(err)
		}
		writeSeed(t, "FuzzParseSURB", s.Bytes())
	}
	kb, err := keys.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	writeSeed(t, "FuzzSURBKeys", kb)
	writeSeed(t, "FuzzRoutingCommand", relay[:])
	writeSeed(t, "FuzzRoutingCommand", deliver[:])
	writeSeed(t, "FuzzRoutingCommand", replyCmd[:])
}
