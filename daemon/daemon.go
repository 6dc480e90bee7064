package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/control"
	"github.com/nymvpn/nymvpn/daemon/settings"
	"github.com/nymvpn/nymvpn/daemon/tunnelstate"
	"github.com/nymvpn/nymvpn/platform"
	"github.com/nymvpn/nymvpn/version"
)

// Config configures the daemon.
type Config struct {
	// Socket is the control socket's path; empty is api.DefaultSocket().
	Socket string
	// StateDir holds settings, target and the system-change journal.
	StateDir string
	// DirectoryURL, when set, is used if the settings name no directory.
	DirectoryURL string
	// Interface is the TUN's name; empty is DefaultInterface.
	Interface string
	// FwMark marks the daemon's own outer sockets; 0 is platform.DefaultFwMark.
	FwMark uint32
	// Table is the routing table of the tunnel's routes; 0 is platform.DefaultTable.
	Table int
	// DNSBackend chooses systemd-resolved or resolv.conf; empty is auto.
	DNSBackend platform.DNSBackend
	// ResolvConf is resolv.conf's path; empty is /etc/resolv.conf.
	ResolvConf string
	// Group and OperatorUID say who may change state besides root.
	Group       string
	OperatorUID int
	Logger      *slog.Logger
	// Firewall replaces the kill switch's firewall (tests); nil uses the
	// system's.
	Firewall tunnelstate.Firewall
	// Ready, if set, is called once the socket accepts requests.
	Ready func()

	// connector and system, when set, replace the tunnels and the system
	// integration (tests in this package, which cannot make a TUN or
	// routes).
	connector tunnelstate.Connector
	system    tunnelstate.System
}

func platformDir(stateDir string) string { return filepath.Join(stateDir, "platform") }

// DefaultInterface is the TUN's name.
const DefaultInterface = "nymvpn0"

