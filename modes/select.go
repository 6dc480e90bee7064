// Package modes holds what the tunnel modes share: choosing gateways from the
// directory. Each mode lives in its own subpackage (fast, mixnet).
package modes

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/nymvpn/nymvpn/node/directory"
)

// Choice names a gateway: "" for automatic, a two-letter country code, or a
// node id.
type Choice string

// IsCountry reports whether c names a country.
func (c Choice) IsCountry() bool {
	return len(c) == 2 && strings.ToUpper(string(c)) == string(c) && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z'
}

// ParseChoice accepts "", "auto", a country code in either case, or a node id.
func ParseChoice(s string) Choice {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "auto") {
		return ""
	}
	if len(s) == 2 {
		return Choice(strings.ToUpper(s))
	}
	return Choice(s)
}

// pick returns the gateways of role r that match c.
func pick(topo *directory.Topology, r directory.Role, c Choice) ([]directory.Node, error) {
	switch {
	case c == "":
		gws := topo.WithRole(r)
		if len(gws) == 0 {
			return nil, fmt.Errorf("the directory lists no %s gateway", r)
		}
		return gws, nil
	case c.IsCountry():
		gws := topo.Gateways(r, string(c))
		if len(gws) == 0 {
			return nil, fmt.Errorf("no %s gateway in %s; countries with one: %s", r, c, strings.Join(topo.Countries(r), ", "))
		}
		return gws, nil
	default:
		n, ok := topo.Node(string(c))
		if !ok {
			return nil, fmt.Errorf("the directory lists no node %q", c)
		}
		if !n.Has(r) {
			return nil, fmt.Errorf("node %q is not an %s gateway (roles %v)", c, r, n.Roles)
		}
		return []directory.Node{*n}, nil
	}
}

// SelectGateways chooses an entry and an exit gateway. Among the candidates it
// picks at random, never the same node for both hops, and prefers an exit in
// another country than the entry when the choice is automatic.
func SelectGateways(topo *directory.Topology, entry, exit Choice, rng *rand.Rand) (directory.Node, directory.Node, error) {
	var zero directory.Node
	entries, err := pick(topo, directory.RoleEntry, entry)
	if err != nil {
		return zero, zero, fmt.Errorf("entry: %w", err)
	}
	exits, err := pick(topo, directory.RoleExit, exit)
	if err != nil {
		return zero, zero, fmt.Errorf("exit: %w", err)
	}
	if rng == nil {
		rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	e := entries[rng.IntN(len(entries))]
	others := slices.DeleteFunc(slices.Clone(exits), func(n directory.Node) bool { return n.ID == e.ID })
	if len(others) == 0 {
		return zero, zero, fmt.Errorf("the only exit that matches %q is the entry %s itself; choose another", exit, e.ID)
	}
	if exit == "" {
		abroad := slices.DeleteFunc(slices.Clone(others), func(n directory.Node) bool { return n.Country == e.Country })
		if len(abroad) > 0 {
			others = abroad
		}
	}
	return e, others[rng.IntN(len(others))], nil
}
