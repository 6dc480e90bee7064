package credential

import (
	"math/big"

	"github.com/consensys/gnark-crypto/ecc"
	bls "github.com/consensys/gnark-crypto/ecc/bls12-381"
	"github.com/consensys/gnark-crypto/ecc/bls12-381/fr"
)

// Multi-scalar multiplication on public data (variable time). Small instances, the
// common case here, use Straus' interleaved method with width-5 wNAF digits and
// affine tables of odd multiples; large ones (batch checks over a ticketbook) use
// gnark-crypto's Pippenger on one core.

const (
	wnafWidth   = 5
	wnafTable   = 1 << (wnafWidth - 2) // odd multiples P, 3P, ..., 15P
	straussMaxN = 16
)

var msmConfig = ecc.MultiExpConfig{NbTasks: 1}

// wnaf returns the width-5 non-adjacent form of s, least significant digit first.
func wnaf(s *fr.Element) []int8 {
	var k big.Int
	s.BigInt(&k)
	out := make([]int8, 0, fr.Bits+1)
	const mod = 1 << wnafWidth
	for k.Sign() > 0 {
		var d int64
		if k.Bit(0) == 1 {
			d = int64(k.Uint64() & (mod - 1))
			if d >= mod/2 {
				d -= mod
			}
			k.Sub(&k, big.NewInt(d))
		}
		out = append(out, int8(d))
		k.Rsh(&k, 1)
	}
	return out
}

func msmG1(points []bls.G1Affine, scalars []fr.Element) bls.G1Affine {
	var r bls.G1Affine
	j := msmG1Jac(points, scalars)
	r.FromJacobian(&j)
	return r
}

func msmG1Jac(points []bls.G1Affine, scalars []fr.Element) bls.G1Jac {
	var acc bls.G1Jac
	if len(points) != len(scalars) {
		panic("credential: msm length mismatch")
	}
	if len(points) > straussMaxN {
		if _, err := acc.MultiExp(points, scalars, msmConfig); err != nil {
			panic("credential: multiexp: " + err.Error())
		}
		return acc
	}
	n := len(points)
	nafs := make([][]int8, n)
	jac := make([]bls.G1Jac, 0, n*wnafTable)
	maxLen := 0
	for i := range points {
		nafs[i] = wnaf(&scalars[i])
		maxLen = max(maxLen, len(nafs[i]))
		var p, p2 bls.G1Jac
		p.FromAffine(&points[i])
		p2.Double(&p)
		jac = append(jac, p)
		for k := 1; k < wnafTable; k++ {
			p.AddAssign(&p2)
			jac = append(jac, p)
		}
	}
	tbl := bls.BatchJacobianToAffineG1(jac)
	acc.X.SetOne()
	acc.Y.SetOne() // Z = 0: the identity
	var neg bls.G1Affine
	for b := maxLen - 1; b >= 0; b-- {
		acc.DoubleAssign()
		for i := range n {
			if b >= len(nafs[i]) {
				continue
			}
			switch d := nafs[i][b]; {
			case d > 0:
				acc.AddMixed(&tbl[i*wnafTable+int(d>>1)])
			case d < 0:
				neg.Neg(&tbl[i*wnafTable+int((-d)>>1)])
				acc.AddMixed(&neg)
			}
		}
	}
	return acc
}

func msmG2(points []bls.G2Affine, scalars []fr.Element) bls.G2Affine {
	var acc bls.G2Jac
	var r bls.G2Affine
	if len(points) != len(scalars) {
		panic("credential: msm length mismatch")
	}
	if len(points) > straussMaxN {
		if _, err := acc.MultiExp(points, scalars, msmConfig); err != nil {
			panic("credential: multiexp: " + err.Error())
		}
		r.FromJacobian(&acc)
		return r
	}
	n := len(points)
	nafs := make([][]int8, n)
	jac := make([]bls.G2Jac, 0, n*wnafTable)
	maxLen := 0
	for i := range points {
		nafs[i] = wnaf(&scalars[i])
		maxLen = max(maxLen, len(nafs[i]))
		var p, p2 bls.G2Jac
		p.FromAffine(&points[i])
		p2.Double(&p)
		jac = append(jac, p)
		for k := 1; k < wnafTable; k++ {
			p.AddAssign(&p2)
			jac = append(jac, p)
		}
	}
	tbl := batchToAffineG2(jac)
	acc.X.SetOne()
	acc.Y.SetOne()
	var neg bls.G2Affine
	for b := maxLen - 1; b >= 0; b-- {
		acc.DoubleAssign()
		for i := range n {
			if b >= len(nafs[i]) {
				continue
			}
			switch d := nafs[i][b]; {
			case d > 0:
				acc.AddMixed(&tbl[i*wnafTable+int(d>>1)])
			case d < 0:
				neg.Neg(&tbl[i*wnafTable+int((-d)>>1)])
				acc.AddMixed(&neg)
			}
		}
	}
	r.FromJacobian(&acc)
	return r
}

// batchToAffineG2 converts Jacobian points to affine with one field inversion
// (Montgomery's trick). Points must not be the identity.
func batchToAffineG2(points []bls.G2Jac) []bls.G2Affine {
	n := len(points)
	out := make([]bls.G2Affine, n)
	prefix := make([]bls.E2, n)
	var acc bls.E2
	acc.SetOne()
	for i := range points {
		prefix[i] = acc
		acc.Mul(&acc, &points[i].Z)
	}
	acc.Inverse(&acc)
	for i := n - 1; i >= 0; i-- {
		var zInv, zInv2 bls.E2
		zInv.Mul(&acc, &prefix[i])
		acc.Mul(&acc, &points[i].Z)
		zInv2.Square(&zInv)
		out[i].X.Mul(&points[i].X, &zInv2)
		zInv2.Mul(&zInv2, &zInv)
		out[i].Y.Mul(&points[i].Y, &zInv2)
	}
	return out
}

// mulG1 and mulG2 are single scalar multiplications (GLV, variable time).
func mulG1(p *bls.G1Affine, s *fr.Element) bls.G1Affine {
	var k big.Int
	var r bls.G1Affine
	s.BigInt(&k)
	r.ScalarMultiplication(p, &k)
	return r
}

func mulG2(p *bls.G2Affine, s *fr.Element) bls.G2Affine {
	var k big.Int
	var r bls.G2Affine
	s.BigInt(&k)
	r.ScalarMultiplication(p, &k)
	return r
}

// pairingCheck2 reports whether e(a, q) · e(b, g2) = 1, with precomputed lines for
// the fixed generator g2.
func pairingCheck2(a *bls.G1Affine, q *bls.G2Affine, b *bls.G1Affine) bool {
	p := params()
	m1, err := bls.MillerLoop([]bls.G1Affine{*a}, []bls.G2Affine{*q})
	if err != nil {
		return false
	}
	m2, err := bls.MillerLoopFixedQ([]bls.G1Affine{*b}, [][2][len(bls.LoopCounter) - 1]bls.LineEvaluationAff{p.g2Lines})
	if err != nil {
		return false
	}
	m1.Mul(&m1, &m2)
	r := bls.FinalExponentiation(&m1)
	return r.IsOne()
}
