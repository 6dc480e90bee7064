package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/metrics"
	"github.com/nymvpn/nymvpn/node/mixnode"
)

// MixnodeConfig configures the mix node role.
type MixnodeConfig struct {
	ID, Country  string
	DirectoryURL string
	DataDir      string
	// Listen is the TCP address for Sphinx traffic.
	Listen netip.AddrPort
	// Announce is the address published in the directory when it differs
	// from the listen address.
	Announce netip.Addr
	// Metrics, if set, serves Prometheus metrics at http://Metrics/metrics.
	Metrics string
	Limits  mixnode.Limits
	Logger  *slog.Logger
	Ready   func(*mixnode.Node)
}

// RunMixnode runs a mix node until ctx ends: it learns the epoch length
// from the directory, makes its Sphinx keys, announces itself (at once
// whenever its keys rotate, else every minute) and refreshes its topology
// every 5 s, or at once when it misses a node.
func RunMixnode(ctx context.Context, cfg MixnodeConfig) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	keys, err := LoadKeys(cfg.DataDir)
	if err != nil {
		return err
	}
	topo := newTopoSource(ctx, cfg.DirectoryURL, cfg.Logger)
	first, err := topo.Until()
	if err != nil {
		return err
	}
	epochLength := time.Duration(first.EpochLength)
	changed := make(chan struct{}, 1)
	m, err := mixnode.New(mixnode.Config{
		ID: cfg.ID, NoiseKey: keys.Noise, Listen: cfg.Listen, Topology: topo.Load, TopologyStale: topo.Kick,
		EpochLength: epochLength, Limits: cfg.Limits, Logger: cfg.Logger,
		OnKeys: func() { notify(changed) },
	})
	if err != nil {
		return err
	}
	defer m.Close()
	describe := func() directory.Node {
		addr := m.Addr()
		if cfg.Announce.IsValid() {
			addr = netip.AddrPortFrom(cfg.Announce, addr.Port())
		}
		return directory.Node{
			ID: cfg.ID, Roles: []directory.Role{directory.RoleMixnode}, Country: cfg.Country,
			IdentityKey: keys.Identity.Public().(ed25519.PublicKey), NoiseKey: directory.Key32(keys.Noise.Public()),
			MixAddr: addr.String(), SphinxKeys: m.SphinxKeys(),
		}
	}
	if n := describe(); n.Validate() != nil {
		return fmt.Errorf("mixnode: descriptor: %w", n.Validate())
	}
	go func() {
		if err := directory.AnnounceFunc(ctx, cfg.DirectoryURL, describe, keys.Identity, time.Minute, changed, cfg.Logger); err != nil && !errors.Is(err, context.Canceled) {
			cfg.Logger.Error("announcing to the directory stopped", "err", err)
		}
	}()
	if cfg.Metrics != "" {
		if err := serveMetrics(ctx, cfg.Metrics, m.Families, cfg.Logger); err != nil {
			return err
		}
	}
	if cfg.Ready != nil {
		cfg.Ready(m)
	}
	tick := time.NewTicker(topologyRefresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			logSphinxStats(cfg.Logger, m)
			return nil
		case <-tick.C:
			if err := topo.Fetch(); err != nil {
				cfg.Logger.Warn("refresh directory", "err", err)
				continue
			}
			if l := time.Duration(topo.Load().EpochLength); l != epochLength {
				cfg.Logger.Warn("the directory's epoch length changed; restart the node to follow it", "was", epochLength, "now", l)
			}
		}
	}
}

// fetchUntil fetches the topology, retrying with back-off until it succeeds
// or ctx ends.
func fetchUntil(ctx context.Context, dir *directory.Client, log *slog.Logger) (*directory.Topology, error) {
	backoff := time.Second
	for {
		fctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		t, err := dir.Fetch(fctx)
		cancel()
		if err == nil {
			return t, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("waiting for the directory: %w", ctx.Err())
		}
		log.Warn("directory not reachable yet; retrying", "err", err, "retry_in", backoff)
		t2 := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t2.Stop()
			return nil, fmt.Errorf("waiting for the directory: %w", ctx.Err())
		case <-t2.C:
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// notify signals ch without blocking.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// serveMetrics listens on addr and serves collect at /metrics until ctx
// ends.
func serveMetrics(ctx context.Context, addr string, collect func() []metrics.Family, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: listen: %w", err)
	}
	log.Info("metrics serving", "url", "http://"+ln.Addr().String()+"/metrics")
	go func() {
		if err := metrics.Serve(ctx, ln, collect, log); err != nil {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	return nil
}

func logSphinxStats(log *slog.Logger, m *mixnode.Node) {
	st := m.Metrics()
	log.Info("sphinx node stopping", "received", st.ReceivedFrom(mixnode.FromNode)+st.ReceivedFrom(mixnode.FromClient),
		"processed", st.Processed(), "forwarded", st.Forwarded(), "delivered", st.Delivered(), "dropped", st.DroppedTotal())
}
