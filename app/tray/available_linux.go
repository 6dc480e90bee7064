package tray

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/godbus/dbus/v5"
)

// Watcher is the D-Bus name of the desktop's tray host.
const Watcher = "org.kde.StatusNotifierWatcher"

// available checks that the desktop hosts tray icons: a session bus with a
// StatusNotifierWatcher on it.
func available() error {
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		return fmt.Errorf("%w: no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset)", ErrUnavailable)
	}
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		return fmt.Errorf("%w: connect to the session bus: %w", ErrUnavailable, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var has bool
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, Watcher).Store(&has); err != nil {
		return fmt.Errorf("%w: ask the session bus for %s: %w", ErrUnavailable, Watcher, err)
	}
	if !has {
		return fmt.Errorf("%w: the desktop has no tray host (%s is not on the session bus)", ErrUnavailable, Watcher)
	}
	return nil
}
