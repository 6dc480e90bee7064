package credential

import (
	"fmt"
	"io"
	"sync"

	circl "github.com/cloudflare/circl/ecc/bls12381"
	bls "github.com/consensys/gnark-crypto/ecc/bls12-381"
	"github.com/consensys/gnark-crypto/ecc/bls12-381/fr"
)

// Signed attributes, in order: the user's secret key sk, the per-ticket secret t
// (serial and double-spending tag), and the public attribute (type, expiry).
const (
	attrSk = iota
	attrT
	attrPub
	numAttrs
	numPrivate = 2
)

// Encoded sizes.
const (
	VerificationKeySize       = 1 + 4*G2Size + numPrivate*G1Size // 481
	IssuerVerificationKeySize = 4 + VerificationKeySize          // 485
	IssuerSecretKeySize       = 1 + 4 + (1+numAttrs)*ScalarSize  // 133
)

// VerificationKey is a Pointcheval–Sanders verification key: X̃ = g̃^x and
// Ỹ_j = g̃^{y_j} in G2 for the three attributes, and Y_j = g1^{y_j} in G1 for the two
// private attributes (used by clients to unblind). The aggregated key of a threshold
// set verifies tickets; an issuer's share verifies that issuer's partial signatures.
type VerificationKey struct {
	alpha  bls.G2Affine
	beta   [numAttrs]bls.G2Affine
	betaG1 [numPrivate]bls.G1Affine

	digest [32]byte // bound into every spend transcript

	mu       sync.Mutex
	pubCache map[uint32]bls.G2Affine // X̃·Ỹ_pub^{pub} per (type, expiry)
}

// IssuerVerificationKey is one issuer's share of the verification key with its
// Shamir index (1..n).
type IssuerVerificationKey struct {
	Index uint32
	Key   *VerificationKey
}

// IssuerSecretKey is one issuer's Shamir share (x_i, y_{i,j}) of the signing key. Its
// scalars live in circl's constant-time representation and are only used by circl.
type IssuerSecretKey struct {
	index uint32
	x     circl.Scalar
	y     [numAttrs]circl.Scalar
}

// Index is the issuer's Shamir index (1..n).
func (sk *IssuerSecretKey) Index() uint32 { return sk.index }

// GenerateThresholdKeys is a trusted dealer: it draws a random signing key, splits
// every component with Shamir's scheme of threshold t among n issuers (indices 1..n)
// and returns the aggregated verification key, the issuers' secret shares and their
// verification keys. The dealer learns the whole signing key and must erase it; a
// distributed key generation (Pedersen/Gennaro et al. DKG) removes the dealer and is
// the next step.
func GenerateThresholdKeys(rng io.Reader, t, n int) (*VerificationKey, []*IssuerSecretKey, []*IssuerVerificationKey, error) {
	if t < 1 || n < t || n > 1000 {
		return nil, nil, nil, fmt.Errorf("credential: threshold %d of %d: %w", t, n, ErrBadParameters)
	}
	// polys[k] are the coefficients of the polynomial for component k (x, y_0..y_2).
	var polys [1 + numAttrs][]circl.Scalar
	for k := range polys {
		polys[k] = make([]circl.Scalar, t)
		for j := range polys[k] {
			if err := polys[k][j].Random(rng); err != nil {
				return nil, nil, nil, fmt.Errorf("credential: key generation: %w", err)
			}
		}
	}
	master := &IssuerSecretKey{x: polys[0][0]}
	for j := range numAttrs {
		master.y[j] = polys[1+j][0]
	}
	vk, err := master.verificationKey()
	if err != nil {
		return nil, nil, nil, err
	}
	sks := make([]*IssuerSecretKey, n)
	ivks := make([]*IssuerVerificationKey, n)
	for i := 1; i <= n; i++ {
		var xi circl.Scalar
		xi.SetUint64(uint64(i))
		sk := &IssuerSecretKey{index: uint32(i)}
		sk.x = evalPoly(polys[0], &xi)
		for j := range numAttrs {
			sk.y[j] = evalPoly(polys[1+j], &xi)
		}
		ivk, err := sk.VerificationKey()
		if err != nil {
			return nil, nil, nil, err
		}
		sks[i-1], ivks[i-1] = sk, ivk
	}
	for k := range polys {
		for j := range polys[k] {
			polys[k][j] = circl.Scalar{}
		}
	}
	master.x, master.y = circl.Scalar{}, [numAttrs]circl.Scalar{}
	return vk, sks, ivks, nil
}

// evalPoly evaluates the polynomial with coefficients c (constant first) at x, in
// constant time (Horner's rule on circl scalars).
func evalPoly(c []circl.Scalar, x *circl.Scalar) circl.Scalar {
	var v circl.Scalar
	v.Set(&c[len(c)-1])
	for k := len(c) - 2; k >= 0; k-- {
		v.Mul(&v, x)
		v.Add(&v, &c[k])
	}
	return v
}

