package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/control"
	"github.com/nymvpn/nymvpn/daemon/settings"
)

var stages = []string{
	"registering with the entry gateway",
	"starting the entry tunnel",
	"registering with the exit gateway through the entry",
	"starting the exit tunnel",
	"waiting for the exit handshake",
}

// backend is a fake control.Backend that walks through the connect stages
// in the background, as the daemon does.
type backend struct {
	hub *control.Hub

	mu      sync.Mutex
	fail    string        // reason of an Error state ending the next connect
	retry   bool          // fail the first attempt, then retry
	stall   bool          // stay connecting forever
	step    time.Duration // pause between stages
	connect []api.ConnectRequest
	wg      sync.WaitGroup
	acct    fakeAccount // account_test.go
}

func (b *backend) Connect(_ context.Context, req api.ConnectRequest) (api.State, error) {
	if req.Mode == api.ModeMixnet {
		return api.State{}, &api.APIError{Code: api.CodeNotSupported, Message: "mixnet mode is not available in this version yet"}
	}
	b.mu.Lock()
	b.connect = append(b.connect, req)
	fail, retry, stall, step := b.fail, b.retry, b.stall, b.step
	b.mu.Unlock()
	b.wg.Wait() // one change at a time
	first := api.State{Kind: api.Connecting, Mode: api.ModeFast, Stage: stages[0], Attempt: 1}
	reconnect := false
	if cur := b.hub.Status(); cur.State.Kind == api.Connected {
		if req == (api.ConnectRequest{}) {
			return cur.State, nil
		}
		// New choices: tear the tunnel down and connect again.
		reconnect = true
		first = api.State{Kind: api.Disconnecting, Mode: api.ModeFast, Then: api.Connecting}
	}
	b.hub.SetTarget("connected")
	b.hub.SetState(first)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if reconnect {
			time.Sleep(step)
			b.hub.SetState(api.State{Kind: api.Connecting, Mode: api.ModeFast, Stage: stages[0], Attempt: 1})
		}
		attempt := 1
		if retry {
			time.Sleep(step)
			next := time.Now().Add(step)
			b.hub.SetState(api.State{Kind: api.Connecting, Mode: api.ModeFast, Attempt: 1, Retrying: true,
				Reason: "the entry gateway did not answer", NextAttempt: &next})
			time.Sleep(step)
			attempt = 2
		}
		for _, s := range stages {
			time.Sleep(step)
			b.hub.SetState(api.State{Kind: api.Connecting, Mode: api.ModeFast, Stage: s, Attempt: attempt})
		}
		if stall {
			return
		}
		time.Sleep(step)
		if fail != "" {
			b.hub.SetState(api.State{Kind: api.Error, Mode: api.ModeFast, Reason: fail, ErrorCode: "registration_refused"})
			return
		}
		since := time.Now()
		b.hub.SetState(api.State{
			Kind: api.Connected, Mode: api.ModeFast, Since: &since, Interface: "nymvpn0",
			Entry:     &api.Gateway{ID: "entry-de-1", Country: "DE", Roles: []string{"entry"}, Endpoint: "192.0.2.1:51820"},
			Exit:      &api.Gateway{ID: "exit-ch-1", Country: "CH", Roles: []string{"exit"}},
			Addresses: []netip.Addr{netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("fc01::2")},
			DNS:       []netip.Addr{netip.MustParseAddr("10.1.0.1")},
		})
		b.hub.SetTraffic(&api.Traffic{TxBytes: 1500, RxBytes: 2_500_000})
	}()
	return first, nil
}

func (b *backend) Disconnect(context.Context) (api.State, error) {
	b.wg.Wait()
	b.hub.SetTarget("disconnected")
	st := api.State{Kind: api.Disconnecting, Mode: api.ModeFast, Then: api.Disconnected}
	b.hub.SetState(st)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		time.Sleep(20 * time.Millisecond)
		b.hub.SetTraffic(nil)
		b.hub.SetState(api.State{Kind: api.Disconnected})
	}()
	return st, nil
}

