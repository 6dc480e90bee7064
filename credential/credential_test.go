package credential

import (
	"bytes"
	"errors"
	"testing"
	"time"

	bls "github.com/consensys/gnark-crypto/ecc/bls12-381"
	"github.com/consensys/gnark-crypto/ecc/bls12-381/fp"
	"github.com/consensys/gnark-crypto/ecc/bls12-381/fr"
)

// Offsets of the fields of an encoded spend.
const (
	offType    = 1
	offExpiry  = 2
	offPayInfo = 4
	offSigma1  = offPayInfo + PayInfoSize
	offSigma2  = offSigma1 + G1Size
	offD       = offSigma2 + G1Size
	offSerial  = offD + G2Size
	offTag     = offSerial + G1Size
	offC       = offTag + G1Size
	offZ       = offC + ScalarSize
)

func TestSpendVerifyAllTypes(t *testing.T) {
	s := newSystem(t, 1, 2, 3)
	want := map[TicketType]uint64{FastEntry: 500e6, FastExit: 500e6, MixnetEntry: 200e6, MixnetExit: 100e6}
	for typ, bw := range want {
		book := s.mustIssue(t, 10+uint64(typ), typ, 2, 0, 2)
		pay := payInfo(t, 20, 7)
		sp, err := book.Spend(testRNG(30), 0, pay)
		if err != nil {
			t.Fatal(err)
		}
		if len(sp) != SpendSize || SpendSize >= 500 {
			t.Fatalf("spend is %d bytes (SpendSize %d)", len(sp), SpendSize)
		}
		v, err := Verify(s.vk, sp, typ, pay, testNow)
		if err != nil {
			t.Fatalf("%v: %v", typ, err)
		}
		if v.Type != typ || v.Bandwidth != bw || v.Expiry != ExpiryFor(testNow) || v.PayInfo != pay {
			t.Fatalf("%v: verified spend %+v", typ, v)
		}
		if _, err := VerifyBound(s.vk, sp, typ, gatewayKey(7), testNow.Add(20*time.Second), 30*time.Second); err != nil {
			t.Fatalf("VerifyBound: %v", err)
		}
		if book.Remaining() != 1 || !book.Used(0) || book.NextUnused() != 1 {
			t.Fatalf("book bookkeeping: remaining %d", book.Remaining())
		}
	}
}

func TestForgedTicketRefused(t *testing.T) {
	s := newSystem(t, 2, 2, 3)
	pay := payInfo(t, 1, 1)

	// A ticket signed by another issuer set.
	other := newSystem(t, 3, 2, 3)
	other.user = s.user
	book := other.mustIssue(t, 4, FastEntry, 1, 0, 1)
	book.vk = s.vk // the forger spends it against the real key
	sp, err := book.Spend(testRNG(5), 0, pay)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(s.vk, sp, FastEntry, pay, testNow); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("ticket of another issuer set: got %v, want ErrBadSignature", err)
	}

	// A made-up signature (h, s) with a valid proof of knowledge.
	book = s.mustIssue(t, 6, FastEntry, 1, 0, 1)
	rng := testRNG(7)
	x, _ := randomScalar(rng)
	y, _ := randomScalar(rng)
	book.tickets[0].h = mulG1(&params().g1, &x)
	book.tickets[0].s = mulG1(&params().g1, &y)
	sp, err = book.Spend(testRNG(8), 0, pay)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(s.vk, sp, FastEntry, pay, testNow)
	if !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged signature: got %v, want ErrBadSignature", err)
	}
	t.Logf("forged ticket: %v", err)

	// A correct ticket whose signature part is replaced by another ticket's.
	book = s.mustIssue(t, 9, FastEntry, 2, 1, 2)
	sp0, _ := book.Spend(testRNG(10), 0, pay)
	sp1, _ := book.Spend(testRNG(11), 1, pay)
	mixed := bytes.Clone(sp0)
	copy(mixed[offSigma1:offD], sp1[offSigma1:offD])
	if _, err := Verify(s.vk, mixed, FastEntry, pay, testNow); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("swapped signature: got %v, want ErrInvalidProof", err)
	}
}

