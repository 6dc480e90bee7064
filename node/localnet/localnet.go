// Package localnet runs the whole nym network in one process on loopback: a
// directory, gateways (two entries and two exits in two countries, each also
// a Sphinx final hop, the entries taking mixnet clients) and three layers of
// two mix nodes, each node on its own loopback address where the system has
// them (Linux routes all of 127.0.0.0/8 to lo), so a server can tell from the
// source address which node reached it. nym-localnet and the in-process tests
// use it.
package localnet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/credential/wallet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/gateway"
	"github.com/nymvpn/nymvpn/node/iprouter"
	"github.com/nymvpn/nymvpn/node/issuer"
	"github.com/nymvpn/nymvpn/node/mixnode"
	"github.com/nymvpn/nymvpn/transport"
)

// Config configures a local network.
type Config struct {
	// Host is the first loopback address; the directory listens there and
	// node i on Host+i+1 when PerNodeAddrs is set, else every node on Host.
	Host netip.Addr
	// PerNodeAddrs gives every node its own loopback address (default on Linux).
	PerNodeAddrs bool
	// DirectoryPort is the directory's HTTP port; 0 picks a free one.
	DirectoryPort uint16
	// DNSUpstream, when set, is where exits send DNS asked of them; unset,
	// the network runs its own DNS server for the zone "localnet." (the name
	// "web.localnet" and every node id resolve to loopback addresses).
	DNSUpstream netip.AddrPort
	// EpochLength is the directory's epoch (default DefaultEpochLength):
	// Sphinx keys rotate and mix layers are reassigned at every epoch.
	EpochLength time.Duration
	// MixnodesPerLayer is the number of mix nodes in each of the three
	// layers (default 2; negative: none).
	MixnodesPerLayer int
	// Dir holds the issuers' keys and ledgers, the gateways' ticket
	// databases and the demo account's wallet; empty: a temporary directory
	// removed by Close.
	Dir string
	// FreePass lets gateways admit clients without tickets (the development
	// switch); by default they take tickets from the network's issuers:
	// registrations, mixnet ingress at the entries (mixnet clients and the
	// probe pay with a RoleMixnet registration, mixnet.PayEntry) and the
	// exits' IP packet routers in mixnet mode.
	FreePass bool
	// TicketBandwidth, if set, is what one ticket of any type buys, in bytes
	// (small, to watch top-ups); default the types' own (500/500/200/100 MB).
	TicketBandwidth int64
	// TicketBandwidths overrides TicketBandwidth for the types it lists
	// (e.g. small mixnet-exit tickets to watch the exits' top-ups while
	// the entries' keep up with a mixnet client's constant rate).
	TicketBandwidths map[credential.TicketType]int64
	// MeterInterval is how often gateways count peers' traffic (default 1 s).
	MeterInterval time.Duration
	// DemoTickets is the demo account's allowance at each issuer (default
	// 100000 tickets).
	DemoTickets int64
	// ExitFlushDelay is how long the exits' IP packet routers let a reply
	// bundle fill (default iprouter.DefaultFlushDelay; negative: none).
	ExitFlushDelay time.Duration
	Logger         *slog.Logger
}

// Issuers: the local network runs IssuerCount issuers, any IssuerThreshold of
// which sign a ticketbook.
const (
	IssuerCount     = 3
	IssuerThreshold = 2
)

// DefaultEpochLength is the local network's epoch: short, so key rotation
// and layer reassignment happen while one watches.
const DefaultEpochLength = 2 * time.Minute

// replayCapacity sizes each node's replay filters (packets per key): the
// local network carries little traffic and runs ten Sphinx nodes in one
// process, so 2^16 (192 KiB per key) instead of the 12 MiB default.
const replayCapacity = 1 << 16

// DefaultConfig is the configuration nym-localnet starts with.
func DefaultConfig() Config {
	return Config{Host: netip.MustParseAddr("127.0.0.1"), PerNodeAddrs: runtime.GOOS == "linux"}
}

// GatewaySpec describes one gateway of the local network.
type GatewaySpec struct {
	ID      string
	Country string
	Role    directory.Role
}

