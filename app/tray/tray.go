// Package tray puts nymvpn-app in the system tray (fyne.io/systray): an icon
// per state of the tunnel, a tooltip, and a menu with Connect/Disconnect, the
// mode, Show window and Quit. On Linux the tray is a StatusNotifierItem on the
// D-Bus session bus and needs a desktop that hosts one (a
// StatusNotifierWatcher); Windows always has a notification area; on other
// systems Start says the tray is not available and the app runs as a window
// only.
package tray

import (
	"errors"
	"log/slog"
	"sync"

	"github.com/nymvpn/nymvpn/app/viewmodel"
)

// ErrUnavailable is returned by Start when there is no tray to go to.
var ErrUnavailable = errors.New("no system tray")

// Tray is the app's tray icon and menu.
type Tray struct {
	log *slog.Logger
	do  func(viewmodel.Intent)

	mu      sync.Mutex
	want    viewmodel.Tray // the latest Update
	pending chan struct{}  // Update happened
	shown   viewmodel.Tray // what the tray shows
	started bool
	native  *native
}

// Update makes the tray show v. It does not block: the tray catches up with
// the latest view in a goroutine of its own.
func (t *Tray) Update(v viewmodel.Tray) {
	t.mu.Lock()
	t.want = v
	t.mu.Unlock()
	select {
	case t.pending <- struct{}{}:
	default:
	}
}

// Shown returns what the tray shows now.
func (t *Tray) Shown() viewmodel.Tray {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.shown
}

// apply follows Update on n until n stops.
func (t *Tray) apply(n *native) {
	for {
		select {
		case <-n.stop:
			return
		case <-t.pending:
		}
		t.mu.Lock()
		want, shown := t.want, t.shown
		t.mu.Unlock()
		n.show(want, shown)
		t.mu.Lock()
		t.shown = want
		t.mu.Unlock()
	}
}

// toggle is the intent of the Connect/Disconnect item now.
func (t *Tray) toggle() (viewmodel.Intent, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.shown.Toggle.Intent, t.shown.Toggle.Enabled
}