func (b *backend) Gateways(_ context.Context, role, country string) ([]api.Gateway, error) {
	all := []api.Gateway{
		{ID: "entry-de-1", Country: "DE", Roles: []string{"entry"}, Endpoint: "192.0.2.1:51820"},
		{ID: "exit-ch-1", Country: "CH", Roles: []string{"exit"}, Endpoint: "192.0.2.2:51820"},
	}
	var out []api.Gateway
	for _, g := range all {
		if (role == "" || g.Roles[0] == role) && (country == "" || g.Country == country) {
			out = append(out, g)
		}
	}
	return out, nil
}

func (b *backend) UpdateSettings(_ context.Context, p api.SettingsPatch) (api.Settings, error) {
	s, err := settings.Apply(b.hub.Status().Settings, p)
	if err != nil {
		return s, err
	}
	b.hub.SetSettings(s)
	return s, nil
}

type denyAll struct{}

func (denyAll) AuthorizeWrite(control.PeerCred) error {
	return errors.New("you may only read the VPN state: run as root (sudo), join the nymvpn group (sudo usermod -aG nymvpn $USER, then log in again)")
}

type daemon struct {
	path string
	hub  *control.Hub
	b    *backend
	srv  *control.Server
}

func startDaemon(t *testing.T, authz control.Authorizer) *daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "nymcli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &daemon{path: filepath.Join(dir, "nymvpnd.sock")}
	d.hub = control.NewHub(api.Status{State: api.State{Kind: api.Disconnected}, Target: "disconnected",
		Settings: api.DefaultSettings(), Daemon: api.DaemonInfo{Version: "v-test", PID: 4242}})
	d.b = &backend{hub: d.hub, step: 5 * time.Millisecond}
	if authz == nil {
		authz = &control.Policy{OperatorUID: os.Geteuid()}
	}
	srv, err := control.New(control.Config{Backend: d.b, Hub: d.hub, Authorizer: authz,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	d.srv = srv
	ln, err := control.Listen(d.path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
		d.b.wg.Wait()
	})
	return d
}

// syncBuffer is a bytes.Buffer safe for a command running in a goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

// run runs the CLI with args and returns its exit code and outputs.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr syncBuffer
	code := Main(ctx, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func (d *daemon) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return run(t, append([]string{"--socket", d.path}, args...)...)
}

func wantCode(t *testing.T, code int, stdout, stderr string, want int) {
	t.Helper()
	if code != want {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, want, stdout, stderr)
	}
}

// inOrder checks that out contains each of parts, in order.
func inOrder(t *testing.T, out string, parts ...string) {
	t.Helper()
	rest := out
	for _, p := range parts {
		i := strings.Index(rest, p)
		if i < 0 {
			t.Fatalf("output lacks %q (in order):\n%s", p, out)
		}
		rest = rest[i+len(p):]
	}
}

func TestConnectWait(t *testing.T) {
	d := startDaemon(t, nil)
	code, out, errOut := d.run(t, "connect", "--mode", "fast", "--entry", "de", "--exit", "exit-ch-1", "--wait")
	wantCode(t, code, out, errOut, ExitOK)
	t.Logf("connect --wait:\n%s", out)
	want := make([]string, 0, len(stages)+1)
	for _, s := range stages {
		want = append(want, "Connecting (attempt 1): "+s+"...\n")
	}
	want = append(want, "Connected: entry entry-de-1 (DE) → exit exit-ch-1 (CH), addresses 10.1.0.2, fc01::2\n")
	inOrder(t, out, want...)
	if !strings.HasPrefix(out, "Connecting (attempt 1): "+stages[0]) {
		t.Errorf("connect --wait starts with something else than the first stage:\n%s", out)
	}
	if strings.Count(out, stages[0]) != 1 {
		t.Errorf("a stage was printed twice:\n%s", out)
	}
	if got := d.b.connect[0]; got != (api.ConnectRequest{Mode: "fast", Entry: "DE", Exit: "exit-ch-1"}) {
		t.Errorf("daemon got %+v", got)
	}
	// Connecting again when connected returns at once.
	code, out, errOut = d.run(t, "connect", "--wait")
	wantCode(t, code, out, errOut, ExitOK)
	if out != "Connected: entry entry-de-1 (DE) → exit exit-ch-1 (CH), addresses 10.1.0.2, fc01::2\n" {
		t.Errorf("second connect:\n%s", out)
	}
	// Connecting with new choices reconnects: the old connection is not
	// taken for the new one.
	code, out, errOut = d.run(t, "connect", "--entry", "ch", "--wait")
	wantCode(t, code, out, errOut, ExitOK)
	if !strings.HasPrefix(out, "Disconnecting to reconnect...\n") {
		t.Errorf("reconnect starts with:\n%s", out)
	}
	inOrder(t, out, "Connecting (attempt 1): "+stages[0], stages[4], "Connected: ")
}