// Run runs the daemon until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	if cfg.StateDir == "" {
		return errors.New("daemon: no state directory")
	}
	if cfg.Socket == "" {
		cfg.Socket = api.DefaultSocket()
	}
	if cfg.Interface == "" {
		cfg.Interface = DefaultInterface
	}
	if cfg.FwMark == 0 {
		cfg.FwMark = platform.DefaultFwMark
	}
	if cfg.Table == 0 {
		cfg.Table = platform.DefaultTable
	}
	if cfg.Group == "" {
		cfg.Group = control.DefaultGroup
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("daemon: state directory: %w", err)
	}
	if err := os.Chmod(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("daemon: state directory: %w", err)
	}

	// Put the machine back as it was if a previous run died with the
	// tunnel up, before anything else touches the network.
	sys, err := platform.New(platform.Options{
		StateDir: platformDir(cfg.StateDir), ResolvConf: cfg.ResolvConf,
		DNSBackend: cfg.DNSBackend, Logger: log.With("part", "platform"),
	})
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	defer sys.Close()
	if err := sys.Recover(ctx); err != nil {
		if errors.Is(err, platform.ErrCorruptJournal) {
			log.Error("the journal of system changes was corrupt; undid what could be found", "err", err)
		} else {
			log.Error("undoing the system changes of the previous run failed; will retry before connecting", "err", err)
		}
	}

	d := &daemon{cfg: cfg, log: log, settingsPath: filepath.Join(cfg.StateDir, "settings.json")}
	s, err := settings.Load(d.settingsPath)
	var corrupt *settings.CorruptError
	if errors.As(err, &corrupt) {
		log.Error("the settings file was corrupt: it was moved aside and defaults are in use", "err", err)
		d.notices = append(d.notices, err.Error())
	} else if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	d.settings = s
	target := tunnelstate.FileTarget{Path: filepath.Join(cfg.StateDir, "target.json")}
	wantConnected, terr := target.Load()
	if terr != nil {
		log.Error("the target file was corrupt; staying disconnected", "err", terr)
		d.notices = append(d.notices, terr.Error())
	}
	targetName := "disconnected"
	if wantConnected {
		targetName = "connected"
	}
	fw := cfg.Firewall
	if fw == nil {
		pfw, err := platform.NewFirewall(log.With("part", "firewall"))
		if err != nil {
			log.Error("the kill switch is unavailable", "err", err)
			d.notices = append(d.notices, "the kill switch is unavailable: "+err.Error())
		} else {
			fw = &killSwitch{fw: pfw, mark: cfg.FwMark}
		}
	}
	d.accounts = openAccounts(cfg.StateDir, cfg.FwMark, func() string { return d.currentSettings().DirectoryURL }, log.With("part", "wallet"))
	if d.accounts.openErr != nil {
		d.notices = append(d.notices, "the wallet cannot be opened: "+d.accounts.openErr.Error())
	}
	tickets := d.accounts.snapshot()
	d.hub = control.NewHub(api.Status{
		State: api.State{Kind: api.Disconnected}, Target: targetName, Settings: s,
		Daemon:  api.DaemonInfo{Version: version.String(), PID: os.Getpid()},
		Notices: d.notices, Tickets: &tickets,
	})
	d.accounts.hub = d.hub
	d.connector = &fastConnector{cfg: cfg, log: log.With("part", "fast"), directories: newTopologyCache(cfg.FwMark), accounts: d.accounts}
	var connector tunnelstate.Connector = d.connector
	if cfg.connector != nil {
		connector = cfg.connector
	}
	d.sessions, _ = connector.(sessionEnder)
	var system tunnelstate.System = &systemAdapter{sys: sys, cfg: cfg, routed: d.accounts.routed}
	if cfg.system != nil {
		system = cfg.system
	}
	d.machine = tunnelstate.New(tunnelstate.Config{
		Connector: connector,
		System:    system,
		Target:    &publishedTarget{store: target, hub: d.hub},
		Settings:  d.currentSettings,
		OnState:   d.hub.SetState,
		OnTraffic: d.hub.SetTraffic,
		// Mixnet mode's statistics, at the traffic's pace (each health
		// check, about once a second); the Hub drops repeats.
		OnMixnet: d.hub.SetMixnet,
		Firewall: d.accounts.watch(fw),
		Logger:   log.With("part", "tunnel"),
	})

	srv, err := control.New(control.Config{
		Backend: d, Hub: d.hub, Authorizer: &control.Policy{Group: cfg.Group, OperatorUID: cfg.OperatorUID},
		Logger: log.With("part", "api"),
	})
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	ln, err := control.Listen(cfg.Socket)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	machineDone := make(chan error, 1)
	wg.Go(func() { machineDone <- d.machine.Run(ctx) })
	d.accounts.tunnelState = d.machine.State
	wg.Go(func() { d.accounts.run(ctx) })
	serveDone := make(chan error, 1)
	wg.Go(func() { serveDone <- srv.Serve(ln) })
	wg.Go(func() {
		var last []netip.Addr
		known := false
		err := platform.WatchNetwork(ctx, func(name string) bool { return name == cfg.Interface }, func(c platform.NetworkChange) {
			log.Info("network", "online", c.Online, "addresses", len(c.Addresses))
			d.machine.SetOnline(ctx, c.Online)
			if known && c.Online && !slices.Equal(last, c.Addresses) {
				// Another network: rebuild the tunnel's outer socket,
				// routes and DNS (the kill switch blocks meanwhile).
				log.Info("the network changed: reconnecting")
				d.machine.Reconnect(ctx)
			}
			known, last = true, c.Addresses
		})
		if err != nil && ctx.Err() == nil {
			log.Warn("cannot watch the network; assuming it is up", "err", err)
		}
	})
	wg.Go(func() {
		watchSleep(ctx, func(slept time.Duration) {
			log.Info("the machine woke from sleep: reconnecting", "slept", slept.Round(time.Second))
			d.machine.Reconnect(ctx)
		})
	})
	if d.settings.AutoConnect && !wantConnected {
		log.Info("auto-connect is on: connecting")
		if _, err := d.machine.Connect(ctx); err != nil {
			log.Error("auto-connect", "err", err)
		}
	}
	log.Info("nymvpnd ready", "socket", cfg.Socket, "state_dir", cfg.StateDir, "version", version.String())
	if cfg.Ready != nil {
		cfg.Ready()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveDone:
		runErr = fmt.Errorf("daemon: control API: %w", err)
		serveDone <- nil
	}
	log.Info("nymvpnd stopping")
	shutCtx, shutCancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	srv.Shutdown(shutCtx)
	shutCancel()
	cancel()
	wg.Wait()
	if err := <-machineDone; err != nil && runErr == nil {
		runErr = err
	}
	log.Info("nymvpnd stopped")
	return runErr
}

