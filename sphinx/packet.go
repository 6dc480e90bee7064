package sphinx

import (
	"crypto/subtle"
	"fmt"
	"io"
	"time"

	"filippo.io/edwards25519"
)

// Hop is one node of a route.
type Hop struct {
	// ID is the node id the previous hop forwards to.
	ID NodeID
	// PublicKey is the node's Sphinx key (validate with ParsePublicKey).
	PublicKey PublicKey
	// Delay is the delay this node applies, carried in microseconds.
	Delay time.Duration
}

// Destination is what the final hop learns besides the payload.
type Destination struct {
	// Recipient is an opaque id the final hop delivers to.
	Recipient Recipient
	// SURBID identifies a SURB (or ack) to its creator; free for forward packets.
	SURBID SURBID
}

// NewPacket builds a forward packet over route (1..g.NrHops hops) for dest,
// carrying message (at most g.PlaintextLength bytes). The packet is sent to
// route[0]. Randomness comes from rand: 64 bytes for the ephemeral key, then
// (g.NrHops-len(route))*60 bytes of header padding.
func (g *Geometry) NewPacket(rand io.Reader, route []Hop, dest *Destination, message []byte) ([]byte, error) {
	if len(message) > g.PlaintextLength {
		return nil, fmt.Errorf("%w: message of %d bytes, geometry carries %d", ErrPayloadTooLarge, len(message), g.PlaintextLength)
	}
	pkt := make([]byte, g.PacketLength)
	keys, _, err := g.buildHeader(rand, pkt[:g.HeaderLength], route, dest, false)
	if err != nil {
		return nil, fmt.Errorf("sphinx: new packet: %w", err)
	}
	payload := pkt[g.HeaderLength:]
	padPayload(payload, message)
	for i := len(keys) - 1; i >= 0; i-- {
		lionessEncrypt(&keys[i].payloadKey, payload)
	}
	clear(keys)
	return pkt, nil
}

// buildHeader writes a header for route into header (g.HeaderLength bytes)
// and returns the per-hop keys and shared secrets.
func (g *Geometry) buildHeader(rand io.Reader, header []byte, route []Hop, dest *Destination, reply bool) ([]hopKeys, [][32]byte, error) {
	n := len(route)
	if n < 1 || n > g.NrHops {
		return nil, nil, fmt.Errorf("%w: %d hops, geometry allows 1..%d", ErrInvalidRoute, n, g.NrHops)
	}
	for i := range route {
		if route[i].Delay < 0 {
			return nil, nil, fmt.Errorf("%w: hop %d: negative delay %v", ErrInvalidRoute, i, route[i].Delay)
		}
	}
	if dest == nil {
		dest = new(Destination)
	}

	var seed [64]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, nil, fmt.Errorf("%w: ephemeral key: %w", ErrRandom, err)
	}
	acc, err := new(edwards25519.Scalar).SetUniformBytes(seed[:])
	clear(seed[:])
	if err != nil {
		return nil, nil, fmt.Errorf("sphinx: ephemeral key: %w", err)
	}

	// Key schedule: acc_0 = x, acc_{i+1} = acc_i * 8 * b_i (mod l);
	// alpha_i = acc_i*G, s_i = acc_i*pk_i. Two scalar multiplications per hop.
	alphas := make([]PublicKey, n)
	keys := make([]hopKeys, n)
	secrets := make([][32]byte, n)
	zero := edwards25519.NewScalar()
	for i := 0; i < n; i++ {
		if acc.Equal(zero) == 1 {
			return nil, nil, fmt.Errorf("sphinx: hop %d: degenerate ephemeral scalar", i)
		}
		baseMult(&alphas[i], acc)
		var accBytes [32]byte
		copy(accBytes[:], acc.Bytes())
		ladder(&secrets[i], &accBytes, 253, (*[32]byte)(&route[i].PublicKey))
		clear(accBytes[:])
		// An unclamped scalar does not map small-order keys to zero, but
		// maps them to small-order points.
		if isLowOrder(&secrets[i]) {
			return nil, nil, fmt.Errorf("%w: hop %d (%v): public key of small order", ErrInvalidKey, i, route[i].ID)
		}
		deriveHopKeys(&keys[i], &secrets[i])
		if i < n-1 {
			var b edwards25519.Scalar
			keys[i].blindingScalar(&b)
			acc.Multiply(acc, &b)
			acc.Multiply(acc, scalarEight)
		}
	}

	R, S := g.RoutingInfoLength, PerHopRoutingInfoLength
	streamLen := R + S
	streams := make([]byte, n*streamLen)
	stream := func(i int) []byte { return streams[i*streamLen : (i+1)*streamLen] }
	for i := 0; i < n; i++ {
		ks := stream(i)
		keys[i].headerStream().XORKeyStream(ks, ks)
	}
	defer clear(streams)

	// Filler: phi_i = (phi_{i-1} | 0^S) xor rho_{i-1}[R+S-i*S : R+S].
	filler := make([]byte, (n-1)*S)
	for i := 1; i < n; i++ {
		subtle.XORBytes(filler[:i*S], filler[:i*S], stream(i - 1)[streamLen-i*S:])
	}

	beta := header[GroupElementLength : GroupElementLength+R]
	final := routingCommand{
		deliver: true,
		reply:   reply,
		delay:   route[n-1].Delay,
		addr:    dest.Recipient,
		tail:    dest.SURBID,
	}
	if err := final.encode(beta[:S]); err != nil {
		return nil, nil, err
	}
	padEnd := R - (n-1)*S
	if _, err := io.ReadFull(rand, beta[S:padEnd]); err != nil {
		return nil, nil, fmt.Errorf("%w: header padding: %w", ErrRandom, err)
	}
	subtle.XORBytes(beta[:padEnd], beta[:padEnd], stream(n - 1)[:padEnd])
	copy(beta[padEnd:], filler)

	var gamma [MACLength]byte
	keys[n-1].headerMAC(&gamma, alphas[n-1][:], beta)
	for i := n - 2; i >= 0; i-- {
		copy(beta[S:], beta[:R-S])
		cmd := routingCommand{delay: route[i].Delay, addr: route[i+1].ID, tail: gamma}
		if err := cmd.encode(beta[:S]); err != nil {
			return nil, nil, err
		}
		subtle.XORBytes(beta, beta, stream(i)[:R])
		keys[i].headerMAC(&gamma, alphas[i][:], beta)
	}
	copy(header[:GroupElementLength], alphas[0][:])
	copy(header[GroupElementLength+R:], gamma[:])
	return keys, secrets, nil
}
