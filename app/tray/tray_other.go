//go:build !linux && !windows

package tray

import (
	"fmt"
	"log/slog"
	"runtime"

	"github.com/nymvpn/nymvpn/app/viewmodel"
)

// native has nothing to show where the tray is not wired up.
type native struct{ stop chan struct{} }

func (*native) show(viewmodel.Tray, viewmodel.Tray) {}

// Start fails: on macOS the tray would have to share the main thread with
// Gio's event loop (systray.RunWithExternalLoop), which this version does not
// do yet.
func Start(*slog.Logger, func(viewmodel.Intent)) (*Tray, error) {
	return nil, fmt.Errorf("%w on %s in this version", ErrUnavailable, runtime.GOOS)
}

// Stop does nothing.
func (t *Tray) Stop() {}
