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
	"sync/atomic"
	"time"

	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/gateway"
)

// DirectoryConfig configures the directory role.
type DirectoryConfig struct {
	Listen  string // HTTP address
	DataDir string
	// Open accepts announcements from any node (a test network).
	Open   bool
	Logger *slog.Logger
	// Ready, if set, is called with the pinned URL once serving.
	Ready func(url string)
}

// RunDirectory serves the directory until ctx ends.
func RunDirectory(ctx context.Context, cfg DirectoryConfig) error {
	keys, err := LoadKeys(cfg.DataDir)
	if err != nil {
		return err
	}
	srv, err := directory.NewServer(directory.ServerConfig{Key: keys.Identity, Open: cfg.Open, Logger: cfg.Logger})
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
	FreePass bool
	Exit     gateway.ExitPolicy
	Pool4    netip.Prefix
	Pool6    netip.Prefix
	Logger   *slog.Logger
	Ready    func(*gateway.Gateway)
}

// RunGateway runs a gateway until ctx ends: it announces itself to the
// directory every minute and refreshes its topology copy every 15 s.
func RunGateway(ctx context.Context, cfg GatewayConfig) (err error) {
	keys, err := LoadKeys(cfg.DataDir)
	if err != nil {
		return err
	}
	dir := &directory.Client{URL: cfg.DirectoryURL}
	var topo atomic.Pointer[directory.Topology]
	fetch := func() error {
		fctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		t, err := dir.Fetch(fctx)
		if err == nil {
			topo.Store(t)
		}
		return err
	}
	gw, err := gateway.New(gateway.Config{
		ID: cfg.ID, Roles: cfg.Roles, NoiseKey: keys.Noise, WireGuardKey: keys.WireGuard,
		WireGuardListen: cfg.WireGuard, RegistrationListen: cfg.Registration,
		Pool4: cfg.Pool4, Pool6: cfg.Pool6, FreePass: cfg.FreePass, Exit: cfg.Exit,
		Topology: topo.Load, Logger: cfg.Logger,
	})
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
	n := gw.Node()
	n.Country = cfg.Country
	n.IdentityKey = keys.Identity.Public().(ed25519.PublicKey)
	if cfg.Announce.IsValid() {
		n.WireGuardAddr = netip.AddrPortFrom(cfg.Announce, gw.WireGuardAddr().Port()).String()
		n.RegistrationAddr = netip.AddrPortFrom(cfg.Announce, gw.RegistrationAddr().Port()).String()
	}
	if err := n.Validate(); err != nil {
		return fmt.Errorf("gateway: descriptor: %w", err)
	}
	go func() {
		if err := directory.Announce(ctx, cfg.DirectoryURL, &n, keys.Identity, time.Minute, cfg.Logger); err != nil && !errors.Is(err, context.Canceled) {
			cfg.Logger.Error("announcing to the directory stopped", "err", err)
		}
	}()
	if err := fetch(); err != nil {
		cfg.Logger.Warn("directory not reachable yet; entry traffic is refused until it is", "err", err)
	}
	if cfg.Ready != nil {
		cfg.Ready(gw)
	}
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			st := gw.Stats()
			cfg.Logger.Info("gateway stopping", "peers", st.Peers, "registered", st.Registered,
				"entry_flows", st.EntryFlows, "exit_flows", st.ExitFlows, "policy_refused", st.PolicyRefused,
				"kernel_out", st.KernelOut, "kernel_in", st.KernelIn)
			return nil
		case <-tick.C:
			if err := fetch(); err != nil {
				cfg.Logger.Warn("refresh directory", "err", err)
			}
		}
	}
}