func TestPayInfoBinding(t *testing.T) {
	s := newSystem(t, 3, 2, 3)
	book := s.mustIssue(t, 1, FastExit, 1, 0, 1)
	payA, payB := payInfo(t, 2, 0xA), payInfo(t, 2, 0xB)
	sp, err := book.Spend(testRNG(3), 0, payA)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(s.vk, sp, FastExit, payB, testNow)
	if !errors.Is(err, ErrPayInfoMismatch) {
		t.Fatalf("other gateway: got %v, want ErrPayInfoMismatch", err)
	}
	t.Logf("other gateway: %v", err)
	if _, err := VerifyBound(s.vk, sp, FastExit, gatewayKey(0xB), testNow, 30*time.Second); !errors.Is(err, ErrPayInfoMismatch) {
		t.Fatalf("VerifyBound other gateway: got %v", err)
	}
	if _, err := VerifyBound(s.vk, sp, FastExit, gatewayKey(0xA), testNow.Add(31*time.Second), 30*time.Second); !errors.Is(err, ErrPayInfoMismatch) {
		t.Fatalf("VerifyBound stale timestamp: got %v", err)
	}
	// Rewriting the payment info inside the spend breaks the proof.
	moved := bytes.Clone(sp)
	pb, _ := payB.MarshalBinary()
	copy(moved[offPayInfo:], pb)
	if _, err := Verify(s.vk, moved, FastExit, payB, testNow); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("rewritten payinfo: got %v, want ErrInvalidProof", err)
	}
}

func TestTamperedProof(t *testing.T) {
	s := newSystem(t, 4, 2, 3)
	book := s.mustIssue(t, 1, MixnetEntry, 2, 0, 1)
	pay := payInfo(t, 2, 3)
	sp, _ := book.Spend(testRNG(3), 0, pay)
	other, _ := book.Spend(testRNG(4), 1, pay)
	for _, f := range []struct {
		name     string
		off, len int
	}{{"c", offC, ScalarSize}, {"z_sk", offZ, ScalarSize}, {"z_t", offZ + 32, ScalarSize}, {"z_r", offZ + 64, ScalarSize},
		{"D", offD, G2Size}, {"serial", offSerial, G1Size}, {"tag", offTag, G1Size}, {"sigma2", offSigma2, G1Size}} {
		bad := bytes.Clone(sp)
		copy(bad[f.off:f.off+f.len], other[f.off:f.off+f.len]) // a well-formed but wrong value
		_, err := Verify(s.vk, bad, MixnetEntry, pay, testNow)
		if !errors.Is(err, ErrInvalidProof) {
			t.Errorf("tampered %s: got %v, want ErrInvalidProof", f.name, err)
		}
	}
	// Every single-bit flip anywhere is refused.
	for i := 0; i < len(sp); i += 7 {
		bad := bytes.Clone(sp)
		bad[i] ^= 1 << (i % 8)
		if _, err := Verify(s.vk, bad, MixnetEntry, pay, testNow); err == nil {
			t.Fatalf("bit flip at byte %d accepted", i)
		}
	}
	if _, err := Verify(s.vk, sp, MixnetEntry, pay, testNow); err != nil {
		t.Fatalf("original: %v", err)
	}
}

func TestExpiredTicket(t *testing.T) {
	s := newSystem(t, 5, 2, 3)
	book := s.mustIssue(t, 1, FastEntry, 1, 0, 1)
	pay := payInfo(t, 2, 1)
	sp, _ := book.Spend(testRNG(3), 0, pay)
	end := book.Expiry().End()
	if _, err := Verify(s.vk, sp, FastEntry, pay, end.Add(-time.Second)); err != nil {
		t.Fatalf("last second of the expiry week: %v", err)
	}
	_, err := Verify(s.vk, sp, FastEntry, pay, end)
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("after expiry: got %v, want ErrExpired", err)
	}
	t.Logf("expired: %v", err)
	// Moving the expiry forward in the encoding breaks the proof and the signature.
	later := bytes.Clone(sp)
	later[offExpiry+1]++
	if _, err := Verify(s.vk, later, FastEntry, pay, end); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("extended expiry: got %v, want ErrInvalidProof", err)
	}
}