// Gateways is the default set: two entries and two exits in two countries.
var Gateways = []GatewaySpec{
	{"entry-de-1", "DE", directory.RoleEntry},
	{"entry-ch-1", "CH", directory.RoleEntry},
	{"exit-de-1", "DE", directory.RoleExit},
	{"exit-ch-1", "CH", directory.RoleExit},
}

// Network is a running local network.
type Network struct {
	Directory    *directory.Server
	DirectoryURL string
	Gateways     map[string]*gateway.Gateway
	// IPRouters are the exits' IP packet routers (mixnet mode), by gateway id.
	IPRouters map[string]*iprouter.Router
	// Addrs maps each node id to its loopback address.
	Addrs map[string]netip.Addr
	// DNS is the network's own resolver, when it runs one.
	DNS *DNSServer
	// WebURL is the network's "internet" host, web.localnet: an HTTP server
	// on loopback that answers with the address (and node) it saw.
	WebURL string
	// Mixnodes are the mix nodes by id; MixnodeIDs their ids in start order.
	Mixnodes   map[string]*mixnode.Node
	MixnodeIDs []string
	// EpochLength is the directory's epoch length.
	EpochLength time.Duration
	// Issuers are the credential issuers by id; IssuerURLs their base URLs
	// in id order; GroupKey the issuers' aggregated verification key.
	Issuers    map[string]*issuer.Issuer
	IssuerURLs []string
	GroupKey   *credential.VerificationKey
	// Wallet holds the demo account; DemoPhrase is its recovery phrase and
	// WalletDir where the wallet keeps it.
	Wallet     *wallet.Wallet
	DemoPhrase string
	WalletDir  string
	// Dir is the network's state directory.
	Dir string

	tempDir    string
	issuerSrvs []*http.Server
	cfg        Config
	gwState    map[string]*gatewayState

	httpSrv *http.Server
	httpLn  net.Listener
	webSrv  *http.Server
}

// Start brings the network up; it returns once every node is listening.
func Start(ctx context.Context, cfg Config) (n *Network, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if !cfg.Host.IsValid() {
		cfg.Host = netip.MustParseAddr("127.0.0.1")
	}
	if !cfg.Host.IsLoopback() {
		return nil, fmt.Errorf("localnet: %v is not a loopback address; the local network stays on this machine", cfg.Host)
	}
	_, dirKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, fmt.Errorf("localnet: directory key: %w", err)
	}
	if cfg.EpochLength <= 0 {
		cfg.EpochLength = DefaultEpochLength
	}
	if cfg.MixnodesPerLayer == 0 {
		cfg.MixnodesPerLayer = 2
	}
	n = &Network{Gateways: map[string]*gateway.Gateway{}, Addrs: map[string]netip.Addr{}, Mixnodes: map[string]*mixnode.Node{}, EpochLength: cfg.EpochLength,
		Issuers: map[string]*issuer.Issuer{}, IPRouters: map[string]*iprouter.Router{}, gwState: map[string]*gatewayState{}}
	if cfg.Dir == "" {
		if n.tempDir, err = os.MkdirTemp("", "nym-localnet-"); err != nil {
			return nil, fmt.Errorf("localnet: %w", err)
		}
		cfg.Dir = n.tempDir
	}
	n.Dir = cfg.Dir
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	n.Directory, err = directory.NewServer(directory.ServerConfig{Key: dirKey, Open: true, EpochLength: cfg.EpochLength, Logger: cfg.Logger.With("node", "directory")})
	if err != nil {
		return n, err
	}
	n.httpLn, err = net.Listen("tcp", netip.AddrPortFrom(cfg.Host, cfg.DirectoryPort).String())
	if err != nil {
		return n, fmt.Errorf("localnet: directory listener: %w", err)
	}
	n.httpSrv = &http.Server{Handler: n.Directory.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go n.httpSrv.Serve(n.httpLn)
	n.DirectoryURL = n.Directory.URL("http://" + n.httpLn.Addr().String())
	n.Addrs["directory"] = cfg.Host

	if !cfg.DNSUpstream.IsValid() {
		n.DNS, err = StartDNS(netip.AddrPortFrom(cfg.Host, 0), cfg.Logger.With("node", "dns"))
		if err != nil {
			return n, err
		}
		n.DNS.Set("web", cfg.Host)
		n.DNS.Set("directory", cfg.Host)
		cfg.DNSUpstream = n.DNS.Addr()
	}

	if err := n.startWeb(cfg.Host); err != nil {
		return n, err
	}
	n.cfg = cfg // for RestartGateway: with the DNS upstream
	addr := cfg.Host
	if err := n.startIssuers(cfg, &addr); err != nil {
		return n, err
	}
	for i, spec := range Gateways {
		if cfg.PerNodeAddrs {
			addr = addr.Next()
		}
		if err := n.startGateway(cfg, spec, addr, nil); err != nil {
			return n, fmt.Errorf("localnet: gateway %d (%s): %w", i, spec.ID, err)
		}
	}
	for i := range 3 * max(cfg.MixnodesPerLayer, 0) {
		if cfg.PerNodeAddrs {
			addr = addr.Next()
		}
		id := fmt.Sprintf("mix-%d", i+1)
		if err := n.startMixnode(cfg, id, mixCountries[i%len(mixCountries)], addr); err != nil {
			return n, fmt.Errorf("localnet: mix node %s: %w", id, err)
		}
	}
	return n, nil
}

