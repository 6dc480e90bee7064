package viewmodel

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/assets"
	"github.com/nymvpn/nymvpn/daemon"
	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/client"
	"github.com/nymvpn/nymvpn/modes/fast"
	"github.com/nymvpn/nymvpn/modes/mixnet"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

var (
	de = &api.Gateway{ID: "entry-de-1", Country: "DE", Roles: []string{"entry"}}
	ch = &api.Gateway{ID: "exit-ch-1", Country: "CH", Roles: []string{"exit"}}
)

// up is a model of a reachable daemon in state st.
func up(st api.State) Model {
	return Model{OS: "linux", Socket: "/run/nymvpn/nymvpnd.sock", Link: LinkUp,
		Status:  api.Status{State: st, Settings: api.DefaultSettings(), Caller: &api.Caller{UID: 1000, CanWrite: true}},
		Entries: []api.Gateway{*de, {ID: "entry-de-2", Country: "DE"}, {ID: "entry-ch-1", Country: "CH"}},
		Exits:   []api.Gateway{*ch}, GatewaysLoaded: true}
}

func connected() Model {
	since := now.Add(-(time.Hour + 2*time.Minute + 3*time.Second + 400*time.Millisecond))
	m := up(api.State{Kind: api.Connected, Mode: api.ModeFast, Since: &since, Entry: de, Exit: ch,
		Addresses: []netip.Addr{netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("fc01::2")},
		DNS:       []netip.Addr{netip.MustParseAddr("10.1.0.1")}})
	m.Status.Traffic = &api.Traffic{TxBytes: 1500, RxBytes: 2_500_000}
	m.Rate = Rate{Tx: 12_000, Rx: 1_200_000}
	return m
}

func row(t *testing.T, v View, label string) string {
	t.Helper()
	for _, r := range v.Rows {
		if r.Label == label {
			return r.Value
		}
	}
	t.Fatalf("no row %q in %+v", label, v.Rows)
	return ""
}

func TestDisconnected(t *testing.T) {
	v := Build(up(api.State{Kind: api.Disconnected}), PageMain, now)
	if v.Screen != ScreenMain || v.Status.Headline != "Not connected" || v.Status.Color != Grey {
		t.Errorf("status %+v on %v", v.Status, v.Screen)
	}
	if v.Primary.Label != "Connect" || !v.Primary.Enabled || v.Primary.Intent.Kind != IntentConnect || v.Primary.Color != Green {
		t.Errorf("primary %+v", v.Primary)
	}
	if v.Secondary != nil || v.Progress != nil || v.Problem != nil || len(v.Rows) != 0 || v.Redraw != 0 {
		t.Errorf("extra content: %+v", v)
	}
	if v.Mode.Selected != api.ModeFast || v.Mode.SelectedLabel != "Fast" || !v.Mode.Enabled || len(v.Mode.Options) != 2 {
		t.Errorf("mode %+v", v.Mode)
	}
	for _, o := range v.Mode.Options {
		if o.Help == "" || strings.Contains(o.Help, "\n") {
			t.Errorf("mode %s needs one line on what it protects against: %q", o.Value, o.Help)
		}
	}
	// Automatic first, then countries by name with their gateway counts.
	want := []Option{{"auto", "Automatic", "The fastest available entry gateway"},
		{"DE", "Germany (DE)", "2 gateways"}, {"CH", "Switzerland (CH)", "1 gateway"}}
	if !slices.Equal(v.Entry.Options, want) {
		t.Errorf("entry options %+v, want %+v", v.Entry.Options, want)
	}
	if v.Entry.Selected != "auto" || v.Entry.SelectedLabel != "Automatic" || v.Entry.Note != "" || !v.Entry.Enabled {
		t.Errorf("entry %+v", v.Entry)
	}
	if v.Title != "NymVPN — Not connected" || v.Tray.Icon != assets.TrayDisconnected || v.Tray.Toggle.Label != "Connect" {
		t.Errorf("title %q, tray %+v", v.Title, v.Tray)
	}
}

