//go:build linux || windows

package tray

import (
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"fyne.io/systray"

	"github.com/nymvpn/nymvpn/app/viewmodel"
	"github.com/nymvpn/nymvpn/assets"
	"github.com/nymvpn/nymvpn/daemon/api"
)

// native is the tray of fyne.io/systray.
type native struct {
	log                                *slog.Logger
	toggle, fast, mixnet, window, quit *systray.MenuItem
	stop                               chan struct{}
}

// Start puts the app in the tray; do gets what the user picks in its menu
// (and IntentShowWindow when the icon is clicked). There can be one tray per
// process.
func Start(log *slog.Logger, do func(viewmodel.Intent)) (*Tray, error) {
	if err := available(); err != nil {
		return nil, err
	}
	t := &Tray{log: log, do: do, pending: make(chan struct{}, 1)}
	ready := make(chan *native, 1)
	go func() {
		// The tray's window (Windows) belongs to this thread, whose loop
		// serves it.
		runtime.LockOSThread()
		systray.Run(func() { ready <- t.build() }, func() {})
	}()
	select {
	case n := <-ready:
		t.native = n
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("%w: the tray did not start within 10s", ErrUnavailable)
	}
	go t.apply(t.native)
	return t, nil
}

// build makes the menu (systray's onReady).
func (t *Tray) build() *native {
	n := &native{log: t.log, stop: make(chan struct{})}
	systray.SetTitle("NymVPN")
	systray.SetTooltip("NymVPN")
	setIcon(assets.TrayNoDaemon)
	n.toggle = systray.AddMenuItem("Connect", "Connect or disconnect the VPN")
	n.toggle.Disable()
	systray.AddSeparator()
	n.fast = systray.AddMenuItemCheckbox("Fast mode", viewmodel.Modes[0].Help, false)
	n.mixnet = systray.AddMenuItemCheckbox("Mixnet mode", viewmodel.Modes[1].Help, false)
	n.fast.Disable()
	n.mixnet.Disable()
	systray.AddSeparator()
	n.window = systray.AddMenuItem("Show window", "Open the NymVPN window")
	n.quit = systray.AddMenuItem("Quit", "Close the app (the VPN keeps its state)")
	systray.SetOnTapped(func() { t.do(viewmodel.Intent{Kind: viewmodel.IntentShowWindow}) })
	go func() {
		for {
			select {
			case <-n.stop:
				return
			case <-n.toggle.ClickedCh:
				if in, ok := t.toggle(); ok {
					t.do(in)
				}
			case <-n.fast.ClickedCh:
				t.do(viewmodel.Intent{Kind: viewmodel.IntentMode, Value: api.ModeFast})
			case <-n.mixnet.ClickedCh:
				t.do(viewmodel.Intent{Kind: viewmodel.IntentMode, Value: api.ModeMixnet})
			case <-n.window.ClickedCh:
				t.do(viewmodel.Intent{Kind: viewmodel.IntentShowWindow})
			case <-n.quit.ClickedCh:
				t.do(viewmodel.Intent{Kind: viewmodel.IntentQuit})
			}
		}
	}()
	return n
}

// show changes what differs between shown and want.
func (n *native) show(want, shown viewmodel.Tray) {
	if want.Icon != shown.Icon {
		setIcon(want.Icon)
	}
	if want.Tooltip != shown.Tooltip {
		systray.SetTooltip(want.Tooltip)
	}
	if want.Toggle.Label != shown.Toggle.Label {
		n.toggle.SetTitle(want.Toggle.Label)
	}
	enable(n.toggle, want.Toggle.Enabled)
	for _, it := range []struct {
		item *systray.MenuItem
		mode string
	}{{n.fast, api.ModeFast}, {n.mixnet, api.ModeMixnet}} {
		if want.Mode.Selected == it.mode {
			it.item.Check()
		} else {
			it.item.Uncheck()
		}
		enable(it.item, want.Mode.Enabled)
	}
}

func enable(it *systray.MenuItem, on bool) {
	switch {
	case on && it.Disabled():
		it.Enable()
	case !on && !it.Disabled():
		it.Disable()
	}
}

func setIcon(name string) {
	b, err := assets.TrayIcon(name, runtime.GOOS == "windows")
	if err != nil {
		return
	}
	systray.SetIcon(b)
}

// Stop removes the tray.
func (t *Tray) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.native != nil {
		close(t.native.stop)
		t.native = nil
		systray.Quit()
	}
}
