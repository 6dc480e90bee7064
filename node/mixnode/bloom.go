package mixnode

import (
	"hash/maphash"
	"math"
	"sync"

	"github.com/nymvpn/nymvpn/sphinx"
)

// ReplayFalsePositiveRate is the false-positive rate of a replay filter
// holding its capacity of tags, NymVPN's figure: at most one fresh packet in
// 100 000 is dropped as a replay.
const ReplayFalsePositiveRate = 1e-5

// bloom is the replay filter of one Sphinx key: a Bloom filter of m bits
// and k hash functions sized for capacity n at false-positive rate p,
//
//	m = ceil(n · ln(1/p) / ln(2)²)   (≈ 23.96 bits, 3.0 bytes, per packet at p = 1e-5)
//	k = ceil(log2(1/p))              (17 at p = 1e-5)
//
// Its memory is fixed when the key is created, so a flood cannot grow it;
// past capacity the false-positive rate rises (FalsePositiveRate). Indices
// come from two keyed 64-bit hashes of the tag (hash/maphash with random
// seeds: a sender cannot aim tags at chosen bits) by double hashing,
// h1 + i·h2 mod m. Test-and-set is one critical section, so two copies of
// a packet arriving together cannot both pass.
type bloom struct {
	seed1, seed2 maphash.Seed
	m            uint64
	k            int
	capacity     int

	mu    sync.Mutex
	bits  []uint64
	count int
}

func bloomSize(capacity int, p float64) (m uint64, k int) {
	n := float64(max(capacity, 1))
	m = uint64(math.Ceil(n * math.Log(1/p) / (math.Ln2 * math.Ln2)))
	m = (m + 63) &^ 63
	k = int(math.Ceil(math.Log2(1 / p)))
	return m, k
}

func newBloom(capacity int, p float64) *bloom {
	m, k := bloomSize(capacity, p)
	return &bloom{
		seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed(),
		m: m, k: k, capacity: capacity,
		bits: make([]uint64, m/64),
	}
}

// Seen records tag and reports whether it was (probably) recorded before.
func (b *bloom) Seen(tag *sphinx.ReplayTag) bool {
	h1 := maphash.Bytes(b.seed1, tag[:])
	h2 := maphash.Bytes(b.seed2, tag[:]) | 1
	var idx [32]uint64
	ix := idx[:b.k]
	if b.k > len(idx) {
		ix = make([]uint64, b.k)
	}
	for i := range ix {
		ix[i] = (h1 + uint64(i)*h2) % b.m
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := true
	for _, j := range ix {
		w, bit := j/64, uint64(1)<<(j%64)
		if b.bits[w]&bit == 0 {
			seen = false
			b.bits[w] |= bit
		}
	}
	if !seen {
		b.count++
	}
	return seen
}

// Count is the number of tags recorded.
func (b *bloom) Count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.count
}

// Bytes is the filter's memory.
func (b *bloom) Bytes() int { return len(b.bits) * 8 }

// FalsePositiveRate estimates the current false-positive rate,
// (1 - e^(-k·count/m))^k.
func (b *bloom) FalsePositiveRate() float64 {
	n := float64(b.Count())
	return math.Pow(1-math.Exp(-float64(b.k)*n/float64(b.m)), float64(b.k))
}