func TestConnecting(t *testing.T) {
	m := up(api.State{Kind: api.Connecting, Mode: api.ModeFast, Stage: "registering with the entry gateway", Attempt: 1, Entry: de, Exit: ch})
	v := Build(m, PageMain, now)
	if v.Status.Headline != "Connecting…" || v.Status.Detail != "Registering with the entry gateway." || v.Status.Color != Amber {
		t.Errorf("status %+v", v.Status)
	}
	if v.Progress == nil || v.Progress.Step != 5 || v.Progress.Steps != 9 {
		t.Fatalf("progress %+v", v.Progress)
	}
	if v.Primary.Label != "Cancel" || v.Primary.Intent.Kind != IntentDisconnect || !v.Primary.Enabled {
		t.Errorf("primary %+v", v.Primary)
	}
	if got := row(t, v, "Entry"); got != "Germany · entry-de-1" {
		t.Errorf("entry row %q", got)
	}
	if v.Tray.Icon != assets.TrayConnecting || v.Tray.Toggle.Label != "Cancel connecting" {
		t.Errorf("tray %+v", v.Tray)
	}

	// A failed attempt, waiting to retry.
	next := now.Add(2500 * time.Millisecond)
	m.Status.State = api.State{Kind: api.Connecting, Mode: api.ModeFast, Attempt: 1, Retrying: true,
		Reason: "the entry gateway did not answer", NextAttempt: &next}
	v = Build(m, PageMain, now)
	if want := "Attempt 1 failed: The entry gateway did not answer. Trying again in 3 seconds."; v.Status.Detail != want {
		t.Errorf("retrying detail %q, want %q", v.Status.Detail, want)
	}
	if v.Redraw != time.Second || v.Progress.Steps != 0 || v.Progress.Stage != "Waiting to try again" {
		t.Errorf("redraw %v, progress %+v", v.Redraw, v.Progress)
	}

	// Mixnet mode's stages; a stage this app does not know still shows,
	// unnumbered.
	m.Status.State = api.State{Kind: api.Connecting, Mode: api.ModeMixnet, Stage: "connecting to the entry gateway", Attempt: 1}
	if p := Build(m, PageMain, now).Progress; p.Step != 6 || p.Steps != 7 || p.Fraction() != 6.0/7 {
		t.Errorf("mixnet stage: %+v", p)
	}
	m.Status.State = api.State{Kind: api.Connecting, Mode: api.ModeMixnet, Stage: "building routes", Attempt: 1}
	if p := Build(m, PageMain, now).Progress; p.Steps != 0 || p.Stage != "Building routes" {
		t.Errorf("unknown stage: %+v", p)
	}
}

func TestConnected(t *testing.T) {
	v := Build(connected(), PageMain, now)
	if v.Status.Headline != "Connected" || v.Status.Detail != "Your traffic goes through Germany and Switzerland." || v.Status.Color != Green {
		t.Errorf("status %+v", v.Status)
	}
	if v.Primary.Label != "Disconnect" || v.Primary.Color != Red || !v.Primary.Enabled {
		t.Errorf("primary %+v", v.Primary)
	}
	for label, want := range map[string]string{
		"Connected for":  "1:02:03",
		"Entry":          "Germany · entry-de-1",
		"Exit":           "Switzerland · exit-ch-1",
		"Your addresses": "10.1.0.2, fc01::2",
		"Traffic":        "sent 1.5 kB · received 2.5 MB",
		"Speed":          "up 12 kB/s · down 1.2 MB/s",
		"DNS":            "10.1.0.1",
		"Mode":           "Fast",
	} {
		if got := row(t, v, label); got != want {
			t.Errorf("row %s = %q, want %q", label, got, want)
		}
	}
	// The timer ticks on the second of the connection.
	if v.Redraw != 600*time.Millisecond {
		t.Errorf("redraw in %v, want 600ms", v.Redraw)
	}
	if got := row(t, Build(connected(), PageMain, now.Add(time.Second)), "Connected for"); got != "1:02:04" {
		t.Errorf("a second later: %q", got)
	}
	if v.Tray.Icon != assets.TrayConnected || v.Tray.Tooltip != "NymVPN: Connected through Germany and Switzerland" || v.Tray.Toggle.Label != "Disconnect" {
		t.Errorf("tray %+v", v.Tray)
	}
}

