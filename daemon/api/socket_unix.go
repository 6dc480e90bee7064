//go:build unix && !linux

package api

// DefaultSocket is where nymvpnd listens unless told otherwise.
func DefaultSocket() string { return "/var/run/nymvpnd.sock" }
