package credential

import (
	"fmt"

	bls "github.com/consensys/gnark-crypto/ecc/bls12-381"
	"github.com/consensys/gnark-crypto/ecc/bls12-381/fr"
)

// dstSeed separates the user secret derived from a seed from every other hash.
const dstSeed = "NYMVPN-CREDENTIAL-V1_USER-SECRET-FROM-SEED_XMD:SHA-256"

// UserSecretFromSeed derives the user secret deterministically from a seed of at
// least 32 bytes (a recovery phrase's seed), so that an account restored from its
// phrase holds the same secret, and a double spend names the same public key.
func UserSecretFromSeed(seed []byte) (*UserSecret, error) {
	if len(seed) < 32 {
		return nil, fmt.Errorf("credential: user secret from a seed of %d bytes, want at least 32: %w", len(seed), ErrBadParameters)
	}
	sk := hashToScalar(seed, dstSeed)
	if sk.IsZero() {
		return nil, fmt.Errorf("credential: seed hashes to zero: %w", ErrBadParameters)
	}
	return &UserSecret{sk: sk}, nil
}

// MarshalBinary encodes the pending issuance so that a client that stops between
// sending a request and aggregating the answers can resume it with the same request
// (issuers answer a repeated request id from their records, without charging
// again): version(1) ‖ sk(32) ‖ count(2) ‖ count × (t ‖ o ‖ o_sk ‖ o_t) ‖ request.
// The result is secret.
func (p *PendingTicketbook) MarshalBinary() ([]byte, error) {
	req, err := p.req.MarshalBinary()
	if err != nil {
		return nil, err
	}
	n := len(p.secrets)
	out := make([]byte, 0, 1+ScalarSize+2+n*4*ScalarSize+len(req))
	out = append(out, version1)
	out = putScalar(out, &p.sk)
	out = putU16(out, uint16(n))
	for k := range p.secrets {
		s := &p.secrets[k]
		for _, e := range []*fr.Element{&s.t, &s.o, &s.oSk, &s.oT} {
			out = putScalar(out, e)
		}
	}
	return append(out, req...), nil
}

// UnmarshalBinary decodes a pending issuance and checks that its secrets open the
// request's commitments (pk = g1^sk and com = g1^o·H_sk^sk·H_t^t for every ticket).
func (p *PendingTicketbook) UnmarshalBinary(b []byte) error {
	rd := &reader{b: b, what: "pending ticketbook"}
	rd.version()
	sk := rd.scalar("sk")
	n := int(rd.u16())
	if rd.err == nil && (n < 1 || n > maxTickets) {
		rd.fail(fmt.Errorf("pending ticketbook: count %d: %w", n, ErrMalformed))
	}
	if rd.err == nil && sk.IsZero() {
		rd.fail(fmt.Errorf("pending ticketbook: zero user secret: %w", ErrMalformed))
	}
	if rd.err != nil {
		return rd.err
	}
	secrets := make([]ticketSecrets, n)
	for k := range secrets {
		s := &secrets[k]
		s.t, s.o, s.oSk, s.oT = rd.scalar("t"), rd.scalar("o"), rd.scalar("o_sk"), rd.scalar("o_t")
	}
	if rd.err != nil {
		return rd.err
	}
	var req TicketbookRequest
	if err := req.UnmarshalBinary(rd.b); err != nil {
		return fmt.Errorf("pending ticketbook: %w", err)
	}
	if req.Count() != n {
		return fmt.Errorf("pending ticketbook: %d secrets for a request of %d tickets: %w", n, req.Count(), ErrMalformed)
	}
	pr := params()
	if pk := mulG1(&pr.g1, &sk); !pk.Equal(&req.pk) {
		return fmt.Errorf("pending ticketbook: user secret does not match the request's public key: %w", ErrMalformed)
	}
	for k := range secrets {
		s := &secrets[k]
		com := msmG1([]bls.G1Affine{pr.g1, pr.hSk, pr.hT}, []fr.Element{s.o, sk, s.t})
		if !com.Equal(&req.tickets[k].com) {
			return fmt.Errorf("pending ticketbook: secrets of ticket %d do not open its commitment: %w", k, ErrMalformed)
		}
	}
	*p = PendingTicketbook{req: &req, sk: sk, secrets: secrets}
	return nil
}