func TestConnectWaitRetry(t *testing.T) {
	d := startDaemon(t, nil)
	d.b.retry = true
	code, out, errOut := d.run(t, "connect", "--wait")
	wantCode(t, code, out, errOut, ExitOK)
	inOrder(t, out, "Connecting (attempt 1): "+stages[0],
		"Connecting (attempt 1): the attempt failed: the entry gateway did not answer; retrying in",
		"Connecting (attempt 2): "+stages[0], "Connected: ")
}

func TestConnectWaitError(t *testing.T) {
	d := startDaemon(t, nil)
	d.b.fail = "the exit gateway refused the registration"
	code, out, errOut := d.run(t, "connect", "--wait")
	wantCode(t, code, out, errOut, ExitFailure)
	inOrder(t, out, stages[0], stages[4])
	if !strings.Contains(errOut, "Error: the exit gateway refused the registration (registration_refused)") {
		t.Fatalf("stderr:\n%s", errOut)
	}
}

func TestConnectWaitTimeout(t *testing.T) {
	d := startDaemon(t, nil)
	d.b.stall = true
	code, out, errOut := d.run(t, "connect", "--wait", "--timeout", "300ms")
	wantCode(t, code, out, errOut, ExitFailure)
	if !strings.Contains(errOut, "not connected after 300ms") || !strings.Contains(errOut, stages[4]) {
		t.Fatalf("stderr:\n%s", errOut)
	}
}

func TestConnectNoWait(t *testing.T) {
	d := startDaemon(t, nil)
	code, out, errOut := d.run(t, "connect")
	wantCode(t, code, out, errOut, ExitOK)
	if !strings.HasPrefix(out, "Connecting") {
		t.Fatalf("stdout:\n%s", out)
	}
}

func TestConnectRefusals(t *testing.T) {
	d := startDaemon(t, nil)
	code, out, errOut := d.run(t, "connect", "--mode", "mixnet")
	wantCode(t, code, out, errOut, ExitFailure)
	if !strings.Contains(errOut, "mixnet mode is not available") {
		t.Errorf("stderr:\n%s", errOut)
	}
	code, out, errOut = d.run(t, "connect", "--entry", "not an id")
	wantCode(t, code, out, errOut, ExitFailure)
	if !strings.Contains(errOut, "entry:") {
		t.Errorf("stderr:\n%s", errOut)
	}
}

func TestDisconnectWait(t *testing.T) {
	d := startDaemon(t, nil)
	wantCode(t, 0, "", "", func() int { c, _, _ := d.run(t, "connect", "--wait"); return c }())
	code, out, errOut := d.run(t, "disconnect", "--wait")
	wantCode(t, code, out, errOut, ExitOK)
	if out != "Disconnecting...\nDisconnected\n" {
		t.Errorf("disconnect --wait:\n%s", out)
	}
	if st := d.hub.Status(); st.State.Kind != api.Disconnected || st.Traffic != nil {
		t.Fatalf("hub %+v", st)
	}
	code, out, errOut = d.run(t, "disconnect")
	wantCode(t, code, out, errOut, ExitOK)
}

