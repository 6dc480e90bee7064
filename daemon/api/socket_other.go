//go:build !unix && !windows

package api

// DefaultSocket is empty: this platform has no control socket.
func DefaultSocket() string { return "" }
