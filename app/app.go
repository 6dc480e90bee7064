// Package app is nymvpn-app: a Gio window and a system tray over nymvpnd's
// control API (daemon/client). The Controller follows the daemon's event
// stream, the one source of the app's state, and makes the calls the user
// asks for in goroutines; the window (app/ui, drawn from app/viewmodel's
// View), the tray (app/tray) and the desktop notifications (app/notify)
// observe it. Closing the window keeps the app in the tray; where there is
// no tray, closing the window quits.
package app

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	gioapp "gioui.org/app"

	"github.com/nymvpn/nymvpn/app/notify"
	"github.com/nymvpn/nymvpn/app/tray"
	"github.com/nymvpn/nymvpn/app/viewmodel"
	"github.com/nymvpn/nymvpn/assets"
	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/client"
	"github.com/nymvpn/nymvpn/version"
)

// Main runs nymvpn-app with the command-line arguments args (without the
// program name). It returns only on bad arguments: the app ends with
// os.Exit when the user quits.
func Main(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("nymvpn-app", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", api.DefaultSocket(), "nymvpnd's control `socket`")
	hidden := fs.Bool("hidden", false, "start in the tray without opening the window (when there is a tray)")
	level := fs.String("log-level", "info", "log `level`: debug, info, warn, error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: nymvpn-app [flags]\n\nThe NymVPN window and tray, over nymvpnd (the VPN service).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "nymvpn-app: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stderr, "nymvpn-app", version.Version)
		return 0
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "nymvpn-app: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	slog.SetDefault(log) // the tray library logs through the standard logger

	a := newApp(client.New(*socket), log)
	a.start(!*hidden)
	gioapp.Main() // never returns: quit ends the process
	return 0
}

// app wires the controller to the window, the tray and the notifications.
type app struct {
	log    *slog.Logger
	ctrl   *Controller
	win    *windows
	tray   *tray.Tray
	notes  chan viewmodel.Note
	cancel context.CancelFunc
	done   chan struct{}
	quit   sync.Once
}

func newApp(c *client.Client, log *slog.Logger) *app {
	a := &app{log: log, ctrl: NewController(c, log), notes: make(chan viewmodel.Note, 8), done: make(chan struct{})}
	a.win = &windows{ctrl: a.ctrl, log: log, handle: a.handle, closed: a.windowClosed}
	return a
}

// start starts following the daemon, the tray, the notifications and,
// when show is set or there is no tray, the window.
func (a *app) start(show bool) {
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	t, err := tray.Start(a.log, a.handle)
	if err != nil {
		a.log.Info("running without a tray icon: closing the window quits", "reason", err)
	} else {
		a.tray = t
		a.log.Info("tray icon up")
	}
	n, err := notify.New("NymVPN")
	if err != nil {
		a.log.Info("desktop notifications are off", "reason", err)
	} else {
		go a.notify(ctx, n)
	}
	a.ctrl.OnChange(a.changed)
	go func() {
		a.ctrl.Run(ctx)
		close(a.done)
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		a.log.Info("quitting", "signal", s.String())
		a.exit()
	}()
	if show || a.tray == nil {
		a.win.Show()
	}
	if a.tray != nil {
		a.tray.Update(viewmodel.Build(a.ctrl.Model(), viewmodel.PageMain, time.Now()).Tray)
	}
}

// changed follows the model: redraw, tray, notification. It must not block.
func (a *app) changed(prev, next viewmodel.Model) {
	a.win.Invalidate()
	if a.tray != nil {
		a.tray.Update(viewmodel.Build(next, viewmodel.PageMain, time.Now()).Tray)
	}
	if note, ok := viewmodel.Notification(prev, next); ok {
		select {
		case a.notes <- note:
		default:
			a.log.Debug("notification dropped: too many at once", "title", note.Title)
		}
	}
}

// notify shows the notifications in order.
func (a *app) notify(ctx context.Context, n *notify.Notifier) {
	defer n.Close()
	failed := false
	for {
		select {
		case <-ctx.Done():
			return
		case note := <-a.notes:
			m := notify.Message{Title: note.Title, Body: note.Body, Urgent: note.Urgent}
			if b, err := assets.TrayIcon(note.Icon, false); err == nil {
				if img, err := png.Decode(bytes.NewReader(b)); err == nil {
					m.Icon = img
				}
			}
			if err := n.Notify(ctx, m); err != nil {
				if !failed {
					a.log.Info("desktop notification failed; the app goes on without", "err", err)
				}
				failed = true
				continue
			}
			failed = false
			a.log.Info("notified", "title", note.Title)
		}
	}
}

// handle carries out an intent of the window or the tray.
func (a *app) handle(in viewmodel.Intent) {
	switch in.Kind {
	case viewmodel.IntentShowWindow:
		a.win.Show()
	case viewmodel.IntentQuit:
		a.log.Info("quitting", "asked", "tray")
		a.exit()
	default:
		a.ctrl.Do(in)
	}
}

// windowClosed keeps the app in the tray, or quits without one.
func (a *app) windowClosed() {
	if a.tray != nil {
		a.log.Info("window closed; still in the tray")
		return
	}
	a.exit()
}

// exit stops everything and ends the process.
func (a *app) exit() {
	a.quit.Do(func() {
		a.cancel()
		select {
		case <-a.done:
		case <-time.After(5 * time.Second):
			a.log.Warn("calls still in flight at exit")
		}
		if a.tray != nil {
			a.tray.Stop()
		}
		a.log.Info("bye")
		os.Exit(0)
	})
}