// daemon implements control.Backend.
type daemon struct {
	cfg          Config
	log          *slog.Logger
	hub          *control.Hub
	machine      *tunnelstate.Machine
	connector    *fastConnector
	sessions     sessionEnder // the connector in use, if it keeps a session's state
	accounts     *accounts    // the wallet: account and tickets
	settingsPath string
	notices      []string

	mu       sync.Mutex // guards settings and serializes changes to them
	settings api.Settings
}

func (d *daemon) currentSettings() api.Settings {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.settings
	if s.DirectoryURL == "" {
		s.DirectoryURL = d.cfg.DirectoryURL
	}
	return s
}

// update applies a patch, saves and publishes it; it reports whether a
// choice that shapes the tunnel changed.
func (d *daemon) update(p api.SettingsPatch) (api.Settings, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.settings
	s, err := settings.Apply(old, p)
	if err != nil {
		return old, false, err
	}
	if err := settings.Save(d.settingsPath, s); err != nil {
		return old, false, fmt.Errorf("save settings: %w", err)
	}
	d.settings = s
	d.hub.SetSettings(s)
	if old.Mode != s.Mode {
		// Another mode is another session: fast mode's next keys are new.
		d.endSession()
	}
	return s, tunnelShapeChanged(old, s), nil
}

func tunnelShapeChanged(a, b api.Settings) bool {
	if a.Mode != b.Mode || a.Entry != b.Entry || a.Exit != b.Exit || a.IPv6 != b.IPv6 || a.DirectoryURL != b.DirectoryURL {
		return true
	}
	if b.Mode == api.ModeMixnet && a.PrivacyProfile != b.PrivacyProfile {
		return true
	}
	if len(a.DNS) != len(b.DNS) {
		return true
	}
	for i := range a.DNS {
		if a.DNS[i] != b.DNS[i] {
			return true
		}
	}
	return false
}

// Connect implements control.Backend.
func (d *daemon) Connect(ctx context.Context, req api.ConnectRequest) (api.State, error) {
	var p api.SettingsPatch
	if req.Mode != "" {
		p.Mode = &req.Mode
	}
	if req.PrivacyProfile != "" {
		p.PrivacyProfile = &req.PrivacyProfile
	}
	if req.Entry != "" {
		p.Entry = &req.Entry
	}
	if req.Exit != "" {
		p.Exit = &req.Exit
	}
	// Refuse before saving anything: a refused connect changes nothing.
	d.mu.Lock()
	next, err := settings.Apply(d.settings, p)
	d.mu.Unlock()
	if err != nil {
		return api.State{}, err
	}
	if d.cfg.DirectoryURL == "" && next.DirectoryURL == "" {
		return api.State{}, &api.APIError{Code: api.CodeNoDirectory,
			Message: "no network directory is configured: run `nymvpn settings set directory URL` (nym-localnet prints the URL)"}
	}
	_, changed, err := d.update(p)
	if err != nil {
		return api.State{}, err
	}
	st, err := d.machine.State(ctx)
	if err != nil {
		return api.State{}, err
	}
	if changed && (st.Kind == api.Connected || st.Kind == api.Connecting) {
		d.log.Info("connect with new choices: reconnecting")
		return d.machine.Reconnect(ctx)
	}
	return d.machine.Connect(ctx)
}

