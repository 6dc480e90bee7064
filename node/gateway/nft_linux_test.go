package gateway_test

import (
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/google/nftables"
)

// nftTables lists the inet tables of the current namespace.
func nftTables(t *testing.T) []string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("list nftables tables: %v", err)
	}
	var names []string
	for _, tb := range tables {
		names = append(names, tb.Name)
	}
	slices.Sort(names)
	return names
}
