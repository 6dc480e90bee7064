package daemon

import (
	"context"

	"github.com/nymvpn/nymvpn/daemon/tunnelstate"
	"github.com/nymvpn/nymvpn/platform"
)

// killSwitch enforces the state machine's protections with the platform's
// firewall (one nftables table on Linux).
type killSwitch struct {
	fw   *platform.Firewall
	mark uint32
}

func (k *killSwitch) Protect(_ context.Context, p tunnelstate.Protection) error {
	pol := platform.FirewallPolicy{Block: p.Block, FwMark: k.mark, Tunnel: p.Tunnel, TunnelDNS: p.DNS, AllowLAN: p.AllowLAN}
	for _, e := range p.Endpoints {
		pol.Endpoints = append(pol.Endpoints, platform.Endpoint{Proto: e.Proto, Addr: e.Addr})
	}
	return k.fw.Apply(pol)
}
