// Package tunnelstate is the daemon's tunnel state machine, in the shape of
// Mullvad's: one goroutine owns the tunnel and moves it between
// Disconnected, Connecting{stage, attempt}, Connected, Disconnecting{then},
// Error{reason} and Offline. Everything it drives sits behind small
// interfaces (Connector, Tunnel, System, Clock, TargetStore), so tests run
// every transition with fakes and a fake clock.
//
// The user's target (connected or not) is persisted before it is acted on,
// so a daemon that crashed or a machine that rebooted reconnects by itself.
// Recoverable failures stay in Connecting and retry with exponential
// back-off; permanent ones (no directory configured, no gateway matching the
// choice, a mode this build cannot run) go to Error until the user acts.
package tunnelstate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// Info describes an established tunnel: what the system needs to route
// through it and what the user sees.
type Info struct {
	Mode        string
	Entry, Exit api.Gateway
	// Interface is the TUN device, MTU its MTU.
	Interface string
	MTU       int
	// Addresses are the client's addresses inside the tunnel.
	Addresses []netip.Prefix
	// DNS are the resolvers to use through the tunnel.
	DNS []netip.Addr
	// IPv6 is false when IPv6 must be blocked rather than tunneled.
	IPv6 bool
	// Endpoints are the outer endpoints the tunnel's own sockets use (the
	// entry gateway's WireGuard and registration endpoints): the kill
	// switch lets the daemon reach them while it blocks everything else.
	Endpoints []Endpoint
}

// Endpoint is a destination the daemon's own (marked) sockets may reach
// while the kill switch blocks.
type Endpoint struct {
	Proto string // "tcp" or "udp"
	Addr  netip.AddrPort
}

// Protection is what the kill switch must let through; the zero value lets
// everything through.
type Protection struct {
	Block bool
	// Endpoints the daemon's marked sockets may reach.
	Endpoints []Endpoint
	// Tunnel is the interface whose traffic is allowed, DNS the only
	// resolvers DNS may go to (through it).
	Tunnel string
	DNS    []netip.Addr
	// AllowLAN lets the local network through (DNS excepted).
	AllowLAN bool
}

// Firewall enforces a Protection: the kill switch.
type Firewall interface {
	// Protect replaces the rules with p, atomically.
	Protect(ctx context.Context, p Protection) error
}

// Allow lets the daemon's sockets reach more endpoints during an attempt
// (the directory, then the chosen entry gateway). It returns once the
// firewall lets them through.
type Allow func(ctx context.Context, eps ...Endpoint) error

// Tunnel is an established tunnel, owned by the machine once Connect returns it.
type Tunnel interface {
	Info() Info
	Traffic() api.Traffic
	// Check reports why the tunnel is no longer usable (for instance no
	// handshake for too long), or nil while it is healthy. It is called about
	// once a second while connected and must not block.
	Check(now time.Time) error
	// Close tears the tunnel down. It is called exactly once.
	Close() error
}

// MixnetStatser is a Tunnel with mixnet statistics (mixnet mode). The
// machine publishes them with the traffic, through Config.OnMixnet. Like
// Traffic, MixnetStats must not block.
type MixnetStatser interface {
	MixnetStats() api.MixnetStats
}

// Progress reports a connection stage; entry and exit are set once chosen.
type Progress func(stage string, entry, exit *api.Gateway)

// Connector builds tunnels.
type Connector interface {
	// Connect builds a tunnel for the settings, reporting stages through
	// progress. Before its sockets reach an endpoint it calls allow with
	// it, so that the kill switch lets it through. It returns promptly when
	// ctx is cancelled. An error wrapped with Permanent is not retried.
	Connect(ctx context.Context, s api.Settings, progress Progress, allow Allow) (Tunnel, error)
}

// System points the machine's traffic and DNS at a tunnel and back.
type System interface {
	// Up routes all traffic and DNS through the tunnel. On error it has
	// undone what it did.
	Up(ctx context.Context, info Info) error
	// Down undoes Up; it is idempotent.
	Down(ctx context.Context) error
}

// TargetStore persists what the user asked for.
type TargetStore interface {
	Load() (connect bool, err error)
	Save(connect bool) error
}

