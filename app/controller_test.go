package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
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
	return startControllerLog(t, path, io.Discard)
}

// startControllerLog is startController with the controller's log (debug
// and up) written to w.
func startControllerLog(t *testing.T, path string, w io.Writer) *Controller {
	t.Helper()
	c := NewController(client.New(path), slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
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

	// The account page: the same note, and creating is refused alike.
	m = waitModel(t, c, "account looked up", func(m viewmodel.Model) error {
		if !m.AccountLoaded {
			return fmt.Errorf("account not looked up")
		}
		return nil
	})
	screen(t, "read-only account", m, viewmodel.PageAccount, "You can watch the VPN but not change it.", "Create account")
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentCreateAccount})
	m = waitModel(t, c, "create refused", func(m viewmodel.Model) error {
		if m.Failure == nil || m.Failure.Code != api.CodeForbidden || m.Failure.Intent.Kind != viewmodel.IntentCreateAccount || m.Busy.Kind != "" {
			return fmt.Errorf("failure %+v", m.Failure)
		}
		return nil
	})
	if m.AccountExists() || m.NewPhrase != "" {
		t.Errorf("a reader created an account: %+v", m.Account)
	}
	screen(t, "create forbidden", m, viewmodel.PageAccount, "You may not change the VPN", "You can watch the VPN but not change it.")
}

