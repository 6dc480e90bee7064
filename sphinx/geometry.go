package sphinx

import "fmt"

// Fixed field sizes of the format, in bytes.
const (
	GroupElementLength = 32 // alpha, public keys, DH outputs
	MACLength          = 16 // gamma: HMAC-SHA256 truncated
	NodeIDLength       = 32 // next hop node id
	RecipientLength    = 32 // opaque recipient id read by the final hop
	SURBIDLength       = 16 // SURB id carried to the final hop
	DelayLength        = 8  // per-hop delay, microseconds
	PayloadTagLength   = 16 // zero prefix checked after the last layer
	SURBKeyLength      = 32 // payload key seed carried in a SURB
	ReplayTagLength    = 32

	// RoutingCommandLength is the routing command in one hop slot: command,
	// flags, reserved, delay and address.
	RoutingCommandLength = 1 + 1 + 2 + DelayLength + NodeIDLength // 44

	// PerHopRoutingInfoLength is one hop slot of beta.
	PerHopRoutingInfoLength = RoutingCommandLength + MACLength // 60

	// PayloadOverhead is the zero tag plus the 0x01 padding marker.
	PayloadOverhead = PayloadTagLength + 1 // 17

	lionessKeyLength = 128
	minPayloadLength = 33 // LIONESS needs a non-empty right half
)

// NymVPN parameters.
const (
	// MaxHops is the number of hop slots in NymVPN headers.
	MaxHops = 5
	// RouteHops is the length of a NymVPN route: mix L1, L2, L3, exit gateway.
	RouteHops = 4
	// RegularPlaintextLength is the message capacity of a regular packet.
	RegularPlaintextLength = 2048
	// AckPlaintextLength is the message capacity of a SURB-ACK packet
	// (NymVPN puts a 16-byte IV and a 5-byte fragment id there).
	AckPlaintextLength = 21
)

// Geometry holds every size of one packet format. Create it with
// NewGeometry, RegularGeometry or AckGeometry; the fields are read-only.
type Geometry struct {
	// NrHops is the number of hop slots in the header: the longest route.
	NrHops int
	// PlaintextLength is the largest message a packet carries.
	PlaintextLength int
	// PerHopRoutingInfoLength is the size of one hop slot.
	PerHopRoutingInfoLength int
	// RoutingInfoLength is the size of beta.
	RoutingInfoLength int
	// HeaderLength is alpha + beta + gamma.
	HeaderLength int
	// PayloadOverhead is PayloadLength - PlaintextLength.
	PayloadOverhead int
	// PayloadLength is the size of the encrypted payload.
	PayloadLength int
	// PacketLength is the size of a packet on the wire.
	PacketLength int
	// SURBLength is the size of a serialized SURB.
	SURBLength int
	// SURBKeysLength is the size of serialized SURBKeys for a full-length
	// route (shorter routes serialize shorter).
	SURBKeysLength int
}

// NewGeometry derives a geometry from the number of hop slots (1..32) and
// the plaintext size (16..65536).
func NewGeometry(nrHops, plaintextLength int) (*Geometry, error) {
	if nrHops < 1 || nrHops > 32 {
		return nil, fmt.Errorf("%w: %d hops, want 1..32", ErrInvalidGeometry, nrHops)
	}
	if plaintextLength+PayloadOverhead < minPayloadLength || plaintextLength > 1<<16 {
		return nil, fmt.Errorf("%w: plaintext of %d bytes, want %d..%d",
			ErrInvalidGeometry, plaintextLength, minPayloadLength-PayloadOverhead, 1<<16)
	}
	g := &Geometry{
		NrHops:                  nrHops,
		PlaintextLength:         plaintextLength,
		PerHopRoutingInfoLength: PerHopRoutingInfoLength,
		RoutingInfoLength:       nrHops * PerHopRoutingInfoLength,
		PayloadOverhead:         PayloadOverhead,
		PayloadLength:           plaintextLength + PayloadOverhead,
	}
	g.HeaderLength = GroupElementLength + g.RoutingInfoLength + MACLength
	g.PacketLength = g.HeaderLength + g.PayloadLength
	g.SURBLength = g.HeaderLength + NodeIDLength + SURBKeyLength
	g.SURBKeysLength = surbKeysLength(nrHops)
	return g, nil
}

func mustGeometry(nrHops, plaintextLength int) *Geometry {
	g, err := NewGeometry(nrHops, plaintextLength)
	if err != nil {
		panic(err)
	}
	return g
}

var (
	regularGeometry = mustGeometry(MaxHops, RegularPlaintextLength)
	ackGeometry     = mustGeometry(MaxHops, AckPlaintextLength)
)

// RegularGeometry is NymVPN's regular packet: 5 hop slots, 2048-byte
// plaintext, 2413 bytes on the wire. The result is shared; do not modify it.
func RegularGeometry() *Geometry { return regularGeometry }

// AckGeometry is NymVPN's SURB-ACK packet: 5 hop slots, 21-byte plaintext,
// 386 bytes on the wire. The result is shared; do not modify it.
func AckGeometry() *Geometry { return ackGeometry }

// String describes the geometry in one line.
func (g *Geometry) String() string {
	return fmt.Sprintf("sphinx geometry: %d hops, header %d, payload %d (plaintext %d), packet %d, SURB %d",
		g.NrHops, g.HeaderLength, g.PayloadLength, g.PlaintextLength, g.PacketLength, g.SURBLength)
}

// offsets inside a packet
func (g *Geometry) betaOffset() int  { return GroupElementLength }
func (g *Geometry) gammaOffset() int { return GroupElementLength + g.RoutingInfoLength }
