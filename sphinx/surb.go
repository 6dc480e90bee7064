package sphinx

import (
	"fmt"
	"io"
)

// SURB is a single-use reply block: whoever holds it can send one packet
// of its geometry to the SURB's creator without learning the route.
type SURB struct {
	// FirstHop is the node the reply packet is sent to.
	FirstHop NodeID
	// Header is the prepared Sphinx header (Geometry.HeaderLength bytes).
	Header []byte
	// Key seeds the outer payload encryption the sender applies.
	Key [SURBKeyLength]byte
}

// SURBKeys is what the SURB's creator keeps to read the reply: the SURB id,
// the payload key seed and the shared secret of every hop. Store it with
// MarshalBinary; it is secret.
type SURBKeys struct {
	id      SURBID
	key     [SURBKeyLength]byte
	secrets [][32]byte
}

// NewSURB builds a SURB whose reply travels over route (1..g.NrHops hops;
// route[0] is the first hop after the replier) to dest; dest.SURBID tells
// the creator which SURBKeys to use. Randomness: 64 bytes of ephemeral key,
// (g.NrHops-len(route))*60 bytes of header padding, 32 bytes of payload key.
func (g *Geometry) NewSURB(rand io.Reader, route []Hop, dest *Destination) (*SURB, *SURBKeys, error) {
	if dest == nil {
		dest = new(Destination)
	}
	header := make([]byte, g.HeaderLength)
	keys, secrets, err := g.buildHeader(rand, header, route, dest, true)
	clear(keys)
	if err != nil {
		return nil, nil, fmt.Errorf("sphinx: new SURB: %w", err)
	}
	s := &SURB{FirstHop: route[0].ID, Header: header}
	if _, err := io.ReadFull(rand, s.Key[:]); err != nil {
		return nil, nil, fmt.Errorf("%w: SURB payload key: %w", ErrRandom, err)
	}
	return s, &SURBKeys{id: dest.SURBID, key: s.Key, secrets: secrets}, nil
}

// Bytes serializes the SURB: header | first hop | key.
func (s *SURB) Bytes() []byte {
	b := make([]byte, 0, len(s.Header)+NodeIDLength+SURBKeyLength)
	b = append(b, s.Header...)
	b = append(b, s.FirstHop[:]...)
	return append(b, s.Key[:]...)
}

// ParseSURB decodes a SURB of this geometry (exactly g.SURBLength bytes).
func (g *Geometry) ParseSURB(b []byte) (*SURB, error) {
	if len(b) != g.SURBLength {
		return nil, fmt.Errorf("%w: %d bytes, geometry wants %d", ErrInvalidSURB, len(b), g.SURBLength)
	}
	s := &SURB{Header: append([]byte(nil), b[:g.HeaderLength]...)}
	var alpha PublicKey
	copy(alpha[:], s.Header)
	if !canonicalU(&alpha) {
		return nil, fmt.Errorf("%w: non-canonical group element", ErrInvalidSURB)
	}
	copy(s.FirstHop[:], b[g.HeaderLength:])
	copy(s.Key[:], b[g.HeaderLength+NodeIDLength:])
	return s, nil
}

// NewPacketFromSURB builds the reply packet for s carrying message (at most
// g.PlaintextLength bytes); send it to s.FirstHop. It needs no randomness.
func (g *Geometry) NewPacketFromSURB(s *SURB, message []byte) ([]byte, error) {
	if len(s.Header) != g.HeaderLength {
		return nil, fmt.Errorf("%w: header of %d bytes, geometry wants %d", ErrInvalidSURB, len(s.Header), g.HeaderLength)
	}
	if len(message) > g.PlaintextLength {
		return nil, fmt.Errorf("%w: reply of %d bytes, geometry carries %d", ErrPayloadTooLarge, len(message), g.PlaintextLength)
	}
	var key [lionessKeyLength]byte
	deriveSURBPayloadKey(&key, &s.Key)
	pkt := make([]byte, g.PacketLength)
	copy(pkt, s.Header)
	payload := pkt[g.HeaderLength:]
	padPayload(payload, message)
	lionessEncrypt(&key, payload)
	clear(key[:])
	return pkt, nil
}

