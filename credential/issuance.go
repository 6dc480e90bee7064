package credential

import (
	"encoding/binary"
	"fmt"
	"io"

	circl "github.com/cloudflare/circl/ecc/bls12381"
	bls "github.com/consensys/gnark-crypto/ecc/bls12-381"
	"github.com/consensys/gnark-crypto/ecc/bls12-381/fr"
)

// UserSecret is the client's long-term secret sk. Its public key g1^sk is shown to
// issuers when buying tickets, signed (hidden) into every ticket, and revealed by the
// double-spending tags of a ticket spent twice.
type UserSecret struct{ sk fr.Element }

// PublicKey is a user's public key g1^sk, compressed.
type PublicKey [G1Size]byte

// UserSecretSize is the length of an encoded UserSecret.
const UserSecretSize = ScalarSize

// NewUserSecret draws a fresh user secret.
func NewUserSecret(rng io.Reader) (*UserSecret, error) {
	sk, err := randomNonZeroScalar(rng)
	if err != nil {
		return nil, err
	}
	return &UserSecret{sk: sk}, nil
}

// PublicKey returns g1^sk.
func (u *UserSecret) PublicKey() PublicKey {
	p := mulG1(&params().g1, &u.sk)
	return PublicKey(p.Bytes())
}

// MarshalBinary encodes sk (32 bytes, big-endian). The result is secret.
func (u *UserSecret) MarshalBinary() ([]byte, error) { return putScalar(nil, &u.sk), nil }

// UnmarshalBinary decodes a user secret (canonical, non-zero).
func (u *UserSecret) UnmarshalBinary(b []byte) error {
	r := &reader{b: b, what: "user secret"}
	sk := r.scalar("sk")
	if err := r.done(); err != nil {
		return err
	}
	if sk.IsZero() {
		return fmt.Errorf("user secret: zero: %w", ErrMalformed)
	}
	u.sk = sk
	return nil
}

// ticketRequest is the blinded part of one ticket: com = g1^o·H_sk^sk·H_t^t, from
// which h = H(com, type, expiry) is derived, and the Pedersen commitments
// c_sk = g1^{o_sk}·h^sk and c_t = g1^{o_t}·h^t, with the proof responses.
type ticketRequest struct {
	com, cSk, cT      bls.G1Affine
	zT, zO, zOsk, zOt fr.Element
	h                 bls.G1Affine // derived, not encoded
}

// TicketbookRequest asks issuers to blindly sign Count tickets of one type and
// expiry for the holder of PublicKey. It carries one Fiat–Shamir proof that every
// commitment is well formed and commits to the secret key of PublicKey.
type TicketbookRequest struct {
	Type      TicketType
	Expiry    Week
	PublicKey PublicKey

	pk      bls.G1Affine
	c, zSk  fr.Element
	tickets []ticketRequest
}

// Count is the number of tickets requested.
func (r *TicketbookRequest) Count() int { return len(r.tickets) }

// PendingTicketbook is the client's secret state between NewTicketbookRequest and
// Aggregate: the per-ticket secrets and commitment openings.
type PendingTicketbook struct {
	req     *TicketbookRequest
	sk      fr.Element
	secrets []ticketSecrets
}

type ticketSecrets struct{ t, o, oSk, oT fr.Element }

// Request returns the request to send to the issuers.
func (p *PendingTicketbook) Request() *TicketbookRequest { return p.req }

func deriveH(com *bls.G1Affine, typ TicketType, w Week) (bls.G1Affine, error) {
	b := com.Bytes()
	msg := append(b[:], byte(typ), byte(w>>8), byte(w))
	h, err := bls.HashToG1(msg, []byte(dstH))
	if err != nil {
		return h, fmt.Errorf("credential: hash to G1: %w", err)
	}
	return h, nil
}

