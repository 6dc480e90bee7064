//go:build !linux

package gateway_test

import "testing"

// nftTables: nftables is Linux-only; TestKernelExit skips elsewhere before
// getting here.
func nftTables(t *testing.T) []string {
	t.Skip("nftables is Linux-only")
	return nil
}