func TestDisconnecting(t *testing.T) {
	v := Build(up(api.State{Kind: api.Disconnecting, Mode: api.ModeFast, Then: api.Disconnected}), PageMain, now)
	if v.Status.Headline != "Disconnecting…" || v.Primary.Enabled || v.Primary.Color != Disabled || v.Mode.Enabled {
		t.Errorf("disconnecting: %+v %+v", v.Status, v.Primary)
	}
	v = Build(up(api.State{Kind: api.Disconnecting, Mode: api.ModeFast, Then: api.Connecting}), PageMain, now)
	if v.Status.Headline != "Reconnecting…" {
		t.Errorf("reconnecting: %+v", v.Status)
	}
}

func TestErrorState(t *testing.T) {
	m := up(api.State{Kind: api.Error, Mode: api.ModeFast, Reason: "gateway wants payment: no tickets left", ErrorCode: api.CodeUnavailable})
	m.Status.Settings.KillSwitch = true
	v := Build(m, PageMain, now)
	if v.Status.Headline != "The VPN couldn't connect" || v.Status.Color != Red {
		t.Errorf("status %+v", v.Status)
	}
	if !strings.Contains(v.Status.Detail, "Gateway wants payment") {
		t.Errorf("detail %q", v.Status.Detail)
	}
	if v.Problem == nil || !strings.Contains(v.Problem.Fix, "Choose other countries") || !strings.Contains(v.Problem.Detail, "kill switch blocks") || v.Dismiss {
		t.Errorf("problem %+v", v.Problem)
	}
	if v.Primary.Label != "Try again" || v.Primary.Intent.Kind != IntentConnect || v.Secondary == nil || v.Secondary.Intent.Kind != IntentDisconnect {
		t.Errorf("buttons %+v %+v", v.Primary, v.Secondary)
	}
	if v.Tray.Icon != assets.TrayError {
		t.Errorf("tray %+v", v.Tray)
	}
}

func TestOffline(t *testing.T) {
	v := Build(up(api.State{Kind: api.Offline, Reason: "the computer has no network connection"}), PageMain, now)
	if v.Status.Headline != "Waiting for a network" || v.Primary.Label != "Cancel" || v.Tray.Icon != assets.TrayConnecting {
		t.Errorf("offline: %+v %+v %s", v.Status, v.Primary, v.Tray.Icon)
	}
}

// TestFailures: a call's failure in plain words, with what to do.
func TestFailures(t *testing.T) {
	for _, tc := range []struct {
		in          Intent
		err         error
		title, fix  string
		notDetailed bool
	}{
		{Intent{Kind: IntentConnect}, &api.APIError{Status: 501, Code: api.CodeNotSupported,
			Message: "mixnet mode is not available in this version yet; use fast mode (nymvpn connect --mode fast)"},
			"Mixnet mode isn't available yet", "Switch to Fast mode and connect again.", false},
		{Intent{Kind: IntentConnect}, &api.APIError{Status: 403, Code: api.CodeForbidden, Message: "you may only read"},
			"You may not change the VPN", "sudo usermod -aG nymvpn $USER", false},
		{Intent{Kind: IntentConnect}, &api.APIError{Status: 400, Code: api.CodeNoDirectory, Message: "no directory"},
			"No network is set up", "Settings", false},
		{Intent{Kind: IntentSetting, Key: "dns"}, &api.APIError{Status: 400, Code: api.CodeInvalidSetting, Message: `dns: "127.0.0.1" is loopback`},
			"That choice was refused", "Correct it", false},
		{Intent{Kind: IntentDisconnect}, &api.APIError{Status: 500, Code: api.CodeInternal, Message: "internal error"},
			"The VPN service failed to disconnect", "journalctl -u nymvpnd", false},
		{Intent{Kind: IntentConnect}, &client.DialError{Kind: client.ErrDaemonNotRunning, Path: "/x.sock", Err: errors.New("connect: no such file")},
			"The VPN service isn't running", "sudo systemctl start nymvpnd", true},
	} {
		e := ExplainFailure(FailureOf(tc.in, tc.err), "linux")
		if e.Title != tc.title || !strings.Contains(e.Fix, tc.fix) || (!tc.notDetailed && e.Detail == "") {
			t.Errorf("%v: %+v, want title %q and a fix with %q", tc.err, e, tc.title, tc.fix)
		}
	}

	// A failure shows on the main screen, dismissible, and leaves the
	// state alone.
	m := up(api.State{Kind: api.Disconnected})
	m.Status.Settings.Mode = api.ModeMixnet
	m.Failure = FailureOf(Intent{Kind: IntentConnect}, &api.APIError{Status: 501, Code: api.CodeNotSupported, Message: "mixnet mode is not available"})
	v := Build(m, PageMain, now)
	if v.Problem == nil || v.Problem.Title != "Mixnet mode isn't available yet" || !v.Dismiss || v.Status.Headline != "Not connected" {
		t.Errorf("problem %+v, status %+v", v.Problem, v.Status)
	}
	if v.Mode.Selected != api.ModeMixnet || v.Mode.SelectedLabel != "Mixnet" {
		t.Errorf("mode %+v", v.Mode)
	}
}

