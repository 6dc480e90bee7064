package mixnet

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/nymvpn/nymvpn/sphinx"
	"github.com/nymvpn/nymvpn/transport"
)

// Noise prologues: a channel of one kind can never be mistaken for another,
// nor for a registration channel.
const (
	// NodePrologue names node-to-node channels (Noise IK).
	NodePrologue = "nymvpn mixnet node v1"
	// ClientPrologue names client-to-entry-gateway channels (Noise NK).
	ClientPrologue = "nymvpn mixnet client v1"
)

// Kind is the type of a record.
type Kind uint8

// Record kinds. Bodies, big-endian:
//
//	Packet   node → node            epoch (8) | Sphinx packet
//	Send     client → entry gateway first hop (32) | epoch (8) | Sphinx packet
//	Hello    client → entry gateway recipient key (32) | proof (32)
//	Welcome  entry gateway → client (empty)
//	Deliver  gateway → client       flags (1) | SURB id (16) | payload
//	Error    gateway → client       UTF-8 text; the gateway then closes
const (
	KindPacket  Kind = 1
	KindSend    Kind = 2
	KindHello   Kind = 3
	KindWelcome Kind = 4
	KindDeliver Kind = 5
	KindError   Kind = 6
)

func (k Kind) String() string {
	switch k {
	case KindPacket:
		return "packet"
	case KindSend:
		return "send"
	case KindHello:
		return "hello"
	case KindWelcome:
		return "welcome"
	case KindDeliver:
		return "deliver"
	case KindError:
		return "error"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Sizes of the wire format.
const (
	// RecordHeaderLength is kind (1) | body length (2).
	RecordHeaderLength = 3
	// MaxMessage is the most a message (a run of records) may hold: one
	// transport message.
	MaxMessage = transport.MaxPayload
	// EpochLength is the size of an epoch field.
	EpochLength = 8
	// ProofLength is the size of a hello proof.
	ProofLength = 32
	// MaxErrorText bounds an Error record's text.
	MaxErrorText = 512
	// flagReply marks a Deliver record whose payload is a SURB reply, still
	// encrypted for the SURB's creator.
	flagReply = 0x01
)

// ErrMalformed is returned, wrapped, for bytes that do not parse.
var ErrMalformed = errors.New("mixnet: malformed record")

// PacketLengthOK reports whether n is the size of a packet of a geometry
// the network carries: NymVPN's regular (2413) or ack (386) packets.
func PacketLengthOK(n int) bool {
	return n == sphinx.RegularGeometry().PacketLength || n == sphinx.AckGeometry().PacketLength
}

// MaxPacketLength is the largest Sphinx packet on the wire.
var MaxPacketLength = max(sphinx.RegularGeometry().PacketLength, sphinx.AckGeometry().PacketLength)

// AppendRecord appends one record of kind k whose body is the concatenation
// of parts. It panics if the body exceeds 65535 bytes: callers build bodies
// of bounded size.
func AppendRecord(dst []byte, k Kind, parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > 0xffff {
		panic(fmt.Sprintf("mixnet: %s record body of %d bytes", k, n))
	}
	dst = append(dst, byte(k), byte(n>>8), byte(n))
	for _, p := range parts {
		dst = append(dst, p...)
	}
	return dst
}

// NextRecord splits the first record off msg and returns it and the rest.
// The body aliases msg.
func NextRecord(msg []byte) (k Kind, body, rest []byte, err error) {
	if len(msg) < RecordHeaderLength {
		return 0, nil, nil, fmt.Errorf("%w: %d bytes left, a record header is %d", ErrMalformed, len(msg), RecordHeaderLength)
	}
	n := int(binary.BigEndian.Uint16(msg[1:3]))
	if len(msg)-RecordHeaderLength < n {
		return 0, nil, nil, fmt.Errorf("%w: %s record of %d bytes, %d left", ErrMalformed, Kind(msg[0]), n, len(msg)-RecordHeaderLength)
	}
	return Kind(msg[0]), msg[RecordHeaderLength : RecordHeaderLength+n], msg[RecordHeaderLength+n:], nil
}

// PacketRecordLength is the size of a Packet record carrying pkt.
func PacketRecordLength(pkt []byte) int { return RecordHeaderLength + EpochLength + len(pkt) }

// AppendPacket appends a Packet record.
func AppendPacket(dst []byte, epoch uint64, pkt []byte) []byte {
	var e [EpochLength]byte
	binary.BigEndian.PutUint64(e[:], epoch)
	return AppendRecord(dst, KindPacket, e[:], pkt)
}

// ParsePacket parses a Packet record's body. pkt aliases body.
func ParsePacket(body []byte) (epoch uint64, pkt []byte, err error) {
	if len(body) < EpochLength || !PacketLengthOK(len(body)-EpochLength) {
		return 0, nil, fmt.Errorf("%w: packet record of %d bytes", ErrMalformed, len(body))
	}
	return binary.BigEndian.Uint64(body), body[EpochLength:], nil
}

// AppendSend appends a Send record.
func AppendSend(dst []byte, first sphinx.NodeID, epoch uint64, pkt []byte) []byte {
	var e [EpochLength]byte
	binary.BigEndian.PutUint64(e[:], epoch)
	return AppendRecord(dst, KindSend, first[:], e[:], pkt)
}

// ParseSend parses a Send record's body. pkt aliases body.
func ParseSend(body []byte) (first sphinx.NodeID, epoch uint64, pkt []byte, err error) {
	const head = sphinx.NodeIDLength + EpochLength
	if len(body) < head || !PacketLengthOK(len(body)-head) {
		return first, 0, nil, fmt.Errorf("%w: send record of %d bytes", ErrMalformed, len(body))
	}
	copy(first[:], body)
	return first, binary.BigEndian.Uint64(body[sphinx.NodeIDLength:]), body[head:], nil
}

// AppendHello appends a Hello record.
func AppendHello(dst []byte, recipient sphinx.Recipient, proof [ProofLength]byte) []byte {
	return AppendRecord(dst, KindHello, recipient[:], proof[:])
}

// ParseHello parses a Hello record's body.
func ParseHello(body []byte) (recipient sphinx.Recipient, proof [ProofLength]byte, err error) {
	if len(body) != sphinx.RecipientLength+ProofLength {
		return recipient, proof, fmt.Errorf("%w: hello record of %d bytes", ErrMalformed, len(body))
	}
	copy(recipient[:], body)
	copy(proof[:], body[sphinx.RecipientLength:])
	return recipient, proof, nil
}

// Delivery is what a gateway hands a connected client: a packet whose last
// Sphinx hop was the gateway and whose recipient is the client.
type Delivery struct {
	// Reply marks a SURB reply: Payload is still encrypted, see
	// sphinx.Geometry.DecryptReply.
	Reply bool
	// SURBID is the id from the final routing command: the SURB's (or, for
	// a forward packet, whatever the sender put there).
	SURBID sphinx.SURBID
	// Payload is the message, or the encrypted reply payload.
	Payload []byte
}

// DeliverRecordLength is the size of a Deliver record carrying payload.
func DeliverRecordLength(payload []byte) int {
	return RecordHeaderLength + 1 + sphinx.SURBIDLength + len(payload)
}

// AppendDeliver appends a Deliver record.
func AppendDeliver(dst []byte, d *Delivery) []byte {
	var flags [1]byte
	if d.Reply {
		flags[0] = flagReply
	}
	return AppendRecord(dst, KindDeliver, flags[:], d.SURBID[:], d.Payload)
}

// ParseDeliver parses a Deliver record's body; Payload aliases body.
func ParseDeliver(body []byte) (Delivery, error) {
	var d Delivery
	if len(body) < 1+sphinx.SURBIDLength {
		return d, fmt.Errorf("%w: deliver record of %d bytes", ErrMalformed, len(body))
	}
	if body[0]&^flagReply != 0 {
		return d, fmt.Errorf("%w: deliver record with unknown flags %#02x", ErrMalformed, body[0])
	}
	if len(body)-1-sphinx.SURBIDLength > sphinx.RegularGeometry().PayloadLength {
		return d, fmt.Errorf("%w: deliver record of %d bytes", ErrMalformed, len(body))
	}
	d.Reply = body[0]&flagReply != 0
	copy(d.SURBID[:], body[1:])
	d.Payload = body[1+sphinx.SURBIDLength:]
	return d, nil
}

// AppendError appends an Error record, its text cut to MaxErrorText bytes.
func AppendError(dst []byte, text string) []byte {
	if len(text) > MaxErrorText {
		text = text[:MaxErrorText]
	}
	return AppendRecord(dst, KindError, []byte(text))
}
