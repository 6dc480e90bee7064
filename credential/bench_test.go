package credential

import "testing"

// BenchmarkSpend: one spend (re-randomisation, tags and proof) from a book.
func BenchmarkSpend(b *testing.B) {
	s := newSystem(b, 1, 2, 3)
	book := s.mustIssue(b, 2, FastEntry, 1, 0, 1)
	pay := payInfo(b, 3, 1)
	rng := testRNG(4)
	b.ResetTimer()
	for b.Loop() {
		book.used[0] = false
		if _, err := book.Spend(rng, 0, pay); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify: a gateway's full check of one spend (decode with subgroup checks,
// proof, one 2-pair pairing check).
func BenchmarkVerify(b *testing.B) {
	s := newSystem(b, 1, 2, 3)
	book := s.mustIssue(b, 2, FastEntry, 1, 0, 1)
	pay := payInfo(b, 3, 1)
	sp, err := book.Spend(testRNG(4), 0, pay)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Verify(s.vk, sp, FastEntry, pay, testNow); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(sp)), "spend-bytes")
}

// BenchmarkIssue: one issuer blind-signs one ticket (request proof check + signing).
func BenchmarkIssue(b *testing.B) {
	s := newSystem(b, 1, 2, 3)
	req, _, err := NewTicketbookRequest(testRNG(2), s.user, FastEntry, ExpiryFor(testNow), 1)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := BlindSign(s.sks[0], req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTicketbook: the client's side of a 50-ticket book from 2 of 3 issuers:
// request (commitments and proof), unblinding both partials, aggregation and the
// batched check. The issuers' work is done once outside the timer: with the same
// deterministic randomness every iteration builds the same request.
func BenchmarkTicketbook(b *testing.B) {
	const n = 50
	s := newSystem(b, 1, 2, 3)
	req, _, err := NewTicketbookRequest(testRNG(2), s.user, FastEntry, ExpiryFor(testNow), n)
	if err != nil {
		b.Fatal(err)
	}
	p0, _ := BlindSign(s.sks[0], req)
	p2, _ := BlindSign(s.sks[2], req)
	b.ResetTimer()
	for b.Loop() {
		rng := testRNG(2)
		_, pend, err := NewTicketbookRequest(rng, s.user, FastEntry, ExpiryFor(testNow), n)
		if err != nil {
			b.Fatal(err)
		}
		sh0, err := pend.Unblind(s.ivks[0], p0)
		if err != nil {
			b.Fatal(err)
		}
		sh2, err := pend.Unblind(s.ivks[2], p2)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Aggregate(rng, s.vk, []*SignatureShares{sh0, sh2}); err != nil {
			b.Fatal(err)
		}
	}
}