func TestReadOnly(t *testing.T) {
	m := up(api.State{Kind: api.Connected, Mode: api.ModeFast, Entry: de, Exit: ch})
	m.Status.Caller.CanWrite = false
	m.Status.Notices = []string{"the settings file was corrupt and has been moved aside"}
	v := Build(m, PageMain, now)
	if v.Primary.Enabled || v.Mode.Enabled || v.Entry.Enabled || v.Settings[0].Enabled {
		t.Error("a reader gets enabled controls")
	}
	if len(v.Notices) != 2 || !strings.Contains(v.Notices[0], "nymvpn group") || !strings.Contains(v.Notices[1], "moved aside") {
		t.Errorf("notices %q", v.Notices)
	}
}

func TestBusy(t *testing.T) {
	m := up(api.State{Kind: api.Disconnected})
	m.Busy = Intent{Kind: IntentMode, Value: api.ModeMixnet}
	v := Build(m, PageMain, now)
	if v.Primary.Enabled || v.Mode.Enabled || v.Mode.Selected != api.ModeMixnet {
		t.Errorf("while saving the mode: primary %+v, mode %+v", v.Primary, v.Mode)
	}
	m.Busy = Intent{Kind: IntentSetting, Key: "ipv6", Value: "off"}
	for _, s := range Build(m, PageSettings, now).Settings {
		if s.Key == "ipv6" && s.Value != "off" {
			t.Errorf("ipv6 shows %q while being switched off", s.Value)
		}
	}
}

func TestGatewayChoices(t *testing.T) {
	m := up(api.State{Kind: api.Disconnected})
	m.Status.Settings.Entry, m.Status.Settings.Exit = "entry-xx-9", "SE"
	v := Build(m, PageMain, now)
	if v.Entry.SelectedLabel != "Gateway entry-xx-9" || v.Exit.SelectedLabel != "Sweden (SE, no gateway now)" {
		t.Errorf("entry %q, exit %q", v.Entry.SelectedLabel, v.Exit.SelectedLabel)
	}
	m.GatewaysLoaded, m.Entries, m.Exits = false, nil, nil
	if n := Build(m, PageMain, now).Entry.Note; n != "Loading the gateways…" {
		t.Errorf("loading note %q", n)
	}
	m.GatewaysError = FailureOf(Intent{}, &api.APIError{Code: api.CodeNoDirectory, Message: "no directory"})
	if n := Build(m, PageMain, now).Exit.Note; !strings.Contains(n, "No network is set up") {
		t.Errorf("error note %q", n)
	}
}