var mixCountries = []string{"NL", "FR", "SE", "AT", "IS", "FI"}

// startMixnode runs a mix node on addr and registers it; it re-registers
// itself whenever its Sphinx keys rotate.
func (n *Network) startMixnode(cfg Config, id, country string, addr netip.Addr) error {
	idPub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	noiseKey, err := transport.GenerateKey()
	if err != nil {
		return err
	}
	var mix atomic.Pointer[mixnode.Node]
	register := func() error {
		m := mix.Load()
		return n.Directory.Add(directory.Node{
			ID: id, Roles: []directory.Role{directory.RoleMixnode}, Country: country, IdentityKey: idPub,
			NoiseKey: directory.Key32(noiseKey.Public()), MixAddr: m.Addr().String(), SphinxKeys: m.SphinxKeys(),
		})
	}
	log := cfg.Logger.With("node", id)
	m, err := mixnode.New(mixnode.Config{
		ID: id, NoiseKey: noiseKey, Listen: netip.AddrPortFrom(addr, 0), Topology: n.Directory.Topology,
		EpochLength: cfg.EpochLength, Limits: mixnode.Limits{ReplayCapacity: replayCapacity}, Logger: log,
		OnKeys: func() {
			if err := register(); err != nil {
				log.Error("localnet: re-registering rotated keys", "err", err)
			}
		},
	})
	if err != nil {
		return err
	}
	mix.Store(m)
	n.Mixnodes[id] = m
	n.MixnodeIDs = append(n.MixnodeIDs, id)
	n.Addrs[id] = addr
	if n.DNS != nil {
		n.DNS.Set(id, addr)
	}
	return register()
}

// gatewayState is what a gateway keeps across a restart: its keys and
// listen addresses.
type gatewayState struct {
	spec                              GatewaySpec
	addr                              netip.Addr
	idPub                             ed25519.PublicKey
	idKey                             ed25519.PrivateKey
	noiseKey, wgKey                   transport.Key
	wireGuard, registration, mix, mxc netip.AddrPort
}

