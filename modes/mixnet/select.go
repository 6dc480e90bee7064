package mixnet

import (
	"errors"
	"math/rand/v2"

	"github.com/nymvpn/nymvpn/modes"
	"github.com/nymvpn/nymvpn/node/directory"
)

// Gateways keeps of a topology the gateways mixnet mode can use: entries
// that take mixnet clients and exits on the mixnet (whose IP packet router
// is the far end); every other node stays.
func Gateways(t *directory.Topology) *directory.Topology {
	out := *t
	out.Nodes = nil
	for _, n := range t.Nodes {
		if n.IsGateway() {
			var roles []directory.Role
			if n.Has(directory.RoleEntry) && n.MixClientAddr != "" && n.MixAddr != "" {
				roles = append(roles, directory.RoleEntry)
			}
			if n.Has(directory.RoleExit) && n.MixAddr != "" {
				roles = append(roles, directory.RoleExit)
			}
			if len(roles) == 0 {
				continue
			}
			n.Roles = append(roles, nonGatewayRoles(n.Roles)...)
		}
		out.Nodes = append(out.Nodes, n)
	}
	return &out
}

func nonGatewayRoles(rs []directory.Role) []directory.Role {
	var out []directory.Role
	for _, r := range rs {
		if r != directory.RoleEntry && r != directory.RoleExit {
			out = append(out, r)
		}
	}
	return out
}

// SelectGateways chooses an entry and an exit for mixnet mode, as
// modes.SelectGateways does among the gateways that can carry it. The nodes
// returned are the topology's own (all their roles).
func SelectGateways(t *directory.Topology, entry, exit modes.Choice, rng *rand.Rand) (directory.Node, directory.Node, error) {
	var zero directory.Node
	e, x, err := modes.SelectGateways(Gateways(t), entry, exit, rng)
	if err != nil {
		return zero, zero, err
	}
	en, ok1 := t.Node(e.ID)
	xn, ok2 := t.Node(x.ID)
	if !ok1 || !ok2 {
		return zero, zero, errors.New("mixnet: chosen gateway missing from the topology")
	}
	return *en, *xn, nil
}