// NewTicketbookRequest prepares a request for count tickets of type typ expiring in
// week expiry. Each ticket gets a fresh secret t; the request reveals only hiding
// commitments and a zero-knowledge proof of their openings.
func NewTicketbookRequest(rng io.Reader, user *UserSecret, typ TicketType, expiry Week, count int) (*TicketbookRequest, *PendingTicketbook, error) {
	if !typ.Valid() {
		return nil, nil, fmt.Errorf("credential: new ticketbook request: type %d: %w", typ, ErrWrongType)
	}
	if count < 1 || count > maxTickets {
		return nil, nil, fmt.Errorf("credential: new ticketbook request: count %d not in 1..%d: %w", count, maxTickets, ErrBadParameters)
	}
	if user == nil || user.sk.IsZero() {
		return nil, nil, fmt.Errorf("credential: new ticketbook request: no user secret: %w", ErrBadParameters)
	}
	p := params()
	req := &TicketbookRequest{Type: typ, Expiry: expiry, tickets: make([]ticketRequest, count)}
	pend := &PendingTicketbook{req: req, sk: user.sk, secrets: make([]ticketSecrets, count)}
	req.pk = mulG1(&p.g1, &user.sk)
	req.PublicKey = PublicKey(req.pk.Bytes())

	// Witnesses and nonces: rho[0] for sk, then per ticket (t, o, oSk, oT).
	rs := make([]fr.Element, 1+4*count)
	for i := range rs {
		var err error
		if rs[i], err = randomScalar(rng); err != nil {
			return nil, nil, err
		}
	}
	aCom := make([]bls.G1Affine, count)
	aSk := make([]bls.G1Affine, count)
	aT := make([]bls.G1Affine, count)
	for k := range count {
		s := &pend.secrets[k]
		var err error
		for _, e := range []*fr.Element{&s.t, &s.o, &s.oSk, &s.oT} {
			if *e, err = randomScalar(rng); err != nil {
				return nil, nil, err
			}
		}
		tr := &req.tickets[k]
		tr.com = msmG1([]bls.G1Affine{p.g1, p.hSk, p.hT}, []fr.Element{s.o, user.sk, s.t})
		if tr.h, err = deriveH(&tr.com, typ, expiry); err != nil {
			return nil, nil, err
		}
		tr.cSk = msmG1([]bls.G1Affine{p.g1, tr.h}, []fr.Element{s.oSk, user.sk})
		tr.cT = msmG1([]bls.G1Affine{p.g1, tr.h}, []fr.Element{s.oT, s.t})
		rT, rO, rOsk, rOt := &rs[1+4*k], &rs[2+4*k], &rs[3+4*k], &rs[4+4*k]
		aCom[k] = msmG1([]bls.G1Affine{p.g1, p.hSk, p.hT}, []fr.Element{*rO, rs[0], *rT})
		aSk[k] = msmG1([]bls.G1Affine{p.g1, tr.h}, []fr.Element{*rOsk, rs[0]})
		aT[k] = msmG1([]bls.G1Affine{p.g1, tr.h}, []fr.Element{*rOt, *rT})
	}
	aPk := mulG1(&p.g1, &rs[0])
	req.c = req.challenge(&aPk, aCom, aSk, aT)
	resp := func(rho, w *fr.Element) fr.Element {
		var z fr.Element
		z.Mul(&req.c, w)
		z.Sub(rho, &z)
		return z
	}
	req.zSk = resp(&rs[0], &user.sk)
	for k := range count {
		s, tr := &pend.secrets[k], &req.tickets[k]
		tr.zT = resp(&rs[1+4*k], &s.t)
		tr.zO = resp(&rs[2+4*k], &s.o)
		tr.zOsk = resp(&rs[3+4*k], &s.oSk)
		tr.zOt = resp(&rs[4+4*k], &s.oT)
	}
	for i := range rs {
		rs[i].SetZero()
	}
	return req, pend, nil
}