// startGateway starts a gateway on addr; st, on a restart, gives it its old
// keys and ports.
func (n *Network) startGateway(cfg Config, spec GatewaySpec, addr netip.Addr, st *gatewayState) error {
	if st == nil {
		st = &gatewayState{spec: spec, addr: addr}
		var err error
		if st.idPub, st.idKey, err = ed25519.GenerateKey(nil); err != nil {
			return err
		}
		if st.noiseKey, err = transport.GenerateKey(); err != nil {
			return err
		}
		if st.wgKey, err = transport.GenerateKey(); err != nil {
			return err
		}
		any := netip.AddrPortFrom(addr, 0)
		st.wireGuard, st.registration, st.mix = any, any, any
		if spec.Role == directory.RoleEntry {
			st.mxc = any
		}
	}
	idPub, idKey, noiseKey, wgKey := st.idPub, st.idKey, st.noiseKey, st.wgKey
	var self atomic.Pointer[gateway.Gateway]
	register := func() error {
		node := self.Load().Node()
		node.Country = spec.Country
		node.IdentityKey = idPub
		return n.Directory.Add(node)
	}
	log := cfg.Logger.With("node", spec.ID)
	mixCfg := &gateway.MixnetConfig{
		Listen: st.mix, EpochLength: cfg.EpochLength,
		Limits: mixnode.Limits{ReplayCapacity: replayCapacity},
		OnKeys: func() {
			if self.Load() == nil {
				return
			}
			if err := register(); err != nil {
				log.Error("localnet: re-registering rotated keys", "err", err)
			}
		},
	}
	if spec.Role == directory.RoleEntry {
		// Mixnet clients pay for ingress (a RoleMixnet registration with a
		// mixnet-entry ticket) unless the network is free.
		mixCfg.ClientListen = st.mxc
	}
	var pay *gateway.PaymentConfig
	if !cfg.FreePass {
		pay = &gateway.PaymentConfig{
			Key:           func() *credential.VerificationKey { return n.GroupKey },
			Database:      filepath.Join(cfg.Dir, "gateways", spec.ID+".db"),
			MeterInterval: cfg.MeterInterval,
			Reporting:     &gateway.ReportConfig{Issuers: func() []string { return n.IssuerURLs }, Identity: idKey},
		}
		if cfg.TicketBandwidth > 0 || len(cfg.TicketBandwidths) > 0 {
			pay.Bandwidth = map[credential.TicketType]int64{}
			for _, t := range []credential.TicketType{credential.FastEntry, credential.FastExit, credential.MixnetEntry, credential.MixnetExit} {
				if b := cfg.TicketBandwidths[t]; b > 0 {
					pay.Bandwidth[t] = b
				} else if cfg.TicketBandwidth > 0 {
					pay.Bandwidth[t] = cfg.TicketBandwidth
				}
			}
		}
		if err := os.MkdirAll(filepath.Dir(pay.Database), 0o700); err != nil {
			return fmt.Errorf("localnet: %w", err)
		}
	}
	exit := gateway.ExitPolicy{
		OutboundAddr:  addr,
		AllowLoopback: true,
		DNSUpstream:   cfg.DNSUpstream,
	}
	gw, err := gateway.New(gateway.Config{
		ID:                 spec.ID,
		Roles:              []directory.Role{spec.Role},
		NoiseKey:           noiseKey,
		WireGuardKey:       wgKey,
		WireGuardListen:    st.wireGuard,
		RegistrationListen: st.registration,
		FreePass:           cfg.FreePass,
		Payment:            pay,
		Topology:           n.Directory.Topology,
		Exit:               exit,
		Mixnet:             mixCfg,
		Logger:             log,
	})
	if err != nil {
		return err
	}
	self.Store(gw)
	n.Gateways[spec.ID] = gw
	n.Addrs[spec.ID] = addr
	st.wireGuard, st.registration, st.mix = gw.WireGuardAddr(), gw.RegistrationAddr(), gw.Mixnode().Addr()
	if a := gw.MixClientAddr(); a.IsValid() {
		st.mxc = a
	}
	n.gwState[spec.ID] = st
	if spec.Role == directory.RoleExit {
		r, err := iprouter.New(iprouter.Config{
			Forward: gw.Mixnode().Forward, EpochLength: cfg.EpochLength, Policy: exit,
			FlushDelay: cfg.ExitFlushDelay, Pay: gw.ExitPayment(), Logger: log,
		})
		if err != nil {
			gw.Close()
			return err
		}
		gw.SetExitHandler(r)
		n.IPRouters[spec.ID] = r
	}
	if n.DNS != nil {
		n.DNS.Set(spec.ID, addr)
	}
	return register()
}

// RestartGateway stops a gateway and starts it again with the same keys and
// addresses, as an operator's restart does: its connections drop, and its
// Sphinx keys, its mixnet clients and, at an exit, its IP packet router's
// sessions are new.
func (n *Network) RestartGateway(id string) error {
	st := n.gwState[id]
	gw := n.Gateways[id]
	if st == nil || gw == nil {
		return fmt.Errorf("localnet: no gateway %q", id)
	}
	if r := n.IPRouters[id]; r != nil {
		gw.SetExitHandler(nil)
		r.Close()
		delete(n.IPRouters, id)
	}
	if err := gw.Close(); err != nil {
		return fmt.Errorf("localnet: stop gateway %s: %w", id, err)
	}
	delete(n.Gateways, id)
	if err := n.startGateway(n.cfg, st.spec, st.addr, st); err != nil {
		return fmt.Errorf("localnet: restart gateway %s: %w", id, err)
	}
	return nil
}

