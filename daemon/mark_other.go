//go:build !linux

package daemon

import "syscall"

// markControl does nothing where sockets have no fwmark; those systems keep
// the daemon's sockets out of the tunnel by other means (platform).
func markControl(uint32) func(network, address string, c syscall.RawConn) error {
	return nil
}
