package directory

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type testDir struct {
	srv   *Server
	http  *httptest.Server
	clock *fakeClock
	url   string // with pinned key
}

func newTestDir(t *testing.T, cfg ServerConfig) *testDir {
	t.Helper()
	clock := &fakeClock{now: t0}
	if cfg.Key == nil {
		cfg.Key = testKey(1)
	}
	cfg.Now = clock.Now
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return &testDir{srv: s, http: hs, clock: clock, url: s.URL(hs.URL)}
}

func (d *testDir) client() *Client {
	return &Client{URL: d.url, HTTP: d.http.Client(), Now: d.clock.Now}
}

// post sends a descriptor and decodes the JSON answer.
func (d *testDir) post(t *testing.T, body []byte) (int, map[string]any) {
	t.Helper()
	resp, err := d.http.Client().Post(d.http.URL+"/v1/nodes", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	return resp.StatusCode, m
}

func (d *testDir) announce(t *testing.T, n Node, key ed25519.PrivateKey) (int, map[string]any) {
	t.Helper()
	b, err := SignDescriptor(&n, key, d.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return d.post(t, b)
}

func TestNewServerConfig(t *testing.T) {
	if _, err := NewServer(ServerConfig{}); err == nil {
		t.Error("no key accepted")
	}
	if _, err := NewServer(ServerConfig{Key: testKey(1), TTL: time.Millisecond}); err == nil {
		t.Error("1ms TTL accepted")
	}
	if _, err := NewServer(ServerConfig{Key: testKey(1), Allowed: []ed25519.PublicKey{{1, 2}}}); err == nil {
		t.Error("short allowed key accepted")
	}
}

func TestServerAddFetch(t *testing.T) {
	d := newTestDir(t, ServerConfig{EpochLength: time.Hour})
	for _, n := range testTopology().Nodes {
		if err := d.srv.Add(n); err != nil {
			t.Fatal(err)
		}
	}
	top, err := d.client().Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Nodes) != 3 || top.Nodes[0].ID != "gw-ch-1" {
		t.Fatalf("nodes: %+v", top.Nodes)
	}
	wantEpoch, wantStart := EpochAt(t0, time.Hour)
	if top.Epoch != wantEpoch || !top.EpochStart.Equal(wantStart) || !top.Issued.Equal(t0) || !top.Expires.Equal(t0.Add(DefaultTTL)) {
		t.Errorf("epoch %d start %v issued %v expires %v", top.Epoch, top.EpochStart, top.Issued, top.Expires)
	}
	if gws := top.Gateways(RoleEntry, "DE"); len(gws) != 1 || gws[0].RegistrationAddr != "127.0.0.1:4000" {
		t.Errorf("gateways: %+v", gws)
	}
	if !nodeEqual(&d.srv.Topology().Nodes[2], &top.Nodes[2]) {
		t.Error("Topology() differs from the served document")
	}

	// Headers, caching.
	resp, err := d.http.Client().Get(d.http.URL + "/v1/topology")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=30") {
		t.Errorf("Cache-Control %q", cc)
	}
	etag := resp.Header.Get("ETag")
	req, _ := http.NewRequest(http.MethodGet, d.http.URL+"/v1/topology", nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = d.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", resp.StatusCode)
	}

	// Remove; a new document is signed.
	d.srv.Remove("mix-1")
	top, err = d.client().Fetch(context.Background())
	if err != nil || len(top.Nodes) != 2 {
		t.Fatalf("after Remove: %v, %v", top, err)
	}

	// Add validates and refuses identity changes.
	bad := gateway("gw-x", "DE", testKey(3))
	bad.WireGuardAddr = "nope"
	if err := d.srv.Add(bad); err == nil {
		t.Error("invalid node added")
	}
	if err := d.srv.Add(gateway("gw-de-1", "DE", testKey(99))); !errors.Is(err, ErrIdentityConflict) {
		t.Errorf("identity change: %v", err)
	}
}

// Documents are re-signed before they expire, and when the epoch changes.
func TestServerResign(t *testing.T) {
	d := newTestDir(t, ServerConfig{EpochLength: time.Hour, TTL: 10 * time.Minute})
	c := d.client()
	first, err := c.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d.clock.Advance(4 * time.Minute)
	same, err := c.Fetch(context.Background())
	if err != nil || !same.Issued.Equal(first.Issued) {
		t.Fatalf("re-signed early: %v %v", same, err)
	}
	d.clock.Advance(2 * time.Minute) // past TTL/2
	next, err := c.Fetch(context.Background())
	if err != nil || !next.Issued.After(first.Issued) {
		t.Fatalf("not re-signed: %v %v", next, err)
	}
	d.clock.Advance(time.Hour)
	later, err := c.Fetch(context.Background())
	if err != nil || later.Epoch != first.Epoch+1 {
		t.Fatalf("epoch: %v %v", later, err)
	}
}

