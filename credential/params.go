package credential

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	bls "github.com/consensys/gnark-crypto/ecc/bls12-381"
	"github.com/consensys/gnark-crypto/ecc/bls12-381/fr"
)

// Encoding sizes in bytes.
const (
	ScalarSize = fr.Bytes                       // 32, big-endian, canonical (< r)
	G1Size     = bls.SizeOfG1AffineCompressed   // 48, ZCash compressed form
	G2Size     = bls.SizeOfG2AffineCompressed   // 96, ZCash compressed form
	version1   = 1                              // first byte of every top-level encoding
	maxTickets = 1024                           // upper bound on tickets per book
	g1Raw      = bls.SizeOfG1AffineUncompressed // 96
)

// Domain-separation tags. Every hash in the scheme uses its own tag.
const (
	dstGenerators = "NYMVPN-CREDENTIAL-V1_GEN_BLS12381G1_XMD:SHA-256_SSWU_RO_"
	dstH          = "NYMVPN-CREDENTIAL-V1_H_BLS12381G1_XMD:SHA-256_SSWU_RO_"
	dstRequest    = "NYMVPN-CREDENTIAL-V1_REQUEST-CHALLENGE_XMD:SHA-256"
	dstSpend      = "NYMVPN-CREDENTIAL-V1_SPEND-CHALLENGE_XMD:SHA-256"
	dstTagR       = "NYMVPN-CREDENTIAL-V1_DOUBLE-SPEND-R_XMD:SHA-256"
	dstVKDigest   = "NYMVPN-CREDENTIAL-V1_VK-DIGEST_XMD:SHA-256"
)

// TicketType is the public ticket type, bound into every signature.
type TicketType uint8

// The four ticket types of NymVPN.
const (
	FastEntry   TicketType = 1
	FastExit    TicketType = 2
	MixnetEntry TicketType = 3
	MixnetExit  TicketType = 4
)

// Valid reports whether t is one of the four known types.
func (t TicketType) Valid() bool { return t >= FastEntry && t <= MixnetExit }

// Bandwidth is the number of bytes one ticket of this type buys.
func (t TicketType) Bandwidth() uint64 {
	const mb = 1000 * 1000
	switch t {
	case FastEntry, FastExit:
		return 500 * mb
	case MixnetEntry:
		return 200 * mb
	case MixnetExit:
		return 100 * mb
	}
	return 0
}

func (t TicketType) String() string {
	switch t {
	case FastEntry:
		return "fast-entry"
	case FastExit:
		return "fast-exit"
	case MixnetEntry:
		return "mixnet-entry"
	case MixnetExit:
		return "mixnet-exit"
	}
	return fmt.Sprintf("ticket-type(%d)", uint8(t))
}

// Week is an expiry bucket: the number of whole weeks (Monday 00:00 UTC to the next
// Monday) since Monday 1970-01-05. All tickets expiring in one week share one value,
// so the expiry does not split the anonymity set finer than the week.
type Week uint16

const weekLen = 7 * 24 * time.Hour

var weekZero = time.Date(1970, 1, 5, 0, 0, 0, 0, time.UTC)

// WeekOf returns the week that contains t (clamped to the range of Week).
func WeekOf(t time.Time) Week {
	d := t.Sub(weekZero)
	if d < 0 {
		return 0
	}
	w := int64(d / weekLen)
	if w > 0xffff {
		return 0xffff
	}
	return Week(w)
}

// ExpiryFor is the expiry an issuer should grant for a book requested at now: the end
// of the week that contains now+7 days, so a book lives between 7 and 14 days.
func ExpiryFor(now time.Time) Week { return WeekOf(now.Add(weekLen)) }

// Start is the first instant of week w.
func (w Week) Start() time.Time { return weekZero.Add(time.Duration(w) * weekLen) }

// End is the first instant after week w; a ticket expiring in w is refused from then on.
func (w Week) End() time.Time { return w.Start().Add(weekLen) }

// Expired reports whether a ticket with expiry w is expired at now.
func (w Week) Expired(now time.Time) bool { return !now.Before(w.End()) }

