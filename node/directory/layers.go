package directory

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"slices"
)

// Layers is the number of mix layers: a route crosses one mix of each.
const Layers = MaxLayer

// layerDomain separates the layer ranking hash from every other hash.
const layerDomain = "nymvpn/directory/layers/v1\x00"

// AssignLayers sets the Layer of every node in nodes for epoch: the mix
// nodes that publish a Sphinx key for epoch are ranked by
// SHA-256(domain ‖ epoch ‖ id) and dealt out round-robin to layers 1..3, so
// layer sizes differ by at most one and the assignment is a function of the
// epoch and the set of such nodes alone; it changes from epoch to epoch. Every
// other node (gateways, mix nodes without a key for the epoch) gets layer 0.
//
// Mix nodes do not enforce layers: a packet is processed whatever layer the
// sender thought the node was in, so a reassignment (a node joining mid-epoch)
// never breaks a packet in flight.
func AssignLayers(nodes []Node, epoch uint64) {
	type ranked struct {
		i    int
		rank [sha256.Size]byte
	}
	var mixes []ranked
	for i := range nodes {
		n := &nodes[i]
		n.Layer = 0
		if !n.Has(RoleMixnode) {
			continue
		}
		if _, ok := n.SphinxKey(epoch); !ok {
			continue
		}
		h := sha256.New()
		h.Write([]byte(layerDomain))
		var e [8]byte
		binary.BigEndian.PutUint64(e[:], epoch)
		h.Write(e[:])
		h.Write([]byte(n.ID))
		var r ranked
		r.i = i
		h.Sum(r.rank[:0])
		mixes = append(mixes, r)
	}
	slices.SortFunc(mixes, func(a, b ranked) int {
		if c := slices.Compare(a.rank[:], b.rank[:]); c != 0 {
			return c
		}
		return cmp.Compare(nodes[a.i].ID, nodes[b.i].ID)
	})
	for k, m := range mixes {
		nodes[m.i].Layer = k%Layers + 1
	}
}

// publishedKeys returns the Sphinx keys of n the directory publishes in
// epoch: the current epoch's and the next one's. Older keys are still held
// by nodes for a grace period but no client should build a packet with them.
func publishedKeys(keys []SphinxKey, epoch uint64) []SphinxKey {
	var out []SphinxKey
	for _, k := range keys {
		if k.Epoch == epoch || k.Epoch == epoch+1 {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b SphinxKey) int { return cmp.Compare(a.Epoch, b.Epoch) })
	return out
}

// Layer returns the mix nodes of layer l (1..3) in document order.
func (t *Topology) Layer(l int) []Node {
	var out []Node
	for i := range t.Nodes {
		if t.Nodes[i].Layer == l && l > 0 && t.Nodes[i].Has(RoleMixnode) {
			out = append(out, t.Nodes[i])
		}
	}
	return out
}