// challenge hashes every public input of the request proof.
func (r *TicketbookRequest) challenge(aPk *bls.G1Affine, aCom, aSk, aT []bls.G1Affine) fr.Element {
	p := params()
	var t transcript
	t.add("protocol", []byte("ticketbook-request"))
	t.g1("g1", &p.g1)
	t.g1("H_sk", &p.hSk)
	t.g1("H_t", &p.hT)
	t.add("type", []byte{byte(r.Type)})
	t.add("expiry", []byte{byte(r.Expiry >> 8), byte(r.Expiry)})
	t.g1("pk", &r.pk)
	t.add("count", binary.BigEndian.AppendUint32(nil, uint32(len(r.tickets))))
	t.g1("A_pk", aPk)
	for k := range r.tickets {
		tr := &r.tickets[k]
		t.g1("com", &tr.com)
		t.g1("h", &tr.h)
		t.g1("c_sk", &tr.cSk)
		t.g1("c_t", &tr.cT)
		t.g1("A_com", &aCom[k])
		t.g1("A_sk", &aSk[k])
		t.g1("A_t", &aT[k])
	}
	return t.challenge(dstRequest)
}

// verify checks the request's proof of well-formed commitments.
func (r *TicketbookRequest) verify() error {
	if !r.Type.Valid() {
		return fmt.Errorf("credential: ticketbook request: type %d: %w", r.Type, ErrWrongType)
	}
	if n := len(r.tickets); n < 1 || n > maxTickets {
		return fmt.Errorf("credential: ticketbook request: count %d: %w", n, ErrBadParameters)
	}
	p := params()
	n := len(r.tickets)
	aPkJ := msmG1([]bls.G1Affine{r.pk, p.g1}, []fr.Element{r.c, r.zSk})
	aCom := make([]bls.G1Affine, n)
	aSk := make([]bls.G1Affine, n)
	aT := make([]bls.G1Affine, n)
	for k := range r.tickets {
		tr := &r.tickets[k]
		aCom[k] = msmG1([]bls.G1Affine{tr.com, p.g1, p.hSk, p.hT}, []fr.Element{r.c, tr.zO, r.zSk, tr.zT})
		aSk[k] = msmG1([]bls.G1Affine{tr.cSk, p.g1, tr.h}, []fr.Element{r.c, tr.zOsk, r.zSk})
		aT[k] = msmG1([]bls.G1Affine{tr.cT, p.g1, tr.h}, []fr.Element{r.c, tr.zOt, tr.zT})
	}
	if c := r.challenge(&aPkJ, aCom, aSk, aT); !c.Equal(&r.c) {
		return fmt.Errorf("credential: ticketbook request: commitment proof: %w", ErrInvalidProof)
	}
	return nil
}

const ticketRequestSize = 3*G1Size + 4*ScalarSize // 272

// MarshalBinary encodes version(1) ‖ type(1) ‖ expiry(2) ‖ pk(48) ‖ count(2) ‖ c ‖ z_sk
// ‖ count × (com ‖ c_sk ‖ c_t ‖ z_t ‖ z_o ‖ z_osk ‖ z_ot): 118 + 272·count bytes.
func (r *TicketbookRequest) MarshalBinary() ([]byte, error) {
	out := make([]byte, 0, 118+ticketRequestSize*len(r.tickets))
	out = append(out, version1, byte(r.Type))
	out = putU16(out, uint16(r.Expiry))
	out = putG1(out, &r.pk)
	out = putU16(out, uint16(len(r.tickets)))
	out = putScalar(out, &r.c)
	out = putScalar(out, &r.zSk)
	for k := range r.tickets {
		tr := &r.tickets[k]
		out = putG1(out, &tr.com)
		out = putG1(out, &tr.cSk)
		out = putG1(out, &tr.cT)
		for _, z := range []*fr.Element{&tr.zT, &tr.zO, &tr.zOsk, &tr.zOt} {
			out = putScalar(out, z)
		}
	}
	return out, nil
}

