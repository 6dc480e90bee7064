package mixnet

import (
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"

	mix "github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/sphinx"
)

// routes holds the topology the tunnel builds routes from.
type routes struct {
	keys mix.KeyCache

	mu         sync.Mutex
	topo       *directory.Topology
	entry      directory.Node
	exit       directory.Node
	entryID    string
	exitID     string
	layerCache map[uint64]*[directory.Layers][]directory.Node
}

// set takes a new topology; the entry and exit must still be in it.
func (r *routes) set(t *directory.Topology, entryID, exitID string) error {
	entry, ok := t.Node(entryID)
	if !ok {
		return fmt.Errorf("mixnet: the directory no longer lists the entry gateway %s", entryID)
	}
	exit, ok := t.Node(exitID)
	if !ok {
		return fmt.Errorf("mixnet: the directory no longer lists the exit gateway %s", exitID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.topo, r.entry, r.exit, r.entryID, r.exitID = t, *entry, *exit, entryID, exitID
	r.layerCache = map[uint64]*[directory.Layers][]directory.Node{}
	return nil
}

func (r *routes) topology() *directory.Topology {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.topo
}

func (r *routes) entryNode() directory.Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.entry
}

func (r *routes) exitNode() directory.Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exit
}

// epochLength is the directory's epoch length.
func (r *routes) epochLength() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Duration(r.topo.EpochLength)
}

// route is a Sphinx route of three mixes and a gateway, with its epoch and
// the sum of the delays asked of its mixes.
type route struct {
	epoch  uint64
	hops   []sphinx.Hop
	delays time.Duration
}

// toExit draws a route L1 → L2 → L3 → exit; toSelf one L1 → L2 → L3 →
// entry gateway, which delivers to this client (loops, acks, SURBs).
func (r *routes) toExit(rng *mrand.Rand, mean time.Duration, now time.Time) (route, error) {
	return r.draw(rng, mean, now, false)
}

func (r *routes) toSelf(rng *mrand.Rand, mean time.Duration, now time.Time) (route, error) {
	return r.draw(rng, mean, now, true)
}

func (r *routes) draw(rng *mrand.Rand, mean time.Duration, now time.Time, self bool) (route, error) {
	r.mu.Lock()
	topo := r.topo
	last := r.exit
	if self {
		last = r.entry
	}
	epoch := mix.RouteEpoch(topo, now)
	layers := r.layerCache[epoch]
	if layers == nil {
		l, err := mix.Mixes(topo, epoch)
		if err != nil {
			r.mu.Unlock()
			return route{}, fmt.Errorf("mixnet: %w", err)
		}
		layers = &l
		r.layerCache[epoch] = layers
	}
	r.mu.Unlock()
	nodes := append(mix.RandomMixes(layers, rng), last)
	hops, err := r.keys.Hops(nodes, epoch)
	if err != nil {
		return route{}, fmt.Errorf("mixnet: %w", err)
	}
	rt := route{epoch: epoch, hops: hops}
	for i := range directory.Layers {
		d := mix.ExpDelay(rng, mean, 10*time.Second)
		hops[i].Delay = d
		rt.delays += d
	}
	return rt, nil
}
