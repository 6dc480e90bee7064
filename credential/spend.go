package credential

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"

	bls "github.com/consensys/gnark-crypto/ecc/bls12-381"
	"github.com/consensys/gnark-crypto/ecc/bls12-381/fr"
)

// PayInfo is what a spend is bound to: the gateway's public key, the client's
// timestamp and a nonce (chosen by the gateway or the client). Two spends of one
// ticket with different PayInfo reveal the spender's public key.
type PayInfo struct {
	GatewayKey [32]byte
	Timestamp  int64 // Unix seconds
	Nonce      [16]byte
}

// PayInfoSize is the length of an encoded PayInfo.
const PayInfoSize = 32 + 8 + 16

// NewPayInfo binds a spend to gatewayKey at now with a fresh random nonce.
func NewPayInfo(rng io.Reader, gatewayKey [32]byte, now time.Time) (PayInfo, error) {
	p := PayInfo{GatewayKey: gatewayKey, Timestamp: now.Unix()}
	if _, err := io.ReadFull(rng, p.Nonce[:]); err != nil {
		return PayInfo{}, fmt.Errorf("credential: pay info nonce: %w", err)
	}
	return p, nil
}

// MarshalBinary encodes gateway key(32) ‖ timestamp(8, big-endian) ‖ nonce(16).
func (p PayInfo) MarshalBinary() ([]byte, error) { return p.appendTo(nil), nil }