// Disconnect implements control.Backend.
func (d *daemon) Disconnect(ctx context.Context) (api.State, error) {
	st, err := d.machine.Disconnect(ctx)
	// The machine cancelled any attempt under way before it answered: keys
	// an attempt took before are dropped here, and one that asks after is
	// refused them (fastKeys.take checks its context).
	d.endSession()
	return st, err
}

// sessionEnder is a connector that keeps state across the attempts of one
// session, from the user's connect to the user's disconnect (fastConnector:
// its fast-mode keys, which let a reconnect resume what they paid).
type sessionEnder interface {
	// endSession drops that state; the next attempt starts a new session.
	endSession()
}

// endSession tells the connector that the session ended.
func (d *daemon) endSession() {
	if d.sessions != nil {
		d.sessions.endSession()
	}
}

// UpdateSettings implements control.Backend.
func (d *daemon) UpdateSettings(ctx context.Context, p api.SettingsPatch) (api.Settings, error) {
	old := d.currentSettings()
	s, changed, err := d.update(p)
	if err != nil {
		return s, err
	}
	if old.KillSwitch != s.KillSwitch || old.Lockdown != s.Lockdown || old.AllowLAN != s.AllowLAN {
		if err := d.machine.RefreshFirewall(ctx); err != nil {
			d.log.Error("applying the kill switch settings", "err", err)
			return s, &api.APIError{Code: api.CodeInternal, Message: "the settings were saved but the kill switch could not apply them: " + err.Error()}
		}
	}
	if changed {
		st, err := d.machine.State(ctx)
		if err == nil && (st.Kind == api.Connected || st.Kind == api.Connecting) {
			d.log.Info("settings changed while connected: reconnecting")
			d.machine.Reconnect(ctx)
		}
	}
	return s, nil
}

// Gateways implements control.Backend.
func (d *daemon) Gateways(ctx context.Context, role, country string) ([]api.Gateway, error) {
	s := d.currentSettings()
	if s.DirectoryURL == "" {
		return nil, &api.APIError{Code: api.CodeNoDirectory,
			Message: "no network directory is configured: run `nymvpn settings set directory URL`"}
	}
	topo, err := d.connector.directories.get(ctx, s.DirectoryURL)
	if err != nil {
		return nil, &api.APIError{Code: api.CodeUnavailable, Message: "cannot reach the network directory: " + err.Error()}
	}
	var out []api.Gateway
	for _, n := range topo.Nodes {
		if !n.IsGateway() {
			continue
		}
		g := gatewayOf(n)
		if country != "" && g.Country != country {
			continue
		}
		if role != "" && !containsRole(g.Roles, role) {
			continue
		}
		out = append(out, g)
	}
	return out, nil
}

func containsRole(roles []string, r string) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

// publishedTarget persists the target and publishes it.
type publishedTarget struct {
	store tunnelstate.FileTarget
	hub   *control.Hub
}

func (p *publishedTarget) Load() (bool, error) { return p.store.Load() }

func (p *publishedTarget) Save(connect bool) error {
	if err := p.store.Save(connect); err != nil {
		return err
	}
	if connect {
		p.hub.SetTarget("connected")
	} else {
		p.hub.SetTarget("disconnected")
	}
	return nil
}

// systemAdapter turns tunnel info into the platform's configuration.
type systemAdapter struct {
	sys *platform.System
	cfg Config
	// routed, if set, is told whether the tunnel carries the traffic.
	routed func(up bool)
}

func (a *systemAdapter) Up(ctx context.Context, info tunnelstate.Info) error {
	err := a.sys.Up(ctx, platform.NetConfig{
		Interface: info.Interface, MTU: info.MTU, Addresses: info.Addresses, DNS: info.DNS,
		FwMark: a.cfg.FwMark, Table: a.cfg.Table, IPv6: info.IPv6,
	})
	if err == nil && a.routed != nil {
		a.routed(true)
	}
	return err
}

func (a *systemAdapter) Down(ctx context.Context) error {
	if a.routed != nil {
		a.routed(false)
	}
	return a.sys.Down(ctx)
}
