package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/settings"
)

// fakeBackend is a Backend that records its calls and publishes plausible
// states through the Hub.
type fakeBackend struct {
	hub *Hub

	mu       sync.Mutex
	connects []api.ConnectRequest
	patches  []api.SettingsPatch
	gwQuery  [2]string
	gateways []api.Gateway
	err      error // returned by every method when set
	creds    []PeerCred
}

func (b *fakeBackend) record(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, _ := PeerCredFromContext(ctx)
	b.creds = append(b.creds, c)
	return b.err
}

func (b *fakeBackend) setErr(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err = err
}

func (b *fakeBackend) Connect(ctx context.Context, req api.ConnectRequest) (api.State, error) {
	if err := b.record(ctx); err != nil {
		return api.State{}, err
	}
	b.mu.Lock()
	b.connects = append(b.connects, req)
	b.mu.Unlock()
	b.hub.SetTarget("connected")
	st := api.State{Kind: api.Connecting, Mode: api.ModeFast, Stage: "registering with the entry gateway", Attempt: 1}
	b.hub.SetState(st)
	return st, nil
}

func (b *fakeBackend) Disconnect(ctx context.Context) (api.State, error) {
	if err := b.record(ctx); err != nil {
		return api.State{}, err
	}
	b.hub.SetTarget("disconnected")
	st := api.State{Kind: api.Disconnected}
	b.hub.SetState(st)
	return st, nil
}

func (b *fakeBackend) Gateways(ctx context.Context, role, country string) ([]api.Gateway, error) {
	if err := b.record(ctx); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gwQuery = [2]string{role, country}
	return b.gateways, nil
}

func (b *fakeBackend) UpdateSettings(ctx context.Context, p api.SettingsPatch) (api.Settings, error) {
	if err := b.record(ctx); err != nil {
		return api.Settings{}, err
	}
	b.mu.Lock()
	b.patches = append(b.patches, p)
	b.mu.Unlock()
	s, err := settings.Apply(b.hub.Status().Settings, p)
	if err != nil {
		return api.Settings{}, err
	}
	b.hub.SetSettings(s)
	return s, nil
}

func initialStatus() api.Status {
	return api.Status{
		State:    api.State{Kind: api.Disconnected},
		Target:   "disconnected",
		Settings: api.DefaultSettings(),
		Daemon:   api.DaemonInfo{Version: "test", PID: os.Getpid()},
	}
}

// socketDir returns a short directory everyone may search (socket paths
// are limited to about 100 bytes, and the unprivileged helper must reach
// the socket).
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nymctl-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type testServer struct {
	path    string
	srv     *Server
	hub     *Hub
	backend *fakeBackend
	served  chan error
}

// startServer serves a fake backend on a fresh socket. The test process may
// write (it is the operator) unless cfg.Authorizer says otherwise.
func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	ts := &testServer{path: filepath.Join(socketDir(t), "nymvpnd.sock"), served: make(chan error, 1)}
	ts.hub = NewHub(initialStatus())
	ts.backend = &fakeBackend{hub: ts.hub, gateways: []api.Gateway{
		{ID: "entry-de-1", Country: "DE", Roles: []string{"entry"}, Endpoint: "192.0.2.1:51820"},
		{ID: "exit-ch-1", Country: "CH", Roles: []string{"exit"}, Endpoint: "192.0.2.2:51820"},
	}}
	cfg.Backend, cfg.Hub = ts.backend, ts.hub
	if cfg.Authorizer == nil {
		cfg.Authorizer = &Policy{OperatorUID: os.Getuid()}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.srv = srv
	ln, err := Listen(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	go func() { ts.served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-ts.served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ts
}

// httpClient talks HTTP over the Unix socket at path.
func httpClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; headers are "Key: value" strings ("Host: x" sets the
// Host).
func (ts *testServer) do(t *testing.T, method, path, body string, headers ...string) response {
	t.Helper()
	return doRequest(t, httpClient(ts.path), method, path, body, headers...)
}

func doRequest(t testing.TB, c *http.Client, method, path, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://nymvpnd"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		v = strings.TrimSpace(v)
		if k == "Host" {
			req.Host = v
			continue
		}
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}