// Clock is time, injectable for tests.
type Clock interface {
	Now() time.Time
	// After fires once after d, like time.After; stop releases it early.
	After(d time.Duration) (c <-chan time.Time, stop func())
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now is time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

// After is a stoppable time.After.
func (SystemClock) After(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// PermanentError is a failure that retrying will not fix.
type PermanentError struct {
	Code string // an api.Code*
	Err  error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as not worth retrying, with a stable code.
func Permanent(code string, err error) error {
	return &PermanentError{Code: code, Err: err}
}

// DefaultBackoff waits 1 s after the first failed attempt, doubling up to
// 30 s, with ±20% jitter so that many clients of a restarted gateway do not
// come back in lockstep.
func DefaultBackoff(failed int) time.Duration {
	d := time.Second << min(failed-1, 5)
	d = min(d, 30*time.Second)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Stage names the machine itself reports, besides the connector's.
const (
	StageStarting = "starting"
	StageSystem   = "routing traffic and DNS through the tunnel"
	StageWaiting  = "waiting to retry"
)

// Config wires a Machine.
type Config struct {
	Connector Connector
	System    System
	Target    TargetStore
	// Settings returns the current settings; called at each attempt.
	Settings func() api.Settings
	Clock    Clock
	// Backoff gives the wait after the failed-th consecutive failure.
	Backoff func(failed int) time.Duration
	// HealthInterval is how often a connected tunnel is checked and its
	// traffic published; default 1 s.
	HealthInterval time.Duration
	// OnState is called from the machine's goroutine with every new state;
	// it must not block or call back into the machine.
	OnState func(api.State)
	// OnTraffic is called about once a second while connected, nil after.
	OnTraffic func(*api.Traffic)
	// OnMixnet is called with a MixnetStatser tunnel's statistics when it
	// is connected and then about once a second, nil after; never for
	// other tunnels. Like the other callbacks it must not block; dropping
	// unchanged values is the receiver's job (control.Hub does).
	OnMixnet func(*api.MixnetStats)
	// Firewall is the kill switch; nil means none. It blocks in every
	// state but a user's Disconnected when Settings().KillSwitch is on,
	// and in that one too with Settings().Lockdown.
	Firewall Firewall
	Logger   *slog.Logger
}

// Machine is the tunnel state machine. Its methods are safe for concurrent
// use; Run owns the state.
type Machine struct {
	cfg  Config
	cmds chan command

	fwMu sync.Mutex // serializes firewall changes from the loop and attempts
	fw   fwState
}

// fwState is what the firewall's rules derive from.
type fwState struct {
	kind    api.StateKind
	stopped bool // Run returned: block if the target is connected
	target  bool
	att     *attempt   // the running attempt, whose endpoints are allowed
	eps     []Endpoint // allowed by the attempt so far
	info    *Info      // the tunnel, once up
	applied *Protection
}

type commandKind int

const (
	cmdConnect commandKind = iota
	cmdDisconnect
	cmdReconnect
	cmdOnline
	cmdOffline
	cmdState
)

type command struct {
	kind  commandKind
	reply chan reply
}

type reply struct {
	state api.State
	err   error
}

// New returns a machine; call Run to start it.
func New(cfg Config) *Machine {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Backoff == nil {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = time.Second
	}
	if cfg.OnState == nil {
		cfg.OnState = func(api.State) {}
	}
	if cfg.OnTraffic == nil {
		cfg.OnTraffic = func(*api.Traffic) {}
	}
	if cfg.OnMixnet == nil {
		cfg.OnMixnet = func(*api.MixnetStats) {}
	}
	return &Machine{cfg: cfg, cmds: make(chan command), fw: fwState{kind: api.Disconnected}}
}

// protection derives the kill switch's rules from the state and settings.
func protection(fw fwState, s api.Settings) Protection {
	// Disconnected with the target "connected" happens only at start,
	// just before the machine reconnects, and after Run returned: block
	// then too, so a restarted daemon never opens a gap.
	block := s.Lockdown || (s.KillSwitch && (fw.target || (!fw.stopped && fw.kind != api.Disconnected)))
	if !block {
		return Protection{}
	}
	p := Protection{Block: true, AllowLAN: s.AllowLAN}
	if fw.stopped {
		return p
	}
	p.Endpoints = append(p.Endpoints, fw.eps...)
	if fw.info != nil {
		p.Endpoints = append(p.Endpoints, fw.info.Endpoints...)
		p.Tunnel = fw.info.Interface
		p.DNS = fw.info.DNS
	}
	return p
}

// applyFirewallLocked enforces the current fwState; m.fwMu is held.
func (m *Machine) applyFirewallLocked(ctx context.Context) error {
	if m.cfg.Firewall == nil {
		return nil
	}
	p := protection(m.fw, m.cfg.Settings())
	if m.fw.applied != nil && reflect.DeepEqual(*m.fw.applied, p) {
		return nil
	}
	if err := m.cfg.Firewall.Protect(ctx, p); err != nil {
		m.fw.applied = nil
		return fmt.Errorf("kill switch: %w", err)
	}
	m.fw.applied = &p
	m.cfg.Logger.Debug("kill switch", "block", p.Block, "endpoints", len(p.Endpoints), "tunnel", p.Tunnel, "allow_lan", p.AllowLAN)
	return nil
}

// RefreshFirewall re-applies the kill switch, for instance after the user
// changed its settings.
func (m *Machine) RefreshFirewall(ctx context.Context) error {
	m.fwMu.Lock()
	defer m.fwMu.Unlock()
	return m.applyFirewallLocked(ctx)
}

// allowFor returns the Allow of an attempt: endpoints are added only while
// the attempt is the current one.
func (m *Machine) allowFor(a *attempt) Allow {
	return func(ctx context.Context, eps ...Endpoint) error {
		m.fwMu.Lock()
		defer m.fwMu.Unlock()
		if m.fw.att != a {
			return fmt.Errorf("kill switch: attempt no longer current")
		}
		m.fw.eps = append(m.fw.eps, eps...)
		return m.applyFirewallLocked(ctx)
	}
}

// tunnelUp lets an attempt's tunnel through before routes point at it.
func (m *Machine) tunnelUp(ctx context.Context, a *attempt, info Info) error {
	m.fwMu.Lock()
	defer m.fwMu.Unlock()
	if m.fw.att != a {
		return fmt.Errorf("kill switch: attempt no longer current")
	}
	m.fw.info = &info
	return m.applyFirewallLocked(ctx)
}

// ErrStopped is returned by calls made after Run has returned.
var ErrStopped = errors.New("tunnel state machine stopped")

func (m *Machine) call(ctx context.Context, k commandKind) (api.State, error) {
	c := command{kind: k, reply: make(chan reply, 1)}
	select {
	case m.cmds <- c:
	case <-ctx.Done():
		return api.State{}, ctx.Err()
	}
	select {
	case r := <-c.reply:
		return r.state, r.err
	case <-ctx.Done():
		return api.State{}, ctx.Err()
	}
}

// Connect persists the target "connected" and starts connecting unless a
// tunnel is up or coming up. It returns the state right after.
func (m *Machine) Connect(ctx context.Context) (api.State, error) { return m.call(ctx, cmdConnect) }

// Disconnect persists the target "disconnected" and tears the tunnel down.
func (m *Machine) Disconnect(ctx context.Context) (api.State, error) {
	return m.call(ctx, cmdDisconnect)
}

// Reconnect rebuilds the tunnel if it is up or coming up, for instance
// after the user chose another gateway or mode.
func (m *Machine) Reconnect(ctx context.Context) (api.State, error) { return m.call(ctx, cmdReconnect) }

// SetOnline tells the machine whether the host has a usable network.
func (m *Machine) SetOnline(ctx context.Context, online bool) error {
	k := cmdOffline
	if online {
		k = cmdOnline
	}
	_, err := m.call(ctx, k)
	return err
}

// State returns the current state.
func (m *Machine) State(ctx context.Context) (api.State, error) { return m.call(ctx, cmdState) }

// attempt is one connection attempt running in its own goroutine.
type attempt struct {
	cancel context.CancelFunc
	done   chan attemptResult
}

type attemptResult struct {
	tunnel Tunnel
	err    error
}

type progressMsg struct {
	att         *attempt
	stage       string
	entry, exit *api.Gateway
}

// run is the loop's state, touched only by Run's goroutine.
type run struct {
	*Machine
	ctx      context.Context
	state    api.State
	target   bool
	online   bool
	failures int // consecutive failed attempts
	attempt  *attempt
	tunnel   Tunnel
	// tearing is non-nil while a teardown runs; it receives when done.
	tearing  chan struct{}
	retry    <-chan time.Time
	stopWait func()
	health   <-chan time.Time
	stopTick func()
	progress chan progressMsg
	reason   string // why the last attempt failed or the tunnel went down
}

// Run owns the tunnel until ctx is done. It first reads the persisted
// target and, if it is "connected", connects. When ctx ends it tears the
// tunnel down but keeps the persisted target, so the next start reconnects.
func (m *Machine) Run(ctx context.Context) error {
	r := &run{Machine: m, ctx: ctx, online: true, state: api.State{Kind: api.Disconnected},
		progress: make(chan progressMsg, 16)}
	target, err := m.cfg.Target.Load()
	if err != nil {
		m.cfg.Logger.Warn("reading the persisted target; staying disconnected", "err", err)
	}
	// Block at once if the user wants to be connected: a daemon that
	// crashed comes back blocking before it reconnects.
	m.fwMu.Lock()
	m.fw.target = target
	m.fwMu.Unlock()
	r.publish(r.state)
	if target {
		m.cfg.Logger.Info("the user wanted to be connected before the daemon stopped: reconnecting")
		r.target = true
		r.connect(1)
	}
	defer r.shutdown()
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-m.cmds:
			r.handle(c)
		case p := <-r.progress:
			r.onProgress(p)
		case res := <-r.attemptDone():
			r.drainProgress() // the attempt's last stages come before its result
			r.attemptFinished(res)
		case <-r.tearing:
			r.tearing = nil
			r.afterTeardown()
		case <-r.retry:
			r.retry, r.stopWait = nil, nil
			if r.target && r.online && r.state.Kind == api.Connecting {
				r.connect(r.failures + 1)
			}
		case now := <-r.health:
			r.health, r.stopTick = nil, nil
			r.checkHealth(now)
		}
	}
}

func (r *run) onProgress(p progressMsg) {
	if p.att != r.attempt || r.state.Kind != api.Connecting {
		return // a stale attempt's
	}
	s := r.state
	s.Stage = p.stage
	if p.entry != nil {
		s.Entry = p.entry
	}
	if p.exit != nil {
		s.Exit = p.exit
	}
	s.Reason, s.NextAttempt, s.Retrying = "", nil, false
	r.publish(s)
}

func (r *run) drainProgress() {
	for {
		select {
		case p := <-r.progress:
			r.onProgress(p)
		default:
			return
		}
	}
}

func (r *run) attemptDone() <-chan attemptResult {
	if r.attempt == nil {
		return nil
	}
	return r.attempt.done
}

func (r *run) publish(s api.State) {
	r.state = s
	r.updateFirewall()
	r.cfg.Logger.Info("tunnel state", "state", string(s.Kind), "stage", s.Stage, "attempt", s.Attempt, "reason", s.Reason)
	r.cfg.OnState(s)
}

func (r *run) persist(connect bool) error {
	if err := r.cfg.Target.Save(connect); err != nil {
		return fmt.Errorf("persist the target state: %w", err)
	}
	r.target = connect
	r.fwMu.Lock()
	r.fw.target = connect
	r.fwMu.Unlock()
	return nil
}

// updateFirewall follows the published state. Disconnecting keeps the
// rules of the state before it until the teardown is done.
func (r *run) updateFirewall() {
	r.fwMu.Lock()
	defer r.fwMu.Unlock()
	if r.state.Kind == api.Disconnecting {
		return
	}
	r.fw.kind = r.state.Kind
	if r.fw.att != r.attempt {
		r.fw.att, r.fw.eps, r.fw.info = r.attempt, nil, nil
	}
	switch r.state.Kind {
	case api.Connected:
		if r.tunnel != nil {
			info := r.tunnel.Info()
			r.fw.info = &info
		}
	case api.Connecting:
	default:
		r.fw.eps, r.fw.info = nil, nil
	}
	if err := r.applyFirewallLocked(r.ctx); err != nil {
		r.cfg.Logger.Error("kill switch", "state", string(r.state.Kind), "err", err)
	}
}

func (r *run) handle(c command) {
	var err error
	switch c.kind {
	case cmdState:
	case cmdConnect:
		if err = r.persist(true); err != nil {
			break
		}
		switch r.state.Kind {
		case api.Disconnected, api.Error:
			r.failures = 0
			r.reason = ""
			r.connect(1)
		case api.Connecting:
			if r.attempt == nil && r.tearing == nil { // waiting to retry: try now
				r.stopRetry()
				r.connect(r.failures + 1)
			}
		case api.Disconnecting:
			s := r.state
			s.Then = api.Connecting
			r.publish(s)
		}
	case cmdDisconnect:
		if err = r.persist(false); err != nil {
			break
		}
		r.reason = ""
		r.stopRetry()
		switch r.state.Kind {
		case api.Connecting, api.Connected:
			r.teardown(api.Disconnected, "")
		case api.Disconnecting:
			s := r.state
			s.Then = api.Disconnected
			r.publish(s)
		case api.Error, api.Offline:
			r.publish(api.State{Kind: api.Disconnected})
		}
	case cmdReconnect:
		if r.state.Kind == api.Connected || (r.state.Kind == api.Connecting && r.tearing == nil) {
			r.stopRetry()
			r.failures = 0
			r.teardown(api.Connecting, "")
		} else if r.state.Kind == api.Error && r.target {
			r.failures = 0
			r.connect(1)
		}
	case cmdOffline:
		if !r.online {
			break
		}
		r.online = false
		r.stopRetry()
		switch r.state.Kind {
		case api.Connecting, api.Connected:
			r.teardown(api.Offline, "the computer has no network connection")
		case api.Error:
			if r.target {
				r.publish(api.State{Kind: api.Offline, Reason: "the computer has no network connection"})
			}
		case api.Disconnecting:
			// afterTeardown sees !online.
		}
	case cmdOnline:
		if r.online {
			break
		}
		r.online = true
		if r.state.Kind == api.Offline {
			if r.target {
				r.failures = 0
				r.connect(1)
			} else {
				r.publish(api.State{Kind: api.Disconnected})
			}
		}
	}
	c.reply <- reply{state: r.state, err: err}
}

func (r *run) stopRetry() {
	if r.stopWait != nil {
		r.stopWait()
	}
	r.retry, r.stopWait = nil, nil
}

// connect starts attempt n.
func (r *run) connect(n int) {
	if !r.online {
		r.publish(api.State{Kind: api.Offline, Reason: "the computer has no network connection"})
		return
	}
	settings := r.cfg.Settings()
	ctx, cancel := context.WithCancel(r.ctx)
	a := &attempt{cancel: cancel, done: make(chan attemptResult, 1)}
	r.attempt = a
	s := api.State{Kind: api.Connecting, Mode: settings.Mode, Attempt: n, Stage: StageStarting}
	s.Reason = r.reason // why the previous attempt or tunnel failed, if one did
	r.publish(s)
	progress := func(stage string, entry, exit *api.Gateway) {
		select {
		case r.progress <- progressMsg{att: a, stage: stage, entry: entry, exit: exit}:
		case <-ctx.Done():
		}
	}
	go func() {
		defer cancel()
		t, err := r.cfg.Connector.Connect(ctx, settings, progress, r.allowFor(a))
		if err == nil {
			progress(StageSystem, nil, nil)
			if err = r.tunnelUp(ctx, a, t.Info()); err != nil {
				t.Close()
				t = nil
			} else if err = r.cfg.System.Up(ctx, t.Info()); err != nil {
				err = fmt.Errorf("route traffic through the tunnel: %w", err)
				t.Close()
				t = nil
			}
		} else if t != nil {
			t.Close()
			t = nil
		}
		a.done <- attemptResult{tunnel: t, err: err}
	}()
}

func (r *run) attemptFinished(res attemptResult) {
	r.attempt = nil
	if r.state.Kind == api.Disconnecting {
		// Torn down while connecting: the teardown waits for this result.
		if res.tunnel != nil {
			r.tunnel = res.tunnel
		}
		r.startTeardownWork()
		return
	}
	if res.err != nil {
		r.failures++
		var perm *PermanentError
		if errors.As(res.err, &perm) {
			r.cfg.Logger.Warn("connecting failed; not retrying", "err", res.err)
			r.publish(api.State{Kind: api.Error, Mode: r.state.Mode, Reason: res.err.Error(), ErrorCode: perm.Code, Entry: r.state.Entry, Exit: r.state.Exit})
			return
		}
		wait := r.cfg.Backoff(r.failures)
		r.cfg.Logger.Warn("connecting failed; will retry", "attempt", r.state.Attempt, "retry_in", wait, "err", res.err)
		r.reason = res.err.Error()
		next := r.cfg.Clock.Now().Add(wait)
		s := api.State{Kind: api.Connecting, Mode: r.state.Mode, Attempt: r.state.Attempt + 1, Stage: StageWaiting,
			Reason: r.reason, Retrying: true, NextAttempt: &next}
		r.publish(s)
		r.retry, r.stopWait = r.cfg.Clock.After(wait)
		return
	}
	r.tunnel = res.tunnel
	r.failures = 0
	r.reason = ""
	info := res.tunnel.Info()
	since := r.cfg.Clock.Now()
	entry, exit := info.Entry, info.Exit
	addrs := make([]netip.Addr, len(info.Addresses))
	for i, p := range info.Addresses {
		addrs[i] = p.Addr()
	}
	r.publish(api.State{Kind: api.Connected, Mode: info.Mode, Since: &since, Entry: &entry, Exit: &exit,
		Addresses: addrs, DNS: info.DNS, Interface: info.Interface})
	// At once, so that a status read right after connecting shows the
	// mode's statistics (traffic waits for the first check).
	r.publishMixnet()
	r.scheduleHealth()
}

// publishMixnet publishes the tunnel's mixnet statistics, if it has any.
func (r *run) publishMixnet() {
	if m, ok := r.tunnel.(MixnetStatser); ok {
		st := m.MixnetStats()
		r.cfg.OnMixnet(&st)
	}
}

func (r *run) scheduleHealth() {
	r.health, r.stopTick = r.cfg.Clock.After(r.cfg.HealthInterval)
}

func (r *run) checkHealth(now time.Time) {
	if r.state.Kind != api.Connected || r.tunnel == nil {
		return
	}
	tr := r.tunnel.Traffic()
	r.cfg.OnTraffic(&tr)
	r.publishMixnet()
	if err := r.tunnel.Check(now); err != nil {
		r.cfg.Logger.Warn("tunnel lost; reconnecting", "err", err)
		r.reason = "the tunnel stopped working: " + err.Error()
		r.teardown(api.Connecting, r.reason)
		return
	}
	r.scheduleHealth()
}

// teardown moves to Disconnecting{then} and takes the tunnel down: at once
// if no attempt runs, else once the cancelled attempt returns.
func (r *run) teardown(then api.StateKind, reason string) {
	if r.stopTick != nil {
		r.stopTick()
	}
	r.health, r.stopTick = nil, nil
	if reason != "" {
		r.reason = reason
	}
	s := api.State{Kind: api.Disconnecting, Mode: r.state.Mode, Then: then, Entry: r.state.Entry, Exit: r.state.Exit}
	r.publish(s)
	r.cfg.OnTraffic(nil)
	r.cfg.OnMixnet(nil)
	if r.attempt != nil {
		r.attempt.cancel()
		return // attemptFinished continues
	}
	r.startTeardownWork()
}

func (r *run) startTeardownWork() {
	t := r.tunnel
	r.tunnel = nil
	done := make(chan struct{})
	r.tearing = done
	go func() {
		defer close(done)
		r.teardownNow(t)
	}()
}

// teardownNow undoes the system changes, then closes the tunnel: in that
// order, so traffic never goes to a dead TUN's routes longer than needed.
func (r *run) teardownNow(t Tunnel) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 30*time.Second)
	defer cancel()
	if err := r.cfg.System.Down(ctx); err != nil {
		r.cfg.Logger.Error("restoring routes and DNS", "err", err)
	}
	if t != nil {
		if err := t.Close(); err != nil {
			r.cfg.Logger.Warn("closing the tunnel", "err", err)
		}
	}
}