func TestStatusJSON(t *testing.T) {
	d := startDaemon(t, nil)
	d.run(t, "connect", "--wait")
	code, out, errOut := d.run(t, "status", "--json")
	wantCode(t, code, out, errOut, ExitOK)
	var got api.Status
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	want := d.hub.Status()
	want.Caller = &api.Caller{UID: os.Geteuid(), CanWrite: true}
	// Times lose their monotonic reading in JSON.
	if !got.State.Since.Equal(*want.State.Since) {
		t.Fatalf("since %v, want %v", got.State.Since, want.State.Since)
	}
	got.State.Since, want.State.Since = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("status --json\n got %+v\nwant %+v", got, want)
	}
}

func TestStatusHuman(t *testing.T) {
	d := startDaemon(t, nil)
	code, out, _ := d.run(t, "status")
	if code != 0 || !strings.Contains(out, "State:") || !strings.Contains(out, "Disconnected") {
		t.Fatalf("status when disconnected (%d):\n%s", code, out)
	}
	d.run(t, "connect", "--wait")
	code, out, errOut := d.run(t, "status")
	wantCode(t, code, out, errOut, ExitOK)
	inOrder(t, out, "State:", "Connected (fast mode)", "Entry:", "entry-de-1 (DE), 192.0.2.1:51820",
		"Exit:", "exit-ch-1 (CH)", "Addresses:", "10.1.0.2, fc01::2", "DNS:", "10.1.0.1",
		"Interface:", "nymvpn0", "Since:", "(0s)", "Traffic:", "sent 1.5 kB, received 2.5 MB", "Daemon:", "nymvpnd v-test (pid 4242)")
}

func TestSettingsSetGet(t *testing.T) {
	d := startDaemon(t, nil)
	const dirURL = "http://127.0.0.1:8080/?key=11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
	for _, c := range []struct{ key, value, printed string }{
		{"mode", "mixnet", "mode = mixnet"},
		{"profile", "Fast", "privacy-profile = fast"},
		{"entry", "de", "entry = DE"},
		{"exit", "Exit-CH-1", "exit = exit-ch-1"},
		{"dns", "1.1.1.1, 2606:4700::1111", "dns = 1.1.1.1,2606:4700::1111"},
		{"ipv6", "off", "ipv6 = off"},
		{"auto-connect", "on", "auto-connect = on"},
		{"kill-switch", "off", "kill-switch = off"},
		{"lockdown", "on", "lockdown = on"},
		{"allow_lan", "yes", "allow-lan = on"},
		{"directory", dirURL, "directory = " + dirURL},
	} {
		code, out, errOut := d.run(t, "settings", "set", c.key, c.value)
		wantCode(t, code, out, errOut, ExitOK)
		if strings.TrimSpace(out) != c.printed {
			t.Errorf("set %s: %q, want %q", c.key, out, c.printed)
		}
	}
	want := api.Settings{Mode: "mixnet", PrivacyProfile: "fast", Entry: "DE", Exit: "exit-ch-1",
		DNS:  []netip.Addr{netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("2606:4700::1111")},
		IPv6: false, AutoConnect: true, Lockdown: true, AllowLAN: true, DirectoryURL: dirURL}
	code, out, errOut := d.run(t, "settings", "get", "--json")
	wantCode(t, code, out, errOut, ExitOK)
	var got api.Settings
	if err := json.Unmarshal([]byte(out), &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("settings get --json: %v\n%s", err, out)
	}
	code, out, _ = d.run(t, "settings", "get")
	if code != 0 {
		t.Fatal(code)
	}
	inOrder(t, out, "mode", "mixnet", "privacy-profile", "fast", "entry", "DE", "exit", "exit-ch-1", "dns", "1.1.1.1,2606:4700::1111",
		"ipv6", "off", "auto-connect", "on", "kill-switch", "off", "lockdown", "on", "allow-lan", "on", "directory", dirURL)
	if _, out, _ := d.run(t, "settings", "get", "entry"); out != "DE\n" {
		t.Errorf("settings get entry: %q", out)
	}
	if _, out, _ := d.run(t, "settings", "get", "auto_connect", "--json"); out != "true\n" {
		t.Errorf("settings get auto_connect --json: %q", out)
	}
	// Back to the defaults.
	d.run(t, "settings", "set", "dns", "default")
	if _, out, _ := d.run(t, "settings", "get", "dns"); out != "default\n" {
		t.Errorf("dns after reset: %q", out)
	}
	d.run(t, "settings", "set", "directory", "")
	if s := d.hub.Status().Settings; s.DNS != nil || s.DirectoryURL != "" {
		t.Errorf("after reset: %+v", s)
	}
	// Mistakes.
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"settings", "set", "ipv6", "maybe"}, ExitUsage, `"maybe" is not on or off`},
		{[]string{"settings", "set", "dns", "1.1.1.1,nope"}, ExitUsage, `"nope" is not an IP address`},
		{[]string{"settings", "set", "colour", "blue"}, ExitUsage, "unknown setting"},
		{[]string{"settings", "set", "mode"}, ExitUsage, "KEY and VALUE"},
		{[]string{"settings", "get", "colour"}, ExitUsage, "unknown setting"},
		{[]string{"settings"}, ExitUsage, "get or set"},
		{[]string{"settings", "set", "mode", "warp"}, ExitFailure, "mode:"},
		{[]string{"settings", "set", "dns", "127.0.0.1"}, ExitFailure, "dns:"},
		{[]string{"settings", "set", "directory", "http://x/"}, ExitFailure, "key"},
	} {
		code, out, errOut := d.run(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q (stdout %q)", c.args, code, errOut, c.code, c.msg, out)
		}
	}
}