func (p PayInfo) appendTo(dst []byte) []byte {
	dst = append(dst, p.GatewayKey[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(p.Timestamp))
	return append(dst, p.Nonce[:]...)
}

// UnmarshalBinary decodes a PayInfo of exactly PayInfoSize bytes.
func (p *PayInfo) UnmarshalBinary(b []byte) error {
	if len(b) != PayInfoSize {
		return fmt.Errorf("pay info: length %d, want %d: %w", len(b), PayInfoSize, ErrMalformed)
	}
	copy(p.GatewayKey[:], b[:32])
	p.Timestamp = int64(binary.BigEndian.Uint64(b[32:40]))
	copy(p.Nonce[:], b[40:])
	return nil
}

// tagChallenge is R = H(payinfo), the coefficient of t in the double-spending tag.
func (p PayInfo) tagChallenge() fr.Element {
	return hashToScalar(p.appendTo(nil), dstTagR)
}

// Spend is a decoded spent ticket. Type, Expiry and PayInfo are public; the rest is
// the re-randomised signature (σ1, σ2), the blinded key part D = Ỹ_sk^sk·Ỹ_t^t·g̃^r,
// the serial S = G_s^t, the double-spending tag T = g1^{sk+R·t} and the proof (c, z).
type Spend struct {
	Type    TicketType
	Expiry  Week
	PayInfo PayInfo

	sigma1, sigma2 bls.G1Affine
	d              bls.G2Affine
	serial, tag    bls.G1Affine
	c              fr.Element
	z              [3]fr.Element // responses for sk, t, r
}

// SpendSize is the length of an encoded spend.
const SpendSize = 1 + 1 + 2 + PayInfoSize + 2*G1Size + G2Size + 2*G1Size + 4*ScalarSize // 476

// Serial is the ticket's serial number S = G_s^t (compressed), the same for every
// spend of one ticket and unrelated to every other ticket.
func (s *Spend) Serial() [G1Size]byte { return s.serial.Bytes() }

// DoubleSpendTag is T = g1^{sk + R·t} with R = H(PayInfo).
func (s *Spend) DoubleSpendTag() [G1Size]byte { return s.tag.Bytes() }

// Spend spends ticket i, bound to pay. It re-randomises the ticket's signature, and
// proves in zero knowledge that it knows sk, t and the blinding r behind D, S and T.
// The ticket is marked used first; a ticket already used is refused with
// ErrTicketUsed (spending it again would reveal the user's public key).
func (b *Ticketbook) Spend(rng io.Reader, i int, pay PayInfo) ([]byte, error) {
	if i < 0 || i >= len(b.tickets) {
		return nil, fmt.Errorf("credential: spend: ticket %d of %d: %w", i, len(b.tickets), ErrBadParameters)
	}
	if b.used[i] {
		return nil, fmt.Errorf("credential: spend: ticket %d: %w", i, ErrTicketUsed)
	}
	s, err := b.spend(rng, i, pay)
	if err != nil {
		return nil, fmt.Errorf("credential: spend: ticket %d: %w", i, err)
	}
	b.used[i] = true
	return s.MarshalBinary()
}

func (b *Ticketbook) spend(rng io.Reader, i int, pay PayInfo) (*Spend, error) {
	p, vk, tk := params(), b.vk, &b.tickets[i]
	var rnd [5]fr.Element // r (randomiser), r' (blinding), rho_sk, rho_t, rho_r
	for k := range rnd {
		var err error
		if rnd[k], err = randomNonZeroScalar(rng); err != nil {
			return nil, err
		}
	}
	r, rb := &rnd[0], &rnd[1]
	s := &Spend{Type: b.typ, Expiry: b.expiry, PayInfo: pay}
	// σ1' = h^r, σ2' = (s·h^{r'})^r = s^r · h^{r·r'}.
	var rrb fr.Element
	rrb.Mul(r, rb)
	s.sigma1 = mulG1(&tk.h, r)
	s.sigma2 = msmG1([]bls.G1Affine{tk.s, tk.h}, []fr.Element{*r, rrb})
	s.d = msmG2([]bls.G2Affine{vk.beta[attrSk], vk.beta[attrT], p.g2}, []fr.Element{b.sk, tk.t, *rb})
	s.serial = mulG1(&p.gS, &tk.t)
	R := pay.tagChallenge()
	var e fr.Element
	e.Mul(&R, &tk.t).Add(&e, &b.sk)
	s.tag = mulG1(&p.g1, &e)

	rhoSk, rhoT, rhoR := &rnd[2], &rnd[3], &rnd[4]
	aD := msmG2([]bls.G2Affine{vk.beta[attrSk], vk.beta[attrT], p.g2}, []fr.Element{*rhoSk, *rhoT, *rhoR})
	aS := mulG1(&p.gS, rhoT)
	e.Mul(&R, rhoT).Add(&e, rhoSk)
	aT := mulG1(&p.g1, &e)
	s.c = s.challenge(vk, &aD, &aS, &aT)
	for k, w := range []*fr.Element{&b.sk, &tk.t, rb} {
		var cw fr.Element
		cw.Mul(&s.c, w)
		s.z[k].Sub(&rnd[2+k], &cw)
	}
	for k := range rnd {
		rnd[k].SetZero()
	}
	e.SetZero()
	rrb.SetZero()
	return s, nil
}

// challenge hashes every public input of the spend proof.
func (s *Spend) challenge(vk *VerificationKey, aD *bls.G2Affine, aS, aT *bls.G1Affine) fr.Element {
	p := params()
	var t transcript
	t.add("protocol", []byte("spend"))
	t.add("vk", vk.digest[:])
	t.g1("g1", &p.g1)
	t.g2("g2", &p.g2)
	t.g1("G_s", &p.gS)
	t.add("type", []byte{byte(s.Type)})
	t.add("expiry", []byte{byte(s.Expiry >> 8), byte(s.Expiry)})
	t.add("payinfo", s.PayInfo.appendTo(nil))
	t.g1("sigma1", &s.sigma1)
	t.g1("sigma2", &s.sigma2)
	t.g2("D", &s.d)
	t.g1("S", &s.serial)
	t.g1("T", &s.tag)
	t.g2("A_D", aD)
	t.g1("A_S", aS)
	t.g1("A_T", aT)
	return t.challenge(dstSpend)
}

// MarshalBinary encodes version(1) ‖ type(1) ‖ expiry(2) ‖ payinfo(56) ‖ σ1(48) ‖
// σ2(48) ‖ D(96) ‖ S(48) ‖ T(48) ‖ c(32) ‖ z_sk ‖ z_t ‖ z_r (3×32): 476 bytes.
func (s *Spend) MarshalBinary() ([]byte, error) {
	out := make([]byte, 0, SpendSize)
	out = append(out, version1, byte(s.Type))
	out = putU16(out, uint16(s.Expiry))
	out = s.PayInfo.appendTo(out)
	out = putG1(out, &s.sigma1)
	out = putG1(out, &s.sigma2)
	out = putG2(out, &s.d)
	out = putG1(out, &s.serial)
	out = putG1(out, &s.tag)
	out = putScalar(out, &s.c)
	for k := range s.z {
		out = putScalar(out, &s.z[k])
	}
	return out, nil
}

// UnmarshalBinary decodes a spend: exact length, known type, canonical scalars,
// canonical subgroup-checked non-identity points. It does not verify the spend.
func (s *Spend) UnmarshalBinary(b []byte) error {
	if len(b) != SpendSize {
		return fmt.Errorf("spend: length %d, want %d: %w", len(b), SpendSize, ErrMalformed)
	}
	rd := &reader{b: b, what: "spend"}
	rd.version()
	var q Spend
	q.Type = TicketType(rd.u8())
	q.Expiry = Week(rd.u16())
	if rd.err == nil && !q.Type.Valid() {
		rd.fail(fmt.Errorf("spend: ticket type %d: %w", q.Type, ErrMalformed))
	}
	if pb := rd.take(PayInfoSize); pb != nil {
		_ = q.PayInfo.UnmarshalBinary(pb)
	}
	q.sigma1 = rd.g1("sigma1")
	q.sigma2 = rd.g1("sigma2")
	q.d = rd.g2("D")
	q.serial = rd.g1("serial")
	q.tag = rd.g1("tag")
	q.c = rd.scalar("c")
	for k := range q.z {
		q.z[k] = rd.scalar("z")
	}
	if err := rd.done(); err != nil {
		return err
	}
	*s = q
	return nil
}

// ParseSpend decodes a spend without verifying it.
func ParseSpend(b []byte) (*Spend, error) {
	var s Spend
	if err := s.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return &s, nil
}

// verify checks the proof and the signature: the cryptographic part of Verify.
func (s *Spend) verify(vk *VerificationKey) error {
	p := params()
	R := s.PayInfo.tagChallenge()
	aD := msmG2([]bls.G2Affine{s.d, vk.beta[attrSk], vk.beta[attrT], p.g2}, []fr.Element{s.c, s.z[0], s.z[1], s.z[2]})
	aS := msmG1([]bls.G1Affine{s.serial, p.gS}, []fr.Element{s.c, s.z[1]})
	var e fr.Element
	e.Mul(&R, &s.z[1]).Add(&e, &s.z[0])
	aT := msmG1([]bls.G1Affine{s.tag, p.g1}, []fr.Element{s.c, e})
	if c := s.challenge(vk, &aD, &aS, &aT); !c.Equal(&s.c) {
		return fmt.Errorf("spend proof: %w", ErrInvalidProof)
	}
	// e(σ1, X̃·Ỹ_pub^pub·D) = e(σ2, g̃)
	kappa := vk.base(s.Type, s.Expiry)
	kappa.Add(&kappa, &s.d)
	var negS2 bls.G1Affine
	negS2.Neg(&s.sigma2)
	if !pairingCheck2(&s.sigma1, &kappa, &negS2) {
		return fmt.Errorf("ticket signature: %w", ErrBadSignature)
	}
	return nil
}

// VerifiedSpend is what a gateway learns from a valid spend.
type VerifiedSpend struct {
	Serial         [G1Size]byte // store it and refuse it when seen again
	DoubleSpendTag [G1Size]byte // keep it with the spend for double-spender identification
	Type           TicketType
	Expiry         Week
	Bandwidth      uint64 // bytes granted by this ticket
	PayInfo        PayInfo
}

// Verify checks a spend for a gateway that knows the exact payment info it expects:
// decoding (ErrMalformed, ErrNotInSubgroup), type == want (ErrWrongType), not expired
// at now (ErrExpired), PayInfo == pay (ErrPayInfoMismatch), the zero-knowledge proof
// (ErrInvalidProof) and the re-randomised signature under vk (ErrBadSignature). Cheap
// checks run first. The caller must still refuse serials it has seen.
func Verify(vk *VerificationKey, spend []byte, want TicketType, pay PayInfo, now time.Time) (*VerifiedSpend, error) {
	return verifyWith(vk, spend, want, now, func(got PayInfo) error {
		if got != pay {
			return fmt.Errorf("spend bound to gateway %x at %d, want gateway %x at %d (or another nonce): %w",
				got.GatewayKey[:4], got.Timestamp, pay.GatewayKey[:4], pay.Timestamp, ErrPayInfoMismatch)
		}
		return nil
	})
}

// VerifyBound is Verify for a gateway that does not know the client's timestamp and
// nonce in advance: the spend must name gatewayKey and a timestamp within maxSkew of
// now. Replays are then caught by the serial store alone.
func VerifyBound(vk *VerificationKey, spend []byte, want TicketType, gatewayKey [32]byte, now time.Time, maxSkew time.Duration) (*VerifiedSpend, error) {
	return verifyWith(vk, spend, want, now, func(got PayInfo) error {
		if got.GatewayKey != gatewayKey {
			return fmt.Errorf("spend bound to gateway %x, this is %x: %w", got.GatewayKey[:4], gatewayKey[:4], ErrPayInfoMismatch)
		}
		skew := now.Sub(time.Unix(got.Timestamp, 0))
		if skew > maxSkew || skew < -maxSkew {
			return fmt.Errorf("spend timestamp %d is %v from now: %w", got.Timestamp, skew, ErrPayInfoMismatch)
		}
		return nil
	})
}

func verifyWith(vk *VerificationKey, spend []byte, want TicketType, now time.Time, checkPay func(PayInfo) error) (*VerifiedSpend, error) {
	if vk == nil {
		return nil, fmt.Errorf("credential: verify: nil verification key: %w", ErrBadParameters)
	}
	s, err := ParseSpend(spend)
	if err != nil {
		return nil, fmt.Errorf("credential: verify: %w", err)
	}
	if checkPay != nil { // nil: VerifySignature, cryptography only
		if s.Type != want {
			return nil, fmt.Errorf("credential: verify: %v ticket where %v is accepted: %w", s.Type, want, ErrWrongType)
		}
		if s.Expiry.Expired(now) {
			return nil, fmt.Errorf("credential: verify: ticket expired at %v: %w", s.Expiry.End().Format(time.RFC3339), ErrExpired)
		}
		if err := checkPay(s.PayInfo); err != nil {
			return nil, fmt.Errorf("credential: verify: %w", err)
		}
	}
	if err := s.verify(vk); err != nil {
		return nil, fmt.Errorf("credential: verify: %w", err)
	}
	return &VerifiedSpend{
		Serial: s.Serial(), DoubleSpendTag: s.DoubleSpendTag(),
		Type: s.Type, Expiry: s.Expiry, Bandwidth: s.Type.Bandwidth(), PayInfo: s.PayInfo,
	}, nil
}

// IdentifyDoubleSpender takes two spends of one ticket (same serial) with different
// payment info, verifies both under vk (proof and signature; expiry and payment
// policy are not re-checked) and returns the spender's public key:
// g1^t = (T_a/T_b)^{1/(R_a−R_b)}, pk = T_a / (g1^t)^{R_a}. Verifying both first matters:
// otherwise anybody could pair a forged tag with a real spend and frame any key.
func IdentifyDoubleSpender(vk *VerificationKey, spendA, spendB []byte) (PublicKey, error) {
	if vk == nil {
		return PublicKey{}, fmt.Errorf("credential: identify double spender: nil verification key: %w", ErrBadParameters)
	}
	var spends [2]*Spend
	for i, b := range [][]byte{spendA, spendB} {
		s, err := ParseSpend(b)
		if err != nil {
			return PublicKey{}, fmt.Errorf("credential: identify double spender: spend %c: %w", 'A'+i, err)
		}
		spends[i] = s
	}
	a, b := spends[0], spends[1]
	if !a.serial.Equal(&b.serial) {
		return PublicKey{}, fmt.Errorf("credential: identify double spender: different serials: %w", ErrNotDoubleSpend)
	}
	ra, rb := a.PayInfo.tagChallenge(), b.PayInfo.tagChallenge()
	if ra.Equal(&rb) {
		return PublicKey{}, fmt.Errorf("credential: identify double spender: same payment info (a replay reveals nothing): %w", ErrNotDoubleSpend)
	}
	for i, s := range spends {
		if err := s.verify(vk); err != nil {
			return PublicKey{}, fmt.Errorf("credential: identify double spender: spend %c: %w", 'A'+i, err)
		}
	}
	// pk = (−R_b·T_a + R_a·T_b) / (R_a − R_b)
	var inv, ca, cb fr.Element
	inv.Sub(&ra, &rb).Inverse(&inv)
	ca.Mul(&rb, &inv).Neg(&ca)
	cb.Mul(&ra, &inv)
	pk := msmG1([]bls.G1Affine{a.tag, b.tag}, []fr.Element{ca, cb})
	return PublicKey(pk.Bytes()), nil
}

// VerifySignature checks only the cryptography of a spend under vk — decoding with
// subgroup checks, the zero-knowledge proof and the re-randomised signature — and
// none of the gateway's policy (type, expiry, payment info). Issuers use it on the
// spends gateways report, before they keep them for double-spend detection.
func VerifySignature(vk *VerificationKey, spend []byte) (*VerifiedSpend, error) {
	return verifyWith(vk, spend, 0, time.Time{}, nil)
}
