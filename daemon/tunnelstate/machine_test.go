package tunnelstate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
)

const (
	wait           = 10 * time.Second // generous: a loaded CI machine is slow
	healthInterval = 500 * time.Millisecond
)

// fakeClock fires timers only when the test advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	added  chan time.Duration
}

type fakeTimer struct {
	at      time.Time
	c       chan time.Time
	stopped bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC), added: make(chan time.Duration, 100)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), c: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	if d != healthInterval {
		c.added <- d
	}
	return t.c, func() {
		c.mu.Lock()
		t.stopped = true
		c.mu.Unlock()
	}
}

// Advance moves time on and fires due timers.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.timers[:0]
	for _, t := range c.timers {
		if t.stopped {
			continue
		}
		if !t.at.After(c.now) {
			t.c <- c.now
			continue
		}
		keep = append(keep, t)
	}
	c.timers = keep
}

// fakeConnector hands every Connect call to the test.
type fakeConnector struct{ calls chan *connectCall }

type connectCall struct {
	ctx      context.Context
	settings api.Settings
	progress Progress
	allow    Allow
	result   chan attemptResult
}

func (f *fakeConnector) Connect(ctx context.Context, s api.Settings, p Progress, allow Allow) (Tunnel, error) {
	c := &connectCall{ctx: ctx, settings: s, progress: p, allow: allow, result: make(chan attemptResult, 1)}
	f.calls <- c
	select {
	case r := <-c.result:
		return r.tunnel, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fakeTunnel records its life.
type fakeTunnel struct {
	info   Info
	log    *eventLog
	mu     sync.Mutex
	broken error
	closed int
}

func (t *fakeTunnel) Info() Info { return t.info }
func (t *fakeTunnel) Traffic() api.Traffic {
	return api.Traffic{TxBytes: 100, RxBytes: 200}
}
func (t *fakeTunnel) Check(time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.broken
}
func (t *fakeTunnel) Close() error {
	t.mu.Lock()
	t.closed++
	t.mu.Unlock()
	t.log.add("tunnel.close " + t.info.Exit.ID)
	return nil
}
func (t *fakeTunnel) closes() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// fakeSystem records the routes and DNS it would set.
type fakeSystem struct {
	log    *eventLog
	mu     sync.Mutex
	upErr  error
	routes []netip.Prefix // tunnel routes in place
	dns    []netip.Addr
}

func (s *fakeSystem) Up(_ context.Context, info Info) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.upErr != nil {
		s.log.add("system.up failed")
		return s.upErr
	}
	s.routes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	s.dns = info.DNS
	s.log.add("system.up " + info.Interface)
	return nil
}

func (s *fakeSystem) Down(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes, s.dns = nil, nil
	s.log.add("system.down")
	return nil
}

func (s *fakeSystem) isUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.routes != nil
}

type eventLog struct {
	mu  sync.Mutex
	evs []string
}

func (l *eventLog) add(e string) {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
}

func (l *eventLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.evs)
}

type memTarget struct {
	mu      sync.Mutex
	connect bool
	saves   []bool
}

func (m *memTarget) Load() (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.connect, nil
}
func (m *memTarget) Save(c bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.connect = c
	m.saves = append(m.saves, c)
	return nil
}

// fakeFirewall records every protection applied.
type fakeFirewall struct {
	mu      sync.Mutex
	applied []Protection
}

func (f *fakeFirewall) Protect(_ context.Context, p Protection) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, p)
	return nil
}

func (f *fakeFirewall) last() Protection {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.applied) == 0 {
		return Protection{}
	}
	return f.applied[len(f.applied)-1]
}

type harness struct {
	fw        *fakeFirewall
	t         *testing.T
	m         *Machine
	clock     *fakeClock
	conn      *fakeConnector
	sys       *fakeSystem
	target    *memTarget
	log       *eventLog
	states    chan api.State
	traffic   chan *api.Traffic
	mixnet    chan *api.MixnetStats
	settings  api.Settings
	setMu     sync.Mutex
	cancel    context.CancelFunc
	stopped   chan struct{}
	backoffs  []int
	backoffMu sync.Mutex
}

