package credential

import (
	"math/rand/v2"
	"testing"
	"time"
)

// testRNG is a deterministic randomness source for reproducible tests.
func testRNG(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return rand.NewChaCha8(s)
}

// testNow is a fixed clock: Wednesday 2026-03-11 12:00 UTC.
var testNow = time.Date(2026, 3, 11, 12, 0, 0, 0, time.UTC)

type system struct {
	vk   *VerificationKey
	sks  []*IssuerSecretKey
	ivks []*IssuerVerificationKey
	user *UserSecret
}

func newSystem(tb testing.TB, seed uint64, t, n int) *system {
	tb.Helper()
	rng := testRNG(seed)
	vk, sks, ivks, err := GenerateThresholdKeys(rng, t, n)
	if err != nil {
		tb.Fatal(err)
	}
	user, err := NewUserSecret(rng)
	if err != nil {
		tb.Fatal(err)
	}
	return &system{vk: vk, sks: sks, ivks: ivks, user: user}
}

// issue runs the whole issuance with the issuers at the given 0-based positions.
func (s *system) issue(tb testing.TB, seed uint64, typ TicketType, count int, issuers ...int) (*Ticketbook, error) {
	tb.Helper()
	rng := testRNG(seed)
	req, pend, err := NewTicketbookRequest(rng, s.user, typ, ExpiryFor(testNow), count)
	if err != nil {
		tb.Fatal(err)
	}
	var shares []*SignatureShares
	for _, i := range issuers {
		part, err := BlindSign(s.sks[i], req)
		if err != nil {
			tb.Fatal(err)
		}
		sh, err := pend.Unblind(s.ivks[i], part)
		if err != nil {
			tb.Fatal(err)
		}
		shares = append(shares, sh)
	}
	return Aggregate(rng, s.vk, shares)
}

func (s *system) mustIssue(tb testing.TB, seed uint64, typ TicketType, count int, issuers ...int) *Ticketbook {
	tb.Helper()
	b, err := s.issue(tb, seed, typ, count, issuers...)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func gatewayKey(b byte) [32]byte {
	var k [32]byte
	for i := range k {
		k[i] = b
	}
	return k
}

func payInfo(tb testing.TB, seed uint64, gw byte) PayInfo {
	tb.Helper()
	p, err := NewPayInfo(testRNG(seed), gatewayKey(gw), testNow)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