// UnmarshalBinary decodes a request (strict lengths, canonical scalars, subgroup-checked
// points). It does not verify the proof; BlindSign does.
func (r *TicketbookRequest) UnmarshalBinary(b []byte) error {
	rd := &reader{b: b, what: "ticketbook request"}
	rd.version()
	var q TicketbookRequest
	q.Type = TicketType(rd.u8())
	q.Expiry = Week(rd.u16())
	q.pk = rd.g1("pk")
	n := int(rd.u16())
	if rd.err == nil && (n < 1 || n > maxTickets) {
		rd.fail(fmt.Errorf("ticketbook request: count %d: %w", n, ErrMalformed))
	}
	if rd.err == nil && len(rd.b) != 2*ScalarSize+n*ticketRequestSize {
		rd.fail(fmt.Errorf("ticketbook request: length %d does not match count %d: %w", len(b), n, ErrMalformed))
	}
	if rd.err != nil {
		return rd.err
	}
	if !q.Type.Valid() {
		return fmt.Errorf("ticketbook request: type %d: %w", q.Type, ErrWrongType)
	}
	q.c = rd.scalar("c")
	q.zSk = rd.scalar("z_sk")
	q.tickets = make([]ticketRequest, n)
	for k := range q.tickets {
		tr := &q.tickets[k]
		tr.com = rd.g1("com")
		tr.cSk = rd.g1("c_sk")
		tr.cT = rd.g1("c_t")
		tr.zT = rd.scalar("z_t")
		tr.zO = rd.scalar("z_o")
		tr.zOsk = rd.scalar("z_osk")
		tr.zOt = rd.scalar("z_ot")
		if rd.err != nil {
			return rd.err
		}
		var err error
		if tr.h, err = deriveH(&tr.com, q.Type, q.Expiry); err != nil {
			return err
		}
	}
	if err := rd.done(); err != nil {
		return err
	}
	q.PublicKey = PublicKey(q.pk.Bytes())
	*r = q
	return nil
}

// PartialTicketbook is one issuer's blinded partial signatures on a request, one G1
// point per ticket, tagged with the issuer's index and the request's challenge.
type PartialTicketbook struct {
	Index   uint32
	request [ScalarSize]byte
	sigs    []bls.G1Affine
}

// Count is the number of partial signatures.
func (p *PartialTicketbook) Count() int { return len(p.sigs) }

// BlindSign verifies the request's proof and returns the issuer's partial blind
// signatures: for each ticket h^{x+y_pub·pub}·c_sk^{y_sk}·c_t^{y_t}, computed with
// constant-time circl arithmetic. The caller (the issuer service) decides whether
// the public key may buy this many tickets of this type and expiry (see ExpiryFor).
func BlindSign(sk *IssuerSecretKey, req *TicketbookRequest) (*PartialTicketbook, error) {
	if sk == nil || req == nil {
		return nil, fmt.Errorf("credential: blind sign: nil argument: %w", ErrBadParameters)
	}
	if err := req.verify(); err != nil {
		return nil, fmt.Errorf("credential: blind sign: %w", err)
	}
	pubE := publicAttribute(req.Type, req.Expiry)
	pubB := pubE.Bytes()
	var pub, e circl.Scalar
	pub.SetBytes(pubB[:])
	e.Mul(&sk.y[attrPub], &pub)
	e.Add(&e, &sk.x)
	out := &PartialTicketbook{Index: sk.index, request: req.c.Bytes(), sigs: make([]bls.G1Affine, len(req.tickets))}
	for k := range req.tickets {
		tr := &req.tickets[k]
		var h, cSk, cT circl.G1
		for _, x := range []struct {
			dst *circl.G1
			src *bls.G1Affine
		}{{&h, &tr.h}, {&cSk, &tr.cSk}, {&cT, &tr.cT}} {
			raw := x.src.RawBytes()
			if err := x.dst.SetBytes(raw[:]); err != nil {
				return nil, fmt.Errorf("credential: blind sign: ticket %d: %v: %w", k, err, ErrNotInSubgroup)
			}
		}
		var acc, tmp circl.G1
		acc.ScalarMult(&e, &h)
		tmp.ScalarMult(&sk.y[attrSk], &cSk)
		acc.Add(&acc, &tmp)
		tmp.ScalarMult(&sk.y[attrT], &cT)
		acc.Add(&acc, &tmp)
		sig, err := decodeG1(acc.BytesCompressed())
		if err != nil {
			return nil, fmt.Errorf("credential: blind sign: ticket %d: %w", k, err)
		}
		out.sigs[k] = sig
	}
	e = circl.Scalar{}
	return out, nil
}

