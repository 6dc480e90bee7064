// Package notify shows desktop notifications through the freedesktop
// notification service (org.freedesktop.Notifications on the D-Bus session
// bus), as Linux desktops provide it. Where there is no session bus (Windows,
// macOS, a bare X server) New fails and the app goes on without
// notifications.
package notify

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// ErrNoSessionBus is returned by New when no D-Bus session bus is known.
var ErrNoSessionBus = errors.New("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset)")

// The notification service's names.
const (
	Service   = "org.freedesktop.Notifications"
	Path      = "/org/freedesktop/Notifications"
	Interface = "org.freedesktop.Notifications"
)

// callTimeout bounds one call to the service.
const callTimeout = 3 * time.Second

// Notifier sends notifications. Each one replaces the app's previous one,
// so they do not pile up.
type Notifier struct {
	app  string
	conn *dbus.Conn

	mu   sync.Mutex
	last uint32 // id of the last notification, replaced by the next
}

// Message is one notification.
type Message struct {
	Title, Body string
	// Urgent asks the desktop to keep it until seen.
	Urgent bool
	// Icon is shown with it when set.
	Icon image.Image
}

// New connects to the session bus. It does not start a bus where there is
// none.
func New(app string) (*Notifier, error) {
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		// godbus would try $XDG_RUNTIME_DIR/bus and then launch a bus of its
		// own; only the former is wanted.
		rt := os.Getenv("XDG_RUNTIME_DIR")
		if rt == "" {
			return nil, ErrNoSessionBus
		}
		if _, err := os.Stat(filepath.Join(rt, "bus")); err != nil {
			return nil, ErrNoSessionBus
		}
		os.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+filepath.Join(rt, "bus"))
	}
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		return nil, fmt.Errorf("connect to the session bus: %w", err)
	}
	return &Notifier{app: app, conn: conn}, nil
}

// Notify shows m. It fails when no notification service answers within a
// few seconds.
func (n *Notifier) Notify(ctx context.Context, m Message) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	hints := map[string]dbus.Variant{}
	if m.Urgent {
		hints["urgency"] = dbus.MakeVariant(byte(2))
	} else {
		hints["urgency"] = dbus.MakeVariant(byte(1))
	}
	if m.Icon != nil {
		hints["image-data"] = dbus.MakeVariant(imageData(m.Icon))
	}
	timeout := int32(-1) // the server's default
	n.mu.Lock()
	replaces := n.last
	n.mu.Unlock()
	var id uint32
	err := n.conn.Object(Service, Path).CallWithContext(ctx, Interface+".Notify", 0,
		n.app, replaces, "", m.Title, m.Body, []string{}, hints, timeout).Store(&id)
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	n.mu.Lock()
	n.last = id
	n.mu.Unlock()
	return nil
}

// Close disconnects from the bus.
func (n *Notifier) Close() error {
	return n.conn.Close()
}

// rawImage is the notification spec's image-data: (iiibiiay).
type rawImage struct {
	Width, Height, Rowstride int32
	HasAlpha                 bool
	BitsPerSample, Channels  int32
	Data                     []byte
}

func imageData(img image.Image) rawImage {
	b := img.Bounds()
	rgba := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(rgba, rgba.Bounds(), img, b.Min, draw.Src)
	return rawImage{Width: int32(b.Dx()), Height: int32(b.Dy()), Rowstride: int32(rgba.Stride),
		HasAlpha: true, BitsPerSample: 8, Channels: 4, Data: rgba.Pix}
}