// publicAttribute encodes (type, expiry) as the one public signed attribute.
func publicAttribute(t TicketType, w Week) fr.Element {
	var e fr.Element
	e.SetUint64(uint64(t)<<16 | uint64(w))
	return e
}

// generators holds the fixed public points of the scheme.
type generators struct {
	g1, hSk, hT, gS bls.G1Affine // g1 generator; commitment bases; serial base
	g2              bls.G2Affine
	g2Lines         [2][len(bls.LoopCounter) - 1]bls.LineEvaluationAff
}

var params = sync.OnceValue(func() *generators {
	_, _, g1, g2 := bls.Generators()
	p := &generators{g1: g1, g2: g2}
	for _, x := range []struct {
		dst *bls.G1Affine
		msg string
	}{{&p.hSk, "commitment-base-sk"}, {&p.hT, "commitment-base-t"}, {&p.gS, "serial-base"}} {
		pt, err := bls.HashToG1([]byte(x.msg), []byte(dstGenerators))
		if err != nil {
			panic("credential: hash to G1: " + err.Error())
		}
		*x.dst = pt
	}
	p.g2Lines = bls.PrecomputeLines(g2)
	return p
})

// randomScalar draws a uniform scalar from rng (64 bytes reduced mod r; bias < 2^-128).
func randomScalar(rng io.Reader) (fr.Element, error) {
	var buf [64]byte
	if _, err := io.ReadFull(rng, buf[:]); err != nil {
		return fr.Element{}, fmt.Errorf("credential: reading randomness: %w", err)
	}
	var e fr.Element
	e.SetBytes(buf[:])
	return e, nil
}

// randomNonZeroScalar draws a uniform non-zero scalar.
func randomNonZeroScalar(rng io.Reader) (fr.Element, error) {
	for {
		e, err := randomScalar(rng)
		if err != nil || !e.IsZero() {
			return e, err
		}
	}
}

// randomSmallScalar draws a non-zero 128-bit scalar for small-exponent batching.
func randomSmallScalar(rng io.Reader) (fr.Element, error) {
	var buf [16]byte
	var e fr.Element
	for e.IsZero() {
		if _, err := io.ReadFull(rng, buf[:]); err != nil {
			return fr.Element{}, fmt.Errorf("credential: reading randomness: %w", err)
		}
		e.SetBytes(buf[:])
	}
	return e, nil
}

// transcript is a Fiat–Shamir transcript: labelled, length-prefixed public inputs,
// hashed to a scalar with RFC 9380 hash_to_field (expand_message_xmd, SHA-256).
type transcript struct{ buf bytes.Buffer }

func (t *transcript) add(label string, data []byte) {
	var l [4]byte
	binary.BigEndian.PutUint16(l[:2], uint16(len(label)))
	t.buf.Write(l[:2])
	t.buf.WriteString(label)
	binary.BigEndian.PutUint32(l[:], uint32(len(data)))
	t.buf.Write(l[:])
	t.buf.Write(data)
}

func (t *transcript) g1(label string, p *bls.G1Affine) { b := p.Bytes(); t.add(label, b[:]) }
func (t *transcript) g2(label string, p *bls.G2Affine) { b := p.Bytes(); t.add(label, b[:]) }

func (t *transcript) challenge(dst string) fr.Element {
	return hashToScalar(t.buf.Bytes(), dst)
}

func hashToScalar(msg []byte, dst string) fr.Element {
	e, err := fr.Hash(msg, []byte(dst), 1)
	if err != nil {
		panic("credential: hash to field: " + err.Error()) // only on a bad DST length
	}
	return e[0]
}