func TestWrongType(t *testing.T) {
	s := newSystem(t, 6, 2, 3)
	book := s.mustIssue(t, 1, MixnetExit, 1, 0, 1)
	pay := payInfo(t, 2, 1)
	sp, _ := book.Spend(testRNG(3), 0, pay)
	_, err := Verify(s.vk, sp, FastEntry, pay, testNow)
	if !errors.Is(err, ErrWrongType) {
		t.Fatalf("got %v, want ErrWrongType", err)
	}
	t.Logf("wrong type: %v", err)
	// Relabelling a cheap mixnet-exit ticket as fast-entry is caught by the proof.
	relabelled := bytes.Clone(sp)
	relabelled[offType] = byte(FastEntry)
	if _, err := Verify(s.vk, relabelled, FastEntry, pay, testNow); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("relabelled type: got %v, want ErrInvalidProof", err)
	}
	if _, _, err := NewTicketbookRequest(testRNG(1), s.user, 9, 0, 1); !errors.Is(err, ErrWrongType) {
		t.Fatalf("request for unknown type: %v", err)
	}
}

func TestDoubleSpendIdentifiesSpender(t *testing.T) {
	s := newSystem(t, 7, 2, 3)
	book := s.mustIssue(t, 1, FastEntry, 3, 0, 1)
	backup, _ := book.MarshalBinary()
	payA, payB := payInfo(t, 2, 0xA), payInfo(t, 3, 0xB)
	spA, err := book.Spend(testRNG(4), 0, payA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := book.Spend(testRNG(5), 0, payB); !errors.Is(err, ErrTicketUsed) {
		t.Fatalf("second spend from the same book: %v", err)
	}
	var restored Ticketbook // e.g. a restored backup: the ticket looks unspent
	if err := restored.UnmarshalBinary(backup); err != nil {
		t.Fatal(err)
	}
	spB, err := restored.Spend(testRNG(6), 0, payB)
	if err != nil {
		t.Fatal(err)
	}
	vA, err := Verify(s.vk, spA, FastEntry, payA, testNow)
	if err != nil {
		t.Fatal(err)
	}
	vB, err := Verify(s.vk, spB, FastEntry, payB, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if vA.Serial != vB.Serial {
		t.Fatal("two spends of one ticket have different serials")
	}
	if vA.DoubleSpendTag == vB.DoubleSpendTag {
		t.Fatal("tags equal for different payment info")
	}
	pk, err := IdentifyDoubleSpender(s.vk, spA, spB)
	if err != nil {
		t.Fatal(err)
	}
	if pk != s.user.PublicKey() {
		t.Fatal("recovered key is not the spender's")
	}
	// A single spend, or spends of different tickets, reveal nothing.
	spC, _ := book.Spend(testRNG(7), 1, payB)
	if _, err := IdentifyDoubleSpender(s.vk, spA, spC); !errors.Is(err, ErrNotDoubleSpend) {
		t.Fatalf("different tickets: %v", err)
	}
	if _, err := IdentifyDoubleSpender(s.vk, spA, spA); !errors.Is(err, ErrNotDoubleSpend) {
		t.Fatalf("replay: %v", err)
	}
	// A forged second spend (valid serial, chosen tag) cannot frame anybody.
	forged := bytes.Clone(spB)
	copy(forged[offTag:offTag+G1Size], spC[offTag:offTag+G1Size])
	if _, err := IdentifyDoubleSpender(s.vk, spA, forged); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("forged tag: %v", err)
	}
	for _, sp := range [][]byte{spA, spB, spC} {
		if bytes.Contains(sp, pk[:]) {
			t.Fatal("a spend contains the public key")
		}
	}
}

// fields splits an encoded spend into its group elements and scalars.
func spendFields(sp []byte) map[string][]byte {
	return map[string][]byte{
		"sigma1": sp[offSigma1:offSigma2], "sigma2": sp[offSigma2:offD], "D": sp[offD:offSerial],
		"serial": sp[offSerial:offTag], "tag": sp[offTag:offC], "c": sp[offC : offC+32],
		"z_sk": sp[offZ : offZ+32], "z_t": sp[offZ+32 : offZ+64], "z_r": sp[offZ+64 : offZ+96],
	}
}

func TestSpendsShareNoElement(t *testing.T) {
	s := newSystem(t, 8, 2, 3)
	rng := testRNG(1)
	req, pend, err := NewTicketbookRequest(rng, s.user, FastEntry, ExpiryFor(testNow), 4)
	if err != nil {
		t.Fatal(err)
	}
	var shares []*SignatureShares
	for _, i := range []int{0, 2} {
		part, err := BlindSign(s.sks[i], req)
		if err != nil {
			t.Fatal(err)
		}
		sh, err := pend.Unblind(s.ivks[i], part)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, sh)
	}
	book, err := Aggregate(rng, s.vk, shares)
	if err != nil {
		t.Fatal(err)
	}
	pay := payInfo(t, 2, 1) // even the same gateway and nonce
	var spends [][]byte
	for i := range 4 {
		sp, err := book.Spend(testRNG(10+uint64(i)), i, pay)
		if err != nil {
			t.Fatal(err)
		}
		spends = append(spends, sp)
	}
	// Everything the issuers saw, and the user's public key.
	reqBytes, _ := req.MarshalBinary()
	pk := s.user.PublicKey()
	issuerView := [][]byte{reqBytes, pk[:]}
	for i := range spends {
		fi := spendFields(spends[i])
		for name, v := range fi {
			for _, seen := range issuerView {
				if bytes.Contains(seen, v) {
					t.Fatalf("spend %d: %s appears in the issuance transcript", i, name)
				}
			}
			for j := i + 1; j < len(spends); j++ {
				for name2, w := range spendFields(spends[j]) {
					if bytes.Equal(v, w) {
						t.Fatalf("spends %d and %d share an element: %s = %s", i, j, name, name2)
					}
				}
			}
		}
	}
}

