package client

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/control"
	"github.com/nymvpn/nymvpn/daemon/settings"
)

// backend is a fake control.Backend.
type backend struct {
	hub *control.Hub
	mu  sync.Mutex
	req []api.ConnectRequest
	gw  [2]string
}

func (b *backend) Connect(_ context.Context, req api.ConnectRequest) (api.State, error) {
	b.mu.Lock()
	b.req = append(b.req, req)
	b.mu.Unlock()
	if req.Mode == api.ModeMixnet {
		return api.State{}, &api.APIError{Code: api.CodeNotSupported, Message: "mixnet mode is not available yet"}
	}
	st := api.State{Kind: api.Connecting, Mode: api.ModeFast, Stage: "registering with the entry gateway", Attempt: 1}
	b.hub.SetTarget("connected")
	b.hub.SetState(st)
	return st, nil
}

func (b *backend) Disconnect(context.Context) (api.State, error) {
	b.hub.SetTarget("disconnected")
	b.hub.SetState(api.State{Kind: api.Disconnected})
	return api.State{Kind: api.Disconnected}, nil
}

func (b *backend) Gateways(_ context.Context, role, country string) ([]api.Gateway, error) {
	b.mu.Lock()
	b.gw = [2]string{role, country}
	b.mu.Unlock()
	return []api.Gateway{{ID: "exit-ch-1", Country: "CH", Roles: []string{"exit"}}}, nil
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
	return errors.New("you may only read the VPN state: join the nymvpn group")
}

type daemon struct {
	path string
	hub  *control.Hub
	b    *backend
	srv  *control.Server
	done chan error
}

func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nymcli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startDaemon(t *testing.T, authz control.Authorizer) *daemon {
	t.Helper()
	d := &daemon{path: filepath.Join(shortDir(t), "nymvpnd.sock"), done: make(chan error, 1)}
	d.hub = control.NewHub(api.Status{State: api.State{Kind: api.Disconnected}, Target: "disconnected",
		Settings: api.DefaultSettings(), Daemon: api.DaemonInfo{Version: "v-test", PID: 42}})
	d.b = &backend{hub: d.hub}
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
	go func() { d.done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-d.done
	})
	return d
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestRoundTrips(t *testing.T) {
	d := startDaemon(t, nil)
	c := New(d.path)
	defer c.Close()
	st, err := c.Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Daemon.Version != "v-test" || st.Caller == nil || st.Caller.UID != os.Geteuid() || !st.Caller.CanWrite {
		t.Fatalf("status %+v", st)
	}
	state, err := c.Connect(ctx(t), api.ConnectRequest{Entry: "de"})
	if err != nil || state.Kind != api.Connecting {
		t.Fatalf("connect: %+v, %v", state, err)
	}
	if d.b.req[0].Entry != "DE" {
		t.Errorf("backend got %+v", d.b.req[0])
	}
	if state, err = c.Disconnect(ctx(t)); err != nil || state.Kind != api.Disconnected {
		t.Fatalf("disconnect: %+v, %v", state, err)
	}
	gws, err := c.Gateways(ctx(t), "exit", "ch")
	if err != nil || len(gws) != 1 || d.b.gw != [2]string{"exit", "CH"} {
		t.Fatalf("gateways: %+v, %v, backend asked %v", gws, err, d.b.gw)
	}
	dns := []netip.Addr{netip.MustParseAddr("9.9.9.9")}
	s, err := c.UpdateSettings(ctx(t), api.SettingsPatch{DNS: &dns})
	if err != nil || !reflect.DeepEqual(s.DNS, dns) {
		t.Fatalf("update: %+v, %v", s, err)
	}
	if s, err = c.Settings(ctx(t)); err != nil || !reflect.DeepEqual(s.DNS, dns) {
		t.Fatalf("settings: %+v, %v", s, err)
	}
}

