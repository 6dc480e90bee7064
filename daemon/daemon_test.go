package daemon

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/tunnelstate"
	"github.com/nymvpn/nymvpn/node/directory"
)

// runDaemon starts Run in-process on a socket in a temporary directory and
// returns an HTTP client for it; the daemon stops when the test ends or
// stop is called.
func runDaemon(t *testing.T, stateDir string) (c *http.Client, stop func()) {
	t.Helper()
	return startDaemon(t, Config{StateDir: stateDir})
}

// startDaemon runs Run with cfg on a new socket (a recording firewall, a
// test interface name and a silent log unless cfg says otherwise) until
// stop or the end of the test, and returns a client of its socket.
func startDaemon(t *testing.T, cfg Config) (c *http.Client, stop func()) {
	t.Helper()
	cfg.Socket = filepath.Join(t.TempDir(), "d.sock")
	cfg.Interface = "nymvpntest0"
	if cfg.Firewall == nil {
		cfg.Firewall = &recordingFirewall{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	cfg.Ready = func() { close(ready) }
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("daemon: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("daemon not ready")
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	}
	t.Cleanup(stop)
	c = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", cfg.Socket)
	}}}
	return c, stop
}

func call(t *testing.T, c *http.Client, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://nymvpnd"+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func unreachableDirectory(t *testing.T) string {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Port 1 on loopback: nothing listens, the fetch fails at once.
	return directory.FormatURL("http://127.0.0.1:1", pub)
}

func TestRefusalsCarryCodes(t *testing.T) {
	c, _ := runDaemon(t, t.TempDir())
	var e api.ErrorBody
	if code := call(t, c, "POST", "/v1/connect", api.ConnectRequest{}, &e); code/100 != 4 || e.Error.Code != api.CodeNoDirectory {
		t.Fatalf("connect without a directory: %d %+v", code, e)
	}
	if !strings.Contains(e.Error.Message, "nymvpn settings set directory") {
		t.Errorf("message does not say what to do: %q", e.Error.Message)
	}
	if code := call(t, c, "POST", "/v1/connect", api.ConnectRequest{Mode: "mixnet", PrivacyProfile: "paranoid"}, &e); code/100 != 4 || e.Error.Code != api.CodeInvalidSetting {
		t.Fatalf("connect with a privacy profile that does not exist: %d %+v", code, e)
	}
	var st api.Status
	call(t, c, "GET", "/v1/status", nil, &st)
	if st.State.Kind != api.Disconnected || st.Target != "disconnected" || st.Settings.Mode != api.ModeFast {
		t.Fatalf("a refused connect changed the state: %+v", st)
	}
}

func TestSettingsAndTargetSurviveRestart(t *testing.T) {
	state := t.TempDir()
	c, stop := runDaemon(t, state)
	dir := unreachableDirectory(t)
	var s api.Settings
	if code := call(t, c, "PATCH", "/v1/settings", api.SettingsPatch{DirectoryURL: &dir}, &s); code != 200 || s.DirectoryURL != dir {
		t.Fatalf("patch: %d %+v", code, s)
	}
	var st api.State
	if code := call(t, c, "POST", "/v1/connect", api.ConnectRequest{Exit: "ch"}, &st); code != http.StatusAccepted {
		t.Fatalf("connect: %d %+v", code, st)
	}
	// The directory cannot be reached: the daemon keeps trying.
	var status api.Status
	deadline := time.Now().Add(30 * time.Second)
	for {
		call(t, c, "GET", "/v1/status", nil, &status)
		if status.State.Kind == api.Connecting && status.State.Retrying {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retry: %+v", status.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(status.State.Reason, "directory") || status.Target != "connected" || status.Settings.Exit != "CH" {
		t.Fatalf("status while retrying: %+v", status)
	}
	stop()

	// A new daemon (after a crash or reboot) has the settings and goes on
	// connecting by itself.
	c, _ = runDaemon(t, state)
	call(t, c, "GET", "/v1/status", nil, &status)
	if status.Settings.DirectoryURL != dir || status.Settings.Exit != "CH" || status.Target != "connected" {
		t.Fatalf("after restart: %+v", status)
	}
	if status.State.Kind != api.Connecting {
		t.Fatalf("after restart the daemon is %s, want connecting", status.State.Kind)
	}
	var st2 api.State
	call(t, c, "POST", "/v1/disconnect", struct{}{}, &st2)
	deadline = time.Now().Add(30 * time.Second)
	for call(t, c, "GET", "/v1/status", nil, &status); status.State.Kind != api.Disconnected; call(t, c, "GET", "/v1/status", nil, &status) {
		if time.Now().After(deadline) {
			t.Fatalf("not disconnected: %+v", status.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status.Target != "disconnected" {
		t.Fatalf("target %s", status.Target)
	}
}

func TestCorruptSettingsAreKeptAndReported(t *testing.T) {
	state := t.TempDir()
	bad := []byte(`{"mode": "fast", "entry": 42`)
	if err := os.WriteFile(filepath.Join(state, "settings.json"), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := runDaemon(t, state)
	var st api.Status
	call(t, c, "GET", "/v1/status", nil, &st)
	if len(st.Notices) != 1 || !strings.Contains(st.Notices[0], "corrupt") {
		t.Fatalf("notices %q", st.Notices)
	}
	if st.Settings.Mode != api.ModeFast || st.Settings.Entry != "auto" {
		t.Fatalf("settings not the defaults: %+v", st.Settings)
	}
	m, _ := filepath.Glob(filepath.Join(state, "settings.json.corrupt-*"))
	if len(m) != 1 {
		t.Fatalf("corrupt file not kept: %v", m)
	}
	if b, _ := os.ReadFile(m[0]); !bytes.Equal(b, bad) {
		t.Fatalf("kept file changed: %q", b)
	}
}

func TestStateDirIsPrivate(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	c, _ := runDaemon(t, state)
	dir := unreachableDirectory(t)
	call(t, c, "PATCH", "/v1/settings", api.SettingsPatch{DirectoryURL: &dir}, nil)
	for _, p := range []string{state, filepath.Join(state, "platform")} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want 0700", p, fi.Mode(), err)
		}
	}
	if fi, err := os.Stat(filepath.Join(state, "settings.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("settings.json: %v, want 0600", err)
	}
}

// recordingFirewall keeps the host's firewall out of in-process tests.
type recordingFirewall struct{}

func (*recordingFirewall) Protect(context.Context, tunnelstate.Protection) error { return nil }
