package api

// DefaultSocket is where nymvpnd listens unless told otherwise.
func DefaultSocket() string { return "/run/nymvpn/nymvpnd.sock" }