// startWeb runs the "internet" host web.localnet on host.
func (n *Network) startWeb(host netip.Addr) error {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(host, 0).String())
	if err != nil {
		return fmt.Errorf("localnet: web listener: %w", err)
	}
	n.webSrv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from := netip.MustParseAddrPort(r.RemoteAddr).Addr()
		who := "not a node of the local network"
		for id, a := range n.Addrs {
			if a == from && id != "directory" {
				who = id
			}
		}
		fmt.Fprintf(w, "hello from web.localnet: you came from %s (%s)\n", from, who)
	})}
	go n.webSrv.Serve(ln)
	n.WebURL = fmt.Sprintf("http://web.localnet:%d/", ln.Addr().(*net.TCPAddr).Port)
	return nil
}

// startIssuers makes the issuers' keys (a trusted dealer, as nym-node
// issuer-keygen), runs IssuerCount issuers each on its own address, lists them
// in the directory and gives the demo account its allowance at each.
func (n *Network) startIssuers(cfg Config, addr *netip.Addr) error {
	keyDir := filepath.Join(cfg.Dir, "issuers")
	var dirs []string
	var err error
	if _, serr := os.Stat(filepath.Join(keyDir, issuer.GroupKeyFileName)); serr == nil {
		// A directory used before: the same issuers, ledgers and demo account.
		for i := 1; i <= IssuerCount; i++ {
			dirs = append(dirs, filepath.Join(keyDir, fmt.Sprintf("issuer-%d", i)))
		}
	} else if dirs, err = issuer.Keygen(rand.Reader, keyDir, IssuerThreshold, IssuerCount); err != nil {
		return fmt.Errorf("localnet: %w", err)
	}
	var shares []*credential.IssuerVerificationKey
	for k, d := range dirs {
		if cfg.PerNodeAddrs {
			*addr = addr.Next()
		}
		id := fmt.Sprintf("issuer-%d", k+1)
		idPub, idKey, err := ed25519.GenerateKey(nil)
		if err != nil {
			return err
		}
		iss, err := issuer.New(issuer.Config{ID: id, DataDir: d, Identity: idKey, Topology: n.Directory.Topology, Logger: cfg.Logger.With("node", id)})
		if err != nil {
			return fmt.Errorf("localnet: %s: %w", id, err)
		}
		n.Issuers[id] = iss
		ln, err := net.Listen("tcp", netip.AddrPortFrom(*addr, 0).String())
		if err != nil {
			return fmt.Errorf("localnet: %s: %w", id, err)
		}
		srv := &http.Server{Handler: iss.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		n.issuerSrvs = append(n.issuerSrvs, srv)
		url := "http://" + ln.Addr().String()
		n.IssuerURLs = append(n.IssuerURLs, url)
		n.Addrs[id] = *addr
		if n.DNS != nil {
			n.DNS.Set(id, *addr)
		}
		if err := n.Directory.Add(directory.Node{ID: id, Roles: []directory.Role{directory.RoleIssuer}, Country: "CH", IdentityKey: idPub, IssuerURL: url}); err != nil {
			return err
		}
		shares = append(shares, iss.Key().Share)
	}
	// Gateways verify against the key aggregated from a threshold of shares.
	if n.GroupKey, err = credential.AggregateVerificationKeys(shares[:IssuerThreshold]); err != nil {
		return fmt.Errorf("localnet: %w", err)
	}
	if !n.GroupKey.Equal(n.Issuers["issuer-1"].Key().Group) {
		return errors.New("localnet: the issuers' shares do not aggregate to their group key")
	}
	// The demo account.
	n.WalletDir = filepath.Join(cfg.Dir, "demo-wallet")
	n.Wallet, err = wallet.Open(wallet.Config{Dir: n.WalletDir, Topology: func(context.Context) (*directory.Topology, error) { return n.Directory.Topology(), nil },
		Logger: cfg.Logger.With("node", "demo-wallet")})
	if err != nil {
		return fmt.Errorf("localnet: demo wallet: %w", err)
	}
	if a := n.Wallet.Account(); a != nil {
		n.DemoPhrase = a.Phrase()
	} else if n.DemoPhrase, err = n.Wallet.CreateAccount(); err != nil {
		return fmt.Errorf("localnet: demo account: %w", err)
	}
	tickets := cfg.DemoTickets
	if tickets <= 0 {
		tickets = 100000
	}
	for _, iss := range n.Issuers {
		if _, err := iss.AddAllowance(n.Wallet.Account().ID(), tickets); err != nil {
			return fmt.Errorf("localnet: demo account: %w", err)
		}
	}
	return nil
}

// Ticket spends one of the demo account's tickets for gw in role: the
// function modes/fast's Config.Ticket wants.
func (n *Network) Ticket(ctx context.Context, role string, gw directory.Node) ([]byte, error) {
	return n.Wallet.Ticket(ctx, role, gw)
}

// Close stops every node.
func (n *Network) Close() error {
	var errs []error
	for id, r := range n.IPRouters {
		if gw := n.Gateways[id]; gw != nil {
			gw.SetExitHandler(nil)
		}
		errs = append(errs, r.Close())
	}
	for _, gw := range n.Gateways {
		errs = append(errs, gw.Close())
	}
	for _, srv := range n.issuerSrvs {
		// Shutdown waits for requests in flight before the databases close.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, srv.Shutdown(sctx))
		cancel()
	}
	for _, iss := range n.Issuers {
		errs = append(errs, iss.Close())
	}
	defer func() {
		if n.tempDir != "" {
			os.RemoveAll(n.tempDir)
		}
	}()
	for _, m := range n.Mixnodes {
		errs = append(errs, m.Close())
	}
	if n.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		errs = append(errs, n.httpSrv.Shutdown(ctx))
	}
	if n.webSrv != nil {
		errs = append(errs, n.webSrv.Close())
	}
	if n.DNS != nil {
		errs = append(errs, n.DNS.Close())
	}
	return errors.Join(errs...)
}