func TestFetchErrors(t *testing.T) {
	d := newTestDir(t, ServerConfig{})
	ctx := context.Background()

	// Wrong pinned key.
	c := d.client()
	c.URL = FormatURL(d.http.URL, testKey(2).Public().(ed25519.PublicKey))
	if _, err := c.Fetch(ctx); !errors.Is(err, ErrKeyMismatch) || !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), d.http.URL) {
		t.Errorf("wrong key: %v", err)
	}

	// Stale: the client's clock is far ahead of the directory's.
	c = d.client()
	c.Now = func() time.Time { return t0.Add(time.Hour) }
	if _, err := c.Fetch(ctx); !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "clock") {
		t.Errorf("stale: %v", err)
	}

	// No key in the URL.
	c = d.client()
	c.URL = d.http.URL
	if _, err := c.Fetch(ctx); err == nil || !strings.Contains(err.Error(), "key") {
		t.Errorf("no key: %v", err)
	}

	// HTTP status.
	notDir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "gateway timeout upstream", http.StatusBadGateway)
	}))
	defer notDir.Close()
	c = d.client()
	c.URL = FormatURL(notDir.URL, d.srv.PublicKey())
	_, err := c.Fetch(ctx)
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadGateway || !strings.Contains(err.Error(), "gateway timeout upstream") || !IsUnreachable(err) {
		t.Errorf("HTTP 502: %v", err)
	}

	// Unsigned document served.
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(testTopology())
	}))
	defer bare.Close()
	c.URL = FormatURL(bare.URL, d.srv.PublicKey())
	if _, err := c.Fetch(ctx); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned: %v", err)
	}

	// Unreachable.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	c.URL = FormatURL(deadURL, d.srv.PublicKey())
	if _, err := c.Fetch(ctx); !errors.Is(err, ErrUnreachable) || !IsUnreachable(err) {
		t.Errorf("unreachable: %v", err)
	}

	// Cancelled context is not "unreachable".
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	c = d.client()
	if _, err := c.Fetch(cctx); !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnreachable) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestAnnounceHTTP(t *testing.T) {
	gwKey, mixKey := testKey(20), testKey(21)
	d := newTestDir(t, ServerConfig{Allowed: []ed25519.PublicKey{gwKey.Public().(ed25519.PublicKey), mixKey.Public().(ed25519.PublicKey)}})
	gw := gateway("gw-de-1", "DE", gwKey)

	status, body := d.announce(t, gw, gwKey)
	if status != http.StatusOK || body["id"] != "gw-de-1" {
		t.Fatalf("valid announce: %d %v", status, body)
	}
	top, err := d.client().Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := top.Node("gw-de-1"); !ok || !nodeEqual(n, &gw) {
		t.Fatalf("announced node not in topology: %+v", top.Nodes)
	}

	// Update (new address) with a newer timestamp.
	d.clock.Advance(time.Second)
	gw.WireGuardAddr = "127.0.0.1:51999"
	if status, body := d.announce(t, gw, gwKey); status != http.StatusOK {
		t.Fatalf("update: %d %v", status, body)
	}
	if n, _ := d.srv.Topology().Node("gw-de-1"); n.WireGuardAddr != "127.0.0.1:51999" {
		t.Errorf("update not applied: %+v", n)
	}

	b, _ := SignDescriptor(&gw, gwKey, d.clock.Now().Add(-time.Minute))
	old := b
	check := func(name string, status int, body map[string]any, wantStatus int, wantCode string) {
		t.Helper()
		if status != wantStatus || body["code"] != wantCode || body["message"] == "" {
			t.Errorf("%s: %d %v, want %d %s", name, status, body, wantStatus, wantCode)
		}
	}

	// Replayed (older) descriptor.
	status, body = d.post(t, old)
	check("replay", status, body, http.StatusConflict, "replayed")

	// Bad signature.
	b, _ = SignDescriptor(&gw, gwKey, d.clock.Now())
	status, body = d.post(t, bytes.Replace(b, []byte("51999"), []byte("51998"), 1))
	check("bad signature", status, body, http.StatusForbidden, "bad_signature")

	// Foreign identity, directory not open.
	stranger := testKey(30)
	status, body = d.announce(t, gateway("gw-fr-1", "FR", stranger), stranger)
	check("foreign identity", status, body, http.StatusForbidden, "unknown_identity")

	// Identity change of an existing id: allowed key, but not the holder.
	status, body = d.announce(t, gateway("gw-de-1", "DE", mixKey), mixKey)
	check("identity change", status, body, http.StatusConflict, "identity_conflict")

	// Malformed, unsigned, stale, too large.
	status, body = d.post(t, []byte("{nope"))
	check("malformed", status, body, http.StatusBadRequest, "malformed")
	status, body = d.post(t, []byte(`{"node":{"id":"x"},"timestamp":"2025-06-01T12:00:00Z"}`))
	check("unsigned", status, body, http.StatusBadRequest, "unsigned")
	b, _ = SignDescriptor(&gw, gwKey, d.clock.Now().Add(-10*time.Minute))
	status, body = d.post(t, b)
	check("stale", status, body, http.StatusBadRequest, "stale")
	status, body = d.post(t, bytes.Repeat([]byte("x"), MaxDescriptorSize+1))
	check("too large", status, body, http.StatusRequestEntityTooLarge, "too_large")
	invalid := gw
	invalid.Country = "Germany"
	raw, _ := json.Marshal(Descriptor{Node: invalid, Timestamp: d.clock.Now()})
	status, body = d.post(t, seal("descriptor", raw, DescriptorDomain, gwKey))
	check("invalid node", status, body, http.StatusBadRequest, "malformed")

	// Wrong method, unknown path: JSON errors too.
	resp, err := d.http.Client().Get(d.http.URL + "/v1/nodes")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /v1/nodes: %d allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	resp, err = d.http.Client().Get(d.http.URL + "/v2/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("unknown path: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	// Nothing refused made it in.
	top, err = d.client().Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Nodes) != 1 || top.Nodes[0].WireGuardAddr != "127.0.0.1:51999" {
		t.Errorf("topology after refusals: %+v", top.Nodes)
	}
}

