package platform

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// FirewallPolicy is what the kill switch lets through in one state of the
// tunnel. The zero policy (Block false) means no firewall at all.
type FirewallPolicy struct {
	// Block turns the firewall on: everything not allowed below is dropped,
	// inbound and outbound, IPv4 and IPv6.
	Block bool
	// Endpoints may be reached by the daemon's own marked sockets (SO_MARK
	// FwMark): the directory and the chosen entry gateway's registration
	// and WireGuard endpoints. Nothing else gets out unmarked to them.
	Endpoints []Endpoint
	// FwMark is the daemon's socket mark; 0 means DefaultFwMark.
	FwMark uint32
	// Tunnel is the TUN whose traffic is allowed (Connected); empty allows
	// none.
	Tunnel string
	// TunnelDNS are the only resolvers DNS may go to, and only through the
	// tunnel; DNS to anything else is dropped before any LAN allowance.
	TunnelDNS []netip.Addr
	// AllowLAN lets traffic to and from private and link-local networks
	// through (printers, file shares), DNS excepted.
	AllowLAN bool
}

// Endpoint is a destination the daemon's sockets may reach.
type Endpoint struct {
	Proto string // "tcp" or "udp"
	Addr  netip.AddrPort
}

func (e Endpoint) String() string { return e.Proto + "/" + e.Addr.String() }

// FirewallRule is one rule of the planned ruleset. Zero fields match
// anything; every set field must match.
type FirewallRule struct {
	Chain string // "input" or "output"
	// Family is 4 or 6 when the rule is for one family only.
	Family int
	// IIF and OIF are interface names.
	IIF, OIF string
	// Proto is "tcp", "udp", "icmp" or "icmpv6".
	Proto string
	// Daddr, Saddr match address prefixes; Dport, Sport ports.
	Daddr, Saddr netip.Prefix
	Dport, Sport uint16
	// ICMPType matches one ICMPv6 type (with Proto icmpv6).
	ICMPType uint8
	// Mark matches the socket mark of outgoing packets.
	Mark uint32
	// Established matches packets of connections already allowed.
	Established bool
	// Verdict is "accept" or "drop".
	Verdict string
	// Why says what the rule is for; it is also the rule's comment in the
	// kernel, so a user can read the ruleset.
	Why string
}

// Firewall table and chain names, shared by the planners and appliers.
const (
	FirewallTable = "nymvpn"
	ChainInput    = "input"
	ChainOutput   = "output"
)

// lanNetworks are the private, link-local and local-multicast networks
// AllowLAN opens.
var lanNetworks = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/24"),       // local network control multicast (mDNS, IGMP)
	netip.MustParsePrefix("239.255.255.250/32"), // SSDP
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("ff02::/16"), // link-local multicast
}

// Link housekeeping of IPv6: multicast listener query, report and done
// (MLDv1 130–132, MLDv2 report 143), router solicitation and advertisement,
// neighbour solicitation and advertisement (133–136). Without them IPv6 on
// the link breaks, and they never leave the link.
var ndpTypes = []uint8{130, 131, 132, 133, 134, 135, 136, 143}

