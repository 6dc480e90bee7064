package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/tunnelstate"
	"github.com/nymvpn/nymvpn/modes"
	"github.com/nymvpn/nymvpn/modes/fast"
	"github.com/nymvpn/nymvpn/node/directory"
	"golang.zx2c4.com/wireguard/tun"
)

// Stages the connector reports besides fast mode's own.
const (
	StageDirectory = "fetching the network directory"
	StageChoosing  = "choosing gateways"
	StageTUN       = "creating the tunnel device"
)

// fastConnector builds fast-mode tunnels on a kernel TUN, and mixnet-mode
// ones (connector_mixnet.go).
type fastConnector struct {
	cfg         Config
	log         *slog.Logger
	directories *topologyCache
	accounts    *accounts // pays the gateways (account.go)
	keys        fastKeys  // the session's fast-mode keys (fastkeys.go)
}

// endSession drops the fast-mode keys of the session (see fastKeys): the
// daemon calls it when the user disconnects or changes the mode.
func (c *fastConnector) endSession() { c.keys.forget() }

func (c *fastConnector) Connect(ctx context.Context, s api.Settings, progress tunnelstate.Progress, allow tunnelstate.Allow) (tunnelstate.Tunnel, error) {
	if s.DirectoryURL == "" {
		return nil, tunnelstate.Permanent(api.CodeNoDirectory,
			errors.New("no network directory is configured: run `nymvpn settings set directory URL`"))
	}
	if s.Mode == api.ModeMixnet {
		c.endSession()
		return c.connectMixnet(ctx, s, progress, allow)
	}
	topo, _, err := c.fetchTopology(ctx, s, progress, allow)
	if err != nil {
		return nil, err
	}
	progress(StageChoosing, nil, nil)
	entry, exit, err := modes.SelectGateways(topo, modes.ParseChoice(s.Entry), modes.ParseChoice(s.Exit), rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	if err != nil {
		// The directory may change (a gateway comes back), so this is
		// retried rather than final.
		return nil, fmt.Errorf("choose gateways: %w", err)
	}
	eg, xg := gatewayOf(entry), gatewayOf(exit)
	entryEPs, err := gatewayEndpoints(entry)
	if err != nil {
		return nil, err
	}
	if err := allow(ctx, entryEPs...); err != nil {
		return nil, err
	}
	pay, err := c.accounts.pay(ctx, topo, func() { progress(StageTickets, &eg, &xg) }, allow)
	if err != nil {
		return nil, err
	}
	entryKey, exitKey, resume, err := c.keys.take(ctx, entry, exit)
	if err != nil {
		return nil, fmt.Errorf("fast-mode keys: %w", err)
	}
	if resume {
		c.log.Info("reconnecting to the same gateways: resuming with the session's keys", "entry", entry.ID, "exit", exit.ID)
	}
	progress(StageTUN, &eg, &xg)
	dev, name, err := c.createTUN(fast.ExitMTU)
	if err != nil {
		return nil, err
	}
	loopback := isLoopbackAddr(entry.RegistrationAddr) || isLoopbackAddr(exit.RegistrationAddr)
	t, err := fast.Connect(ctx, fast.Config{
		Entry: entry, Exit: exit, Inner: dev,
		EntryKey: entryKey, ExitKey: exitKey, Resume: resume,
		Dial: markedDialer(c.cfg.FwMark).DialContext,
		AllowEntry: func(ctx context.Context, ep netip.AddrPort) error {
			return allow(ctx, tunnelstate.Endpoint{Proto: "udp", Addr: ep})
		},
		Ticket:        pay.ticket,
		MeterInterval: meterInterval,
		OnTopUp:       pay.onTopUp,
		FwMark:        c.cfg.FwMark,
		AllowLoopback: loopback,
		Progress:      func(st fast.Stage) { progress(string(st), &eg, &xg) },
		Logger:        c.log,
	})
	if err != nil {
		// fast.Connect closed the device with the exit tunnel, or never
		// took it: close it here in the latter case (a double close is
		// harmless for wireguard-go's TUN).
		dev.Close()
		if perr := pay.classify(err); perr != nil {
			return nil, perr
		}
		return nil, err
	}
	ek, xk := t.Keys()
	c.keys.keep(ctx, entry, exit, ek, xk)
	dns := s.DNS
	if len(dns) == 0 {
		dns = t.DNSServers()
	}
	eps := []tunnelstate.Endpoint{entryEPs[0], {Proto: "udp", Addr: t.EntryEndpoint}} // registration (top-ups), WireGuard
	info := tunnelstate.Info{Mode: api.ModeFast, Entry: eg, Exit: xg, Interface: name, MTU: fast.ExitMTU, DNS: dns, Endpoints: eps}
	for _, a := range t.Addresses() {
		if a.Is6() && !s.IPv6 {
			continue
		}
		info.Addresses = append(info.Addresses, netip.PrefixFrom(a, a.BitLen()))
		if a.Is6() {
			info.IPv6 = true
		}
	}
	return &fastTunnel{t: t, info: info, started: time.Now(), pay: pay}, nil
}

// fetchTopology lets the directory through the kill switch and fetches the
// verified topology; it returns the directory's endpoint when it has one.
func (c *fastConnector) fetchTopology(ctx context.Context, s api.Settings, progress tunnelstate.Progress, allow tunnelstate.Allow) (*directory.Topology, []tunnelstate.Endpoint, error) {
	progress(StageDirectory, nil, nil)
	var eps []tunnelstate.Endpoint
	dirEP, err := directoryEndpoint(s.DirectoryURL)
	if err != nil {
		if s.KillSwitch || s.Lockdown {
			return nil, nil, tunnelstate.Permanent(api.CodeInvalidSetting, err)
		}
	} else {
		if err := allow(ctx, dirEP); err != nil {
			return nil, nil, err
		}
		eps = append(eps, dirEP)
	}
	topo, err := c.directories.get(ctx, s.DirectoryURL)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch the network directory: %w", err)
	}
	return topo, eps, nil
}

