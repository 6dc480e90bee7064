// Package ipr is the protocol between a mixnet-mode client (modes/mixnet)
// and the IP packet router of an exit gateway (node/iprouter). It rides in
// Sphinx payloads: forward fragments are the plaintext of regular packets
// whose final hop is the exit gateway, reply fragments the plaintext of
// packets the exit sends back through the client's SURBs.
//
// # Fragments
//
// Forward (client → exit), 2048 bytes at most:
//
//	version (1) | SURB-ACK (426) | session tag (16) | message id (4) | index (1) | count (1) | data
//	SURB-ACK = first hop (32) | epoch (8) | ack packet (386)
//
// The SURB-ACK is a ready Sphinx ack packet (sphinx.AckGeometry) that the
// client built over mix layers 1..3 back to its own entry gateway and itself;
// the exit sends it to its first hop as soon as the fragment arrives, so the
// client learns the fragment arrived without the exit learning where the ack
// goes. A fragment whose ack does not come back in time is sent again, with a
// new ack, over a new route.
//
// Reply (exit → client), 2048 bytes at most:
//
//	version (1) | message id (4) | index (1) | count (1) | SURBs left (2) | data
//
// SURBs left is how many of the client's reply SURBs the exit still holds for
// the session after this reply, so the client can send more before they run
// out. Replies carry no ack: what they carry is IP, and TCP recovers a lost
// reply end to end.
//
// A message is the data of its fragments in index order (count ≤ 255); the
// Reassembler puts it together and drops duplicates. Each side numbers its
// messages from 1 (an Open restarts the count of the replies); since the
// mixes reorder packets, the receiver releases the IP packets of messages
// in their order, holding those that come early for a while (Reorderer);
// everything else in a message is handled when it arrives.
//
// # Items
//
// A message is a run of items, kind (1) | length (2) | body, all big-endian:
//
//	IP         both ways        one IP packet (the bundles of NymVPN's IP packet router)
//	SURB       client → exit    a reply SURB with its epoch (mixnet.SURB)
//	Open       client → exit    flags (1) | hold (2) | bundle (2) | wanted IPv4 (4) | wanted IPv6 (16) | ticket (rest)
//	Ping       client → exit    id (8)
//	Close      client → exit    (empty)
//	Ticket     client → exit    ticket (1..MaxTicket)
//	Welcome    exit → client    IPv4 (4) | IPv6 (16) | router IPv4 (4) | router IPv6 (16) | MTU (2)
//	Pong       exit → client    id (8)
//	NeedSURBs  exit → client    count (2)
//	Error      exit → client    code (1) | text
//	NeedTicket exit → client    allowance left (8)
//	Allowance  exit → client    allowance left (8) | top-up level (8)
//
// A session is named by a random 16-byte tag the client picks; the exit keys
// its state (addresses, SURBs, reassembly) by it and never learns more about
// the client than the tag and what the client sends.
//
// # Payment
//
// An exit that takes tickets wants a mixnet-exit ticket (credential.MixnetExit,
// bound to the exit gateway's Noise key; registration.RoleMixnetExit names it
// in the wallet) in the Open that starts a session: without one it answers
// Error ErrPaymentRequired, a ticket it refuses gets Error ErrTicketRefused
// with the gateway's reason. An accepted ticket buys an allowance of IP bytes,
// both ways, which the exit reports in an Allowance item (with the Welcome,
// and after every Ticket). When the allowance falls below the top-up level the
// exit sends NeedTicket, once per crossing and again every little while until
// a ticket comes; the client answers with a Ticket item, which extends the
// allowance. At zero the exit drops the session's IP packets, both ways, and
// says so once with Error ErrPaymentRequired, until a Ticket comes. An exit
// that takes no tickets sends none of these and ignores Ticket items.
package ipr

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/nymvpn/nymvpn/sphinx"
)

// Version is the protocol version, the first byte of every fragment.
const Version = 1

// Sizes.
const (
	// TagLength is the size of a session tag.
	TagLength = 16
	// SURBAckLength is a SURB-ACK: first hop, epoch and an ack packet.
	SURBAckLength = sphinx.NodeIDLength + 8 + 386
	// ForwardHeaderLength is everything of a forward fragment before its data.
	ForwardHeaderLength = 1 + SURBAckLength + TagLength + 4 + 1 + 1
	// ReplyHeaderLength is everything of a reply fragment before its data.
	ReplyHeaderLength = 1 + 4 + 1 + 1 + 2
	// ForwardData is the data one forward fragment carries in a regular packet.
	ForwardData = sphinx.RegularPlaintextLength - ForwardHeaderLength // 1599
	// ReplyData is the data one reply fragment carries in a regular packet.
	ReplyData = sphinx.RegularPlaintextLength - ReplyHeaderLength // 2039
	// ItemHeaderLength is an item's kind and length.
	ItemHeaderLength = 3
	// MaxFragments bounds the fragments of one message.
	MaxFragments = 255
	// MaxErrorText bounds an Error item's text.
	MaxErrorText = 256
	// MaxTicket bounds a Ticket item's ticket (a credential.Spend is 476
	// bytes).
	MaxTicket = 1024
)

// ErrMalformed is returned, wrapped, for bytes that do not parse.
var ErrMalformed = errors.New("ipr: malformed")

// Tag names a session at the exit.
type Tag [TagLength]byte

// SURBAck is a ready ack packet and where to send it.
type SURBAck struct {
	FirstHop sphinx.NodeID
	Epoch    uint64
	// Packet is a Sphinx packet of sphinx.AckGeometry.
	Packet []byte
}