func TestThreshold(t *testing.T) {
	s := newSystem(t, 9, 3, 5)
	subsets := func(k int) [][]int {
		var out [][]int
		var rec func(start int, cur []int)
		rec = func(start int, cur []int) {
			if len(cur) == k {
				out = append(out, append([]int(nil), cur...))
				return
			}
			for i := start; i < 5; i++ {
				rec(i+1, append(cur, i))
			}
		}
		rec(0, nil)
		return out
	}
	pay := payInfo(t, 1, 1)
	for i, set := range append(subsets(3), []int{0, 1, 2, 3, 4}, []int{4, 1, 3, 0}) {
		book, err := s.issue(t, 100+uint64(i), FastExit, 2, set...)
		if err != nil {
			t.Fatalf("issuers %v: %v", set, err)
		}
		sp, _ := book.Spend(testRNG(1), 1, pay)
		if _, err := Verify(s.vk, sp, FastExit, pay, testNow); err != nil {
			t.Fatalf("issuers %v: spend: %v", set, err)
		}
		ivks := make([]*IssuerVerificationKey, len(set))
		for j, k := range set {
			ivks[j] = s.ivks[k]
		}
		agg, err := AggregateVerificationKeys(ivks)
		if err != nil || !agg.Equal(s.vk) {
			t.Fatalf("issuers %v: aggregated key differs (%v)", set, err)
		}
	}
	for _, set := range subsets(2) {
		_, err := s.issue(t, 200, FastExit, 2, set...)
		if !errors.Is(err, ErrBadSignature) {
			t.Fatalf("t-1 issuers %v: got %v, want ErrBadSignature", set, err)
		}
		agg, _ := AggregateVerificationKeys([]*IssuerVerificationKey{s.ivks[set[0]], s.ivks[set[1]]})
		if agg.Equal(s.vk) {
			t.Fatalf("t-1 issuers %v rebuild the key", set)
		}
	}
	_, err := s.issue(t, 201, FastExit, 1, 0, 1)
	t.Logf("t-1 issuers: %v", err)
}

