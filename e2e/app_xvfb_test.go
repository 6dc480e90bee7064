package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/app/apptest"
	"github.com/nymvpn/nymvpn/app/viewmodel"
	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/internal/netnstest"
)

// TestAppWithDaemon runs nymvpn-app on a virtual display (Xvfb) against a
// real nymvpnd with a real TUN in the client namespace of the test network
// (the app stays in the host's namespace: Unix sockets are not namespaced).
// xdotool clicks Connect; the daemon reports Connected and the window shows
// it. On the way it photographs every state: disconnected, connecting (the
// entry gateway is paused with SIGSTOP to hold the daemon in a stage),
// connected, the settings and account pages, the daemon not running, and an
// error state (the restarted daemon finds its TUN's name taken by another
// link). With NYMVPN_SCREENSHOTS=DIR the PNGs are written there
// (docs/screenshots/ holds the committed ones), else into the test's
// temporary directory.
func TestAppWithDaemon(t *testing.T) {
	netnstest.RequireRoot(t)
	requireTUN(t)
	if testing.Short() {
		t.Skip("builds the binaries, a network of namespaces and runs the app under Xvfb; skipped in -short")
	}
	disp := apptest.StartXvfb(t)
	shots := os.Getenv("NYMVPN_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	shoot := func(w *apptest.Window, name string, button viewmodel.Button) {
		t.Helper()
		img := w.CheckButton(t, button.Color)
		apptest.SavePNG(t, filepath.Join(shots, name+".png"), img)
	}
	d := newDaemonNet(t)
	mustNymvpn := d.mustNymvpn(t)
	daemon := d.startDaemon(t, "nymvpnd")
	app := apptest.StartApp(t, disp, apptest.BuildApp(t, ".."), nil, "--socket", d.socket, "--log-level", "debug")
	w := &apptest.Window{Display: disp, Log: app.Log}

	// Disconnected, with the gateways listed.
	at := w.WaitShows(t, 0, "main", "Not connected", "")
	app.Log.WaitFor(t, 0, regexp.MustCompile(`msg="window shows" screen=main headline="Not connected" .*gateways=true`), apptest.WaitTimeout)
	w.ID = disp.FindWindow(t, "^NymVPN", apptest.WaitTimeout)
	shoot(w, "disconnected", viewmodel.Button{Color: viewmodel.Green})

	// Connecting: hold the daemon at registering with the (paused) entry.
	entryPid := d.entryGW.Pid()
	if err := syscall.Kill(entryPid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			syscall.Kill(entryPid, syscall.SIGCONT)
		}
	}
	defer resume()
	w.Click(t, w.Primary())
	at = w.WaitShows(t, at, "main", "Connecting…", "")
	shoot(w, "connecting", viewmodel.Button{Color: viewmodel.Amber})
	resume()

	// Connected: the daemon says so, and so does the window.
	start := time.Now()
	netnstest.Poll(t, readyTimeout, "the daemon connected", func() error {
		if st := status(t, mustNymvpn).State; st.Kind != api.Connected {
			return fmt.Errorf("state %s (%s %s)", st.Kind, st.Stage, st.Reason)
		}
		return nil
	})
	t.Logf("connected %v after the entry resumed", time.Since(start).Round(time.Millisecond))
	at = w.WaitShows(t, at, "main", "Connected", "")
	checkThroughTunnel(t, d.client) // some traffic for the counters
	// The daemon counts traffic about once a second; the window then shows
	// the counters.
	app.Log.WaitFor(t, at, regexp.MustCompile(`msg="window shows" screen=main headline=Connected .*traffic=true`), apptest.WaitTimeout)
	shoot(w, "connected", viewmodel.Button{Color: viewmodel.Red})

	// The settings page, and back.
	w.Click(t, w.Header())
	at = w.WaitShows(t, at, "settings", "Connected", "")
	shoot(w, "settings", viewmodel.Button{Color: viewmodel.Red})
	w.Click(t, w.Header())
	at = w.WaitShows(t, at, "main", "Connected", "")

	// The account page (this network's gateways take no tickets and the
	// daemon has no account: it offers to create or import one), and back.
	w.Click(t, w.Account())
	at = w.WaitShows(t, at, "account", "Connected", "")
	shoot(w, "account", viewmodel.Button{Color: viewmodel.Red})
	if tk := status(t, mustNymvpn).Tickets; tk == nil || tk.Account {
		t.Errorf("the daemon's tickets: %+v", tk)
	}
	w.Click(t, w.Header())
	at = w.WaitShows(t, at, "main", "Connected", "")

	// The daemon stops: the window says it is not running and how to fix it.
	if err := daemon.Stop(); err != nil {
		t.Errorf("nymvpnd: %v", err)
	}
	at = w.WaitShows(t, at, "daemon", "The VPN service isn't running", "")
	shoot(w, "daemon-not-running", viewmodel.Button{Color: viewmodel.Blue})

	// It starts again and reconnects by itself — but a link of another kind
	// holds the TUN's name, so it cannot create its device: an error state,
	// which the window explains. (The app recovered from the daemon's
	// absence by itself.)
	d.client.MustRun(t, "ip", "link", "add", "nymvpn0", "type", "veth", "peer", "name", "nymvpn0p")
	daemon = d.startDaemon(t, "nymvpnd (restarted)")
	at = w.WaitShows(t, at, "main", "The VPN couldn't connect", "What to do")
	shoot(w, "error", viewmodel.Button{Color: viewmodel.Green}) // "Try again"
	if st := status(t, mustNymvpn).State; st.Kind != api.Error {
		t.Errorf("the daemon is %s, want error", st.Kind)
	}

	// The name is free again; Try again: connected.
	d.client.MustRun(t, "ip", "link", "del", "nymvpn0")
	w.Click(t, w.Primary())
	at = w.WaitShows(t, at, "main", "Connected", "")
	w.CheckButton(t, viewmodel.Red)
	if st := status(t, mustNymvpn).State; st.Kind != api.Connected {
		t.Errorf("after Try again the daemon is %s", st.Kind)
	}

	// Disconnect from the window.
	w.Click(t, w.Primary())
	w.WaitShows(t, at, "main", "Not connected", "")
	w.CheckButton(t, viewmodel.Green)
	if st := status(t, mustNymvpn).State; st.Kind != api.Disconnected {
		t.Errorf("after Disconnect the daemon is %s", st.Kind)
	}

	// The app quits on SIGTERM; the daemon goes on.
	if err := app.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-app.Exited:
		if app.Err != nil {
			t.Errorf("nymvpn-app: %v", app.Err)
		}
	case <-time.After(apptest.WaitTimeout):
		t.Error("nymvpn-app did not quit on SIGTERM")
	}
	if err := daemon.Stop(); err != nil {
		t.Errorf("nymvpnd: %v", err)
	}
}
