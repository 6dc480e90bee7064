//go:build !linux

package platform

import "log/slog"

// newOps returns nil: system integration is not implemented on this OS yet,
// so Up reports it (wrapping errors.ErrUnsupported).
func newOps(Options, *slog.Logger) ops { return nil }

// lockDir takes no lock: on this OS nothing writes a journal (Up refuses),
// so there is nothing to share.
func lockDir(string) (func() error, error) { return nil, nil }