// MarshalBinary encodes version(1) ‖ index(4) ‖ request challenge(32) ‖ count(2) ‖
// count × signature(48): 39 + 48·count bytes.
func (p *PartialTicketbook) MarshalBinary() ([]byte, error) {
	out := make([]byte, 0, 39+G1Size*len(p.sigs))
	out = append(out, version1)
	out = putU32(out, p.Index)
	out = append(out, p.request[:]...)
	out = putU16(out, uint16(len(p.sigs)))
	for k := range p.sigs {
		out = putG1(out, &p.sigs[k])
	}
	return out, nil
}

// UnmarshalBinary decodes a partial ticketbook (strict lengths, subgroup checks).
func (p *PartialTicketbook) UnmarshalBinary(b []byte) error {
	rd := &reader{b: b, what: "partial ticketbook"}
	rd.version()
	var q PartialTicketbook
	q.Index = rd.u32()
	copy(q.request[:], rd.take(ScalarSize))
	n := int(rd.u16())
	if rd.err == nil && (q.Index == 0 || n < 1 || n > maxTickets || len(rd.b) != n*G1Size) {
		rd.fail(fmt.Errorf("partial ticketbook: index %d, count %d, %d bytes left: %w", q.Index, n, len(rd.b), ErrMalformed))
	}
	if rd.err != nil {
		return rd.err
	}
	q.sigs = make([]bls.G1Affine, n)
	for k := range q.sigs {
		q.sigs[k] = rd.g1("signature")
	}
	if err := rd.done(); err != nil {
		return err
	}
	*p = q
	return nil
}

// SignatureShares are one issuer's unblinded partial signatures on a pending book.
type SignatureShares struct {
	pending *PendingTicketbook
	ivk     *IssuerVerificationKey
	sigs    []bls.G1Affine
}

// Index is the issuer's Shamir index.
func (s *SignatureShares) Index() uint32 { return s.ivk.Index }

// Unblind removes the commitment randomness from an issuer's partial signatures:
// s_k = σ̃_k · Y_sk^{-o_sk} · Y_t^{-o_t} under that issuer's key share. The result is
// checked in Aggregate (batched), not here.
func (p *PendingTicketbook) Unblind(ivk *IssuerVerificationKey, part *PartialTicketbook) (*SignatureShares, error) {
	if ivk == nil || ivk.Key == nil || part == nil {
		return nil, fmt.Errorf("credential: unblind: nil argument: %w", ErrBadParameters)
	}
	if ivk.Index != part.Index {
		return nil, fmt.Errorf("credential: unblind: partial from issuer %d, key of issuer %d: %w", part.Index, ivk.Index, ErrBadParameters)
	}
	if part.request != p.req.c.Bytes() {
		return nil, fmt.Errorf("credential: unblind: partial of issuer %d answers another request: %w", part.Index, ErrBadParameters)
	}
	if len(part.sigs) != len(p.secrets) {
		return nil, fmt.Errorf("credential: unblind: issuer %d returned %d signatures for %d tickets: %w", part.Index, len(part.sigs), len(p.secrets), ErrBadParameters)
	}
	var one fr.Element
	one.SetOne()
	out := &SignatureShares{pending: p, ivk: ivk, sigs: make([]bls.G1Affine, len(part.sigs))}
	for k := range part.sigs {
		s := &p.secrets[k]
		var nSk, nT fr.Element
		nSk.Neg(&s.oSk)
		nT.Neg(&s.oT)
		out.sigs[k] = msmG1([]bls.G1Affine{part.sigs[k], ivk.Key.betaG1[attrSk], ivk.Key.betaG1[attrT]}, []fr.Element{one, nSk, nT})
	}
	return out, nil
}

