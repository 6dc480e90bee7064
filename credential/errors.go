package credential

import "errors"

// Sentinel errors. Functions wrap them with %w and context; test with errors.Is.
var (
	// ErrMalformed reports an encoding of the wrong length, a non-canonical
	// field element or point, an unknown version or an out-of-range field.
	ErrMalformed = errors.New("credential: malformed encoding")
	// ErrNotInSubgroup reports a curve point outside the prime-order subgroup
	// (or the identity where a generator-like point is required).
	ErrNotInSubgroup = errors.New("credential: point not in the prime-order subgroup")
	// ErrInvalidProof reports a zero-knowledge proof that does not verify.
	ErrInvalidProof = errors.New("credential: invalid zero-knowledge proof")
	// ErrBadSignature reports a (partial, aggregated or re-randomised) signature
	// that does not verify under the given key.
	ErrBadSignature = errors.New("credential: signature does not verify")
	// ErrWrongType reports a ticket of another type than the verifier accepts,
	// or an unknown ticket type.
	ErrWrongType = errors.New("credential: wrong ticket type")
	// ErrExpired reports a ticket whose expiry week has passed.
	ErrExpired = errors.New("credential: ticket expired")
	// ErrPayInfoMismatch reports a spend bound to other payment info than the
	// verifier expects (another gateway, timestamp or nonce).
	ErrPayInfoMismatch = errors.New("credential: payment info mismatch")
	// ErrTicketUsed reports an attempt to spend a ticket of a book twice.
	ErrTicketUsed = errors.New("credential: ticket already spent")
	// ErrNotDoubleSpend reports two spends that are not two spends of one ticket
	// with different payment info.
	ErrNotDoubleSpend = errors.New("credential: not a double spend")
	// ErrBadParameters reports invalid arguments (threshold, counts, indices).
	ErrBadParameters = errors.New("credential: invalid parameters")
)