// syncBuffer is a buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestControllerAccount drives the account page's calls against the fake
// daemon's wallet: a refused phrase, create (the phrase shown once, then
// let go of), tickets live from the stream, forget refused while connected,
// forget with its confirmation, import, changes made by another client;
// the phrase never reaches the log or stays in the model.
func TestControllerAccount(t *testing.T) {
	d := newFakeDaemon(t)
	d.start(t, nil)
	var logs syncBuffer
	c := startControllerLog(t, d.path, &logs)
	idle := func(m viewmodel.Model) error {
		if m.Link != viewmodel.LinkUp || m.Busy.Kind != "" {
			return fmt.Errorf("link %v, busy %q", m.Link, m.Busy.Kind)
		}
		return nil
	}
	failed := func(code string) func(viewmodel.Model) error {
		return func(m viewmodel.Model) error {
			if err := idle(m); err != nil {
				return err
			}
			if m.Failure == nil || m.Failure.Code != code {
				return fmt.Errorf("failure %+v, want %s", m.Failure, code)
			}
			return nil
		}
	}
	m := waitModel(t, c, "no account", func(m viewmodel.Model) error {
		if err := idle(m); err != nil {
			return err
		}
		if !m.AccountLoaded || m.AccountExists() || m.Status.Tickets == nil {
			return fmt.Errorf("account %+v loaded %v, tickets %+v", m.Account, m.AccountLoaded, m.Status.Tickets)
		}
		return nil
	})
	screen(t, "no account", m, viewmodel.PageAccount, "There is no account on this computer.", "Create account", "IMPORT AN ACCOUNT", "Show the words")

	// A phrase that is not one: plain words, and the phrase is nowhere in
	// the model.
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentImportAccount, Secret: "legal winner thank"})
	m = waitModel(t, c, "bad phrase", failed(api.CodeBadPhrase))
	if m.Failure.Intent.Secret != "" || strings.Contains(fmt.Sprintf("%+v", m), "legal winner") {
		t.Errorf("the phrase stayed in the model: %+v", m.Failure)
	}
	screen(t, "bad phrase", m, viewmodel.PageAccount, "That isn't a recovery phrase", "It has 3 words; a recovery phrase has 24.")
	// An empty field is refused without asking the daemon.
	d.b.mu.Lock()
	asked := len(d.b.phrases)
	d.b.mu.Unlock()
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentDismiss})
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentImportAccount, Secret: "  "})
	m = waitModel(t, c, "empty phrase", failed(api.CodeBadPhrase))
	d.b.mu.Lock()
	if len(d.b.phrases) != asked {
		t.Error("an empty phrase was sent to the daemon")
	}
	d.b.mu.Unlock()
	screen(t, "empty phrase", m, viewmodel.PageAccount, "No words were entered.")

	// Create: the account and its tickets; the phrase waits to be written
	// down, on the account page wherever the window was.
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentCreateAccount})
	m = waitModel(t, c, "created", func(m viewmodel.Model) error {
		if err := idle(m); err != nil {
			return err
		}
		if !m.AccountExists() || m.Account.ID != fakeAccountID || m.NewPhrase != fakePhrase || m.Failure != nil {
			return fmt.Errorf("account %+v, phrase %v, failure %+v", m.Account, m.NewPhrase != "", m.Failure)
		}
		return nil
	})
	screen(t, "new phrase", m, viewmodel.PageMain, "Write down your recovery phrase", "This is the only time it is shown.", fakePhrase,
		"I have written it down", fakeAccountID, "Fast entry", "50", "0 · fetching more…")
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentPhraseDone})
	m = waitModel(t, c, "phrase let go of", func(m viewmodel.Model) error {
		if m.NewPhrase != "" {
			return fmt.Errorf("the phrase is still in the model")
		}
		return nil
	})
	if strings.Contains(fmt.Sprintf("%+v", m), "legal winner") {
		t.Error("the phrase stayed in the model")
	}
	screen(t, "account", m, viewmodel.PageAccount, fakeAccountID, "Created", "TICKETS LEFT", "Forget account…")

	// Creating again: refused in plain words.
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentCreateAccount})
	m = waitModel(t, c, "account exists", failed(api.CodeAccountExists))
	if m.NewPhrase != "" {
		t.Error("a refused create left a phrase")
	}
	screen(t, "account exists", m, viewmodel.PageAccount, "An account is already set up", "forget this one first")
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentDismiss})

	// Tickets left follow the event stream.
	d.b.spend(3)
	m = waitModel(t, c, "tickets spent", func(m viewmodel.Model) error {
		if n := m.Status.Tickets.Left[api.TicketFastEntry]; n != 47 {
			return fmt.Errorf("fast-entry %d", n)
		}
		return nil
	})
	screen(t, "tickets spent", m, viewmodel.PageAccount, "47")

	// Not while connected: tunnel_active in plain words.
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentConnect})
	waitModel(t, c, "connected", kind(api.Connected))
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentAskForget})
	m = waitModel(t, c, "asked", func(m viewmodel.Model) error {
		if !m.ConfirmForget {
			return fmt.Errorf("no question")
		}
		return nil
	})
	screen(t, "confirm forget", m, viewmodel.PageAccount, "Forget account q3Yt0m8c… and delete its tickets from this computer?", "Cancel")
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentForgetAccount})
	m = waitModel(t, c, "tunnel active", failed(api.CodeTunnelActive))
	if !m.AccountExists() || m.ConfirmForget {
		t.Errorf("after the refusal: exists %v, asking %v", m.AccountExists(), m.ConfirmForget)
	}
	screen(t, "tunnel active", m, viewmodel.PageAccount, "Disconnect first", "Disconnect, then forget the account.")
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentDisconnect})
	waitModel(t, c, "disconnected", kind(api.Disconnected))

	// Ask, take it back, ask again and forget.
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentAskForget})
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentCancelForget})
	if c.Model().ConfirmForget {
		t.Error("cancel kept the question")
	}
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentAskForget})
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentForgetAccount})
	m = waitModel(t, c, "forgotten", func(m viewmodel.Model) error {
		if err := idle(m); err != nil {
			return err
		}
		if m.AccountExists() || m.Account.Exists || m.ConfirmForget || m.Failure != nil {
			return fmt.Errorf("account %+v, asking %v, failure %+v", m.Account, m.ConfirmForget, m.Failure)
		}
		return nil
	})
	screen(t, "forgotten", m, viewmodel.PageAccount, "There is no account on this computer.")

	// Import the phrase (spacing and case do not matter to the daemon).
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentImportAccount, Secret: "  " + strings.ToUpper(fakePhrase) + "\n"})
	m = waitModel(t, c, "imported", func(m viewmodel.Model) error {
		if err := idle(m); err != nil {
			return err
		}
		if !m.AccountExists() || m.Account.ID != fakeAccountID || m.Account.Created == nil || m.NewPhrase != "" || m.Failure != nil {
			return fmt.Errorf("account %+v, failure %+v", m.Account, m.Failure)
		}
		return nil
	})

	// Another client (the CLI) forgets and creates: the app looks the
	// account up again by itself.
	if _, err := d.b.ForgetAccount(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitModel(t, c, "forgotten elsewhere", func(m viewmodel.Model) error {
		if m.AccountExists() || m.Account.Exists {
			return fmt.Errorf("account %+v", m.Account)
		}
		return nil
	})
	if _, err := d.b.CreateAccount(context.Background()); err != nil {
		t.Fatal(err)
	}
	m = waitModel(t, c, "created elsewhere", func(m viewmodel.Model) error {
		if !m.AccountExists() || m.Account.ID != fakeAccountID {
			return fmt.Errorf("account %+v", m.Account)
		}
		return nil
	})
	if m.NewPhrase != "" {
		t.Error("another client's phrase reached the app")
	}

	// No phrase ever reached the log.
	d.b.mu.Lock()
	phrases := append([]string(nil), d.b.phrases...)
	d.b.mu.Unlock()
	log := logs.String()
	for _, p := range phrases {
		for _, w := range []string{p, strings.TrimSpace(p), strings.ToUpper(fakePhrase), "legal winner"} {
			if w != "" && strings.Contains(log, w) {
				t.Errorf("the log holds a phrase %q:\n%s", w, log)
			}
		}
	}
	if !strings.Contains(log, "intent=create_account") || !strings.Contains(log, "intent=import_account") {
		t.Errorf("the log lacks the account's calls:\n%s", log)
	}
}

// TestControllerNoWallet: a daemon that keeps no account (no
// AccountBackend, no tickets in its status): the page says so.
func TestControllerNoWallet(t *testing.T) {
	d := newFakeDaemon(t)
	d.noWallet()
	d.start(t, nil)
	c := startController(t, d.path)
	m := waitModel(t, c, "no wallet", func(m viewmodel.Model) error {
		if m.AccountError == nil || m.AccountError.Code != api.CodeNotSupported {
			return fmt.Errorf("account error %+v", m.AccountError)
		}
		return nil
	})
	screen(t, "no wallet", m, viewmodel.PageAccount, "This version of the VPN service keeps no account")
	c.Do(viewmodel.Intent{Kind: viewmodel.IntentCreateAccount})
	m = waitModel(t, c, "create unsupported", func(m viewmodel.Model) error {
		if m.Failure == nil || m.Failure.Code != api.CodeNotSupported {
			return fmt.Errorf("failure %+v", m.Failure)
		}
		return nil
	})
	if e := viewmodel.ExplainFailure(m.Failure, "linux"); e.Title != "This version of the VPN service keeps no account" {
		t.Errorf("explained as %+v", e)
	}
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
