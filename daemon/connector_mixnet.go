package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/tunnelstate"
	"github.com/nymvpn/nymvpn/mixnet/ipr"
	"github.com/nymvpn/nymvpn/modes"
	"github.com/nymvpn/nymvpn/modes/mixnet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/registration"
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
	// Mixnet-entry tickets pay the entry's mixnet ingress, mixnet-exit
	// ones the exit's IP packet router.
	pay, err := c.accounts.payFor(ctx, mixnetPayTypes, topo, func() { progress(StageTickets, &eg, &xg) }, allow)
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
		Ticket: pay.ticket,
		Dial:   markedDialer(c.cfg.FwMark).DialContext,
		// A restarted entry may come back on new ports: the kill switch
		// lets them through before the tunnel dials them.
		Reach: func(ctx context.Context, n directory.Node) error {
			eps, err := mixnetEndpoints(n)
			if err != nil {
				return err
			}
			return allow(ctx, eps...)
		},
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
		if perr := pay.classifyExit(err); perr != nil {
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
// exit through the mixnet for mixnet.DeadAfter, a refusal, or an exit
// allowance used up after paying again failed ("exit gateway … refused the
// ticket: …").
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

// classifyExit turns the exit gateway's refusal of the session's payment
// (the IP packet router's, in mixnet mode) into the state machine's
// permanent error, as classify does for a registration's; nil for other
// errors.
func (p *payment) classifyExit(err error) error {
	var xerr *mixnet.ExitPaymentError
	if !errors.As(err, &xerr) {
		return nil
	}
	switch {
	case xerr.Code == ipr.ErrPaymentRequired && p.ticket == nil:
		return noAccountToPay(err)
	case xerr.Code == ipr.ErrTicketRefused && strings.HasPrefix(xerr.Reason, registration.CodeTicketStale):
		return tunnelstate.Permanent(api.CodeTicketRefused, fmt.Errorf("the exit gateway refused a ticket as stale: is this computer's clock right? (%w)", err))
	case xerr.Code == ipr.ErrTicketRefused:
		return tunnelstate.Permanent(api.CodeTicketRefused, err)
	}
	return tunnelstate.Permanent(api.CodeUnavailable, err)
}
