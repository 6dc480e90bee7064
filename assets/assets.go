// Package assets holds nymvpn-app's icons, embedded in the binary: the
// application icon and one tray icon per state of the tunnel, each as PNG and
// as ICO (the Windows tray takes ICO). gen_icons.go draws them; run
// `go generate ./assets` after changing a shape or a colour.
package assets

import (
	"embed"
	"fmt"
)

//go:generate go run gen_icons.go

//go:embed app tray
var files embed.FS

// The tray icons' names, one per state the tray shows.
const (
	TrayConnected    = "connected"
	TrayConnecting   = "connecting"
	TrayDisconnected = "disconnected"
	TrayError        = "error"
	TrayNoDaemon     = "nodaemon"
)

// TrayNames lists every tray icon.
var TrayNames = []string{TrayConnected, TrayConnecting, TrayDisconnected, TrayError, TrayNoDaemon}

// TrayIcon returns the tray icon called name (one of TrayNames), as ICO when
// ico is set, else PNG.
func TrayIcon(name string, ico bool) ([]byte, error) {
	ext := ".png"
	if ico {
		ext = ".ico"
	}
	b, err := files.ReadFile("tray/" + name + ext)
	if err != nil {
		return nil, fmt.Errorf("tray icon %q: %w", name, err)
	}
	return b, nil
}

// AppIcon returns the application icon (256×256), as ICO when ico is set,
// else PNG.
func AppIcon(ico bool) []byte {
	name := "app/nymvpn.png"
	if ico {
		name = "app/nymvpn.ico"
	}
	b, err := files.ReadFile(name)
	if err != nil {
		panic(fmt.Sprintf("assets: %s is not embedded: %v", name, err))
	}
	return b
}
