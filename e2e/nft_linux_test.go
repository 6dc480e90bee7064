package e2e

import (
	"os"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/nymvpn/nymvpn/internal/netnstest"
)

// nftConn opens an nftables connection into the namespace.
func nftConn(t *testing.T, ns *netnstest.Namespace) *nftables.Conn {
	t.Helper()
	f, err := os.Open("/run/netns/" + ns.Name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { f.Close() })
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatalf("nftables in %s: %v", ns.Name, err)
	}
	return c
}

// nftCounters sums the packet counters of each chain of an inet table.
func nftCounters(t *testing.T, ns *netnstest.Namespace, table string) map[string]uint64 {
	t.Helper()
	c := nftConn(t, ns)
	tbl := &nftables.Table{Family: nftables.TableFamilyINet, Name: table}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatalf("list chains in %s: %v", ns.Name, err)
	}
	sums := map[string]uint64{}
	for _, ch := range chains {
		if ch.Table.Name != table {
			continue
		}
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			t.Fatalf("rules of %s/%s: %v", table, ch.Name, err)
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					sums[ch.Name] += ctr.Packets
				}
			}
		}
	}
	return sums
}

// nftTables lists the inet tables in the namespace.
func nftTables(t *testing.T, ns *netnstest.Namespace) []string {
	t.Helper()
	tables, err := nftConn(t, ns).ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatalf("list tables in %s: %v", ns.Name, err)
	}
	var names []string
	for _, tb := range tables {
		names = append(names, tb.Name)
	}
	return names
}