// reader is a strict decoder over a byte slice: every read checks the length, and
// done() refuses trailing bytes.
type reader struct {
	b    []byte
	what string
	err  error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.fail(fmt.Errorf("%s: truncated (need %d more bytes, have %d): %w", r.what, n, len(r.b), ErrMalformed))
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() uint8 {
	b := r.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) u16() uint16 {
	b := r.take(2)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

func (r *reader) u32() uint32 {
	b := r.take(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (r *reader) version() {
	if v := r.u8(); r.err == nil && v != version1 {
		r.fail(fmt.Errorf("%s: unknown version %d: %w", r.what, v, ErrMalformed))
	}
}

func (r *reader) scalar(field string) fr.Element {
	var e fr.Element
	b := r.take(ScalarSize)
	if b == nil {
		return e
	}
	if err := e.SetBytesCanonical(b); err != nil {
		r.fail(fmt.Errorf("%s: %s: non-canonical scalar: %w", r.what, field, ErrMalformed))
	}
	return e
}

func (r *reader) g1(field string) bls.G1Affine {
	b := r.take(G1Size)
	if b == nil {
		return bls.G1Affine{}
	}
	p, err := decodeG1(b)
	if err != nil {
		r.fail(fmt.Errorf("%s: %s: %w", r.what, field, err))
	}
	return p
}

func (r *reader) g2(field string) bls.G2Affine {
	b := r.take(G2Size)
	if b == nil {
		return bls.G2Affine{}
	}
	p, err := decodeG2(b)
	if err != nil {
		r.fail(fmt.Errorf("%s: %s: %w", r.what, field, err))
	}
	return p
}

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Errorf("%s: %d trailing bytes: %w", r.what, len(r.b), ErrMalformed))
	}
	return r.err
}

// decodeG1 decodes a compressed G1 point: exact length, canonical, on the curve, in
// the prime-order subgroup and not the identity.
func decodeG1(b []byte) (bls.G1Affine, error) {
	var p bls.G1Affine
	if len(b) != G1Size || b[0]&0x80 == 0 {
		return p, fmt.Errorf("G1 point: want %d-byte compressed form: %w", G1Size, ErrMalformed)
	}
	if _, err := p.SetBytes(b); err != nil {
		if onCurveG1(b) {
			return p, fmt.Errorf("G1 point: %w", ErrNotInSubgroup)
		}
		return p, fmt.Errorf("G1 point: %v: %w", err, ErrMalformed)
	}
	if p.IsInfinity() {
		return p, fmt.Errorf("G1 point: identity: %w", ErrNotInSubgroup)
	}
	if enc := p.Bytes(); !bytes.Equal(enc[:], b) {
		return p, fmt.Errorf("G1 point: non-canonical: %w", ErrMalformed)
	}
	return p, nil
}

// decodeG2 is decodeG1 for G2.
func decodeG2(b []byte) (bls.G2Affine, error) {
	var p bls.G2Affine
	if len(b) != G2Size || b[0]&0x80 == 0 {
		return p, fmt.Errorf("G2 point: want %d-byte compressed form: %w", G2Size, ErrMalformed)
	}
	if _, err := p.SetBytes(b); err != nil {
		if onCurveG2(b) {
			return p, fmt.Errorf("G2 point: %w", ErrNotInSubgroup)
		}
		return p, fmt.Errorf("G2 point: %v: %w", err, ErrMalformed)
	}
	if p.IsInfinity() {
		return p, fmt.Errorf("G2 point: identity: %w", ErrNotInSubgroup)
	}
	if enc := p.Bytes(); !bytes.Equal(enc[:], b) {
		return p, fmt.Errorf("G2 point: non-canonical: %w", ErrMalformed)
	}
	return p, nil
}

// onCurveG1 reports whether b decodes to a curve point when the subgroup check is
// skipped (used only to classify a decoding error).
func onCurveG1(b []byte) bool {
	var p bls.G1Affine
	return bls.NewDecoder(bytes.NewReader(b), bls.NoSubgroupChecks()).Decode(&p) == nil
}

func onCurveG2(b []byte) bool {
	var p bls.G2Affine
	return bls.NewDecoder(bytes.NewReader(b), bls.NoSubgroupChecks()).Decode(&p) == nil
}

// writer helpers.
func putScalar(dst []byte, e *fr.Element) []byte { b := e.Bytes(); return append(dst, b[:]...) }
func putG1(dst []byte, p *bls.G1Affine) []byte   { b := p.Bytes(); return append(dst, b[:]...) }
func putG2(dst []byte, p *bls.G2Affine) []byte   { b := p.Bytes(); return append(dst, b[:]...) }
func putU16(dst []byte, v uint16) []byte         { return binary.BigEndian.AppendUint16(dst, v) }
func putU32(dst []byte, v uint32) []byte         { return binary.BigEndian.AppendUint32(dst, v) }
