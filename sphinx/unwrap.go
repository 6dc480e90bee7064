package sphinx

import (
	"fmt"
	"time"

	"filippo.io/edwards25519"
)

// ReplayFilter is the caller's replay filter (one per key). Seen records
// the tag and reports whether it had been recorded before.
type ReplayFilter interface {
	Seen(tag *ReplayTag) bool
}

// Node unwraps packets addressed to one Sphinx key. It is safe for
// concurrent use.
type Node struct {
	key        *PrivateKey
	geometries []*Geometry
}

// NewNode returns a node for key accepting packets of the given geometries,
// told apart by length (default: RegularGeometry and AckGeometry).
func NewNode(key *PrivateKey, geometries ...*Geometry) (*Node, error) {
	if key == nil {
		return nil, fmt.Errorf("%w: nil private key", ErrInvalidKey)
	}
	if len(geometries) == 0 {
		geometries = []*Geometry{RegularGeometry(), AckGeometry()}
	}
	for i, g := range geometries {
		for _, h := range geometries[:i] {
			if g.PacketLength == h.PacketLength {
				return nil, fmt.Errorf("%w: two geometries with %d-byte packets", ErrInvalidGeometry, g.PacketLength)
			}
		}
	}
	return &Node{key: key, geometries: append([]*Geometry(nil), geometries...)}, nil
}

// PublicKey returns the node's public key.
func (n *Node) PublicKey() PublicKey { return n.key.public }

// Result is the outcome of unwrapping one layer.
type Result struct {
	// Geometry is the geometry the packet matched.
	Geometry *Geometry
	// ReplayTag is the same whenever the same packet reaches this key.
	ReplayTag ReplayTag
	// Delay is how long this hop should hold the packet.
	Delay time.Duration

	// Final is set at the last hop.
	Final bool

	// NextHop (relay only) is where to forward Packet.
	NextHop NodeID
	// Packet (relay only) is the processed packet: the input buffer,
	// rewritten in place.
	Packet []byte

	// Recipient (final only) is the opaque recipient id.
	Recipient Recipient
	// SURBID (final only) is the SURB id from the sender.
	SURBID SURBID
	// IsReply (final only) marks a SURB reply: Payload is still encrypted
	// (g.PayloadLength bytes) for the SURB's creator, see DecryptReply.
	IsReply bool
	// Payload (final only) is the message, or the encrypted reply payload.
	// It aliases the input buffer.
	Payload []byte
}

// Unwrap removes one layer from pkt, in place. Order of work: one DH, the
// header MAC, the replay tag (given to filter if not nil), then header and
// payload decryption and, at relays, the blinding of alpha. pkt must not be
// used by the caller while the result is in use: Result.Packet and
// Result.Payload alias it. pkt is untouched when Unwrap fails on size, group
// element, MAC or replay; later errors leave it partly decrypted.
func (n *Node) Unwrap(pkt []byte, filter ReplayFilter) (Result, error) {
	var g *Geometry
	for _, c := range n.geometries {
		if c.PacketLength == len(pkt) {
			g = c
			break
		}
	}
	if g == nil {
		return Result{}, fmt.Errorf("%w: %d bytes matches no geometry", ErrInvalidPacket, len(pkt))
	}
	R, S := g.RoutingInfoLength, PerHopRoutingInfoLength
	alpha := (*[32]byte)(pkt[:GroupElementLength])
	beta := pkt[g.betaOffset():g.gammaOffset()]
	gamma := pkt[g.gammaOffset():g.HeaderLength]
	payload := pkt[g.HeaderLength:]

	if !canonicalU((*PublicKey)(alpha)) {
		return Result{}, fmt.Errorf("%w: non-canonical group element", ErrInvalidPacket)
	}
	var secret [32]byte
	ladder(&secret, &n.key.clamped, 255, alpha)
	if isZero32(&secret) {
		return Result{}, fmt.Errorf("%w: group element of small order", ErrInvalidPacket)
	}
	var keys hopKeys
	deriveHopKeys(&keys, &secret)
	clear(secret[:])
	defer clear(keys.payloadKey[:])
	if !keys.checkMAC(alpha[:], beta, gamma) {
		return Result{}, fmt.Errorf("%w: %d-byte packet for key %v", ErrInvalidMAC, len(pkt), n.key.public)
	}
	res := Result{Geometry: g, ReplayTag: keys.tag}
	if filter != nil && filter.Seen(&res.ReplayTag) {
		return res, fmt.Errorf("%w: tag %v", ErrReplay, res.ReplayTag)
	}

	// beta || 0^S, decrypted: the first slot is ours, the rest is the next beta.
	stream := keys.headerStream()
	stream.XORKeyStream(beta, beta)
	var cmd routingCommand
	if err := cmd.decode(beta[:S]); err != nil {
		return res, err
	}
	copy(beta, beta[S:])
	tail := beta[R-S:]
	clear(tail)
	stream.XORKeyStream(tail, tail)

	lionessDecrypt(&keys.payloadKey, payload)
	res.Delay = cmd.delay

	if cmd.deliver {
		res.Final = true
		res.Recipient = cmd.addr
		res.SURBID = cmd.tail
		res.IsReply = cmd.reply
		if cmd.reply {
			res.Payload = payload
			return res, nil
		}
		msg, err := unpadPayload(payload)
		if err != nil {
			return res, fmt.Errorf("sphinx: final hop: %w", err)
		}
		res.Payload = msg
		return res, nil
	}

	// Relay: alpha' = [8*b]alpha, gamma' from the routing command.
	var b edwards25519.Scalar
	keys.blindingScalar(&b)
	var k [32]byte
	times8(&k, &b)
	ladder(alpha, &k, 256, alpha)
	copy(gamma, cmd.tail[:])
	res.NextHop = cmd.addr
	res.Packet = pkt
	return res, nil
}
