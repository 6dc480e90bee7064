package credential

import (
	"fmt"

	bls "github.com/consensys/gnark-crypto/ecc/bls12-381"
	"github.com/consensys/gnark-crypto/ecc/bls12-381/fr"
)

// ticket is one signed ticket: the secret t and the PS signature (h, s) on
// (sk, t, pub).
type ticket struct {
	t    fr.Element
	h, s bls.G1Affine
}

// Ticketbook is the client's secret wallet: tickets of one type and expiry, signed
// under the issuers' aggregated key, with the user secret and a record of which
// tickets were spent. Spending a ticket twice reveals the user's public key, so the
// spent record must be persisted (MarshalBinary) before a spend leaves the machine.
type Ticketbook struct {
	vk      *VerificationKey
	typ     TicketType
	expiry  Week
	sk      fr.Element
	tickets []ticket
	used    []bool
}

// Type is the ticket type of the book.
func (b *Ticketbook) Type() TicketType { return b.typ }

// Expiry is the expiry week of the book.
func (b *Ticketbook) Expiry() Week { return b.expiry }

// Len is the number of tickets in the book.
func (b *Ticketbook) Len() int { return len(b.tickets) }

// Used reports whether ticket i was spent from this copy of the book.
func (b *Ticketbook) Used(i int) bool { return i >= 0 && i < len(b.used) && b.used[i] }

// Remaining is the number of unspent tickets.
func (b *Ticketbook) Remaining() int {
	n := 0
	for _, u := range b.used {
		if !u {
			n++
		}
	}
	return n
}

// NextUnused returns the index of the first unspent ticket, or -1.
func (b *Ticketbook) NextUnused() int {
	for i, u := range b.used {
		if !u {
			return i
		}
	}
	return -1
}

// VerificationKey is the aggregated issuer key the book was checked against.
func (b *Ticketbook) VerificationKey() *VerificationKey { return b.vk }

const ticketSize = ScalarSize + 2*G1Size // 128

// MarshalBinary encodes version(1) ‖ type(1) ‖ expiry(2) ‖ verification key(481) ‖
// sk(32) ‖ count(2) ‖ spent bitmap(⌈count/8⌉) ‖ count × (t ‖ h ‖ s). The result is
// secret: it holds the user secret and every ticket.
func (b *Ticketbook) MarshalBinary() ([]byte, error) {
	n := len(b.tickets)
	out := make([]byte, 0, 4+VerificationKeySize+ScalarSize+2+(n+7)/8+n*ticketSize)
	out = append(out, version1, byte(b.typ))
	out = putU16(out, uint16(b.expiry))
	vkb, _ := b.vk.MarshalBinary()
	out = append(out, vkb...)
	out = putScalar(out, &b.sk)
	out = putU16(out, uint16(n))
	bitmap := make([]byte, (n+7)/8)
	for i, u := range b.used {
		if u {
			bitmap[i/8] |= 1 << (i % 8)
		}
	}
	out = append(out, bitmap...)
	for k := range b.tickets {
		t := &b.tickets[k]
		out = putScalar(out, &t.t)
		out = putG1(out, &t.h)
		out = putG1(out, &t.s)
	}
	return out, nil
}

// UnmarshalBinary decodes a ticketbook (strict lengths, canonical scalars, subgroup
// checks on every point). Signatures are not re-verified.
func (b *Ticketbook) UnmarshalBinary(data []byte) error {
	rd := &reader{b: data, what: "ticketbook"}
	rd.version()
	var q Ticketbook
	q.typ = TicketType(rd.u8())
	q.expiry = Week(rd.u16())
	vkb := rd.take(VerificationKeySize)
	if rd.err != nil {
		return rd.err
	}
	if !q.typ.Valid() {
		return fmt.Errorf("ticketbook: type %d: %w", q.typ, ErrWrongType)
	}
	q.vk = new(VerificationKey)
	if err := q.vk.UnmarshalBinary(vkb); err != nil {
		return fmt.Errorf("ticketbook: %w", err)
	}
	q.sk = rd.scalar("sk")
	n := int(rd.u16())
	if rd.err == nil && (n < 1 || n > maxTickets || len(rd.b) != (n+7)/8+n*ticketSize) {
		rd.fail(fmt.Errorf("ticketbook: count %d does not match %d remaining bytes: %w", n, len(rd.b), ErrMalformed))
	}
	if rd.err == nil && q.sk.IsZero() {
		rd.fail(fmt.Errorf("ticketbook: zero user secret: %w", ErrMalformed))
	}
	if rd.err != nil {
		return rd.err
	}
	bitmap := rd.take((n + 7) / 8)
	if n%8 != 0 && bitmap[len(bitmap)-1]>>(n%8) != 0 {
		return fmt.Errorf("ticketbook: spent bitmap has bits past the last ticket: %w", ErrMalformed)
	}
	q.used = make([]bool, n)
	for i := range q.used {
		q.used[i] = bitmap[i/8]&(1<<(i%8)) != 0
	}
	q.tickets = make([]ticket, n)
	for k := range q.tickets {
		t := &q.tickets[k]
		t.t = rd.scalar("t")
		t.h = rd.g1("h")
		t.s = rd.g1("s")
	}
	if err := rd.done(); err != nil {
		return err
	}
	*b = q
	return nil
}