func (r *run) afterTeardown() {
	// The network may have come back (or gone) while tearing down: what
	// follows depends on the network now, not when the teardown began.
	then := r.state.Then
	switch {
	case r.target && !r.online:
		r.publish(api.State{Kind: api.Offline, Reason: "the computer has no network connection"})
	case r.target && (then == api.Connecting || then == api.Offline):
		r.connect(1)
	default:
		r.publish(api.State{Kind: api.Disconnected})
	}
}

// shutdown runs when Run's context ends: the tunnel goes down, the target
// stays as persisted.
func (r *run) shutdown() {
	r.stopRetry()
	if r.stopTick != nil {
		r.stopTick()
	}
	if r.attempt != nil {
		r.attempt.cancel()
		res := <-r.attempt.done
		if res.tunnel != nil {
			r.tunnel = res.tunnel
		}
	}
	if r.tearing != nil {
		<-r.tearing
	}
	if r.tunnel != nil || r.state.Kind != api.Disconnected {
		r.teardownNow(r.tunnel)
		r.tunnel = nil
	}
	r.cfg.OnTraffic(nil)
	r.cfg.OnMixnet(nil)
	r.fwMu.Lock()
	r.fw.stopped = true // from now on: block if the target is connected
	r.fwMu.Unlock()
	r.publish(api.State{Kind: api.Disconnected})
	// Fail calls that arrive after Run returns.
	go func() {
		for c := range r.cmds {
			c.reply <- reply{state: r.state, err: ErrStopped}
		}
	}()
}

// DefaultBackoffNoJitter is DefaultBackoff's schedule without the jitter.
func DefaultBackoffNoJitter(failed int) time.Duration {
	return min(time.Second<<min(failed-1, 5), 30*time.Second)
}
