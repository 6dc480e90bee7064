package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/app/apptest"
	"github.com/nymvpn/nymvpn/app/ui"
	"github.com/nymvpn/nymvpn/app/ui/uitest"
	"github.com/nymvpn/nymvpn/app/viewmodel"
	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/client"
)

const waitTimeout = 30 * time.Second

// startController runs a controller of the daemon at path until the test
// ends.
func startController(t *testing.T, path string) *Controller {
	t.Helper()
	c := NewController(client.New(path), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return c
}

// waitModel waits until the controller's model satisfies ok.
func waitModel(t *testing.T, c *Controller, what string, ok func(m viewmodel.Model) error) viewmodel.Model {
	t.Helper()
	var m viewmodel.Model
	apptest.Poll(t, waitTimeout, what, func() error {
		m = c.Model()
		return ok(m)
	})
	return m
}

func kind(k api.StateKind) func(viewmodel.Model) error {
	return func(m viewmodel.Model) error {
		if m.Link != viewmodel.LinkUp || m.Status.State.Kind != k || m.Busy.Kind != "" {
			return fmt.Errorf("link %v, state %s, busy %q", m.Link, m.Status.State.Kind, m.Busy.Kind)
		}
		return nil
	}
}

// screen lays out the window for m and checks its text.
func screen(t *testing.T, name string, m viewmodel.Model, page viewmodel.Page, want ...string) {
	t.Helper()
	r := uitest.NewRenderer(ui.DefaultSize)
	defer r.Release()
	r.UI.Page = page
	f := r.Layout(m, time.Now())
	for _, w := range want {
		if !f.Contains(w) {
			t.Errorf("%s screen lacks %q; it shows:\n%s", name, w, strings.Join(f.Text, "\n"))
		}
	}
	img, err := r.Image()
	if err != nil {
		t.Logf("%s: no headless rendering: %v", name, err)
		return
	}
	b := ui.PrimaryButton(ui.DefaultSize, r.Metric)
	got := img.RGBAAt(b.Min.X+30, b.Min.Y+b.Dy()/2)
	if want := f.View.Primary.Color; !near(got.R, want.R) || !near(got.G, want.G) || !near(got.B, want.B) {
		t.Errorf("%s: big button %v, want %v", name, got, want)
	}
}

func near(a, b uint8) bool { return a-b < 12 || b-a < 12 }

// TestControllerWithFakeDaemon drives the controller against a real control
// server with a fake backend, and renders what the window shows headless at
// each step.
func TestControllerWithFakeDaemon(t *testing.T) {
	d := newFakeDaemon(t)
	c := startController(t, d.path)

	// No daemon yet: the not-running screen, retrying.
	m := waitModel(t, c, "daemon not running", func(m viewmodel.Model) error {
		if m.Link != viewmodel.LinkDown || m.Problem != viewmodel.ProblemNotRunning {
			return fmt.Errorf("link %v, problem %v (%s)", m.Link, m.Problem, m.LinkError)
		}
		return nil
	})
	screen(t, "not running", m, viewmodel.PageMain, "The VPN service isn't running", d.path, "Try now")

	// The daemon appears: the app recovers by itself.
	d.start(t, nil)
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentRetry})
	m = waitModel(t, c, "disconnected with gateways", func(m viewmodel.Model) error {
		if err := kind(api.Disconnected)(m); err != nil {
			return err
		}
		if !m.GatewaysLoaded || len(m.Entries) != 2 || len(m.Exits) != 1 {
			return fmt.Errorf("gateways %v %v", m.Entries, m.Exits)
		}
		return nil
	})
	if m.Status.Daemon.Version != "v-test" || m.Status.Caller == nil || !m.Status.Caller.CanWrite {
		t.Errorf("status %+v", m.Status)
	}
	screen(t, "disconnected", m, viewmodel.PageMain, "Not connected", "Connect", "Automatic  ▼")

	// Connect; the call returns at once and the stream brings the stages.
	release := d.b.holdConnects()
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentConnect})
	m = waitModel(t, c, "connecting, held", func(m viewmodel.Model) error {
		if st := m.Status.State; st.Kind != api.Connecting || st.Stage != viewmodel.FastStages[2] || m.Busy.Kind != "" {
			return fmt.Errorf("state %s %q, busy %q", st.Kind, st.Stage, m.Busy.Kind)
		}
		return nil
	})
	screen(t, "connecting", m, viewmodel.PageMain, "Connecting…", "Step 3 of 9: Fetching tickets from the issuers", "Cancel")
	release()
	m = waitModel(t, c, "connected", func(m viewmodel.Model) error {
		if err := kind(api.Connected)(m); err != nil {
			return err
		}
		if m.Status.Traffic == nil {
			return fmt.Errorf("no traffic yet")
		}
		return nil
	})
	screen(t, "connected", m, viewmodel.PageMain, "Connected", "Disconnect", "Germany · entry-de-1", "10.1.0.2, fc01::2", "sent 1.5 kB")

	// Mixnet: the daemon answers 501, shown in plain words; the tunnel stays.
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentMode, Value: api.ModeMixnet})
	m = waitModel(t, c, "mixnet refused", func(m viewmodel.Model) error {
		if m.Failure == nil || m.Failure.Code != api.CodeNotSupported || m.Busy.Kind != "" {
			return fmt.Errorf("failure %+v, busy %q", m.Failure, m.Busy.Kind)
		}
		return nil
	})
	if m.Status.State.Kind != api.Connected || m.Status.Settings.Mode != api.ModeFast {
		t.Errorf("after the refused mixnet: %s, mode %s", m.Status.State.Kind, m.Status.Settings.Mode)
	}
	screen(t, "mixnet refused", m, viewmodel.PageMain, "Mixnet mode isn't available yet", "Switch to Fast mode")
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentDismiss})
	waitModel(t, c, "dismissed", func(m viewmodel.Model) error {
		if m.Failure != nil {
			return fmt.Errorf("failure %+v", m.Failure)
		}
		return nil
	})

	// A new exit while connected goes with a connect request (reconnect).
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentExit, Value: "CH"})
	waitModel(t, c, "exit CH", func(m viewmodel.Model) error {
		if m.Status.Settings.Exit != "CH" {
			return fmt.Errorf("exit %q", m.Status.Settings.Exit)
		}
		return kind(api.Connected)(m)
	})
	d.b.mu.Lock()
	last := d.b.connects[len(d.b.connects)-1]
	d.b.mu.Unlock()
	if last != (api.ConnectRequest{Exit: "CH"}) {
		t.Errorf("the exit choice sent %+v", last)
	}

	// Settings: a toggle, and a text field refused before it is sent.
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentSetting, Key: "ipv6", Value: "off"})
	m = waitModel(t, c, "ipv6 off", func(m viewmodel.Model) error {
		if m.Status.Settings.IPv6 || m.Busy.Kind != "" {
			return fmt.Errorf("ipv6 %v", m.Status.Settings.IPv6)
		}
		return nil
	})
	screen(t, "settings", m, viewmodel.PageSettings, "Kill switch", "IPv6", "DNS servers")
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentSetting, Key: "dns", Value: "not-an-address"})
	waitModel(t, c, "bad dns refused", func(m viewmodel.Model) error {
		if m.Failure == nil || m.Failure.Code != api.CodeInvalidSetting || !strings.Contains(m.Failure.Message, "not an IP address") {
			return fmt.Errorf("failure %+v", m.Failure)
		}
		return nil
	})
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentSetting, Key: "dns", Value: "9.9.9.9"})
	waitModel(t, c, "dns saved", func(m viewmodel.Model) error {
		if len(m.Status.Settings.DNS) != 1 || m.Failure != nil {
			return fmt.Errorf("dns %v, failure %+v", m.Status.Settings.DNS, m.Failure)
		}
		return nil
	})

	// Disconnect.
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentDisconnect})
	m = waitModel(t, c, "disconnected", kind(api.Disconnected))
	if m.Status.Traffic != nil {
		t.Errorf("traffic after disconnect: %+v", m.Status.Traffic)
	}

	// The daemon goes away and comes back: down, then up by itself.
	d.stop(t)
	waitModel(t, c, "daemon gone", func(m viewmodel.Model) error {
		if m.Link != viewmodel.LinkDown || m.Problem != viewmodel.ProblemNotRunning {
			return fmt.Errorf("link %v problem %v", m.Link, m.Problem)
		}
		return nil
	})
	d.start(t, nil)
	waitModel(t, c, "daemon back", kind(api.Disconnected))
}

