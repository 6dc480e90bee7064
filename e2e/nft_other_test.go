//go:build !linux

package e2e

import (
	"testing"

	"github.com/nymvpn/nymvpn/internal/netnstest"
)

// nftables is Linux-only; the tests that read it skip elsewhere before
// getting here (netnstest.RequireRoot).

func nftCounters(t *testing.T, _ *netnstest.Namespace, _ string) map[string]uint64 {
	t.Skip("nftables is Linux-only")
	return nil
}

func nftTables(t *testing.T, _ *netnstest.Namespace) []string {
	t.Skip("nftables is Linux-only")
	return nil
}