func TestMisbehavingIssuerNamed(t *testing.T) {
	s := newSystem(t, 10, 2, 3)
	rng := testRNG(1)
	req, pend, _ := NewTicketbookRequest(rng, s.user, FastEntry, ExpiryFor(testNow), 3)
	good, _ := BlindSign(s.sks[0], req)
	bad, _ := BlindSign(s.sks[1], req)
	bad.sigs[2] = mulG1(&params().g1, &req.c)
	sh0, _ := pend.Unblind(s.ivks[0], good)
	sh1, _ := pend.Unblind(s.ivks[1], bad)
	_, err := Aggregate(rng, s.vk, []*SignatureShares{sh0, sh1})
	if !errors.Is(err, ErrBadSignature) || !bytes.Contains([]byte(err.Error()), []byte("issuer 2")) {
		t.Fatalf("got %v, want ErrBadSignature naming issuer 2", err)
	}
	if _, err := pend.Unblind(s.ivks[0], bad); !errors.Is(err, ErrBadParameters) {
		t.Fatalf("partial with another issuer's key: %v", err)
	}
	if _, err := Aggregate(rng, s.vk, []*SignatureShares{sh0, sh0}); !errors.Is(err, ErrBadParameters) {
		t.Fatalf("same issuer twice: %v", err)
	}
	_, pend2, _ := NewTicketbookRequest(rng, s.user, FastEntry, ExpiryFor(testNow), 3)
	if _, err := pend2.Unblind(s.ivks[0], good); !errors.Is(err, ErrBadParameters) {
		t.Fatalf("partial for another request: %v", err)
	}
}

func TestBlindSignChecksRequestProof(t *testing.T) {
	s := newSystem(t, 11, 2, 3)
	req, _, _ := NewTicketbookRequest(testRNG(1), s.user, FastEntry, ExpiryFor(testNow), 2)
	enc, _ := req.MarshalBinary()
	// Claiming another public key, another type or expiry, or swapping a commitment.
	other, _ := NewUserSecret(testRNG(2))
	opk := other.PublicKey()
	const offPk, offTickets = 4, 4 + G1Size + 2 + 2*ScalarSize
	cases := map[string]func([]byte){
		"public key": func(b []byte) { copy(b[offPk:], opk[:]) },
		"type":       func(b []byte) { b[1] = byte(MixnetEntry) },
		"expiry":     func(b []byte) { b[3]++ },
		"commitment": func(b []byte) {
			copy(b[offTickets:offTickets+G1Size], enc[offTickets+ticketRequestSize:offTickets+ticketRequestSize+G1Size])
		},
		"response": func(b []byte) { b[len(b)-1] ^= 1 },
	}
	for name, mutate := range cases {
		b := bytes.Clone(enc)
		mutate(b)
		var r TicketbookRequest
		if err := r.UnmarshalBinary(b); err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if _, err := BlindSign(s.sks[0], &r); !errors.Is(err, ErrInvalidProof) {
			t.Errorf("%s: got %v, want ErrInvalidProof", name, err)
		}
	}
	var r TicketbookRequest
	if err := r.UnmarshalBinary(enc); err != nil {
		t.Fatal(err)
	}
	if _, err := BlindSign(s.sks[0], &r); err != nil {
		t.Fatalf("untouched request: %v", err)
	}
}