// VerificationKey derives the issuer's verification key share (constant-time scalar
// multiplications with circl).
func (sk *IssuerSecretKey) VerificationKey() (*IssuerVerificationKey, error) {
	vk, err := sk.verificationKey()
	if err != nil {
		return nil, err
	}
	return &IssuerVerificationKey{Index: sk.index, Key: vk}, nil
}

func (sk *IssuerSecretKey) verificationKey() (*VerificationKey, error) {
	g1, g2 := circl.G1Generator(), circl.G2Generator()
	var vk VerificationKey
	var err error
	mul2 := func(s *circl.Scalar) bls.G2Affine {
		var p circl.G2
		p.ScalarMult(s, g2)
		q, e := decodeG2(p.BytesCompressed())
		if e != nil && err == nil {
			err = fmt.Errorf("credential: deriving verification key: %w", e)
		}
		return q
	}
	vk.alpha = mul2(&sk.x)
	for j := range numAttrs {
		vk.beta[j] = mul2(&sk.y[j])
	}
	for j := range numPrivate {
		var p circl.G1
		p.ScalarMult(&sk.y[j], g1)
		q, e := decodeG1(p.BytesCompressed())
		if e != nil && err == nil {
			err = fmt.Errorf("credential: deriving verification key: %w", e)
		}
		vk.betaG1[j] = q
	}
	if err != nil {
		return nil, err
	}
	vk.computeDigest()
	return &vk, nil
}

func (vk *VerificationKey) computeDigest() {
	b, _ := vk.MarshalBinary()
	e := hashToScalar(b, dstVKDigest)
	vk.digest = e.Bytes()
}

// MarshalBinary encodes the key: version(1) ‖ X̃ ‖ Ỹ_sk ‖ Ỹ_t ‖ Ỹ_pub ‖ Y_sk ‖ Y_t,
// compressed points, 481 bytes.
func (vk *VerificationKey) MarshalBinary() ([]byte, error) {
	out := make([]byte, 0, VerificationKeySize)
	out = append(out, version1)
	out = putG2(out, &vk.alpha)
	for j := range vk.beta {
		out = putG2(out, &vk.beta[j])
	}
	for j := range vk.betaG1 {
		out = putG1(out, &vk.betaG1[j])
	}
	return out, nil
}

// UnmarshalBinary decodes and validates (lengths, subgroups) a verification key.
func (vk *VerificationKey) UnmarshalBinary(b []byte) error {
	r := &reader{b: b, what: "verification key"}
	r.version()
	var k VerificationKey
	k.alpha = r.g2("X")
	for j := range k.beta {
		k.beta[j] = r.g2(fmt.Sprintf("Y%d", j))
	}
	for j := range k.betaG1 {
		k.betaG1[j] = r.g1(fmt.Sprintf("Y%d (G1)", j))
	}
	if err := r.done(); err != nil {
		return err
	}
	vk.alpha, vk.beta, vk.betaG1 = k.alpha, k.beta, k.betaG1
	vk.mu.Lock()
	vk.pubCache = nil
	vk.mu.Unlock()
	vk.computeDigest()
	return nil
}

// Equal reports whether two keys are the same.
func (vk *VerificationKey) Equal(o *VerificationKey) bool {
	return vk != nil && o != nil && vk.digest == o.digest
}

// base returns X̃·Ỹ_pub^{pub} for the public attribute of (typ, w), cached.
func (vk *VerificationKey) base(typ TicketType, w Week) bls.G2Affine {
	key := uint32(typ)<<16 | uint32(w)
	vk.mu.Lock()
	if p, ok := vk.pubCache[key]; ok {
		vk.mu.Unlock()
		return p
	}
	vk.mu.Unlock()
	pub := publicAttribute(typ, w)
	var one fr.Element
	one.SetOne()
	p := msmG2([]bls.G2Affine{vk.alpha, vk.beta[attrPub]}, []fr.Element{one, pub})
	vk.mu.Lock()
	if vk.pubCache == nil || len(vk.pubCache) >= 256 {
		vk.pubCache = make(map[uint32]bls.G2Affine)
	}
	vk.pubCache[key] = p
	vk.mu.Unlock()
	return p
}

// MarshalBinary encodes index(4, big-endian) ‖ verification key; 485 bytes.
func (ivk *IssuerVerificationKey) MarshalBinary() ([]byte, error) {
	if ivk.Key == nil {
		return nil, fmt.Errorf("credential: issuer verification key: nil key: %w", ErrBadParameters)
	}
	kb, _ := ivk.Key.MarshalBinary()
	return append(putU32(make([]byte, 0, IssuerVerificationKeySize), ivk.Index), kb...), nil
}

