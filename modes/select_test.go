package modes

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nymvpn/nymvpn/node/directory"
)

func topo() *directory.Topology {
	gw := func(id, cc string, roles ...directory.Role) directory.Node {
		return directory.Node{ID: id, Country: cc, Roles: roles}
	}
	return &directory.Topology{Nodes: []directory.Node{
		gw("a", "DE", directory.RoleEntry), gw("b", "CH", directory.RoleEntry),
		gw("c", "DE", directory.RoleExit), gw("d", "CH", directory.RoleExit),
		gw("both", "FR", directory.RoleEntry, directory.RoleExit),
	}}
}

func TestSelectGateways(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		e, x, err := SelectGateways(topo(), "", "", rng)
		if err != nil {
			t.Fatal(err)
		}
		if e.ID == x.ID || e.Country == x.Country {
			t.Fatalf("auto chose %s (%s) → %s (%s)", e.ID, e.Country, x.ID, x.Country)
		}
	}
	e, x, err := SelectGateways(topo(), ParseChoice("de"), ParseChoice("ch"), rng)
	if err != nil || e.ID != "a" || x.ID != "d" {
		t.Fatalf("DE→CH chose %s→%s, %v", e.ID, x.ID, err)
	}
	if _, _, err := SelectGateways(topo(), "both", "both", rng); err == nil || !strings.Contains(err.Error(), "itself") {
		t.Fatalf("same node both hops: %v", err)
	}
	if _, _, err := SelectGateways(topo(), "US", "", rng); err == nil || !strings.Contains(err.Error(), "countries with one") {
		t.Fatalf("unknown country: %v", err)
	}
	if _, _, err := SelectGateways(topo(), "c", "", rng); err == nil || !strings.Contains(err.Error(), "not an entry") {
		t.Fatalf("exit as entry: %v", err)
	}
	if _, _, err := SelectGateways(topo(), "zzz", "", rng); err == nil {
		t.Fatal("unknown id accepted")
	}
}