func TestEncodingsRoundTrip(t *testing.T) {
	s := newSystem(t, 12, 2, 3)
	rng := testRNG(1)
	req, pend, _ := NewTicketbookRequest(rng, s.user, MixnetEntry, ExpiryFor(testNow), 3)
	part, _ := BlindSign(s.sks[1], req)
	sh0, _ := pend.Unblind(s.ivks[1], part)
	p2, _ := BlindSign(s.sks[2], req)
	sh1, _ := pend.Unblind(s.ivks[2], p2)
	book, err := Aggregate(rng, s.vk, []*SignatureShares{sh0, sh1})
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := book.Spend(rng, 1, payInfo(t, 1, 1))
	type codec interface {
		MarshalBinary() ([]byte, error)
		UnmarshalBinary([]byte) error
	}
	for _, c := range []struct {
		name     string
		v, fresh codec
	}{
		{"verification key", s.vk, new(VerificationKey)},
		{"issuer verification key", s.ivks[0], new(IssuerVerificationKey)},
		{"issuer secret key", s.sks[2], new(IssuerSecretKey)},
		{"user secret", s.user, new(UserSecret)},
		{"request", req, new(TicketbookRequest)},
		{"partial", part, new(PartialTicketbook)},
		{"ticketbook", book, new(Ticketbook)},
	} {
		b, err := c.v.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.fresh.UnmarshalBinary(b); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		b2, _ := c.fresh.MarshalBinary()
		if !bytes.Equal(b, b2) {
			t.Fatalf("%s: round trip differs", c.name)
		}
		for _, bad := range [][]byte{b[:len(b)-1], append(bytes.Clone(b), 0), nil} {
			if err := c.fresh.UnmarshalBinary(bad); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: length %d: got %v, want ErrMalformed", c.name, len(bad), err)
			}
		}
		t.Logf("%-24s %5d bytes", c.name, len(b))
	}
	// A decoded book and a decoded secret key keep working.
	var book2 Ticketbook
	bb, _ := book.MarshalBinary()
	_ = book2.UnmarshalBinary(bb)
	if book2.Remaining() != 2 || !book2.Used(1) {
		t.Fatal("spent bitmap lost")
	}
	pay := payInfo(t, 2, 2)
	sp2, err := book2.Spend(rng, 2, pay)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(s.vk, sp2, MixnetEntry, pay, testNow); err != nil {
		t.Fatal(err)
	}
	var sk IssuerSecretKey
	kb, _ := s.sks[0].MarshalBinary()
	_ = sk.UnmarshalBinary(kb)
	ivk, _ := sk.VerificationKey()
	if !ivk.Key.Equal(s.ivks[0].Key) || ivk.Index != 1 {
		t.Fatal("decoded issuer key derives another verification key")
	}
	if _, err := ParseSpend(sp); err != nil {
		t.Fatal(err)
	}
}

func TestMalformedSpends(t *testing.T) {
	s := newSystem(t, 13, 2, 3)
	book := s.mustIssue(t, 1, FastEntry, 1, 0, 1)
	pay := payInfo(t, 2, 1)
	sp, _ := book.Spend(testRNG(3), 0, pay)

	notInSubgroup := func() []byte {
		var x fp.Element
		x.SetUint64(5)
		for {
			j := bls.GeneratePointNotInG1(x)
			var a bls.G1Affine
			a.FromJacobian(&j)
			if !a.IsInSubGroup() {
				b := a.Bytes()
				return b[:]
			}
			x.SetUint64(x.Uint64() + 1)
		}
	}()
	rBytes := fr.Modulus().Bytes() // the group order: non-canonical scalar
	identity := make([]byte, G1Size)
	identity[0] = 0xc0
	notOnCurve := bytes.Clone(sp[offSigma1:offSigma2])
	notOnCurve[G1Size-1] ^= 1
	cases := []struct {
		name string
		mut  func([]byte) []byte
		want error
	}{
		{"short", func(b []byte) []byte { return b[:len(b)-1] }, ErrMalformed},
		{"long", func(b []byte) []byte { return append(b, 0) }, ErrMalformed},
		{"empty", func([]byte) []byte { return nil }, ErrMalformed},
		{"version", func(b []byte) []byte { b[0] = 2; return b }, ErrMalformed},
		{"type 0", func(b []byte) []byte { b[offType] = 0; return b }, ErrMalformed},
		{"scalar = r", func(b []byte) []byte { copy(b[offC:], rBytes); return b }, ErrMalformed},
		{"scalar all ones", func(b []byte) []byte { copy(b[offZ:offZ+32], bytes.Repeat([]byte{0xff}, 32)); return b }, ErrMalformed},
		{"point not in subgroup", func(b []byte) []byte { copy(b[offSerial:], notInSubgroup); return b }, ErrNotInSubgroup},
		{"identity", func(b []byte) []byte { copy(b[offSigma1:], identity); return b }, ErrNotInSubgroup},
		{"not on curve", func(b []byte) []byte { copy(b[offSigma1:], notOnCurve); return b }, nil},
		{"uncompressed flag", func(b []byte) []byte { b[offTag] &^= 0x80; return b }, ErrMalformed},
	}
	for _, c := range cases {
		bad := c.mut(bytes.Clone(sp))
		_, err := Verify(s.vk, bad, FastEntry, pay, testNow)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		if c.want == nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotInSubgroup) {
			t.Errorf("%s: got %v", c.name, err)
		}
	}
	if _, err := ParseSpend(sp); err != nil {
		t.Fatal(err)
	}
}