func TestAPIErrors(t *testing.T) {
	d := startDaemon(t, nil)
	c := New(d.path)
	_, err := c.Connect(ctx(t), api.ConnectRequest{Mode: "mixnet"})
	var ae *api.APIError
	if !errors.As(err, &ae) || ae.Status != 501 || ae.Code != api.CodeNotSupported || !strings.Contains(ae.Message, "mixnet") {
		t.Fatalf("error %v", err)
	}
	bad := "nope nope"
	_, err = c.UpdateSettings(ctx(t), api.SettingsPatch{Exit: &bad})
	if !errors.As(err, &ae) || ae.Code != api.CodeInvalidSetting || !strings.HasPrefix(ae.Message, "exit:") {
		t.Fatalf("error %v", err)
	}
	ro := startDaemon(t, denyAll{})
	_, err = New(ro.path).Disconnect(ctx(t))
	if !errors.As(err, &ae) || ae.Status != 403 || ae.Code != api.CodeForbidden || !strings.Contains(ae.Message, "nymvpn group") {
		t.Fatalf("error %v", err)
	}
	st, err := New(ro.path).Status(ctx(t))
	if err != nil || st.Caller.CanWrite {
		t.Fatalf("read-only status: %+v, %v", st.Caller, err)
	}
}

func TestDaemonNotRunning(t *testing.T) {
	dir := shortDir(t)
	missing := filepath.Join(dir, "missing.sock")
	_, err := New(missing).Status(ctx(t))
	if !errors.Is(err, ErrDaemonNotRunning) {
		t.Fatalf("missing socket: %v", err)
	}
	for _, want := range []string{missing, "is nymvpnd running?", "nymvpnd run"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	// A socket nobody listens on, as a dead daemon leaves it.
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	_, err = New(stale).Status(ctx(t))
	if !errors.Is(err, ErrDaemonNotRunning) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("stale socket: %v", err)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("message %q does not say the connection was refused", err)
	}
}

func TestNotASocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "file")
	os.WriteFile(path, nil, 0o600)
	_, err := New(path).Status(ctx(t))
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("error %v", err)
	}
}

func TestUntrustedSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the socket to another user")
	}
	d := startDaemon(t, nil)
	if err := os.Chown(d.path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := New(d.path).Status(ctx(t))
	if !errors.Is(err, ErrUntrustedSocket) || !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("error %v", err)
	}
}

func TestClassifyPermission(t *testing.T) {
	err := classify("/run/x.sock", &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)})
	if !errors.Is(err, ErrPermission) || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("error %v", err)
	}
	if !strings.Contains(err.Error(), "/run/x.sock") || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("message %q", err)
	}
}

func TestEvents(t *testing.T) {
	d := startDaemon(t, nil)
	c := New(d.path)
	es, err := c.Events(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	first, err := es.Next()
	if err != nil || first.Seq != 1 || first.Status == nil {
		t.Fatalf("first: %+v, %v", first, err)
	}
	st := *first.Status
	if _, err := c.Connect(ctx(t), api.ConnectRequest{}); err != nil {
		t.Fatal(err)
	}
	d.hub.SetState(api.State{Kind: api.Connected, Mode: "fast"})
	for range 3 {
		e, err := es.Next()
		if err != nil {
			t.Fatal(err)
		}
		st.Apply(e)
	}
	if st.State.Kind != api.Connected || st.Target != "connected" {
		t.Fatalf("folded status %+v", st)
	}
	d.srv.Close()
	if _, err := es.Next(); !errors.Is(err, ErrStreamEnded) {
		t.Fatalf("after the daemon stopped: %v", err)
	}
}

func TestEventsCancel(t *testing.T) {
	d := startDaemon(t, nil)
	c, cancel := context.WithCancel(context.Background())
	es, err := New(d.path).Events(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := es.Next(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { _, err := es.Next(); done <- err }()
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Next after cancel returned an event")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not return after the context was cancelled")
	}
}

func TestDefaultSocket(t *testing.T) {
	if got := New("").Socket(); got != api.DefaultSocket() || got == "" {
		t.Fatalf("default socket %q", got)
	}
}