func TestSettingsPage(t *testing.T) {
	m := up(api.State{Kind: api.Disconnected})
	m.Status.Settings.DNS = []netip.Addr{netip.MustParseAddr("9.9.9.9"), netip.MustParseAddr("2620:fe::fe")}
	m.Status.Settings.IPv6 = false
	v := Build(m, PageSettings, now)
	if v.Screen != ScreenSettings || v.Heading != "Settings" {
		t.Fatalf("screen %v %q", v.Screen, v.Heading)
	}
	got := map[string]string{}
	for _, s := range v.Settings {
		got[s.Key] = s.Value
		if !s.Enabled || s.Label == "" || s.Help == "" {
			t.Errorf("setting %+v", s)
		}
	}
	want := map[string]string{"kill_switch": "on", "lockdown": "off", "allow_lan": "off", "privacy_profile": "on", "ipv6": "off",
		"auto_connect": "off", "dns": "9.9.9.9, 2620:fe::fe", "directory_url": ""}
	def := api.DefaultSettings()
	want["kill_switch"], want["lockdown"], want["allow_lan"], want["auto_connect"] = onOff(def.KillSwitch), onOff(def.Lockdown), onOff(def.AllowLAN), onOff(def.AutoConnect)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("settings %v, want %v", got, want)
	}

	// Every setting's patch sets exactly its field.
	p, err := PatchFor("ipv6", "on")
	if err != nil || p.IPv6 == nil || !*p.IPv6 || p.KillSwitch != nil {
		t.Errorf("ipv6 on: %+v %v", p, err)
	}
	p, err = PatchFor("privacy_profile", "off")
	if err != nil || p.PrivacyProfile == nil || *p.PrivacyProfile != api.ProfileFast {
		t.Errorf("privacy profile off: %+v %v", p, err)
	}
	p, err = PatchFor("kill_switch", "off")
	if err != nil || p.KillSwitch == nil || *p.KillSwitch {
		t.Errorf("kill switch off: %+v %v", p, err)
	}
	p, err = PatchFor("dns", " 1.1.1.1, 2606:4700::1111 ")
	if err != nil || p.DNS == nil || len(*p.DNS) != 2 {
		t.Errorf("dns: %+v %v", p, err)
	}
	p, err = PatchFor("dns", "")
	if err != nil || p.DNS == nil || len(*p.DNS) != 0 {
		t.Errorf("dns cleared: %+v %v", p, err)
	}
	if _, err := PatchFor("dns", "one.one.one.one"); err == nil || !strings.Contains(err.Error(), "not an IP address") {
		t.Errorf("bad dns: %v", err)
	}
	if _, err := PatchFor("ipv6", "maybe"); err == nil {
		t.Error("ipv6 maybe accepted")
	}
	if _, err := PatchFor("nonsense", "on"); err == nil {
		t.Error("unknown setting accepted")
	}
	p, err = PatchFor("directory_url", "http://127.0.0.1:8080/?key=abc")
	if err != nil || p.DirectoryURL == nil || *p.DirectoryURL != "http://127.0.0.1:8080/?key=abc" {
		t.Errorf("directory: %+v %v", p, err)
	}
}

func TestDaemonScreens(t *testing.T) {
	for _, tc := range []struct {
		problem  Problem
		os       string
		title    string
		fix      string
		inDetail string
	}{
		{ProblemNotRunning, "linux", "The VPN service isn't running", "sudo systemctl start nymvpnd", "/run/nymvpn/nymvpnd.sock"},
		{ProblemNotRunning, "windows", "The VPN service isn't running", "nymvpnd start", "/run/nymvpn/nymvpnd.sock"},
		{ProblemPermission, "linux", "You may not use the VPN service", "usermod -aG nymvpn", "isn't allowed"},
		{ProblemUntrusted, "linux", "The VPN service's socket isn't trusted", "restart", "belongs to someone"},
		{ProblemOther, "linux", "Can't reach the VPN service", "journalctl", "Boom."},
	} {
		m := Model{OS: tc.os, Socket: "/run/nymvpn/nymvpnd.sock", Link: LinkDown, Problem: tc.problem, LinkError: "boom", NextRetry: now.Add(1500 * time.Millisecond)}
		v := Build(m, PageSettings, now) // the page does not matter while down
		if v.Screen != ScreenDaemon || v.Daemon == nil {
			t.Fatalf("%v: screen %v", tc.problem, v.Screen)
		}
		d := v.Daemon
		if d.Title != tc.title || !strings.Contains(d.Fix, tc.fix) || !strings.Contains(d.Detail, tc.inDetail) || d.Retry != "Trying again in 2 seconds." {
			t.Errorf("%v on %s: %+v", tc.problem, tc.os, d)
		}
		if v.Primary.Label != "Try now" || !v.Primary.Enabled || v.Primary.Intent.Kind != IntentRetry || v.Redraw != time.Second {
			t.Errorf("primary %+v, redraw %v", v.Primary, v.Redraw)
		}
		if v.Tray.Icon != assets.TrayNoDaemon || v.Tray.Toggle.Enabled {
			t.Errorf("tray %+v", v.Tray)
		}
	}
	v := Build(Model{Link: LinkStarting}, PageMain, now)
	if v.Screen != ScreenDaemon || v.Daemon.Title != "Contacting the VPN service…" || v.Primary.Enabled {
		t.Errorf("starting: %+v", v)
	}
	for err, want := range map[error]Problem{
		nil: ProblemNone,
		&client.DialError{Kind: client.ErrDaemonNotRunning}: ProblemNotRunning,
		&client.DialError{Kind: client.ErrPermission}:       ProblemPermission,
		&client.DialError{Kind: client.ErrUntrustedSocket}:  ProblemUntrusted,
		errors.New("other"): ProblemOther,
	} {
		if got := Classify(err); got != want {
			t.Errorf("Classify(%v) = %v, want %v", err, got, want)
		}
	}
}