// TestControllerReadOnly: a user who may only read sees the state, gets the
// controls disabled and, on trying, the refusal in plain words.
func TestControllerReadOnly(t *testing.T) {
	d := newFakeDaemon(t)
	d.start(t, readOnly{})
	c := startController(t, d.path)
	m := waitModel(t, c, "status", kind(api.Disconnected))
	if m.CanWrite() {
		t.Fatal("the daemon says this caller may write")
	}
	screen(t, "read-only", m, viewmodel.PageMain, "You can watch the VPN but not change it.")
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentConnect})
	m = waitModel(t, c, "refusal", func(m viewmodel.Model) error {
		if m.Failure == nil || m.Failure.Code != api.CodeForbidden {
			return fmt.Errorf("failure %+v", m.Failure)
		}
		return nil
	})
	screen(t, "forbidden", m, viewmodel.PageMain, "You may not change the VPN", "nymvpn group")
}

// TestControllerPermission: a socket the user may not open is the
// not-permitted screen (only as a user other than root: root opens
// anything).
func TestControllerPermission(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root may open any socket; the refusal needs an ordinary user")
	}
	d := newFakeDaemon(t)
	d.start(t, nil)
	if err := os.Chmod(d.path, 0o000); err != nil {
		t.Fatal(err)
	}
	c := startController(t, d.path)
	m := waitModel(t, c, "permission refused", func(m viewmodel.Model) error {
		if m.Link != viewmodel.LinkDown || m.Problem != viewmodel.ProblemPermission {
			return fmt.Errorf("link %v problem %v (%s)", m.Link, m.Problem, m.LinkError)
		}
		return nil
	})
	screen(t, "not permitted", m, viewmodel.PageMain, "You may not use the VPN service")
}