// Manifest is what nym-localnet writes to DIR/localnet.json.
type Manifest struct {
	// DirectoryURL carries the directory's key, so it alone is enough for
	// a client: nymvpn proxy --directory URL.
	DirectoryURL string `json:"directory_url"`
	// EpochLength is the directory's epoch (Sphinx keys and mix layers).
	EpochLength directory.Duration `json:"epoch_length"`
	DNS         string             `json:"dns,omitempty"`
	WebURL      string             `json:"web_url"`
	Nodes       []directory.Node   `json:"nodes"`
	// Issuers are the credential issuers' URLs (also listed in Nodes).
	Issuers []string `json:"issuers,omitempty"`
	// DemoAccount is the account the network made, with its allowance at
	// every issuer: a client uses its wallet directory (NYMVPN_WALLET_DIR)
	// or imports its recovery phrase.
	DemoAccount *DemoAccount `json:"demo_account,omitempty"`
	Started     time.Time    `json:"started"`
	PID         int          `json:"pid"`
}

// DemoAccount is the demo account in the manifest.
type DemoAccount struct {
	WalletDir string `json:"wallet_dir"`
	Phrase    string `json:"recovery_phrase"`
	ID        []byte `json:"id"`
}

// WriteManifest writes dir/localnet.json atomically and returns its path.
func (n *Network) WriteManifest(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("localnet: create %s: %w", dir, err)
	}
	m := Manifest{DirectoryURL: n.DirectoryURL, EpochLength: directory.Duration(n.EpochLength), WebURL: n.WebURL, Nodes: n.Directory.Topology().Nodes, Started: time.Now().UTC(), PID: os.Getpid(),
		Issuers: n.IssuerURLs}
	if n.Wallet != nil && n.Wallet.Account() != nil {
		m.DemoAccount = &DemoAccount{WalletDir: n.WalletDir, Phrase: n.DemoPhrase, ID: n.Wallet.Account().ID()}
	}
	if n.DNS != nil {
		m.DNS = n.DNS.Addr().String()
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "localnet.json")
	tmp := path + ".tmp"
	// 0600: the manifest carries the demo account's recovery phrase.
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("localnet: write manifest: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("localnet: write manifest: %w", err)
	}
	return path, nil
}