// DecryptReply removes the remaining layers from a reply payload delivered
// by the final hop (Result.Payload with IsReply), in place, checks its
// integrity and returns the message, which aliases payload.
func (g *Geometry) DecryptReply(keys *SURBKeys, payload []byte) ([]byte, error) {
	if len(payload) != g.PayloadLength {
		return nil, fmt.Errorf("%w: reply payload of %d bytes, geometry wants %d", ErrInvalidPacket, len(payload), g.PayloadLength)
	}
	if len(keys.secrets) < 1 || len(keys.secrets) > g.NrHops {
		return nil, fmt.Errorf("%w: keys for %d hops, geometry allows 1..%d", ErrInvalidSURB, len(keys.secrets), g.NrHops)
	}
	var hk hopKeys
	for i := len(keys.secrets) - 1; i >= 0; i-- {
		deriveHopKeys(&hk, &keys.secrets[i])
		lionessEncrypt(&hk.payloadKey, payload)
	}
	clear(hk.payloadKey[:])
	var key [lionessKeyLength]byte
	deriveSURBPayloadKey(&key, &keys.key)
	lionessDecrypt(&key, payload)
	clear(key[:])
	msg, err := unpadPayload(payload)
	if err != nil {
		return nil, fmt.Errorf("sphinx: reply for SURB %x: %w", keys.id, err)
	}
	return msg, nil
}

// ID returns the SURB id the keys belong to.
func (k *SURBKeys) ID() SURBID { return k.id }

// Hops returns the length of the SURB's route.
func (k *SURBKeys) Hops() int { return len(k.secrets) }

const surbKeysVersion = 1

func surbKeysLength(hops int) int { return 2 + SURBIDLength + SURBKeyLength + 32*hops }

// MarshalBinary encodes the keys: version (1) | hops (1) | SURB id (16) |
// key (32) | one 32-byte secret per hop.
func (k *SURBKeys) MarshalBinary() ([]byte, error) {
	if len(k.secrets) < 1 || len(k.secrets) > 32 {
		return nil, fmt.Errorf("%w: keys for %d hops", ErrInvalidSURB, len(k.secrets))
	}
	b := make([]byte, 0, surbKeysLength(len(k.secrets)))
	b = append(b, surbKeysVersion, byte(len(k.secrets)))
	b = append(b, k.id[:]...)
	b = append(b, k.key[:]...)
	for i := range k.secrets {
		b = append(b, k.secrets[i][:]...)
	}
	return b, nil
}

// UnmarshalBinary decodes keys written by MarshalBinary.
func (k *SURBKeys) UnmarshalBinary(b []byte) error {
	if len(b) < 2 {
		return fmt.Errorf("%w: SURB keys of %d bytes", ErrInvalidSURB, len(b))
	}
	if b[0] != surbKeysVersion {
		return fmt.Errorf("%w: SURB keys version %d, want %d", ErrInvalidSURB, b[0], surbKeysVersion)
	}
	hops := int(b[1])
	if hops < 1 || hops > 32 {
		return fmt.Errorf("%w: SURB keys for %d hops, want 1..32", ErrInvalidSURB, hops)
	}
	if len(b) != surbKeysLength(hops) {
		return fmt.Errorf("%w: SURB keys of %d bytes, want %d for %d hops", ErrInvalidSURB, len(b), surbKeysLength(hops), hops)
	}
	b = b[2:]
	b = b[copy(k.id[:], b):]
	b = b[copy(k.key[:], b):]
	k.secrets = make([][32]byte, hops)
	for i := range k.secrets {
		b = b[copy(k.secrets[i][:], b):]
	}
	return nil
}
