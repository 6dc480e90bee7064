package daemon

import (
	"os"
	"path/filepath"
)

// DefaultStateDir is where nymvpnd keeps its state.
func DefaultStateDir() string {
	pd := os.Getenv("ProgramData")
	if pd == "" {
		pd = `C:\ProgramData`
	}
	return filepath.Join(pd, "nymvpn")
}
