// Package node runs the roles of nym-node from an operator's configuration:
// the node's key files, announcing itself to the directory, and keeping a
// fresh copy of the topology for the roles that need it.
package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/gateway"
	"github.com/nymvpn/nymvpn/node/iprouter"
)

// DirectoryConfig configures the directory role.
type DirectoryConfig struct {
	Listen  string // HTTP address
	DataDir string
	// Open accepts announcements from any node (a test network).
	Open bool
	// EpochLength is the epoch (default directory.DefaultEpochLength):
	// mix layers and Sphinx keys change every epoch.
	EpochLength time.Duration
	Logger      *slog.Logger
	// Ready, if set, is called with the pinned URL once serving.
	Ready func(url string)
}

// RunDirectory serves the directory until ctx ends.
func RunDirectory(ctx context.Context, cfg DirectoryConfig) error {
	keys, err := LoadKeys(cfg.DataDir)
	if err != nil {
		return err
	}
	srv, err := directory.NewServer(directory.ServerConfig{Key: keys.Identity, Open: cfg.Open, EpochLength: cfg.EpochLength, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("directory: listen: %w", err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	url := srv.URL("http://" + ln.Addr().String())
	cfg.Logger.Info("directory serving", "url", url)
	if cfg.Ready != nil {
		cfg.Ready(url)
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	case err := <-errc:
		return fmt.Errorf("directory: %w", err)
	}
}

// GatewayConfig configures the gateway role.
type GatewayConfig struct {
	ID, Country  string
	Roles        []directory.Role
	DirectoryURL string
	DataDir      string
	WireGuard    netip.AddrPort
	Registration netip.AddrPort
	// Announce is the address published in the directory when it differs
	// from the listen address (e.g. behind NAT); unset publishes the
	// listen addresses.
	Announce netip.Addr
	// FreePass admits clients without tickets (development); otherwise the
	// gateway finds the issuers in the directory, pins their aggregated key
	// in DataDir/issuers.key and takes tickets.
	FreePass bool
	// TicketBandwidth, if set, is what one ticket buys here, in bytes
	// (default the types' own).
	TicketBandwidth int64
	Exit            gateway.ExitPolicy
	Pool4           netip.Prefix
	Pool6           netip.Prefix
	// MixListen (TCP), if set, makes the gateway a Sphinx final hop;
	// MixClientListen (TCP) is where an entry gateway takes mixnet clients
	// (required with MixListen for the entry role).
	MixListen, MixClientListen netip.AddrPort
	// Metrics, if set, serves Prometheus metrics at http://Metrics/metrics.
	Metrics string
	Logger  *slog.Logger
	Ready   func(*gateway.Gateway)
}

// RunGateway runs a gateway until ctx ends: it announces itself to the
// directory every minute (and at once when its Sphinx keys rotate) and
// refreshes its topology copy every 5 s.
func RunGateway(ctx context.Context, cfg GatewayConfig) (err error) {
	keys, err := LoadKeys(cfg.DataDir)
	if err != nil {
		return err
	}
	topo := newTopoSource(ctx, cfg.DirectoryURL, cfg.Logger)
	fetch := topo.Fetch
	changed := make(chan struct{}, 1)
	gcfg := gateway.Config{
		ID: cfg.ID, Roles: cfg.Roles, NoiseKey: keys.Noise, WireGuardKey: keys.WireGuard,
		WireGuardListen: cfg.WireGuard, RegistrationListen: cfg.Registration,
		Pool4: cfg.Pool4, Pool6: cfg.Pool6, FreePass: cfg.FreePass, Exit: cfg.Exit,
		Topology: topo.Load, Logger: cfg.Logger,
	}
	if !cfg.FreePass {
		iss, err := newIssuerSource(cfg.DataDir, topo, cfg.Logger)
		if err != nil {
			return err
		}
		gcfg.Payment = &gateway.PaymentConfig{
			Key: iss.Key, Database: filepath.Join(cfg.DataDir, "tickets.db"),
			Reporting: &gateway.ReportConfig{Issuers: iss.URLs, Identity: keys.Identity},
		}
		if cfg.TicketBandwidth > 0 {
			gcfg.Payment.Bandwidth = map[credential.TicketType]int64{}
			for _, t := range []credential.TicketType{credential.FastEntry, credential.FastExit, credential.MixnetEntry, credential.MixnetExit} {
				gcfg.Payment.Bandwidth[t] = cfg.TicketBandwidth
			}
		}
		go func() {
			if err := fetch(); err != nil {
				cfg.Logger.Debug("first topology fetch for the issuers", "err", err)
			}
			iss.run(ctx)
		}()
	}
	if cfg.MixListen.IsValid() {
		// The Sphinx side needs the epoch length before it makes its keys.
		t, err := topo.Until()
		if err != nil {
			return err
		}
		gcfg.Mixnet = &gateway.MixnetConfig{
			Listen: cfg.MixListen, ClientListen: cfg.MixClientListen, EpochLength: time.Duration(t.EpochLength),
			OnKeys: func() { notify(changed) }, TopologyStale: topo.Kick,
		}
	}
	gw, err := gateway.New(gcfg)
	if err != nil {
		return err
	}
	defer func() {
		// A kernel-exit gateway reports here if it could not undo its
		// changes to the host.
		if cerr := gw.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	// An exit on the mixnet runs the IP packet router of mixnet mode, with
	// the gateway's exit policy (and exit mode).
	if gcfg.Mixnet != nil && slices.Contains(cfg.Roles, directory.RoleExit) {
		// Sessions pay with mixnet-exit tickets unless the gateway runs
		// with --free-pass.
		r, err := iprouter.New(iprouter.Config{
			Forward: gw.Mixnode().Forward, EpochLength: gcfg.Mixnet.EpochLength, Policy: cfg.Exit,
			Pay: gw.ExitPayment(), Logger: cfg.Logger,
		})
		if err != nil {
			return err
		}
		gw.SetExitHandler(r)
		defer func() {
			gw.SetExitHandler(nil)
			if cerr := r.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
			st := r.Stats()
			cfg.Logger.Info("IP packet router stopping", "sessions", st.Sessions, "opened", st.Opened, "ip_in", st.IPIn, "ip_out", st.IPOut,
				"replies", st.Replies, "tickets", st.Tickets, "tickets_refused", st.TicketsRefused, "unpaid", st.Unpaid,
				"flows", st.Device.Flows, "refused", st.Device.Refused, "kernel_out", st.Device.KernelOut, "kernel_in", st.Device.KernelIn)
		}()
	}
	describe := func() directory.Node {
		n := gw.Node()
		n.Country = cfg.Country
		n.IdentityKey = keys.Identity.Public().(ed25519.PublicKey)
		if a := cfg.Announce; a.IsValid() {
			n.WireGuardAddr = netip.AddrPortFrom(a, gw.WireGuardAddr().Port()).String()
			n.RegistrationAddr = netip.AddrPortFrom(a, gw.RegistrationAddr().Port()).String()
			if m := gw.Mixnode(); m != nil {
				n.MixAddr = netip.AddrPortFrom(a, m.Addr().Port()).String()
			}
			if c := gw.MixClientAddr(); c.IsValid() {
				n.MixClientAddr = netip.AddrPortFrom(a, c.Port()).String()
			}
		}
		return n
	}
	if n := describe(); n.Validate() != nil {
		return fmt.Errorf("gateway: descriptor: %w", n.Validate())
	}
	go func() {
		if err := directory.AnnounceFunc(ctx, cfg.DirectoryURL, describe, keys.Identity, time.Minute, changed, cfg.Logger); err != nil && !errors.Is(err, context.Canceled) {
			cfg.Logger.Error("announcing to the directory stopped", "err", err)
		}
	}()
	if cfg.Metrics != "" {
		if err := serveMetrics(ctx, cfg.Metrics, gw.Families, cfg.Logger); err != nil {
			return err
		}
	}
	if err := fetch(); err != nil {
		cfg.Logger.Warn("directory not reachable yet; entry traffic is refused until it is", "err", err)
	}
	if cfg.Ready != nil {
		cfg.Ready(gw)
	}
	tick := time.NewTicker(topologyRefresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			st := gw.Stats()
			cfg.Logger.Info("gateway stopping", "peers", st.Peers, "registered", st.Registered,
				"entry_flows", st.EntryFlows, "exit_flows", st.ExitFlows, "policy_refused", st.PolicyRefused,
				"kernel_out", st.KernelOut, "kernel_in", st.KernelIn)
			if m := gw.Mixnode(); m != nil {
				logSphinxStats(cfg.Logger, m)
			}
			return nil
		case <-tick.C:
			if err := fetch(); err != nil {
				cfg.Logger.Warn("refresh directory", "err", err)
			}
		}
	}
}