// ForwardFragment is one fragment from the client to the exit.
type ForwardFragment struct {
	Ack   SURBAck
	Tag   Tag
	MsgID uint32
	// Index is the fragment's place in the message, Count the number of
	// fragments (1..MaxFragments).
	Index, Count uint8
	Data         []byte
}

// AppendForward appends the encoding of f. It fails if the ack packet is not
// of the ack geometry or the result would not fit a regular packet.
func AppendForward(dst []byte, f *ForwardFragment) ([]byte, error) {
	if len(f.Ack.Packet) != sphinx.AckGeometry().PacketLength {
		return dst, fmt.Errorf("ipr: ack packet of %d bytes, want %d", len(f.Ack.Packet), sphinx.AckGeometry().PacketLength)
	}
	if len(f.Data) > ForwardData {
		return dst, fmt.Errorf("ipr: %d bytes of fragment data, at most %d", len(f.Data), ForwardData)
	}
	if err := checkIndex(f.Index, f.Count); err != nil {
		return dst, err
	}
	dst = append(dst, Version)
	dst = append(dst, f.Ack.FirstHop[:]...)
	dst = binary.BigEndian.AppendUint64(dst, f.Ack.Epoch)
	dst = append(dst, f.Ack.Packet...)
	dst = append(dst, f.Tag[:]...)
	dst = binary.BigEndian.AppendUint32(dst, f.MsgID)
	dst = append(dst, f.Index, f.Count)
	return append(dst, f.Data...), nil
}

// ParseForward parses a forward fragment. Ack.Packet and Data alias b.
func ParseForward(b []byte) (ForwardFragment, error) {
	var f ForwardFragment
	if len(b) < ForwardHeaderLength {
		return f, fmt.Errorf("%w: forward fragment of %d bytes, the header alone is %d", ErrMalformed, len(b), ForwardHeaderLength)
	}
	if b[0] != Version {
		return f, fmt.Errorf("%w: version %d, want %d", ErrMalformed, b[0], Version)
	}
	if len(b) > sphinx.RegularPlaintextLength {
		return f, fmt.Errorf("%w: forward fragment of %d bytes", ErrMalformed, len(b))
	}
	p := b[1:]
	p = p[copy(f.Ack.FirstHop[:], p):]
	f.Ack.Epoch = binary.BigEndian.Uint64(p)
	p = p[8:]
	f.Ack.Packet, p = p[:sphinx.AckGeometry().PacketLength], p[sphinx.AckGeometry().PacketLength:]
	p = p[copy(f.Tag[:], p):]
	f.MsgID = binary.BigEndian.Uint32(p)
	f.Index, f.Count = p[4], p[5]
	f.Data = p[6:]
	if err := checkIndex(f.Index, f.Count); err != nil {
		return f, err
	}
	return f, nil
}

// ReplyFragment is one fragment from the exit to the client.
type ReplyFragment struct {
	MsgID        uint32
	Index, Count uint8
	// SURBsLeft is how many reply SURBs the exit holds for the session.
	SURBsLeft uint16
	Data      []byte
}

// AppendReply appends the encoding of f.
func AppendReply(dst []byte, f *ReplyFragment) ([]byte, error) {
	if len(f.Data) > ReplyData {
		return dst, fmt.Errorf("ipr: %d bytes of reply data, at most %d", len(f.Data), ReplyData)
	}
	if err := checkIndex(f.Index, f.Count); err != nil {
		return dst, err
	}
	dst = append(dst, Version)
	dst = binary.BigEndian.AppendUint32(dst, f.MsgID)
	dst = append(dst, f.Index, f.Count)
	dst = binary.BigEndian.AppendUint16(dst, f.SURBsLeft)
	return append(dst, f.Data...), nil
}

// ParseReply parses a reply fragment; Data aliases b.
func ParseReply(b []byte) (ReplyFragment, error) {
	var f ReplyFragment
	if len(b) < ReplyHeaderLength {
		return f, fmt.Errorf("%w: reply fragment of %d bytes, the header alone is %d", ErrMalformed, len(b), ReplyHeaderLength)
	}
	if b[0] != Version {
		return f, fmt.Errorf("%w: version %d, want %d", ErrMalformed, b[0], Version)
	}
	if len(b) > sphinx.RegularPlaintextLength {
		return f, fmt.Errorf("%w: reply fragment of %d bytes", ErrMalformed, len(b))
	}
	f.MsgID = binary.BigEndian.Uint32(b[1:])
	f.Index, f.Count = b[5], b[6]
	f.SURBsLeft = binary.BigEndian.Uint16(b[7:])
	f.Data = b[ReplyHeaderLength:]
	if err := checkIndex(f.Index, f.Count); err != nil {
		return f, err
	}
	return f, nil
}

func checkIndex(index, count uint8) error {
	if count == 0 || index >= count {
		return fmt.Errorf("%w: fragment %d of %d", ErrMalformed, index, count)
	}
	return nil
}

// Split cuts msg into at most MaxFragments pieces of at most size bytes (an
// empty message is one empty piece). The pieces alias msg.
func Split(msg []byte, size int) ([][]byte, error) {
	if size <= 0 {
		return nil, fmt.Errorf("ipr: fragment size %d", size)
	}
	n := max(1, (len(msg)+size-1)/size)
	if n > MaxFragments {
		return nil, fmt.Errorf("ipr: a message of %d bytes needs %d fragments of %d, at most %d", len(msg), n, size, MaxFragments)
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = msg[min(i*size, len(msg)):min((i+1)*size, len(msg))]
	}
	return out, nil
}
