package sphinx

import (
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// PublicKey is an X25519 public key (Montgomery u-coordinate).
type PublicKey [GroupElementLength]byte

// NodeID names a node in routing commands (opaque to this package).
type NodeID [NodeIDLength]byte

// Recipient is the opaque recipient id given to the final hop.
type Recipient [RecipientLength]byte

// SURBID identifies a SURB to its creator.
type SURBID [SURBIDLength]byte

// ReplayTag is derived from a hop's shared secret: the same packet
// reaching the same key twice yields the same tag.
type ReplayTag [ReplayTagLength]byte

// String returns the hex encoding.
func (k PublicKey) String() string { return hex.EncodeToString(k[:]) }

// String returns the hex encoding.
func (id NodeID) String() string { return hex.EncodeToString(id[:]) }

// String returns the hex encoding.
func (t ReplayTag) String() string { return hex.EncodeToString(t[:]) }

// PrivateKey is a node's X25519 private key.
type PrivateKey struct {
	raw     [32]byte
	clamped [32]byte
	public  PublicKey
}

// GenerateKey reads 32 bytes from rand and returns a new private key.
func GenerateKey(rand io.Reader) (*PrivateKey, error) {
	var b [32]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return nil, fmt.Errorf("%w: generate key: %w", ErrRandom, err)
	}
	return NewPrivateKey(b[:])
}

// NewPrivateKey takes a 32-byte X25519 private key (clamped on use, as in
// X25519).
func NewPrivateKey(b []byte) (*PrivateKey, error) {
	if len(b) != 32 {
		return nil, fmt.Errorf("%w: private key is %d bytes, want 32", ErrInvalidKey, len(b))
	}
	k := new(PrivateKey)
	copy(k.raw[:], b)
	copy(k.clamped[:], b)
	k.clamped[0] &= 248
	k.clamped[31] &= 127
	k.clamped[31] |= 64
	s, err := new(edwards25519.Scalar).SetBytesWithClamping(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	baseMult(&k.public, s)
	return k, nil
}

// Bytes returns the 32-byte private key as given.
func (k *PrivateKey) Bytes() []byte { return append([]byte(nil), k.raw[:]...) }

// Public returns the X25519 public key.
func (k *PrivateKey) Public() PublicKey { return k.public }

// ParsePublicKey checks a 32-byte X25519 public key: canonical encoding,
// not of small order, on the curve (not the twist) and in the prime-order
// subgroup. It costs one scalar multiplication; run it once per key.
func ParsePublicKey(b []byte) (PublicKey, error) {
	var pk PublicKey
	if len(b) != GroupElementLength {
		return pk, fmt.Errorf("%w: public key is %d bytes, want %d", ErrInvalidKey, len(b), GroupElementLength)
	}
	copy(pk[:], b)
	if !canonicalU(&pk) {
		return PublicKey{}, fmt.Errorf("%w: non-canonical public key encoding", ErrInvalidKey)
	}
	if isZero32((*[32]byte)(&pk)) {
		return PublicKey{}, fmt.Errorf("%w: public key of small order", ErrInvalidKey)
	}
	// [8*(8^-1 mod l)]P = P exactly for P in the prime-order subgroup: the
	// scalar is 1 mod l and 0 mod 8, so it removes any torsion part, and for
	// points of the twist it is neither 1 nor -1 modulo the twist's order.
	var out [32]byte
	ladder(&out, &subgroupCheckScalar, 256, (*[32]byte)(&pk))
	if subtle.ConstantTimeCompare(out[:], pk[:]) != 1 {
		return PublicKey{}, fmt.Errorf("%w: public key not in the prime-order subgroup", ErrInvalidKey)
	}
	return pk, nil
}

var (
	scalarEight         = scalarFromUint(8)
	subgroupCheckScalar = func() [32]byte {
		inv := new(edwards25519.Scalar).Invert(scalarFromUint(8))
		var k [32]byte
		times8(&k, inv)
		return k
	}()
)

func scalarFromUint(v uint64) *edwards25519.Scalar {
	var b [32]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(b[:])
	if err != nil {
		panic(err)
	}
	return s
}

// times8 writes 8*s as a 256-bit little-endian integer (s < 2^253 fits).
func times8(out *[32]byte, s *edwards25519.Scalar) {
	b := s.Bytes()
	var carry byte
	for i := 0; i < 32; i++ {
		out[i] = b[i]<<3 | carry
		carry = b[i] >> 5
	}
}

// baseMult writes the u-coordinate of s*G.
func baseMult(out *PublicKey, s *edwards25519.Scalar) {
	var p edwards25519.Point
	p.ScalarBaseMult(s)
	copy(out[:], p.BytesMontgomery())
}

// canonicalU reports whether u < 2^255-19 with the top bit clear.
func canonicalU(u *PublicKey) bool {
	var e field.Element
	if _, err := e.SetBytes(u[:]); err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(e.Bytes(), u[:]) == 1
}

// lowOrderPoints are the canonical u-coordinates of the points of order
// 1, 2, 4 and 8 (u = 0 stands for both the identity and (0,0)).
var lowOrderPoints = func() [][32]byte {
	var out [][32]byte
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		b, err := hex.DecodeString(h)
		if err != nil {
			panic(err)
		}
		out = append(out, [32]byte(b))
	}
	return out
}()

// isLowOrder reports whether the canonical u is a point of small order.
func isLowOrder(u *[32]byte) bool {
	found := 0
	for i := range lowOrderPoints {
		found |= subtle.ConstantTimeCompare(u[:], lowOrderPoints[i][:])
	}
	return found == 1
}

func isZero32(b *[32]byte) bool {
	var acc byte
	for _, v := range b {
		acc |= v
	}
	return acc == 0
}

// ladder writes the u-coordinate of [k]P, where P has u-coordinate u and k
// is the little-endian integer formed by the low `bits` bits of k, without
// clamping (RFC 7748 section 5 ladder, constant time in k). The point at
// infinity maps to zero.
func ladder(out, k *[32]byte, bits int, u *[32]byte) {
	var x1, x2, z2, x3, z3 field.Element
	var a, aa, b, bb, e, c, d, da, cb field.Element
	x1.SetBytes(u[:]) // cannot fail: 32 bytes
	x2.One()
	x3.Set(&x1)
	z3.One()
	swap := 0
	for t := bits - 1; t >= 0; t-- {
		kt := int(k[t>>3]>>(t&7)) & 1
		swap ^= kt
		x2.Swap(&x3, swap)
		z2.Swap(&z3, swap)
		swap = kt

		a.Add(&x2, &z2)
		aa.Square(&a)
		b.Subtract(&x2, &z2)
		bb.Square(&b)
		e.Subtract(&aa, &bb)
		c.Add(&x3, &z3)
		d.Subtract(&x3, &z3)
		da.Multiply(&d, &a)
		cb.Multiply(&c, &b)
		x3.Add(&da, &cb)
		x3.Square(&x3)
		z3.Subtract(&da, &cb)
		z3.Square(&z3)
		z3.Multiply(&z3, &x1)
		x2.Multiply(&aa, &bb)
		z2.Mult32(&e, 121665)
		z2.Add(&z2, &aa)
		z2.Multiply(&z2, &e)
	}
	x2.Swap(&x3, swap)
	z2.Swap(&z3, swap)
	z2.Invert(&z2)
	x2.Multiply(&x2, &z2)
	copy(out[:], x2.Bytes())
}