func newHarness(t *testing.T, targetConnected bool) *harness {
	h := &harness{t: t, clock: newFakeClock(), conn: &fakeConnector{calls: make(chan *connectCall, 4)},
		log: &eventLog{}, target: &memTarget{connect: targetConnected},
		states: make(chan api.State, 100), traffic: make(chan *api.Traffic, 100),
		mixnet: make(chan *api.MixnetStats, 100), settings: api.DefaultSettings()}
	h.sys = &fakeSystem{log: h.log}
	h.fw = &fakeFirewall{}
	h.m = New(Config{
		Firewall:  h.fw,
		Connector: h.conn, System: h.sys, Target: h.target, Clock: h.clock,
		Settings: func() api.Settings { h.setMu.Lock(); defer h.setMu.Unlock(); return h.settings },
		Backoff: func(failed int) time.Duration {
			h.backoffMu.Lock()
			h.backoffs = append(h.backoffs, failed)
			h.backoffMu.Unlock()
			return DefaultBackoffNoJitter(failed)
		},
		HealthInterval: healthInterval,
		OnState:        func(s api.State) { h.states <- s },
		OnTraffic:      func(tr *api.Traffic) { h.traffic <- tr },
		OnMixnet:       func(m *api.MixnetStats) { h.mixnet <- m },
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.stopped = make(chan struct{})
	go func() {
		defer close(h.stopped)
		if err := h.m.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(h.stop)
	h.expect(api.Disconnected)
	return h
}

func (h *harness) stop() {
	h.cancel()
	select {
	case <-h.stopped:
	case <-time.After(wait):
		h.t.Fatal("Run did not return")
	}
}

// expect reads the next published state and checks its kind.
func (h *harness) expect(kind api.StateKind) api.State {
	h.t.Helper()
	select {
	case s := <-h.states:
		if s.Kind != kind {
			h.t.Fatalf("state = %s (%+v), want %s", s.Kind, s, kind)
		}
		return s
	case <-time.After(wait):
		h.t.Fatalf("no state change, want %s", kind)
	}
	return api.State{}
}

// expectStage reads Connecting states until one has the stage.
func (h *harness) expectConnecting(stage string, attempt int) api.State {
	h.t.Helper()
	s := h.expect(api.Connecting)
	if s.Stage != stage || s.Attempt != attempt {
		h.t.Fatalf("connecting stage %q attempt %d, want %q attempt %d", s.Stage, s.Attempt, stage, attempt)
	}
	return s
}

// nextTimer returns the duration of the next retry timer the machine set.
func (h *harness) nextTimer() time.Duration {
	h.t.Helper()
	select {
	case d := <-h.clock.added:
		return d
	case <-time.After(wait):
		h.t.Fatal("no retry timer set")
	}
	return 0
}

func (h *harness) nextCall() *connectCall {
	h.t.Helper()
	select {
	case c := <-h.conn.calls:
		return c
	case <-time.After(wait):
		h.t.Fatal("no Connect call")
	}
	return nil
}

func (h *harness) noState() {
	h.t.Helper()
	if _, err := h.m.State(context.Background()); err != nil { // a round trip through the loop
		h.t.Fatal(err)
	}
	select {
	case s := <-h.states:
		h.t.Fatalf("unexpected state %+v", s)
	default:
	}
}

var (
	entryWG   = Endpoint{"udp", netip.MustParseAddrPort("172.31.1.1:51822")}
	entryReg  = Endpoint{"tcp", netip.MustParseAddrPort("172.31.1.1:51821")}
	directory = Endpoint{"tcp", netip.MustParseAddrPort("172.31.1.1:8080")}
)

func gw(id, cc string) api.Gateway { return api.Gateway{ID: id, Country: cc} }

func (h *harness) tunnel(exitID string) *fakeTunnel {
	return &fakeTunnel{log: h.log, info: Info{Mode: api.ModeFast, Entry: gw("entry-de-1", "DE"), Exit: gw(exitID, "CH"),
		Interface: "nymvpn0", MTU: 1340, Addresses: []netip.Prefix{netip.MustParsePrefix("10.1.0.2/32")},
		DNS: []netip.Addr{netip.MustParseAddr("10.1.0.1")}, IPv6: true, Endpoints: []Endpoint{entryWG}}}
}

// connectOK runs one successful attempt from its first state.
func (h *harness) connectOK(attempt int, exitID string) *fakeTunnel {
	h.t.Helper()
	h.expectConnecting(StageStarting, attempt)
	return h.finishConnect(attempt, exitID)
}

// finishConnect completes an attempt whose first state was already read.
func (h *harness) finishConnect(attempt int, exitID string) *fakeTunnel {
	h.t.Helper()
	c := h.nextCall()
	e := gw("entry-de-1", "DE")
	c.progress("registering with the entry gateway", &e, nil)
	s := h.expectConnecting("registering with the entry gateway", attempt)
	if s.Entry == nil || s.Entry.ID != "entry-de-1" {
		h.t.Fatalf("entry not reported while connecting: %+v", s)
	}
	tun := h.tunnel(exitID)
	c.result <- attemptResult{tunnel: tun}
	h.expectConnecting(StageSystem, attempt)
	s = h.expect(api.Connected)
	if s.Exit == nil || s.Exit.ID != exitID || s.Interface != "nymvpn0" || len(s.Addresses) != 1 || s.Since == nil {
		h.t.Fatalf("connected state incomplete: %+v", s)
	}
	if !h.sys.isUp() {
		h.t.Fatal("connected but routes not up")
	}
	return tun
}

func TestConnectDisconnect(t *testing.T) {
	h := newHarness(t, false)
	st, err := h.m.Connect(context.Background())
	if err != nil || st.Kind != api.Connecting {
		t.Fatalf("Connect = %+v, %v", st, err)
	}
	tun := h.connectOK(1, "exit-ch-1")
	if !h.target.connect {
		t.Fatal("target not persisted as connected")
	}
	// Connect again while connected changes nothing.
	if st, _ := h.m.Connect(context.Background()); st.Kind != api.Connected {
		t.Fatalf("second Connect moved state to %s", st.Kind)
	}
	h.noState()

	if _, err := h.m.Disconnect(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := h.expect(api.Disconnecting)
	if s.Then != api.Disconnected {
		t.Fatalf("disconnecting then %s", s.Then)
	}
	h.expect(api.Disconnected)
	if h.target.connect {
		t.Fatal("target still connected")
	}
	if tun.closes() != 1 || h.sys.isUp() {
		t.Fatalf("tunnel closed %d times, system up %v", tun.closes(), h.sys.isUp())
	}
	// Routes and DNS go before the tunnel, so nothing is routed into a dead TUN.
	want := []string{"system.up nymvpn0", "system.down", "tunnel.close exit-ch-1"}
	if got := h.log.all(); !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func TestRetryScheduleAndRecovery(t *testing.T) {
	h := newHarness(t, false)
	h.m.Connect(context.Background())
	var waits []time.Duration
	for attempt := 1; attempt <= 4; attempt++ {
		h.expectConnecting(StageStarting, attempt)
		c := h.nextCall()
		c.result <- attemptResult{err: fmt.Errorf("entry gateway unreachable (try %d)", attempt)}
		s := h.expectConnecting(StageWaiting, attempt+1)
		if !s.Retrying || s.NextAttempt == nil || !strings.Contains(s.Reason, "unreachable") {
			t.Fatalf("waiting state lacks retry details: %+v", s)
		}
		d := h.nextTimer()
		if !s.NextAttempt.Equal(h.clock.Now().Add(d)) {
			t.Fatalf("next attempt %v, want now+%v", s.NextAttempt, d)
		}
		waits = append(waits, d)
		h.noState() // nothing happens before the back-off has passed
		h.clock.Advance(d - time.Millisecond)
		h.noState()
		h.clock.Advance(time.Millisecond)
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}; !slices.Equal(waits, want) {
		t.Fatalf("back-off %v, want %v", waits, want)
	}
	// The fifth attempt shows the previous failure until it makes progress.
	h.connectOK(5, "exit-ch-1")
	// After a success the schedule starts over.
	if h.backoffs[len(h.backoffs)-1] != 4 {
		t.Fatalf("backoff calls %v", h.backoffs)
	}
}

func TestDefaultBackoff(t *testing.T) {
	for failed, base := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 5: 16 * time.Second, 6: 30 * time.Second, 50: 30 * time.Second} {
		for range 20 {
			d := DefaultBackoff(failed)
			if d < base*8/10 || d > base*12/10 {
				t.Fatalf("DefaultBackoff(%d) = %v, want %v ±20%%", failed, d, base)
			}
		}
	}
}

func TestPermanentErrorStopsRetrying(t *testing.T) {
	h := newHarness(t, false)
	h.m.Connect(context.Background())
	h.expectConnecting(StageStarting, 1)
	h.nextCall().result <- attemptResult{err: Permanent(api.CodeNoDirectory, errors.New("no directory URL is configured"))}
	s := h.expect(api.Error)
	if s.ErrorCode != api.CodeNoDirectory || s.Retrying || !strings.Contains(s.Reason, "directory") {
		t.Fatalf("error state %+v", s)
	}
	if len(h.clock.added) != 0 {
		t.Fatal("a retry was scheduled after a permanent error")
	}
	// The user fixes it and connects again.
	h.m.Connect(context.Background())
	h.connectOK(1, "exit-ch-1")
	// From Error, disconnect goes straight to Disconnected.
	h.m.Disconnect(context.Background())
	h.expect(api.Disconnecting)
	h.expect(api.Disconnected)
}

func TestDisconnectWhileConnecting(t *testing.T) {
	h := newHarness(t, false)
	h.m.Connect(context.Background())
	h.expectConnecting(StageStarting, 1)
	c := h.nextCall()
	h.m.Disconnect(context.Background())
	h.expect(api.Disconnecting)
	select {
	case <-c.ctx.Done():
	case <-time.After(wait):
		t.Fatal("attempt not cancelled")
	}
	h.expect(api.Disconnected)
	if h.sys.isUp() {
		t.Fatal("system left up")
	}
}

func TestDisconnectWhileConnectSucceeds(t *testing.T) {
	// The attempt finishes with a tunnel just as the user disconnects: the
	// tunnel must still be closed.
	h := newHarness(t, false)
	h.m.Connect(context.Background())
	h.expectConnecting(StageStarting, 1)
	c := h.nextCall()
	tun := h.tunnel("exit-ch-1")
	c.result <- attemptResult{tunnel: tun}
	h.m.Disconnect(context.Background())
	for s := range h.states { // it may or may not reach Connected first
		if s.Kind == api.Disconnected {
			break
		}
	}
	if tun.closes() != 1 || h.sys.isUp() {
		t.Fatalf("tunnel closed %d times, system up %v", tun.closes(), h.sys.isUp())
	}
}

func TestDisconnectWhileWaitingToRetry(t *testing.T) {
	h := newHarness(t, false)
	h.m.Connect(context.Background())
	h.expectConnecting(StageStarting, 1)
	h.nextCall().result <- attemptResult{err: errors.New("timeout")}
	h.expectConnecting(StageWaiting, 2)
	d := h.nextTimer()
	h.m.Disconnect(context.Background())
	h.expect(api.Disconnecting)
	h.expect(api.Disconnected)
	h.clock.Advance(d)
	h.noState()
	select {
	case <-h.conn.calls:
		t.Fatal("retried after disconnect")
	default:
	}
}

func TestConnectWhileWaitingRetriesNow(t *testing.T) {
	h := newHarness(t, false)
	h.m.Connect(context.Background())
	h.expectConnecting(StageStarting, 1)
	h.nextCall().result <- attemptResult{err: errors.New("timeout")}
	h.expectConnecting(StageWaiting, 2)
	h.nextTimer()
	h.m.Connect(context.Background())
	h.connectOK(2, "exit-ch-1")
}

func TestSystemUpFailureClosesTunnelAndRetries(t *testing.T) {
	h := newHarness(t, false)
	h.sys.upErr = errors.New("netlink: operation not permitted")
	h.m.Connect(context.Background())
	h.expectConnecting(StageStarting, 1)
	tun := h.tunnel("exit-ch-1")
	h.nextCall().result <- attemptResult{tunnel: tun}
	h.expectConnecting(StageSystem, 1)
	s := h.expectConnecting(StageWaiting, 2)
	if !strings.Contains(s.Reason, "operation not permitted") {
		t.Fatalf("reason %q", s.Reason)
	}
	if tun.closes() != 1 {
		t.Fatal("tunnel not closed after the system failed")
	}
}

func TestTunnelLossReconnects(t *testing.T) {
	h := newHarness(t, false)
	h.m.Connect(context.Background())
	tun := h.connectOK(1, "exit-ch-1")
	h.clock.Advance(healthInterval)
	if tr := <-h.traffic; tr == nil || tr.RxBytes != 200 {
		t.Fatalf("traffic %+v", tr)
	}
	h.m.State(context.Background()) // a round trip: the next check is scheduled
	tun.mu.Lock()
	tun.broken = errors.New("no handshake with the exit for 3m30s")
	tun.mu.Unlock()
	h.clock.Advance(healthInterval)
	s := h.expect(api.Disconnecting)
	if s.Then != api.Connecting {
		t.Fatalf("then %s", s.Then)
	}
	s = h.expectConnecting(StageStarting, 1)
	if !strings.Contains(s.Reason, "no handshake") {
		t.Fatalf("reason %q", s.Reason)
	}
	if tun.closes() != 1 {
		t.Fatal("dead tunnel not closed")
	}
	h.finishConnect(1, "exit-ch-2")
}

func TestReconnectOnSettingsChange(t *testing.T) {
	h := newHarness(t, false)
	h.m.Connect(context.Background())
	h.connectOK(1, "exit-ch-1")
	h.setMu.Lock()
	h.settings.Exit = "exit-ch-2"
	h.setMu.Unlock()
	h.m.Reconnect(context.Background())
	h.expect(api.Disconnecting)
	h.expectConnecting(StageStarting, 1)
	c := h.nextCall()
	if c.settings.Exit != "exit-ch-2" {
		t.Fatalf("attempt used exit %q", c.settings.Exit)
	}
	c.result <- attemptResult{tunnel: h.tunnel("exit-ch-2")}
	h.expectConnecting(StageSystem, 1)
	h.expect(api.Connected)
	// Reconnect while disconnected does nothing.
	h.m.Disconnect(context.Background())
	h.expect(api.Disconnecting)
	h.expect(api.Disconnected)
	h.m.Reconnect(context.Background())
	h.noState()
}

func TestConnectWhileDisconnecting(t *testing.T) {
	h := newHarness(t, false)
	h.m.Connect(context.Background())
	h.connectOK(1, "exit-ch-1")
	h.sys.mu.Lock() // hold the teardown inside System.Down
	h.m.Disconnect(context.Background())
	h.expect(api.Disconnecting)
	h.m.Connect(context.Background())
	s := h.expect(api.Disconnecting)
	if s.Then != api.Connecting {
		t.Fatalf("then %s", s.Then)
	}
	h.sys.mu.Unlock()
	h.connectOK(1, "exit-ch-1")
}

func TestOfflineAndBack(t *testing.T) {
	h := newHarness(t, false)
	h.m.Connect(context.Background())
	tun := h.connectOK(1, "exit-ch-1")
	h.m.SetOnline(context.Background(), false)
	h.expect(api.Disconnecting)
	s := h.expect(api.Offline)
	if s.Reason == "" {
		t.Fatal("offline without a reason")
	}
	if tun.closes() != 1 || h.sys.isUp() {
		t.Fatal("tunnel kept while offline")
	}
	h.m.SetOnline(context.Background(), true)
	h.connectOK(1, "exit-ch-1")

	// Connecting while offline waits for the network.
	h.m.Disconnect(context.Background())
	h.expect(api.Disconnecting)
	h.expect(api.Disconnected)
	h.m.SetOnline(context.Background(), false)
	h.noState()
	h.m.Connect(context.Background())
	h.expect(api.Offline)
	h.m.Disconnect(context.Background())
	h.expect(api.Disconnected)
	h.m.SetOnline(context.Background(), true)
	h.noState()
}

func TestCrashRecoveryFromPersistedTarget(t *testing.T) {
	h := newHarness(t, true) // a previous daemon died while connected
	h.connectOK(1, "exit-ch-1")
	// A clean stop (service stop, reboot) tears down but keeps the target.
	h.stop()
	var last api.State
	for len(h.states) > 0 {
		last = <-h.states
	}
	if last.Kind != api.Disconnected || h.sys.isUp() {
		t.Fatalf("after stop: %+v, system up %v", last, h.sys.isUp())
	}
	if !h.target.connect {
		t.Fatal("stop forgot the target")
	}
	if _, err := h.m.Connect(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("call after stop: %v", err)
	}
}

func TestStopWhileConnecting(t *testing.T) {
	h := newHarness(t, false)
	h.m.Connect(context.Background())
	h.expectConnecting(StageStarting, 1)
	c := h.nextCall()
	h.stop()
	if c.ctx.Err() == nil {
		t.Fatal("attempt still running after stop")
	}
}

func TestFileTarget(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	f := FileTarget{Path: filepath.Join(dir, "target.json")}
	if c, err := f.Load(); c || err != nil {
		t.Fatalf("missing file: %v %v", c, err)
	}
	if err := f.Save(true); err != nil {
		t.Fatal(err)
	}
	if c, err := f.Load(); !c || err != nil {
		t.Fatalf("after save: %v %v", c, err)
	}
	st, _ := os.Stat(f.Path)
	dst, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o600 || dst.Mode().Perm() != 0o700 {
		t.Fatalf("modes %v %v", st.Mode(), dst.Mode())
	}
	if err := os.WriteFile(f.Path, []byte("{\"connect\": tru"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := f.Load()
	if c || err == nil || !strings.Contains(err.Error(), "moved to") {
		t.Fatalf("corrupt file: %v %v", c, err)
	}
	m, _ := filepath.Glob(f.Path + ".corrupt-*")
	if len(m) != 1 {
		t.Fatalf("corrupt file not kept aside: %v", m)
	}
	if b, _ := os.ReadFile(m[0]); string(b) != "{\"connect\": tru" {
		t.Fatalf("kept file changed: %q", b)
	}
}

func TestNetworkBackWhileTearingDown(t *testing.T) {
	h := newHarness(t, false)
	h.m.Connect(context.Background())
	h.connectOK(1, "exit-ch-1")
	h.sys.mu.Lock() // hold the teardown inside System.Down
	h.m.SetOnline(context.Background(), false)
	h.expect(api.Disconnecting)
	h.m.SetOnline(context.Background(), true) // a new address arrives meanwhile
	h.sys.mu.Unlock()
	h.connectOK(1, "exit-ch-1")
}

// mixnetTunnel is a fakeTunnel with mixnet statistics that count up as
// the test sends packets.
type mixnetTunnel struct {
	*fakeTunnel
	real atomic.Uint64
}

func (t *mixnetTunnel) MixnetStats() api.MixnetStats {
	return api.MixnetStats{Profile: api.ProfileMax, RealPackets: t.real.Load(), CoverPackets: 10}
}

// TestMixnetStats: a tunnel with mixnet statistics has them published when
// it is connected and at every check, and cleared when it goes down; a
// tunnel without (fast mode) never has any.
func TestMixnetStats(t *testing.T) {
	h := newHarness(t, false)
	h.m.Connect(context.Background())
	h.expectConnecting(StageStarting, 1)
	c := h.nextCall()
	tun := &mixnetTunnel{fakeTunnel: h.tunnel("exit-ch-1")}
	tun.info.Mode = api.ModeMixnet
	tun.real.Store(3)
	c.result <- attemptResult{tunnel: tun}
	h.expectConnecting(StageSystem, 1)
	h.expect(api.Connected)
	nextMixnet := func() *api.MixnetStats {
		t.Helper()
		select {
		case m := <-h.mixnet:
			return m
		case <-time.After(wait):
			t.Fatal("no mixnet statistics published")
		}
		return nil
	}
	if m := nextMixnet(); m == nil || m.RealPackets != 3 || m.Profile != api.ProfileMax {
		t.Fatalf("mixnet statistics when connected: %+v", m)
	}
	tun.real.Store(5) // traffic flows
	h.clock.Advance(healthInterval)
	if m := nextMixnet(); m == nil || m.RealPackets != 5 {
		t.Fatalf("mixnet statistics at the check: %+v", m)
	}
	h.m.Disconnect(context.Background())
	h.expect(api.Disconnecting)
	if m := nextMixnet(); m != nil {
		t.Fatalf("mixnet statistics after the tunnel went down: %+v", m)
	}
	h.expect(api.Disconnected)

	// Fast mode: traffic, but no mixnet statistics (only the clearing
	// when it goes down).
	h.m.Connect(context.Background())
	h.connectOK(1, "exit-ch-1")
	h.clock.Advance(healthInterval)
	if tr := <-h.traffic; tr == nil {
		t.Fatal("no traffic")
	}
	h.m.Disconnect(context.Background())
	h.expect(api.Disconnecting)
	// The channel is in order: anything published while connected
	// would come before the clearing.
	if m := nextMixnet(); m != nil {
		t.Fatalf("fast mode published mixnet statistics %+v", m)
	}
	h.expect(api.Disconnected)
}
