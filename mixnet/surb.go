package mixnet

import (
	"encoding/binary"
	"fmt"

	"github.com/nymvpn/nymvpn/sphinx"
)

// SURB is a Sphinx SURB with the epoch of the keys its header was built
// with: the replier sends the reply packet in a Packet record with that
// epoch, so every hop picks the right key.
type SURB struct {
	Epoch uint64
	SURB  *sphinx.SURB
}

// SURBLength is the encoded size of a SURB of geometry g.
func SURBLength(g *sphinx.Geometry) int { return EpochLength + g.SURBLength }

// Bytes encodes the SURB: epoch (8) | Sphinx SURB.
func (s *SURB) Bytes() []byte {
	b := make([]byte, EpochLength, EpochLength+len(s.SURB.Header)+sphinx.NodeIDLength+sphinx.SURBKeyLength)
	binary.BigEndian.PutUint64(b, s.Epoch)
	return append(b, s.SURB.Bytes()...)
}

// ParseSURB decodes a SURB of geometry g.
func ParseSURB(g *sphinx.Geometry, b []byte) (*SURB, error) {
	if len(b) != SURBLength(g) {
		return nil, fmt.Errorf("%w: SURB of %d bytes, want %d", ErrMalformed, len(b), SURBLength(g))
	}
	s, err := g.ParseSURB(b[EpochLength:])
	if err != nil {
		return nil, fmt.Errorf("mixnet: %w", err)
	}
	return &SURB{Epoch: binary.BigEndian.Uint64(b), SURB: s}, nil
}