func TestNotifications(t *testing.T) {
	disc := up(api.State{Kind: api.Disconnected})
	conn := connected()
	errSt := up(api.State{Kind: api.Error, Reason: "no gateway answers", ErrorCode: api.CodeInternal})
	down := Model{Link: LinkDown, Problem: ProblemNotRunning, OS: "linux"}
	for _, tc := range []struct {
		name       string
		prev, next Model
		title      string
	}{
		{"first status", Model{}, conn, ""},
		{"connected", disc, conn, "Connected"},
		{"disconnected", conn, disc, "Disconnected"},
		{"error", conn, errSt, "The VPN couldn't connect"},
		{"same error", errSt, errSt, ""},
		{"daemon gone", conn, down, "The VPN service isn't running"},
		{"still down", down, down, ""},
		{"traffic only", conn, connected(), ""},
	} {
		n, ok := Notification(tc.prev, tc.next)
		if ok != (tc.title != "") || n.Title != tc.title {
			t.Errorf("%s: %+v %v, want %q", tc.name, n, ok, tc.title)
		}
	}
	n, _ := Notification(disc, conn)
	if n.Body != "Your traffic goes through Germany and Switzerland." || n.Urgent {
		t.Errorf("connected note %+v", n)
	}
	failed := disc
	failed.Failure = FailureOf(Intent{Kind: IntentConnect}, &api.APIError{Code: api.CodeNotSupported, Message: "mixnet mode is not available"})
	if n, ok := Notification(disc, failed); !ok || n.Title != "Mixnet mode isn't available yet" || !n.Urgent {
		t.Errorf("failure note %+v %v", n, ok)
	}
	if _, ok := Notification(failed, failed); ok {
		t.Error("the same failure notified twice")
	}
}

// TestStagesMatchTheDaemon: the progress steps are the daemon's stages.
func TestStagesMatchTheDaemon(t *testing.T) {
	want := []string{daemon.StageDirectory, daemon.StageChoosing, daemon.StageTickets, daemon.StageTUN,
		string(fast.StageRegisterEntry), string(fast.StageEntryTunnel), string(fast.StageRegisterExit),
		string(fast.StageExitTunnel), string(fast.StageHandshake)}
	if !slices.Equal(FastStages, want) {
		t.Errorf("FastStages = %q, the daemon's are %q", FastStages, want)
	}
	want = []string{daemon.StageDirectory, daemon.StageChoosing, daemon.StageTickets, daemon.StageTUN,
		string(mixnet.StagePayEntry), string(mixnet.StageEntry), string(mixnet.StageOpen)}
	if !slices.Equal(MixnetStages, want) {
		t.Errorf("MixnetStages = %q, the daemon's are %q", MixnetStages, want)
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 1500: "1.5 kB", 12_345: "12 kB",
		2_500_000: "2.5 MB", 3_000_000_000: "3.0 GB", 5e15: "5000 TB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{-time.Second: "0:00", 59 * time.Second: "0:59", 65 * time.Second: "1:05",
		time.Hour + 2*time.Minute + 3*time.Second: "1:02:03", 50 * time.Hour: "2 d 02:00:00"} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
	}
	if CountryName("de") != "Germany" || CountryName("XQ") != "XQ" {
		t.Errorf("country names: %q %q", CountryName("de"), CountryName("XQ"))
	}
}

func TestAboutNamesBothVersions(t *testing.T) {
	m := Model{Link: LinkUp}
	m.Status.Daemon.Version = "v1.2.3"
	v := Build(m, PageSettings, time.Now())
	if !strings.HasPrefix(v.About, "nymvpn-app ") || !strings.HasSuffix(v.About, " · nymvpnd v1.2.3") {
		t.Fatalf("about %q", v.About)
	}
}