// UnmarshalBinary decodes an issuer verification key.
func (ivk *IssuerVerificationKey) UnmarshalBinary(b []byte) error {
	if len(b) != IssuerVerificationKeySize {
		return fmt.Errorf("issuer verification key: length %d, want %d: %w", len(b), IssuerVerificationKeySize, ErrMalformed)
	}
	idx := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	if idx == 0 {
		return fmt.Errorf("issuer verification key: index 0: %w", ErrMalformed)
	}
	var k VerificationKey
	if err := k.UnmarshalBinary(b[4:]); err != nil {
		return fmt.Errorf("issuer verification key: %w", err)
	}
	ivk.Index, ivk.Key = idx, &k
	return nil
}

// MarshalBinary encodes version(1) ‖ index(4) ‖ x ‖ y_sk ‖ y_t ‖ y_pub; 133 bytes.
// The result is secret.
func (sk *IssuerSecretKey) MarshalBinary() ([]byte, error) {
	out := make([]byte, 0, IssuerSecretKeySize)
	out = append(out, version1)
	out = putU32(out, sk.index)
	for _, s := range append([]circl.Scalar{sk.x}, sk.y[:]...) {
		b, err := s.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("credential: issuer secret key: %w", err)
		}
		out = append(out, b...)
	}
	return out, nil
}

// UnmarshalBinary decodes an issuer secret key (canonical scalars, exact length).
func (sk *IssuerSecretKey) UnmarshalBinary(b []byte) error {
	if len(b) != IssuerSecretKeySize {
		return fmt.Errorf("issuer secret key: length %d, want %d: %w", len(b), IssuerSecretKeySize, ErrMalformed)
	}
	if b[0] != version1 {
		return fmt.Errorf("issuer secret key: unknown version %d: %w", b[0], ErrMalformed)
	}
	idx := uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4])
	if idx == 0 {
		return fmt.Errorf("issuer secret key: index 0: %w", ErrMalformed)
	}
	var k IssuerSecretKey
	k.index = idx
	ss := make([]circl.Scalar, 1+numAttrs)
	for i := range ss {
		off := 5 + i*ScalarSize
		if err := ss[i].UnmarshalBinary(b[off : off+ScalarSize]); err != nil {
			return fmt.Errorf("issuer secret key: scalar %d: %w", i, ErrMalformed)
		}
	}
	k.x = ss[0]
	copy(k.y[:], ss[1:])
	*sk = k
	return nil
}

// lagrangeAtZero returns the Lagrange coefficients at 0 for the distinct non-zero
// indices idx.
func lagrangeAtZero(idx []uint32) ([]fr.Element, error) {
	seen := make(map[uint32]bool, len(idx))
	for _, i := range idx {
		if i == 0 || seen[i] {
			return nil, fmt.Errorf("credential: issuer index %d repeated or zero: %w", i, ErrBadParameters)
		}
		seen[i] = true
	}
	out := make([]fr.Element, len(idx))
	for a, i := range idx {
		var num, den fr.Element
		num.SetOne()
		den.SetOne()
		var xi fr.Element
		xi.SetUint64(uint64(i))
		for b, j := range idx {
			if a == b {
				continue
			}
			var xj, d fr.Element
			xj.SetUint64(uint64(j))
			num.Mul(&num, &xj)
			d.Sub(&xj, &xi)
			den.Mul(&den, &d)
		}
		den.Inverse(&den)
		out[a].Mul(&num, &den)
	}
	return out, nil
}

// AggregateVerificationKeys combines issuer key shares by Lagrange interpolation in
// the exponent. With shares from at least t honest issuers the result equals the key
// GenerateThresholdKeys returned; with fewer it is a different, useless key, which
// is why gateways should pin the aggregated key published with the issuer set.
func AggregateVerificationKeys(ivks []*IssuerVerificationKey) (*VerificationKey, error) {
	if len(ivks) == 0 {
		return nil, fmt.Errorf("credential: aggregate verification keys: no shares: %w", ErrBadParameters)
	}
	idx := make([]uint32, len(ivks))
	for i, k := range ivks {
		if k == nil || k.Key == nil {
			return nil, fmt.Errorf("credential: aggregate verification keys: nil share: %w", ErrBadParameters)
		}
		idx[i] = k.Index
	}
	lambda, err := lagrangeAtZero(idx)
	if err != nil {
		return nil, fmt.Errorf("credential: aggregate verification keys: %w", err)
	}
	var vk VerificationKey
	g2s := make([]bls.G2Affine, len(ivks))
	g1s := make([]bls.G1Affine, len(ivks))
	for i, k := range ivks {
		g2s[i] = k.Key.alpha
	}
	vk.alpha = msmG2(g2s, lambda)
	for j := range numAttrs {
		for i, k := range ivks {
			g2s[i] = k.Key.beta[j]
		}
		vk.beta[j] = msmG2(g2s, lambda)
	}
	for j := range numPrivate {
		for i, k := range ivks {
			g1s[i] = k.Key.betaG1[j]
		}
		vk.betaG1[j] = msmG1(g1s, lambda)
	}
	vk.computeDigest()
	return &vk, nil
}
