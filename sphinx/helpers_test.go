package sphinx

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
	"time"
)

// detRand is a deterministic randomness source: SHA-256(label | counter).
type detRand struct {
	seed [32]byte
	ctr  uint64
	buf  []byte
}

func newDetRand(label string) *detRand {
	return &detRand{seed: sha256.Sum256([]byte(label))}
}

func (r *detRand) Read(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if len(r.buf) == 0 {
			var in [40]byte
			copy(in[:], r.seed[:])
			binary.BigEndian.PutUint64(in[32:], r.ctr)
			r.ctr++
			sum := sha256.Sum256(in[:])
			r.buf = sum[:]
		}
		c := copy(p, r.buf)
		p, r.buf = p[c:], r.buf[c:]
	}
	return n, nil
}

// recordingReader remembers everything read through it.
type recordingReader struct {
	r   interface{ Read([]byte) (int, error) }
	got []byte
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.got = append(r.got, p[:n]...)
	return n, err
}

type mapFilter map[ReplayTag]bool

func (f mapFilter) Seen(t *ReplayTag) bool {
	if f[*t] {
		return true
	}
	f[*t] = true
	return false
}

// testRoute returns n nodes and the matching route with deterministic keys,
// ids and delays (1 ms, 2 ms, ...).
func testRoute(t testing.TB, label string, n int, geometries ...*Geometry) ([]*Node, []Hop) {
	t.Helper()
	nodes := make([]*Node, n)
	route := make([]Hop, n)
	for i := range n {
		key, err := GenerateKey(newDetRand(fmt.Sprintf("%s/key/%d", label, i)))
		if err != nil {
			t.Fatal(err)
		}
		nodes[i], err = NewNode(key, geometries...)
		if err != nil {
			t.Fatal(err)
		}
		route[i] = Hop{
			ID:        NodeID(sha256.Sum256(fmt.Appendf(nil, "%s/id/%d", label, i))),
			PublicKey: key.Public(),
			Delay:     time.Duration(i+1) * time.Millisecond,
		}
	}
	return nodes, route
}

// walk sends pkt through nodes and returns the final result, checking every
// relay step against route.
func walk(t testing.TB, nodes []*Node, route []Hop, pkt []byte) Result {
	t.Helper()
	size := len(pkt)
	for i, n := range nodes {
		res, err := n.Unwrap(pkt, nil)
		if err != nil {
			t.Fatalf("hop %d: %v", i, err)
		}
		if res.Delay != route[i].Delay {
			t.Fatalf("hop %d: delay %v, want %v", i, res.Delay, route[i].Delay)
		}
		if i == len(nodes)-1 {
			if !res.Final {
				t.Fatalf("hop %d: not final", i)
			}
			return res
		}
		if res.Final {
			t.Fatalf("hop %d: final too early", i)
		}
		if res.NextHop != route[i+1].ID {
			t.Fatalf("hop %d: next hop %v, want %v", i, res.NextHop, route[i+1].ID)
		}
		if len(res.Packet) != size {
			t.Fatalf("hop %d: packet size changed to %d", i, len(res.Packet))
		}
		pkt = res.Packet
	}
	t.Fatal("empty route")
	return Result{}
}
