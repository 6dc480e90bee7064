package ipr

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Kind is the type of an item.
type Kind uint8

// Item kinds; see the package doc for their bodies.
const (
	KindIP         Kind = 1
	KindSURB       Kind = 2
	KindOpen       Kind = 3
	KindPing       Kind = 4
	KindClose      Kind = 5
	KindTicket     Kind = 6
	KindWelcome    Kind = 16
	KindPong       Kind = 17
	KindNeedSURBs  Kind = 18
	KindError      Kind = 19
	KindNeedTicket Kind = 20
	KindAllowance  Kind = 21
)

func (k Kind) String() string {
	switch k {
	case KindIP:
		return "ip"
	case KindSURB:
		return "surb"
	case KindOpen:
		return "open"
	case KindPing:
		return "ping"
	case KindClose:
		return "close"
	case KindWelcome:
		return "welcome"
	case KindPong:
		return "pong"
	case KindNeedSURBs:
		return "need-surbs"
	case KindError:
		return "error"
	case KindTicket:
		return "ticket"
	case KindNeedTicket:
		return "need-ticket"
	case KindAllowance:
		return "allowance"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ItemLength is the encoded size of an item with a body of n bytes.
func ItemLength(n int) int { return ItemHeaderLength + n }

// AppendItem appends one item whose body is the concatenation of parts. It
// panics on a body over 65535 bytes: callers build bounded bodies.
func AppendItem(dst []byte, k Kind, parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > 0xffff {
		panic(fmt.Sprintf("ipr: %s item of %d bytes", k, n))
	}
	dst = append(dst, byte(k), byte(n>>8), byte(n))
	for _, p := range parts {
		dst = append(dst, p...)
	}
	return dst
}

// NextItem splits the first item off msg; body aliases msg.
func NextItem(msg []byte) (k Kind, body, rest []byte, err error) {
	if len(msg) < ItemHeaderLength {
		return 0, nil, nil, fmt.Errorf("%w: %d bytes left, an item header is %d", ErrMalformed, len(msg), ItemHeaderLength)
	}
	n := int(binary.BigEndian.Uint16(msg[1:3]))
	if len(msg)-ItemHeaderLength < n {
		return 0, nil, nil, fmt.Errorf("%w: %s item of %d bytes, %d left", ErrMalformed, Kind(msg[0]), n, len(msg)-ItemHeaderLength)
	}
	return Kind(msg[0]), msg[ItemHeaderLength : ItemHeaderLength+n], msg[ItemHeaderLength+n:], nil
}

// Open flags.
const (
	// OpenResetSURBs makes the exit forget the SURBs it holds for the
	// session (the client's entry gateway changed keys, so they are dead).
	OpenResetSURBs = 0x01
)

// Open starts or resumes a session.
type Open struct {
	Flags uint8
	// Hold is how long the exit holds the client's IP packets that come
	// before an earlier message (the mixes reorder packets), and Bundle how
	// long a reply bundle may wait to fill; both in milliseconds, at most
	// MaxWait. Bundle DefaultBundle leaves it to the exit.
	Hold, Bundle uint16
	// Want4 and Want6 are addresses the client had before (a resumed session
	// after the exit restarted); the exit grants them if they are free.
	// Zero (unspecified) asks for any.
	Want4, Want6 netip.Addr
	// Ticket pays the exit, if it takes tickets: a mixnet-exit ticket bound
	// to the exit gateway's key. An Open of a session already open tops its
	// allowance up with it, as a Ticket item does.
	Ticket []byte
}

// Open's waits.
const (
	// MaxWait bounds Open.Hold and Open.Bundle (ms).
	MaxWait = 10000
	// DefaultBundle in Open.Bundle asks for the exit's own bundling delay.
	DefaultBundle = 0xffff
)

const openFixed = 1 + 2 + 2 + 4 + 16

// AppendOpen appends an Open item.
func AppendOpen(dst []byte, o *Open) []byte {
	w4, w6 := [4]byte{}, [16]byte{}
	if o.Want4.Is4() {
		w4 = o.Want4.As4()
	}
	if o.Want6.Is6() && !o.Want6.Is4In6() {
		w6 = o.Want6.As16()
	}
	var waits [4]byte
	binary.BigEndian.PutUint16(waits[:], o.Hold)
	binary.BigEndian.PutUint16(waits[2:], o.Bundle)
	return AppendItem(dst, KindOpen, []byte{o.Flags}, waits[:], w4[:], w6[:], o.Ticket)
}

// ParseOpen parses an Open item's body; Ticket aliases body.
func ParseOpen(body []byte) (Open, error) {
	var o Open
	if len(body) < openFixed {
		return o, fmt.Errorf("%w: open of %d bytes", ErrMalformed, len(body))
	}
	if body[0]&^OpenResetSURBs != 0 {
		return o, fmt.Errorf("%w: open with unknown flags %#02x", ErrMalformed, body[0])
	}
	o.Flags = body[0]
	o.Hold, o.Bundle = binary.BigEndian.Uint16(body[1:]), binary.BigEndian.Uint16(body[3:])
	if o.Hold > MaxWait || (o.Bundle > MaxWait && o.Bundle != DefaultBundle) {
		return Open{}, fmt.Errorf("%w: open with waits of %d and %d ms", ErrMalformed, o.Hold, o.Bundle)
	}
	if a := netip.AddrFrom4([4]byte(body[5:9])); !a.IsUnspecified() {
		o.Want4 = a
	}
	if a := netip.AddrFrom16([16]byte(body[9:25])); a.Is4In6() {
		return Open{}, fmt.Errorf("%w: open wants the IPv6 address %v", ErrMalformed, a)
	} else if !a.IsUnspecified() {
		o.Want6 = a
	}
	if len(body) > openFixed {
		o.Ticket = body[openFixed:]
	}
	return o, nil
}

// Welcome is the exit's answer to Open.
type Welcome struct {
	// IPv4 and IPv6 are the client's addresses; Router4 and Router6 the
	// router's own, which answer DNS.
	IPv4, IPv6, Router4, Router6 netip.Addr
	MTU                          uint16
}

// AppendWelcome appends a Welcome item. Addresses of the wrong family are
// written as zeros, which ParseWelcome refuses.
func AppendWelcome(dst []byte, w *Welcome) []byte {
	v4 := func(a netip.Addr) []byte {
		b := [4]byte{}
		if a.Is4() {
			b = a.As4()
		}
		return b[:]
	}
	v6 := func(a netip.Addr) []byte {
		b := [16]byte{}
		if a.Is6() {
			b = a.As16()
		}
		return b[:]
	}
	return AppendItem(dst, KindWelcome, v4(w.IPv4), v6(w.IPv6), v4(w.Router4), v6(w.Router6), binary.BigEndian.AppendUint16(nil, w.MTU))
}

// ParseWelcome parses a Welcome item's body.
func ParseWelcome(body []byte) (Welcome, error) {
	var w Welcome
	if len(body) != 4+16+4+16+2 {
		return w, fmt.Errorf("%w: welcome of %d bytes", ErrMalformed, len(body))
	}
	w.IPv4 = netip.AddrFrom4([4]byte(body[0:4]))
	w.IPv6 = netip.AddrFrom16([16]byte(body[4:20]))
	w.Router4 = netip.AddrFrom4([4]byte(body[20:24]))
	w.Router6 = netip.AddrFrom16([16]byte(body[24:40]))
	w.MTU = binary.BigEndian.Uint16(body[40:])
	for _, a := range []netip.Addr{w.IPv4, w.IPv6, w.Router4, w.Router6} {
		if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.Is4In6() {
			return Welcome{}, fmt.Errorf("%w: welcome with address %v", ErrMalformed, a)
		}
	}
	if w.MTU < 576 {
		return Welcome{}, fmt.Errorf("%w: welcome with MTU %d", ErrMalformed, w.MTU)
	}
	return w, nil
}

// AppendU64 appends an item whose body is one 8-byte number (Ping, Pong).
func AppendU64(dst []byte, k Kind, v uint64) []byte {
	return AppendItem(dst, k, binary.BigEndian.AppendUint64(nil, v))
}

// ParseU64 parses the body of a Ping or Pong.
func ParseU64(body []byte) (uint64, error) {
	if len(body) != 8 {
		return 0, fmt.Errorf("%w: 8-byte item of %d bytes", ErrMalformed, len(body))
	}
	return binary.BigEndian.Uint64(body), nil
}

// AppendNeedSURBs appends a NeedSURBs item.
func AppendNeedSURBs(dst []byte, n uint16) []byte {
	return AppendItem(dst, KindNeedSURBs, binary.BigEndian.AppendUint16(nil, n))
}

// ParseNeedSURBs parses a NeedSURBs item's body.
func ParseNeedSURBs(body []byte) (uint16, error) {
	if len(body) != 2 {
		return 0, fmt.Errorf("%w: need-surbs of %d bytes", ErrMalformed, len(body))
	}
	return binary.BigEndian.Uint16(body), nil
}

// Error codes of an Error item.
const (
	// ErrUnknownSession: the exit has no session for the tag (it restarted,
	// or freed an idle session); open again.
	ErrUnknownSession uint8 = 1
	// ErrPoolExhausted: no free address.
	ErrPoolExhausted uint8 = 2
	// ErrPaymentRequired: the exit takes tickets and the Open carried
	// none, or the session's allowance ran out (its IP packets are dropped
	// until a Ticket comes).
	ErrPaymentRequired uint8 = 3
	// ErrRefused: anything else; the text says what.
	ErrRefused uint8 = 4
	// ErrTicketRefused: the exit refused the ticket of an Open or a Ticket
	// item; the text is the gateway's reason. Another ticket may do.
	ErrTicketRefused uint8 = 5
)

// AppendError appends an Error item, its text cut to MaxErrorText bytes.
func AppendError(dst []byte, code uint8, text string) []byte {
	if len(text) > MaxErrorText {
		text = text[:MaxErrorText]
	}
	return AppendItem(dst, KindError, []byte{code}, []byte(text))
}

// ParseError parses an Error item's body.
func ParseError(body []byte) (code uint8, text string, err error) {
	if len(body) < 1 || len(body) > 1+MaxErrorText {
		return 0, "", fmt.Errorf("%w: error item of %d bytes", ErrMalformed, len(body))
	}
	return body[0], string(body[1:]), nil
}

// AppendTicket appends a Ticket item. It panics on an empty ticket or one
// over MaxTicket bytes: callers pass what their wallet spent.
func AppendTicket(dst []byte, ticket []byte) []byte {
	if len(ticket) == 0 || len(ticket) > MaxTicket {
		panic(fmt.Sprintf("ipr: ticket of %d bytes", len(ticket)))
	}
	return AppendItem(dst, KindTicket, ticket)
}

// ParseTicket parses a Ticket item's body; the ticket aliases body.
func ParseTicket(body []byte) ([]byte, error) {
	if len(body) == 0 || len(body) > MaxTicket {
		return nil, fmt.Errorf("%w: ticket of %d bytes", ErrMalformed, len(body))
	}
	return body, nil
}

// AppendNeedTicket appends a NeedTicket item: left is the session's
// allowance, in bytes.
func AppendNeedTicket(dst []byte, left uint64) []byte {
	return AppendItem(dst, KindNeedTicket, binary.BigEndian.AppendUint64(nil, left))
}

// ParseNeedTicket parses a NeedTicket item's body.
func ParseNeedTicket(body []byte) (left uint64, err error) {
	if len(body) != 8 {
		return 0, fmt.Errorf("%w: need-ticket of %d bytes", ErrMalformed, len(body))
	}
	return binary.BigEndian.Uint64(body), nil
}

// Allowance is what a session's tickets left it at the exit: IP bytes both
// ways, and the level below which the exit asks for the next ticket.
type Allowance struct {
	Left, TopUpAt uint64
}

// AppendAllowance appends an Allowance item.
func AppendAllowance(dst []byte, a Allowance) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], a.Left)
	binary.BigEndian.PutUint64(b[8:], a.TopUpAt)
	return AppendItem(dst, KindAllowance, b[:])
}

// ParseAllowance parses an Allowance item's body.
func ParseAllowance(body []byte) (Allowance, error) {
	if len(body) != 16 {
		return Allowance{}, fmt.Errorf("%w: allowance of %d bytes", ErrMalformed, len(body))
	}
	return Allowance{Left: binary.BigEndian.Uint64(body), TopUpAt: binary.BigEndian.Uint64(body[8:])}, nil
}