// TestDoDoesNotWait: Do returns while the daemon is still busy with the
// call (the window never waits for the daemon), and a second call meanwhile
// is ignored.
func TestDoDoesNotWait(t *testing.T) {
	d := newFakeDaemon(t)
	d.start(t, nil)
	c := startController(t, d.path)
	waitModel(t, c, "status", kind(api.Disconnected))
	// The fake Connect waits for the previous change: a held connect makes
	// the next one block inside the daemon.
	release := d.b.holdConnects()
	defer release()
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentConnect})
	waitModel(t, c, "held", func(m viewmodel.Model) error {
		if m.Status.State.Stage != viewmodel.FastStages[2] || m.Busy.Kind != "" {
			return fmt.Errorf("stage %q busy %q", m.Status.State.Stage, m.Busy.Kind)
		}
		return nil
	})
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentDisconnect}) // blocks in the daemon until release
	m := c.Model()
	if m.Busy.Kind != viewmodel.IntentDisconnect {
		t.Fatalf("busy %q while the disconnect is in flight", m.Busy.Kind)
	}
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentConnect}) // ignored: one call at a time
	if c.Model().Busy.Kind != viewmodel.IntentDisconnect {
		t.Errorf("a second call replaced the first")
	}
	release()
	waitModel(t, c, "disconnected", kind(api.Disconnected))
}

func TestMainFlags(t *testing.T) {
	var out strings.Builder
	if code := Main([]string{"--bogus"}, &out); code != 2 {
		t.Errorf("--bogus: exit %d", code)
	}
	out.Reset()
	if code := Main([]string{"--help"}, &out); code != 0 || !strings.Contains(out.String(), "-socket") {
		t.Errorf("--help: exit %d\n%s", code, out.String())
	}
	out.Reset()
	if code := Main([]string{"--log-level", "loud"}, &out); code != 2 {
		t.Errorf("--log-level loud: exit %d", code)
	}
	if code := Main([]string{"extra"}, &out); code != 2 {
		t.Errorf("extra argument: exit %d", code)
	}
}