// createTUN creates the tunnel device and returns it with its name.
func (c *fastConnector) createTUN(mtu int) (tun.Device, string, error) {
	dev, err := tun.CreateTUN(c.cfg.Interface, mtu)
	if err != nil {
		return nil, "", tunnelstate.Permanent(api.CodeInternal, fmt.Errorf("create the tunnel device %s: %w (is nymvpnd running as root?)", c.cfg.Interface, err))
	}
	name, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, "", fmt.Errorf("tunnel device name: %w", err)
	}
	return dev, name, nil
}

// fastTunnel adapts fast.Tunnel to the state machine.
type fastTunnel struct {
	t       *fast.Tunnel
	info    tunnelstate.Info
	started time.Time
	pay     *payment
}

func (f *fastTunnel) Info() tunnelstate.Info { return f.info }

func (f *fastTunnel) Traffic() api.Traffic {
	st := f.t.Stats()
	tr := api.Traffic{TxBytes: st.ExitTx, RxBytes: st.ExitRx}
	if !st.LastHandshake.IsZero() {
		h := st.LastHandshake
		tr.LastHandshake = &h
	}
	return tr
}

// StaleHandshake is how old a hop's last handshake may grow before the
// tunnel counts as dead. WireGuard renews sessions every 2 minutes while
// packets (here at least the 25 s keepalives) flow, and drops a session
// after 3 minutes; a little more than that means the peer is gone.
const StaleHandshake = 3*time.Minute + 30*time.Second

func (f *fastTunnel) Check(now time.Time) error {
	if err := f.pay.check(f.t); err != nil {
		return err
	}
	st := f.t.Stats()
	for _, h := range []struct {
		name string
		at   time.Time
	}{{"exit", st.LastHandshake}, {"entry", st.EntryHandshake}} {
		at := h.at
		if at.IsZero() {
			at = f.started
		}
		if age := now.Sub(at); age > StaleHandshake {
			return fmt.Errorf("no WireGuard handshake with the %s gateway for %s", h.name, age.Round(time.Second))
		}
	}
	return nil
}

func (f *fastTunnel) Close() error { return f.t.Close() }

func gatewayOf(n directory.Node) api.Gateway {
	g := api.Gateway{ID: n.ID, Country: n.Country, Endpoint: n.WireGuardAddr}
	for _, r := range n.Roles {
		switch r {
		case directory.RoleEntry:
			g.Roles = append(g.Roles, "entry")
		case directory.RoleExit:
			g.Roles = append(g.Roles, "exit")
		}
	}
	return g
}

// directoryEndpoint is where the directory URL points, for the kill switch:
// it must name an IP address, since DNS is blocked while connecting.
func directoryEndpoint(dirURL string) (tunnelstate.Endpoint, error) {
	base, _, err := directory.ParseURL(dirURL)
	if err != nil {
		return tunnelstate.Endpoint{}, err
	}
	u, err := url.Parse(base)
	if err != nil {
		return tunnelstate.Endpoint{}, err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return tunnelstate.Endpoint{}, fmt.Errorf("with the kill switch on, the directory URL must name an IP address (DNS is blocked while connecting), not %q", u.Hostname())
	}
	return tunnelstate.Endpoint{Proto: "tcp", Addr: ap}, nil
}

// gatewayEndpoints are the entry gateway's registration (TCP) and
// WireGuard (UDP) endpoints.
func gatewayEndpoints(n directory.Node) ([]tunnelstate.Endpoint, error) {
	reg, err := netip.ParseAddrPort(n.RegistrationAddr)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: registration address: %w", n.ID, err)
	}
	wg, err := netip.ParseAddrPort(n.WireGuardAddr)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: WireGuard address: %w", n.ID, err)
	}
	return []tunnelstate.Endpoint{{Proto: "tcp", Addr: reg}, {Proto: "udp", Addr: wg}}, nil
}

func isLoopbackAddr(hostport string) bool {
	ap, err := netip.ParseAddrPort(hostport)
	return err == nil && ap.Addr().IsLoopback()
}

// markedDialer dials outside the tunnel: its sockets carry the fwmark that
// the policy routing rules send around the TUN.
func markedDialer(mark uint32) *net.Dialer {
	return &net.Dialer{Timeout: 15 * time.Second, Control: markControl(mark)}
}

// topologyCache fetches the directory over marked sockets and keeps the
// verified topology for a minute, so listing gateways and connecting do not
// fetch it twice in a row.
type topologyCache struct {
	http *http.Client
	mu   sync.Mutex
	url  string
	at   time.Time
	topo *directory.Topology
}

const topologyTTL = time.Minute

func newTopologyCache(mark uint32) *topologyCache {
	tr := &http.Transport{DialContext: markedDialer(mark).DialContext, Proxy: nil, MaxIdleConns: 1, IdleConnTimeout: 30 * time.Second}
	return &topologyCache{http: &http.Client{Transport: tr, Timeout: directory.DefaultHTTPTimeout}}
}

func (c *topologyCache) get(ctx context.Context, url string) (*directory.Topology, error) {
	c.mu.Lock()
	if c.topo != nil && c.url == url && time.Since(c.at) < topologyTTL {
		t := c.topo
		c.mu.Unlock()
		return t, nil
	}
	c.mu.Unlock()
	topo, err := (&directory.Client{URL: url, HTTP: c.http}).Fetch(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.url, c.at, c.topo = url, time.Now(), topo
	c.mu.Unlock()
	return topo, nil
}
