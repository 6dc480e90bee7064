package mixnode

import (
	"crypto/rand"
	"math"
	"testing"

	"github.com/nymvpn/nymvpn/sphinx"
)

func TestBloomSizing(t *testing.T) {
	m, k := bloomSize(1<<22, ReplayFalsePositiveRate)
	if k != 17 {
		t.Errorf("k = %d, want 17", k)
	}
	if perPacket := float64(m) / (1 << 22); math.Abs(perPacket-23.96) > 0.01 {
		t.Errorf("%.2f bits per packet, want 23.96", perPacket)
	}
	if b := newBloom(1<<22, ReplayFalsePositiveRate).Bytes(); b != 12563328 {
		t.Errorf("filter of %d bytes for 2^22 packets, want 12563328 (12 MiB, as documented)", b)
	}
}

// False positives while filling the filter to capacity stay near the
// documented rate, and every recorded tag is seen again (no false negatives:
// a replay never passes).
func TestBloomRates(t *testing.T) {
	const n = 200000
	b := newBloom(n, ReplayFalsePositiveRate)
	tags := make([]sphinx.ReplayTag, n)
	fp := 0
	for i := range tags {
		rand.Read(tags[i][:])
		if b.Seen(&tags[i]) {
			fp++
		}
	}
	// Expected: below n·p = 2 (the rate grows to p as the filter fills);
	// 40 would be a sizing bug, not bad luck (P < 1e-30).
	if fp >= 40 {
		t.Errorf("%d false positives filling to %d, want about %v", fp, n, float64(n)*ReplayFalsePositiveRate)
	}
	for i := range tags {
		if !b.Seen(&tags[i]) {
			t.Fatalf("tag %d not seen again: a replay would pass", i)
		}
	}
	if b.Count() != n-fp {
		t.Errorf("count %d, want %d", b.Count(), n-fp)
	}
	if r := b.FalsePositiveRate(); r > 2*ReplayFalsePositiveRate || r < ReplayFalsePositiveRate/2 {
		t.Errorf("estimated rate at capacity %.2e, want about %.0e", r, ReplayFalsePositiveRate)
	}
	t.Logf("false positives filling to capacity: %d; estimate at capacity %.2e", fp, b.FalsePositiveRate())
}

func BenchmarkBloomSeen(b *testing.B) {
	f := newBloom(1<<22, ReplayFalsePositiveRate)
	var tag sphinx.ReplayTag
	i := uint64(0)
	for b.Loop() {
		i++
		tag[0], tag[1], tag[2], tag[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		f.Seen(&tag)
	}
}