func TestGateways(t *testing.T) {
	d := startDaemon(t, nil)
	code, out, errOut := d.run(t, "gateways")
	wantCode(t, code, out, errOut, ExitOK)
	inOrder(t, out, "ID", "COUNTRY", "ROLES", "ENDPOINT", "entry-de-1", "DE", "entry", "192.0.2.1:51820", "exit-ch-1")
	code, out, errOut = d.run(t, "gateways", "--role", "exit", "--json", "--country", "ch")
	wantCode(t, code, out, errOut, ExitOK)
	var gws []api.Gateway
	if err := json.Unmarshal([]byte(out), &gws); err != nil || len(gws) != 1 || gws[0].ID != "exit-ch-1" {
		t.Fatalf("gateways --json: %v\n%s", err, out)
	}
	if _, out, _ := d.run(t, "gateways", "--country", "FR"); !strings.Contains(out, "No gateways") {
		t.Errorf("no match: %q", out)
	}
	if code, _, errOut := d.run(t, "gateways", "--role", "mix"); code != ExitUsage || !strings.Contains(errOut, "entry or exit") {
		t.Errorf("bad role: %d %q", code, errOut)
	}
	if code, _, errOut := d.run(t, "gateways", "--country", "Germany"); code != ExitFailure || !strings.Contains(errOut, "two-letter") {
		t.Errorf("bad country: %d %q", code, errOut)
	}
}

func TestWatch(t *testing.T) {
	d := startDaemon(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int)
	go func() { done <- Main(ctx, []string{"watch", "--socket", d.path}, &stdout, &stderr) }()
	waitFor(t, func() bool { return d.hub.Subscribers() == 1 })
	d.run(t, "connect", "--wait")
	waitFor(t, func() bool { return strings.Contains(stdout.String(), "traffic:") })
	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("watch exit %d: %s", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not stop when interrupted")
	}
	inOrder(t, stdout.String(), "Disconnected\n", "asked for: connected\n", "Connecting (attempt 1): "+stages[0],
		"Connected: entry entry-de-1 (DE)", "traffic: sent 1.5 kB, received 2.5 MB")
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if _, err := time.Parse("15:04:05", strings.Fields(line)[0]); err != nil {
			t.Errorf("line without a time: %q", line)
		}
	}
}

