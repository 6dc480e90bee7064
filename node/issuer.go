package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/issuer"
)

// IssuerConfig configures the issuer role.
type IssuerConfig struct {
	ID, Country  string
	DirectoryURL string
	// DataDir holds the key file made by issuer-keygen, the node keys, the
	// database and the admin token.
	DataDir string
	// Listen is the HTTP address of the API.
	Listen netip.AddrPort
	// Announce is the address published in the directory when it differs
	// from the listen address.
	Announce netip.Addr
	Logger   *slog.Logger
	Ready    func(*issuer.Issuer, string)
}

// RunIssuer runs an issuer until ctx ends: it serves the API, announces its
// URL to the directory every minute and refreshes its topology (spent-ticket
// reports are taken only from gateways listed there).
func RunIssuer(ctx context.Context, cfg IssuerConfig) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	keys, err := LoadKeys(cfg.DataDir)
	if err != nil {
		return err
	}
	topo := newTopoSource(ctx, cfg.DirectoryURL, cfg.Logger)
	iss, err := issuer.New(issuer.Config{ID: cfg.ID, DataDir: cfg.DataDir, Identity: keys.Identity, Topology: topo.Load, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	defer iss.Close()
	ln, err := net.Listen("tcp", cfg.Listen.String())
	if err != nil {
		return fmt.Errorf("issuer: listen: %w", err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	if cfg.Announce.IsValid() {
		addr = netip.AddrPortFrom(cfg.Announce, addr.Port())
	}
	url := "http://" + addr.String()
	hs := &http.Server{Handler: iss.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	describe := func() directory.Node {
		return directory.Node{ID: cfg.ID, Roles: []directory.Role{directory.RoleIssuer}, Country: cfg.Country,
			IdentityKey: keys.Identity.Public().(ed25519.PublicKey), IssuerURL: url}
	}
	if n := describe(); n.Validate() != nil {
		return fmt.Errorf("issuer: descriptor: %w", n.Validate())
	}
	go func() {
		if err := directory.AnnounceFunc(ctx, cfg.DirectoryURL, describe, keys.Identity, time.Minute, nil, cfg.Logger); err != nil && !errors.Is(err, context.Canceled) {
			cfg.Logger.Error("announcing to the directory stopped", "err", err)
		}
	}()
	go iss.Maintain(ctx, time.Hour)
	k := iss.Key()
	cfg.Logger.Info("issuer serving", "url", url, "index", k.Share.Index, "threshold", k.Threshold, "issuers", k.Issuers)
	if cfg.Ready != nil {
		cfg.Ready(iss, url)
	}
	if err := topo.Fetch(); err != nil {
		cfg.Logger.Warn("directory not reachable yet; spent reports are refused until it is", "err", err)
	}
	tick := time.NewTicker(topologyRefresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("issuer: %w", err)
		case <-tick.C:
			if err := topo.Fetch(); err != nil {
				cfg.Logger.Warn("refresh directory", "err", err)
			}
		}
	}
}

// issuerKeyFile is where a gateway pins the issuers' aggregated key.
const issuerKeyFile = "issuers.key"

// issuerSource is a gateway's view of the issuers: the aggregated key it
// verifies tickets with (pinned in its data directory, so it verifies offline
// after a restart even while the issuers are down) and their URLs for reports.
type issuerSource struct {
	path string
	log  *slog.Logger
	topo *topoSource

	mu   sync.Mutex
	key  *credential.VerificationKey
	urls []string
}

func newIssuerSource(dataDir string, topo *topoSource, log *slog.Logger) (*issuerSource, error) {
	s := &issuerSource{path: filepath.Join(dataDir, issuerKeyFile), log: log, topo: topo}
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("gateway: %w", err)
	default:
		var k credential.VerificationKey
		if err := k.UnmarshalBinary(b); err != nil {
			return nil, fmt.Errorf("gateway: pinned issuers' key %s: %w", s.path, err)
		}
		s.key = &k
	}
	return s, nil
}

// Key is the aggregated key (nil until first discovered).
func (s *issuerSource) Key() *credential.VerificationKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key
}

// URLs are the issuers of the last discovery.
func (s *issuerSource) URLs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.urls
}

// refresh discovers the issuers in the topology and pins their key.
func (s *issuerSource) refresh(ctx context.Context) error {
	t := s.topo.Load()
	if t == nil {
		return errors.New("no topology yet")
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	g, err := issuer.Discover(cctx, nil, t)
	if err != nil {
		return err
	}
	var urls []string
	for _, ep := range g.Issuers {
		urls = append(urls, ep.URL)
	}
	b, _ := g.Key.MarshalBinary()
	s.mu.Lock()
	old := s.key
	s.key, s.urls = g.Key, urls
	s.mu.Unlock()
	if old == nil || !old.Equal(g.Key) {
		if old != nil {
			s.log.Warn("the issuers' aggregated key changed; tickets of the old key are refused from now on")
		}
		if prev, _ := os.ReadFile(s.path); !bytes.Equal(prev, b) {
			if err := os.WriteFile(s.path+".tmp", b, 0o600); err != nil {
				return fmt.Errorf("pin issuers' key: %w", err)
			}
			if err := os.Rename(s.path+".tmp", s.path); err != nil {
				return fmt.Errorf("pin issuers' key: %w", err)
			}
		}
		s.log.Info("issuers' key aggregated", "threshold", g.Threshold, "issuers", g.Size, "answering", len(g.Issuers))
	}
	return nil
}

// run refreshes every 5 minutes (every 5 s until the first success).
func (s *issuerSource) run(ctx context.Context) {
	for {
		wait := 5 * time.Minute
		if err := s.refresh(ctx); err != nil {
			if s.Key() == nil {
				wait = 5 * time.Second
			}
			if ctx.Err() == nil {
				s.log.Warn("finding the issuers", "err", err, "retry_in", wait)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
