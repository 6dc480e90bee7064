package daemon

// DefaultStateDir is where nymvpnd keeps its state.
func DefaultStateDir() string { return "/Library/Application Support/nymvpn" }