func TestAnnounceOpen(t *testing.T) {
	d := newTestDir(t, ServerConfig{Open: true})
	k := testKey(40)
	if status, body := d.announce(t, mixnode("mix-7", k), k); status != http.StatusOK {
		t.Fatalf("open directory refused: %d %v", status, body)
	}
}

func TestDescriptorExpiry(t *testing.T) {
	d := newTestDir(t, ServerConfig{Open: true, DescriptorTTL: 3 * time.Minute})
	k := testKey(41)
	if err := d.srv.Add(mixnode("static", testKey(42))); err != nil {
		t.Fatal(err)
	}
	if status, body := d.announce(t, mixnode("mix-1", k), k); status != http.StatusOK {
		t.Fatalf("announce: %d %v", status, body)
	}
	d.clock.Advance(2 * time.Minute)
	if _, ok := d.srv.Topology().Node("mix-1"); !ok {
		t.Fatal("node dropped before its TTL")
	}
	// Re-announcing extends the lifetime.
	if status, body := d.announce(t, mixnode("mix-1", k), k); status != http.StatusOK {
		t.Fatalf("re-announce: %d %v", status, body)
	}
	d.clock.Advance(2 * time.Minute)
	if _, ok := d.srv.Topology().Node("mix-1"); !ok {
		t.Fatal("re-announced node dropped")
	}
	d.clock.Advance(90 * time.Second)
	top, err := d.client().Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := top.Node("mix-1"); ok {
		t.Error("expired node still listed")
	}
	if _, ok := top.Node("static"); !ok {
		t.Error("node added in process expired")
	}
	// After expiry the id is free again, even for another identity.
	k2 := testKey(43)
	if status, body := d.announce(t, mixnode("mix-1", k2), k2); status != http.StatusOK {
		t.Errorf("re-use of expired id: %d %v", status, body)
	}
}