func TestWatchJSONReconnects(t *testing.T) {
	d := startDaemon(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int)
	go func() { done <- Main(ctx, []string{"--socket=" + d.path, "watch", "--json"}, &stdout, &stderr) }()
	waitFor(t, func() bool { return d.hub.Subscribers() == 1 })
	// Fill the stream's buffer faster than it drains: the daemon drops the
	// stream and watch subscribes again.
	for i := range 20000 {
		d.hub.SetTraffic(&api.Traffic{TxBytes: int64(i + 1)})
	}
	waitFor(t, func() bool { return strings.Contains(stderr.String(), "reconnecting") })
	waitFor(t, func() bool { return strings.Count(stdout.String(), `"status"`) >= 2 })
	cancel()
	<-done
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var e api.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Seq == 0 {
			t.Fatalf("line %q: %v", line, err)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDaemonNotRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nymvpnd.sock")
	for _, args := range [][]string{{"status"}, {"connect", "--wait"}, {"watch"}, {"settings", "get"}} {
		code, out, errOut := run(t, append([]string{"--socket", path}, args...)...)
		wantCode(t, code, out, errOut, ExitNotRunning)
		for _, want := range []string{path, "is nymvpnd running?", "nymvpnd run"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%v: stderr lacks %q:\n%s", args, want, errOut)
			}
		}
	}
	// version still answers, for the client.
	code, out, _ := run(t, "--socket", path, "version")
	if code != 0 || !strings.HasPrefix(out, "nymvpn ") || !strings.Contains(out, "nymvpnd not running") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestForbidden(t *testing.T) {
	d := startDaemon(t, denyAll{})
	for _, args := range [][]string{{"connect"}, {"connect", "--wait"}, {"disconnect"}, {"settings", "set", "ipv6", "off"}} {
		code, out, errOut := d.run(t, args...)
		wantCode(t, code, out, errOut, ExitForbidden)
		if !strings.Contains(errOut, "you may only read the VPN state") || !strings.Contains(errOut, "nymvpn group") {
			t.Errorf("%v: stderr:\n%s", args, errOut)
		}
	}
	// Reading works and says access is read only.
	code, out, errOut := d.run(t, "status")
	wantCode(t, code, out, errOut, ExitOK)
	if !strings.Contains(out, "read only") {
		t.Errorf("status:\n%s", out)
	}
}

func TestSocketSelection(t *testing.T) {
	d := startDaemon(t, nil)
	for _, args := range [][]string{
		{"--socket", d.path, "status", "--json"},
		{"status", "--socket", d.path, "--json"},
		{"status", "--json", "--socket=" + d.path},
		{"-socket", d.path, "status", "--json"},
	} {
		if code, out, errOut := run(t, args...); code != 0 || !strings.Contains(out, `"v-test"`) {
			t.Errorf("%v: %d\n%s%s", args, code, out, errOut)
		}
	}
	t.Setenv(SocketEnv, d.path)
	if code, out, errOut := run(t, "version"); code != 0 || !strings.Contains(out, "nymvpnd v-test (pid 4242)") {
		t.Errorf("$%s: %d\n%s%s", SocketEnv, code, out, errOut)
	}
	// --socket wins over the environment.
	if code, _, _ := run(t, "--socket", filepath.Join(t.TempDir(), "none"), "status"); code != ExitNotRunning {
		t.Errorf("--socket did not override $%s: %d", SocketEnv, code)
	}
}

func TestUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		in   string // stderr or stdout part
	}{
		{nil, ExitUsage, "usage: nymvpn"},
		{[]string{"frobnicate"}, ExitUsage, `unknown command "frobnicate"`},
		{[]string{"help"}, ExitOK, "commands:"},
		{[]string{"--socket"}, ExitUsage, "--socket needs a path"},
		{[]string{"connect", "--bogus"}, ExitUsage, "flag provided but not defined"},
		{[]string{"connect", "DE"}, ExitUsage, "--entry"},
		{[]string{"connect", "--timeout", "0s"}, ExitUsage, "positive"},
		{[]string{"status", "now"}, ExitUsage, "no arguments"},
		{[]string{"connect", "-h"}, ExitOK, "usage: nymvpn connect"},
	} {
		code, out, errOut := run(t, c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.in) {
			t.Errorf("%v: exit %d, want %d with %q\nstdout:\n%s\nstderr:\n%s", c.args, code, c.code, c.in, out, errOut)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 1500: "1.5 kB", 2_500_000: "2.5 MB", 3e12: "3.0 TB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
