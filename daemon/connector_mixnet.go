package daemon

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/tunnelstate"
	"github.com/nymvpn/nymvpn/modes"
	"github.com/nymvpn/nymvpn/modes/mixnet"
	"github.com/nymvpn/nymvpn/node/directory"
)

// connectMixnet builds a mixnet-mode tunnel on a kernel TUN of MTU
// mixnet.MTU (1500: one full-size IP packet per Sphinx packet). Routes and
// DNS go through the platform System like fast mode's. The daemon's own
// outer sockets — the directory, the payment registration and the Noise
// connection to the entry gateway — carry the fwmark, and the kill switch
// lets the directory, the entry's registration and mixnet client endpoints
// through (the tunnel refreshes the directory while it runs).
func (c *fastConnector) connectMixnet(ctx context.Context, s api.Settings, progress tunnelstate.Progress, allow tunnelstate.Allow) (tunnelstate.Tunnel, error) {
	profile, err := mixnet.ProfileByName(s.PrivacyProfile)
	if err != nil {
		return nil, tunnelstate.Permanent(api.CodeInvalidSetting, err)
	}
	topo, eps, err := c.fetchTopology(ctx, s, progress, allow)
	if err != nil {
		return nil, err
	}
	progress(StageChoosing, nil, nil)
	entry, exit, err := mixnet.SelectGateways(topo, modes.ParseChoice(s.Entry), modes.ParseChoice(s.Exit), rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	if err != nil {
		return nil, fmt.Errorf("choose gateways for mixnet mode: %w", err)
	}
	eg, xg := mixnetGatewayOf(entry), mixnetGatewayOf(exit)
	entryEPs, err := mixnetEndpoints(entry)
	if err != nil {
		return nil, err
	}
	if err := allow(ctx, entryEPs...); err != nil {
		return nil, err
	}
	eps = append(eps, entryEPs...)
	pay, err := c.accounts.payMixnet(ctx, topo, func() { progress(StageTickets, &eg, &xg) }, allow)
	if err != nil {
		return nil, err
	}
	progress(StageTUN, &eg, &xg)
	dev, name, err := c.createTUN(mixnet.MTU)
	if err != nil {
		return nil, err
	}
	dirURL := s.DirectoryURL
	t, err := mixnet.Connect(ctx, mixnet.Config{
		Topology: topo,
		Refresh: func(ctx context.Context) (*directory.Topology, error) {
			return (&directory.Client{URL: dirURL, HTTP: c.directories.http}).Fetch(ctx)
		},
		Entry: entry, Exit: exit, Profile: profile, Inner: dev,
		Ticket:        pay.ticket,
		Dial:          markedDialer(c.cfg.FwMark).DialContext,
		AllowLoopback: isLoopbackAddr(entry.MixClientAddr) || isLoopbackAddr(exit.MixAddr),
		Progress:      func(st mixnet.Stage) { progress(string(st), &eg, &xg) },
		Logger:        c.log.With("mode", "mixnet"),
	})
	if err != nil {
		// mixnet.Connect closed the device, or never took it (a double
		// close is harmless for wireguard-go's TUN).
		dev.Close()
		if perr := pay.classify(err); perr != nil {
			return nil, perr
		}
		return nil, err
	}
	dns := s.DNS
	if len(dns) == 0 {
		dns = t.DNSServers()
	}
	info := tunnelstate.Info{Mode: api.ModeMixnet, Entry: eg, Exit: xg, Interface: name, MTU: t.MTU(), DNS: dns, Endpoints: eps}
	for _, a := range t.Addresses() {
		if a.Is6() && !s.IPv6 {
			continue
		}
		info.Addresses = append(info.Addresses, netip.PrefixFrom(a, a.BitLen()))
		if a.Is6() {
			info.IPv6 = true
		}
	}
	c.log.Info("mixnet tunnel up", "entry", entry.ID, "exit", exit.ID, "profile", profile.Name, "interface", name, "mtu", info.MTU)
	return &mixnetTunnel{t: t, info: info}, nil
}

// mixnetTunnel adapts mixnet.Tunnel to the state machine.
type mixnetTunnel struct {
	t    *mixnet.Tunnel
	info tunnelstate.Info
}

func (m *mixnetTunnel) Info() tunnelstate.Info { return m.info }

// Traffic counts the IP bytes carried; the last exit answer stands for the
// handshake time of fast mode.
func (m *mixnetTunnel) Traffic() api.Traffic {
	st := m.t.Stats()
	tr := api.Traffic{TxBytes: int64(st.BytesOut), RxBytes: int64(st.BytesIn)}
	if h := m.t.Health(); !h.LastPong.IsZero() {
		tr.LastHandshake = &h.LastPong
	}
	return tr
}

// Check reports a tunnel that could not repair itself: no answer from the
// exit through the mixnet for mixnet.DeadAfter, or a refusal.
func (m *mixnetTunnel) Check(now time.Time) error { return m.t.Check(now) }

func (m *mixnetTunnel) Close() error { return m.t.Close() }

// mixnetGatewayOf is a gateway as the API shows it in mixnet mode: its
// endpoint is where mixnet traffic goes (the entry's client address, the
// exit's Sphinx address).
func mixnetGatewayOf(n directory.Node) api.Gateway {
	g := gatewayOf(n)
	g.Endpoint = n.MixAddr
	if n.MixClientAddr != "" {
		g.Endpoint = n.MixClientAddr
	}
	return g
}

// mixnetEndpoints are the entry gateway's registration (paying) and mixnet
// client endpoints, both TCP.
func mixnetEndpoints(n directory.Node) ([]tunnelstate.Endpoint, error) {
	reg, err := netip.ParseAddrPort(n.RegistrationAddr)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: registration address: %w", n.ID, err)
	}
	mc, err := netip.ParseAddrPort(n.MixClientAddr)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: mixnet client address: %w", n.ID, err)
	}
	return []tunnelstate.Endpoint{{Proto: "tcp", Addr: reg}, {Proto: "tcp", Addr: mc}}, nil
}

// payMixnet makes sure there are mixnet-entry tickets (fetching a book,
// through the kill switch, when there are none) and returns the payment
// whose ticket function pays the entry gateway. Without an account it pays
// nothing: entries that admit mixnet clients for free still work.
func (a *accounts) payMixnet(ctx context.Context, topo *directory.Topology, progress func(), allow tunnelstate.Allow) (*payment, error) {
	p := &payment{a: a, topUpErrs: map[string]error{}}
	if a == nil || a.w == nil || a.w.Account() == nil {
		return p, nil
	}
	if a.w.Counts()[credential.MixnetEntry] == 0 {
		progress()
		if err := allow(ctx, issuerEndpoints(topo, a.log)...); err != nil {
			return nil, err
		}
		err := a.w.Refill(ctx, credential.MixnetEntry)
		a.publish()
		if err != nil {
			if perr := p.classify(err); perr != nil {
				return nil, perr
			}
			return nil, fmt.Errorf("fetch mixnet tickets from the issuers: %w", err)
		}
	}
	p.ticket = func(ctx context.Context, role string, gw directory.Node) ([]byte, error) {
		tk, err := a.w.Ticket(ctx, role, gw)
		a.publish()
		return tk, err
	}
	return p, nil
}