func TestHealthz(t *testing.T) {
	d := newTestDir(t, ServerConfig{})
	_ = d.srv.Add(mixnode("m", testKey(2)))
	resp, err := d.http.Client().Get(d.http.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 || m["status"] != "ok" || m["nodes"] != 1.0 {
		t.Errorf("healthz: %d %v %v", resp.StatusCode, m, err)
	}
}

func TestServerLimits(t *testing.T) {
	d := newTestDir(t, ServerConfig{})
	k := testKey(50)
	for i := range MaxNodes {
		n := mixnode("m"+strconv.Itoa(i), k)
		if err := d.srv.Add(n); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	if err := d.srv.Add(mixnode("one-more", k)); !errors.Is(err, ErrFull) {
		t.Fatalf("node %d: %v", MaxNodes+1, err)
	}
	// Updating an existing node is still possible.
	if err := d.srv.Add(mixnode("m0", k)); err != nil {
		t.Fatalf("update when full: %v", err)
	}
	top, err := d.client().Fetch(context.Background())
	if err != nil || len(top.Nodes) != MaxNodes {
		t.Fatalf("fetch full directory: %v", err)
	}
}

// Announce posts now and keeps going until the context ends; Serve serves
// the API on a real listener.
func TestAnnounceLoopServe(t *testing.T) {
	s, err := NewServer(ServerConfig{Key: testKey(1), Open: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(sctx, ln) }()
	dirURL := s.URL("http://" + ln.Addr().String())

	k := testKey(60)
	n := gateway("gw-loop", "SE", k)
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Announce(ctx, dirURL, &n, k, time.Hour, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, ok := s.Topology().Node("gw-loop"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node never announced")
		}
		time.Sleep(10 * time.Millisecond)
	}
	top, err := (&Client{URL: dirURL}).Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := top.Node("gw-loop"); !ok {
		t.Error("announced node not served")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Announce returned %v", err)
	}
	// every=1h exceeds the 3 min descriptor TTL: Announce says so and adapts.
	if l := logs.String(); !strings.Contains(l, "exceeds the directory's descriptor TTL") || !strings.Contains(l, "now_every=1m0s") {
		t.Errorf("log: %s", l)
	}
	stop()
	if err := <-served; err != nil {
		t.Errorf("Serve returned %v", err)
	}
}

// Announce reports bad arguments at once and survives a directory that is
// down, logging the failure.
func TestAnnounceErrors(t *testing.T) {
	k := testKey(61)
	n := gateway("gw-x", "SE", k)
	if err := Announce(context.Background(), "nope", &n, k, time.Second, nil); err == nil {
		t.Error("bad URL accepted")
	}
	if err := Announce(context.Background(), "http://127.0.0.1:1", &n, testKey(62), time.Second, nil); err == nil {
		t.Error("wrong key accepted")
	}

	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Announce(ctx, deadURL, &n, k, time.Hour, logger) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "announcement failed") {
		if time.Now().After(deadline) {
			t.Fatal("failure never logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Announce returned %v", err)
	}
	if s := logs.String(); !strings.Contains(s, "level=WARN") || !strings.Contains(s, "unreachable") {
		t.Errorf("log: %s", s)
	}

	// A refusal is an *APIError with the directory's code.
	d := newTestDir(t, ServerConfig{})
	d.clock.Set(time.Now())
	err := AnnounceOnce(context.Background(), d.url, &n, k, d.http.Client())
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden || ae.Code != "unknown_identity" {
		t.Errorf("refused: %v", err)
	}
}

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

// Announcements, fetches and removals in parallel (run with -race).
func TestServerConcurrent(t *testing.T) {
	d := newTestDir(t, ServerConfig{Open: true})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := testKey(byte(100 + g))
			for i := range 10 {
				id := "n" + strconv.Itoa(g) + "-" + strconv.Itoa(i%3)
				n := mixnode(id, k)
				b, err := SignDescriptor(&n, k, d.clock.Now())
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := d.http.Client().Post(d.http.URL+"/v1/nodes", "application/json", bytes.NewReader(b))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if _, err := d.client().Fetch(context.Background()); err != nil {
					t.Error(err)
					return
				}
				if i%4 == 3 {
					d.srv.Remove(id)
				}
				d.clock.Advance(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	if top := d.srv.Topology(); len(top.Nodes) == 0 || len(top.Nodes) > 12 {
		t.Errorf("%d nodes", len(top.Nodes))
	}
}

func benchTopology(nodes int) *Topology {
	top := testTopology()
	top.Nodes = nil
	k := testKey(9)
	for i := range nodes {
		n := gateway("gw-"+strconv.Itoa(i), "DE", k)
		n.MixAddr = "10.0.0.1:1789"
		n.SphinxKeys = []SphinxKey{{1, key32(1)}, {2, key32(2)}}
		top.Nodes = append(top.Nodes, n)
	}
	return top
}

func BenchmarkSignTopology1000(b *testing.B) {
	top, key := benchTopology(1000), testKey(1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SignTopology(top, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyTopology1000(b *testing.B) {
	key := testKey(1)
	doc, err := SignTopology(benchTopology(1000), key)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyTopology(doc, key.Public().(ed25519.PublicKey), fuzzNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAnnounceHandler(b *testing.B) {
	clock := &fakeClock{now: t0}
	s, err := NewServer(ServerConfig{Key: testKey(1), Open: true, Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	k := testKey(2)
	n := gateway("gw-1", "DE", k)
	desc, err := SignDescriptor(&n, k, t0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/nodes", bytes.NewReader(desc)))
		if w.Code != http.StatusOK {
			b.Fatal(w.Body.String())
		}
	}
}