func TestWeeks(t *testing.T) {
	mon := time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)
	if WeekOf(mon) != WeekOf(mon.Add(7*24*time.Hour-time.Nanosecond)) || WeekOf(mon) == WeekOf(mon.Add(-time.Nanosecond)) {
		t.Fatal("weeks do not start on Monday 00:00 UTC")
	}
	if WeekOf(mon).Start() != mon {
		t.Fatalf("start %v", WeekOf(mon).Start())
	}
	// Books requested any time in one week share one expiry and live 7 to 14 days.
	e := ExpiryFor(mon)
	for d := time.Duration(0); d < 7*24*time.Hour; d += 13 * time.Hour {
		if ExpiryFor(mon.Add(d)) != e {
			t.Fatal("expiry splits within a week")
		}
	}
	if e.End().Sub(mon) != 14*24*time.Hour || !e.Expired(e.End()) || e.Expired(e.End().Add(-1)) {
		t.Fatal("expiry bounds")
	}
}

func TestParameterErrors(t *testing.T) {
	for _, tn := range [][2]int{{0, 3}, {4, 3}, {1, 0}} {
		if _, _, _, err := GenerateThresholdKeys(testRNG(1), tn[0], tn[1]); !errors.Is(err, ErrBadParameters) {
			t.Fatalf("t=%d n=%d: %v", tn[0], tn[1], err)
		}
	}
	s := newSystem(t, 14, 1, 1)
	if _, _, err := NewTicketbookRequest(testRNG(1), s.user, FastEntry, 0, 0); !errors.Is(err, ErrBadParameters) {
		t.Fatal(err)
	}
	book := s.mustIssue(t, 2, FastEntry, 1, 0) // 1-of-1 works too
	if _, err := book.Spend(testRNG(1), 1, PayInfo{}); !errors.Is(err, ErrBadParameters) {
		t.Fatal(err)
	}
	if book.Type() != FastEntry || book.Len() != 1 || book.Expiry() != ExpiryFor(testNow) {
		t.Fatal("book accessors")
	}
}

// A client that stops between sending its request and aggregating resumes from
// the encoded pending state: the same request, the issuers' same answers, a
// working book.
func TestPendingTicketbookResumes(t *testing.T) {
	s := newSystem(t, 7, 2, 3)
	req, pend, err := NewTicketbookRequest(testRNG(8), s.user, MixnetEntry, ExpiryFor(testNow), 3)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := pend.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back PendingTicketbook
	if err := back.UnmarshalBinary(enc); err != nil {
		t.Fatal(err)
	}
	reqA, _ := req.MarshalBinary()
	reqB, _ := back.Request().MarshalBinary()
	if !bytes.Equal(reqA, reqB) {
		t.Fatal("resumed request differs")
	}
	var shares []*SignatureShares
	for _, i := range []int{1, 2} {
		part, err := BlindSign(s.sks[i], back.Request())
		if err != nil {
			t.Fatal(err)
		}
		sh, err := back.Unblind(s.ivks[i], part)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, sh)
	}
	book, err := Aggregate(testRNG(9), s.vk, shares)
	if err != nil {
		t.Fatal(err)
	}
	pay := payInfo(t, 10, 1)
	sp, err := book.Spend(testRNG(11), 0, pay)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(s.vk, sp, MixnetEntry, pay, testNow); err != nil {
		t.Fatal(err)
	}
	// Secrets that do not open the commitments are refused.
	bad := bytes.Clone(enc)
	bad[1+ScalarSize+2+5] ^= 1
	if err := new(PendingTicketbook).UnmarshalBinary(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("tampered pending state: %v, want ErrMalformed", err)
	}
}

func TestUserSecretFromSeed(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 64)
	a, err := UserSecretFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := UserSecretFromSeed(seed)
	if a.PublicKey() != b.PublicKey() {
		t.Fatal("same seed, different keys")
	}
	seed[0] ^= 1
	c, _ := UserSecretFromSeed(seed)
	if a.PublicKey() == c.PublicKey() {
		t.Fatal("different seeds, same key")
	}
	if _, err := UserSecretFromSeed(seed[:16]); !errors.Is(err, ErrBadParameters) {
		t.Fatalf("short seed: %v", err)
	}
}