// Aggregate combines unblinded shares from at least t distinct issuers by Lagrange
// interpolation at 0 and checks every resulting ticket signature under vk with one
// batched pairing check (random 128-bit coefficients). If the batch fails, each
// issuer's shares are checked the same way under that issuer's key, to name the
// issuer at fault; if none is, fewer than t issuers took part.
func Aggregate(rng io.Reader, vk *VerificationKey, shares []*SignatureShares) (*Ticketbook, error) {
	if vk == nil || len(shares) == 0 {
		return nil, fmt.Errorf("credential: aggregate: no key or no shares: %w", ErrBadParameters)
	}
	pend := shares[0].pending
	idx := make([]uint32, len(shares))
	for i, s := range shares {
		if s == nil || s.pending != pend {
			return nil, fmt.Errorf("credential: aggregate: shares of different requests: %w", ErrBadParameters)
		}
		idx[i] = s.ivk.Index
	}
	lambda, err := lagrangeAtZero(idx)
	if err != nil {
		return nil, fmt.Errorf("credential: aggregate: %w", err)
	}
	n := len(pend.secrets)
	book := &Ticketbook{vk: vk, typ: pend.req.Type, expiry: pend.req.Expiry, sk: pend.sk, tickets: make([]ticket, n), used: make([]bool, n)}
	pts := make([]bls.G1Affine, len(shares))
	for k := range n {
		for i, s := range shares {
			pts[i] = s.sigs[k]
		}
		book.tickets[k] = ticket{t: pend.secrets[k].t, h: pend.req.tickets[k].h, s: msmG1(pts, lambda)}
	}
	sigs := make([]bls.G1Affine, n)
	for k := range book.tickets {
		sigs[k] = book.tickets[k].s
	}
	ok, err := pend.checkBatch(rng, vk, sigs)
	if err != nil {
		return nil, fmt.Errorf("credential: aggregate: %w", err)
	}
	if ok {
		return book, nil
	}
	for _, s := range shares {
		ok, err := pend.checkBatch(rng, s.ivk.Key, s.sigs)
		if err != nil {
			return nil, fmt.Errorf("credential: aggregate: %w", err)
		}
		if !ok {
			return nil, fmt.Errorf("credential: aggregate: partial signatures of issuer %d: %w", s.ivk.Index, ErrBadSignature)
		}
	}
	return nil, fmt.Errorf("credential: aggregate: every issuer's shares verify but their combination does not (fewer than the threshold of issuers, or keys of another issuer set): %w", ErrBadSignature)
}

// checkBatch verifies n PS signatures (h_k, s_k) on (sk, t_k, pub) at once:
// e(Σρ_k h_k, X̃·Ỹ_pub^pub·Ỹ_sk^sk) · e(Σρ_k t_k h_k, Ỹ_t) · e(−Σρ_k s_k, g̃) = 1.
func (p *PendingTicketbook) checkBatch(rng io.Reader, vk *VerificationKey, sigs []bls.G1Affine) (bool, error) {
	n := len(sigs)
	hs := make([]bls.G1Affine, n)
	rho := make([]fr.Element, n)
	rhoT := make([]fr.Element, n)
	for k := range n {
		var err error
		if rho[k], err = randomSmallScalar(rng); err != nil {
			return false, err
		}
		rhoT[k].Mul(&rho[k], &p.secrets[k].t)
		hs[k] = p.req.tickets[k].h
	}
	sumH := msmG1(hs, rho)
	sumHT := msmG1(hs, rhoT)
	sumS := msmG1(sigs, rho)
	sumS.Neg(&sumS)
	base := vk.base(p.req.Type, p.req.Expiry)
	kSk := mulG2(&vk.beta[attrSk], &p.sk)
	var k bls.G2Affine
	k.Add(&base, &kSk)
	return pairingCheck3(&sumH, &k, &sumHT, &vk.beta[attrT], &sumS), nil
}

// pairingCheck3 reports whether e(a, p) · e(b, q) · e(c, g̃) = 1.
func pairingCheck3(a *bls.G1Affine, p *bls.G2Affine, b *bls.G1Affine, q *bls.G2Affine, c *bls.G1Affine) bool {
	if a.IsInfinity() || b.IsInfinity() {
		return false
	}
	m1, err := bls.MillerLoop([]bls.G1Affine{*a, *b}, []bls.G2Affine{*p, *q})
	if err != nil {
		return false
	}
	m2, err := bls.MillerLoopFixedQ([]bls.G1Affine{*c}, [][2][len(bls.LoopCounter) - 1]bls.LineEvaluationAff{params().g2Lines})
	if err != nil {
		return false
	}
	m1.Mul(&m1, &m2)
	r := bls.FinalExponentiation(&m1)
	return r.IsOne()
}