// PlanFirewall returns the ruleset for a policy, in order: for each chain
// the first matching rule decides, and a packet that matches none is
// dropped. A policy without Block plans nothing (no table at all).
func PlanFirewall(p FirewallPolicy) ([]FirewallRule, error) {
	if !p.Block {
		return nil, nil
	}
	if p.FwMark == 0 {
		p.FwMark = DefaultFwMark
	}
	for _, e := range p.Endpoints {
		if e.Proto != "tcp" && e.Proto != "udp" {
			return nil, fmt.Errorf("firewall: endpoint %s: protocol must be tcp or udp", e)
		}
		if !e.Addr.IsValid() || e.Addr.Port() == 0 {
			return nil, fmt.Errorf("firewall: endpoint %s: invalid address", e)
		}
	}
	if len(p.TunnelDNS) > 0 && p.Tunnel == "" {
		return nil, fmt.Errorf("firewall: tunnel resolvers without a tunnel interface")
	}
	var out, in []FirewallRule
	add := func(r *[]FirewallRule, rule FirewallRule) { *r = append(*r, rule) }

	// Loopback never leaves the machine.
	add(&out, FirewallRule{Chain: ChainOutput, OIF: "lo", Verdict: "accept", Why: "loopback"})
	add(&in, FirewallRule{Chain: ChainInput, IIF: "lo", Verdict: "accept", Why: "loopback"})

	// DNS: only to the tunnel's resolvers through the tunnel; anything else
	// is dropped before the endpoint, tunnel and LAN allowances.
	for _, d := range sortedAddrs(p.TunnelDNS) {
		for _, proto := range []string{"udp", "tcp"} {
			add(&out, FirewallRule{Chain: ChainOutput, OIF: p.Tunnel, Proto: proto, Daddr: hostPrefix(d), Dport: 53,
				Verdict: "accept", Why: "DNS to the tunnel's resolver"})
		}
	}
	for _, proto := range []string{"udp", "tcp"} {
		add(&out, FirewallRule{Chain: ChainOutput, Proto: proto, Dport: 53, Verdict: "drop", Why: "DNS outside the tunnel"})
	}

	// The daemon's own sockets to the gateways and the directory.
	eps := slices.Clone(p.Endpoints)
	slices.SortFunc(eps, func(a, b Endpoint) int { return strings.Compare(a.String(), b.String()) })
	eps = slices.Compact(eps)
	for _, e := range eps {
		add(&out, FirewallRule{Chain: ChainOutput, Mark: p.FwMark, Proto: e.Proto, Daddr: hostPrefix(e.Addr.Addr()),
			Dport: e.Addr.Port(), Verdict: "accept", Why: "nymvpnd to " + e.String()})
	}

	// Everything inside the tunnel.
	if p.Tunnel != "" {
		add(&out, FirewallRule{Chain: ChainOutput, OIF: p.Tunnel, Verdict: "accept", Why: "through the tunnel"})
		add(&in, FirewallRule{Chain: ChainInput, IIF: p.Tunnel, Verdict: "accept", Why: "from the tunnel"})
	}

	// Replies to what was allowed out.
	add(&in, FirewallRule{Chain: ChainInput, Established: true, Verdict: "accept", Why: "replies to allowed connections"})

	// What the link itself needs: DHCP and neighbour discovery.
	add(&out, FirewallRule{Chain: ChainOutput, Family: 4, Proto: "udp", Sport: 68, Dport: 67, Verdict: "accept", Why: "DHCP"})
	add(&in, FirewallRule{Chain: ChainInput, Family: 4, Proto: "udp", Sport: 67, Dport: 68, Verdict: "accept", Why: "DHCP"})
	add(&out, FirewallRule{Chain: ChainOutput, Family: 6, Proto: "udp", Sport: 546, Dport: 547, Verdict: "accept", Why: "DHCPv6"})
	add(&in, FirewallRule{Chain: ChainInput, Family: 6, Proto: "udp", Sport: 547, Dport: 546, Verdict: "accept", Why: "DHCPv6"})
	for _, t := range ndpTypes {
		add(&out, FirewallRule{Chain: ChainOutput, Family: 6, Proto: "icmpv6", ICMPType: t, Verdict: "accept", Why: "IPv6 link housekeeping (NDP, MLD)"})
		add(&in, FirewallRule{Chain: ChainInput, Family: 6, Proto: "icmpv6", ICMPType: t, Verdict: "accept", Why: "IPv6 link housekeeping (NDP, MLD)"})
	}

	if p.AllowLAN {
		for _, n := range lanNetworks {
			f := 4
			if n.Addr().Is6() {
				f = 6
			}
			add(&out, FirewallRule{Chain: ChainOutput, Family: f, Daddr: n, Verdict: "accept", Why: "local network"})
			add(&in, FirewallRule{Chain: ChainInput, Family: f, Saddr: n, Verdict: "accept", Why: "local network"})
		}
	}
	for i := range out {
		out[i].Family = familyOf(out[i])
	}
	for i := range in {
		in[i].Family = familyOf(in[i])
	}
	return append(in, out...), nil
}

func familyOf(r FirewallRule) int {
	switch {
	case r.Daddr.IsValid():
		return addrFamily(r.Daddr.Addr())
	case r.Saddr.IsValid():
		return addrFamily(r.Saddr.Addr())
	case r.Proto == "icmpv6":
		return 6
	case r.Proto == "icmp":
		return 4
	}
	return r.Family
}

func addrFamily(a netip.Addr) int {
	if a.Is4() || a.Is4In6() {
		return 4
	}
	return 6
}

func hostPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen())
}

func sortedAddrs(as []netip.Addr) []netip.Addr {
	out := slices.Clone(as)
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out)
}

// String renders a rule in nft's syntax, for logs, tests and docs.
func (r FirewallRule) String() string {
	var b strings.Builder
	w := func(s string) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	switch r.Family {
	case 4:
		w("meta nfproto ipv4")
	case 6:
		w("meta nfproto ipv6")
	}
	if r.IIF != "" {
		w(fmt.Sprintf("iifname %q", r.IIF))
	}
	if r.OIF != "" {
		w(fmt.Sprintf("oifname %q", r.OIF))
	}
	if r.Mark != 0 {
		w(fmt.Sprintf("meta mark 0x%x", r.Mark))
	}
	ip := "ip"
	if r.Family == 6 {
		ip = "ip6"
	}
	if r.Saddr.IsValid() {
		w(fmt.Sprintf("%s saddr %s", ip, r.Saddr))
	}
	if r.Daddr.IsValid() {
		w(fmt.Sprintf("%s daddr %s", ip, r.Daddr))
	}
	if r.Proto != "" && r.Sport == 0 && r.Dport == 0 && r.Proto != "icmpv6" {
		w("meta l4proto " + r.Proto)
	}
	if r.Sport != 0 {
		w(fmt.Sprintf("%s sport %d", r.Proto, r.Sport))
	}
	if r.Dport != 0 {
		w(fmt.Sprintf("%s dport %d", r.Proto, r.Dport))
	}
	if r.Proto == "icmpv6" {
		w(fmt.Sprintf("icmpv6 type %d", r.ICMPType))
	}
	if r.Established {
		w("ct state established,related")
	}
	w(r.Verdict)
	return b.String()
}
