package mixnet

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/sphinx"
)

// ErrNoRoute: the topology has no usable node for a hop.
var ErrNoRoute = errors.New("mixnet: no route")

// NodeID is the Sphinx id of a node: its Noise static key. A hop that reads
// it from a routing command looks the next node up by that key in the
// directory and opens a Noise channel authenticated by the same key.
func NodeID(n *directory.Node) sphinx.NodeID { return sphinx.NodeID(n.NoiseKey) }

// RouteEpoch is the epoch whose Sphinx keys a client uses at now with
// topology t: the topology's epoch, or the next one once the clock has
// reached it (its keys are published one epoch ahead).
func RouteEpoch(t *directory.Topology, now time.Time) uint64 {
	e, _ := directory.EpochAt(now, time.Duration(t.EpochLength))
	if e == t.Epoch+1 {
		return e
	}
	return t.Epoch
}

// KeyCache remembers Sphinx public keys that passed sphinx.ParsePublicKey
// (one scalar multiplication each), so building many packets over the same
// nodes checks each key once. Safe for concurrent use.
type KeyCache struct {
	mu   sync.Mutex
	keys map[directory.Key32]sphinx.PublicKey
}

// Key returns n's checked Sphinx key for epoch.
func (c *KeyCache) Key(n *directory.Node, epoch uint64) (sphinx.PublicKey, error) {
	raw, ok := n.SphinxKey(epoch)
	if !ok {
		return sphinx.PublicKey{}, fmt.Errorf("%w: node %s has no Sphinx key for epoch %d", ErrNoRoute, n.ID, epoch)
	}
	c.mu.Lock()
	pk, ok := c.keys[raw]
	c.mu.Unlock()
	if ok {
		return pk, nil
	}
	pk, err := sphinx.ParsePublicKey(raw[:])
	if err != nil {
		return sphinx.PublicKey{}, fmt.Errorf("node %s, epoch %d: %w", n.ID, epoch, err)
	}
	c.mu.Lock()
	if c.keys == nil || len(c.keys) > 4096 {
		c.keys = map[directory.Key32]sphinx.PublicKey{}
	}
	c.keys[raw] = pk
	c.mu.Unlock()
	return pk, nil
}

// Hops turns nodes into Sphinx hops for epoch, with zero delays.
func (c *KeyCache) Hops(nodes []directory.Node, epoch uint64) ([]sphinx.Hop, error) {
	hops := make([]sphinx.Hop, len(nodes))
	for i := range nodes {
		if nodes[i].MixAddr == "" {
			return nil, fmt.Errorf("%w: node %s takes no Sphinx traffic (no mix_addr)", ErrNoRoute, nodes[i].ID)
		}
		pk, err := c.Key(&nodes[i], epoch)
		if err != nil {
			return nil, err
		}
		hops[i] = sphinx.Hop{ID: NodeID(&nodes[i]), PublicKey: pk}
	}
	return hops, nil
}

// Mixes returns the mix nodes of each layer, 1..3, that have a Sphinx key for
// epoch, sorted by id. It fails if a layer is empty.
func Mixes(t *directory.Topology, epoch uint64) ([directory.Layers][]directory.Node, error) {
	var out [directory.Layers][]directory.Node
	for l := 1; l <= directory.Layers; l++ {
		for _, n := range t.Layer(l) {
			if _, ok := n.SphinxKey(epoch); ok && n.MixAddr != "" {
				out[l-1] = append(out[l-1], n)
			}
		}
		if len(out[l-1]) == 0 {
			return out, fmt.Errorf("%w: no mix node in layer %d with a key for epoch %d", ErrNoRoute, l, epoch)
		}
		slices.SortFunc(out[l-1], func(a, b directory.Node) int { return cmp.Compare(a.ID, b.ID) })
	}
	return out, nil
}

// RandomMixes picks one mix per layer uniformly at random.
func RandomMixes(layers *[directory.Layers][]directory.Node, r *rand.Rand) []directory.Node {
	out := make([]directory.Node, directory.Layers)
	for l := range layers {
		out[l] = layers[l][r.IntN(len(layers[l]))]
	}
	return out
}

// NewRand returns a ChaCha8 generator seeded from seed (use crypto/rand):
// for route choice and delays, which observers must not predict.
func NewRand(seed io.Reader) (*rand.Rand, error) {
	var s [32]byte
	if _, err := io.ReadFull(seed, s[:]); err != nil {
		return nil, fmt.Errorf("mixnet: seeding: %w", err)
	}
	return rand.New(rand.NewChaCha8(s)), nil
}

// ExpDelay draws an exponentially distributed delay with the given mean
// (the Loopix/Nym per-hop delay: each mix is then a Poisson mix), cut at
// max (0: no cut). A zero mean gives zero.
func ExpDelay(r *rand.Rand, mean, max time.Duration) time.Duration {
	if mean <= 0 {
		return 0
	}
	d := r.ExpFloat64() * float64(mean)
	if max > 0 && d > float64(max) {
		return max
	}
	if d > math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return time.Duration(d)
}

// Uint64ID puts two numbers into a SURB id: hi in the first 8 bytes, lo in
// the last 8.
func Uint64ID(hi, lo uint64) sphinx.SURBID {
	var id sphinx.SURBID
	binary.BigEndian.PutUint64(id[:8], hi)
	binary.BigEndian.PutUint64(id[8:], lo)
	return id
}
