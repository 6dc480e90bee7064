package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/tun/netstack"
)

// errPolicy marks a flow refused by policy.
var errPolicy = errors.New("gateway: refused by policy")

// router is the gateway's netstack.Forwarder: it looks up which client sent a
// flow and applies that client's role's policy before dialing.
type router struct {
	g      *Gateway
	direct *netstack.DirectForwarder
}

var _ netstack.Forwarder = (*router)(nil)

func (r *router) DialTCP(ctx context.Context, f netstack.Flow) (net.Conn, error) {
	dst, err := r.route(f, "tcp")
	if err != nil {
		return nil, err
	}
	return r.direct.DialTCP(ctx, netstack.Flow{Src: f.Src, Dst: dst})
}

func (r *router) DialUDP(ctx context.Context, f netstack.Flow) (net.Conn, error) {
	dst, err := r.route(f, "udp")
	if err != nil {
		return nil, err
	}
	return r.direct.DialUDP(ctx, netstack.Flow{Src: f.Src, Dst: dst})
}

func (r *router) Ping(ctx context.Context, f netstack.Flow, payload []byte) error {
	if _, err := r.route(f, "icmp"); err != nil {
		return err
	}
	return r.direct.Ping(ctx, f, payload)
}

// route applies the sender's policy and returns where to dial.
func (r *router) route(f netstack.Flow, proto string) (netip.AddrPort, error) {
	g := r.g
	p, ok := g.peers.lookup(f.Src.Addr())
	if !ok {
		g.stats.refused.Add(1)
		return netip.AddrPort{}, fmt.Errorf("%w: %s from unregistered source %v", errPolicy, proto, f.Src)
	}
	switch p.role {
	case registration.RoleEntry:
		if !r.exitEndpoint(f.Dst, proto) {
			g.stats.refused.Add(1)
			g.log.Debug("entry flow refused: not an exit gateway endpoint", "flow", f, "proto", proto)
			return netip.AddrPort{}, fmt.Errorf("%w: entry clients may only reach exit gateways, not %v", errPolicy, f.Dst)
		}
		g.stats.entryFlows.Add(1)
		return f.Dst, nil
	case registration.RoleExit:
		dst, err := r.exitDestination(f.Dst, proto)
		if err != nil {
			g.stats.refused.Add(1)
			g.log.Debug("exit flow refused", "flow", f, "proto", proto, "err", err)
			return netip.AddrPort{}, err
		}
		g.stats.exitFlows.Add(1)
		return dst, nil
	}
	return netip.AddrPort{}, fmt.Errorf("%w: unknown role %q", errPolicy, p.role)
}

// exitEndpoint reports whether dst is an exit gateway's WireGuard endpoint
// (UDP) or registration endpoint (TCP) in the current directory.
func (r *router) exitEndpoint(dst netip.AddrPort, proto string) bool {
	topo := r.g.cfg.Topology()
	if topo == nil {
		return false
	}
	for _, n := range topo.WithRole(directory.RoleExit) {
		var ep string
		switch proto {
		case "udp":
			ep = n.WireGuardAddr
		case "tcp":
			ep = n.RegistrationAddr
		default:
			return false
		}
		if ap, err := netip.ParseAddrPort(ep); err == nil && ap == dst {
			return true
		}
	}
	return false
}

// exitDestination applies the exit policy. (DNS to the gateway's own tunnel
// addresses never gets here: the stack's listeners serve it, see serveDNS.)
func (r *router) exitDestination(dst netip.AddrPort, proto string) (netip.AddrPort, error) {
	if err := r.g.cfg.Exit.refuse(dst.Addr(), r.g.cfg.Pool4, r.g.cfg.Pool6); err != nil {
		return netip.AddrPort{}, err
	}
	return dst, nil
}

// refuse says why exit traffic may not go to a, or nil: unspecified,
// multicast and link-local destinations, loopback unless AllowLoopback, the
// client pools and the Deny list are refused.
func (p *ExitPolicy) refuse(a netip.Addr, pools ...netip.Prefix) error {
	switch {
	case a.IsUnspecified(), a.IsMulticast(), a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(),
		a.IsInterfaceLocalMulticast():
		return fmt.Errorf("%w: %v is not a routable destination", errPolicy, a)
	case a.IsLoopback() && !p.AllowLoopback:
		return fmt.Errorf("%w: %v is the gateway's own loopback", errPolicy, a)
	}
	for _, pool := range pools {
		if pool.Contains(a) {
			return fmt.Errorf("%w: %v is another client of this gateway", errPolicy, a)
		}
	}
	for _, d := range p.Deny {
		if d.Contains(a) {
			return fmt.Errorf("%w: %v is in the denied range %v", errPolicy, a, d)
		}
	}
	return nil
}
