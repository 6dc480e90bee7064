package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Defaults for the zero values of NetConfig.
const (
	// DefaultFwMark is the mark of the daemon's outer sockets (wg-quick's
	// choice: the WireGuard port).
	DefaultFwMark uint32 = 51820
	// DefaultTable is the routing table of the tunnel routes.
	DefaultTable = 51820
	// DefaultRulePriority is the priority of the "not fwmark" rule; the
	// "suppress_prefixlength 0" rule takes the one before it (these are the
	// priorities the kernel gives wg-quick's rules on a stock system), the
	// DNS resolver rules the one before that.
	DefaultRulePriority = 32765
)

// Routing tables the kernel reserves; the tunnel table must be another.
const (
	tableDefault = 253
	tableMain    = 254
	tableLocal   = 255
)

// srcValidMark is the sysctl wg-quick sets so that reverse-path filtering
// takes the fwmark into account for the daemon's marked sockets.
const srcValidMark = "net.ipv4.conf.all.src_valid_mark"

// NetConfig is what the tunnel needs from the system.
type NetConfig struct {
	// Interface is the TUN device's name; the caller created it.
	Interface string
	// MTU is set on the interface; 0 leaves the interface's MTU as it is.
	// With IPv6 tunnelled it must be at least 1280.
	MTU int
	// Addresses are the client's addresses inside the tunnel (e.g.
	// 10.1.0.7/32, fc01::7/128). IPv6 addresses are used only when IPv6 is
	// set.
	Addresses []netip.Prefix
	// DNS are the resolvers inside the tunnel. At least one of a tunnelled
	// family is required (anything else would leak DNS); resolvers of a
	// family that is not tunnelled are left out.
	DNS []netip.Addr
	// FwMark is the mark the daemon puts on its own outer sockets (SO_MARK);
	// packets with it use the main table. 0 means DefaultFwMark.
	FwMark uint32
	// Table is the routing table of the tunnel routes. 0 means DefaultTable.
	Table int
	// RulePriority is the priority of the "not fwmark" rules; the
	// "suppress_prefixlength 0" rules take RulePriority-1 and the rules
	// for the DNS resolvers RulePriority-2. 0 means DefaultRulePriority.
	RulePriority int
	// IPv6 tunnels IPv6. When it is false, or Addresses has no IPv6 address,
	// IPv6 is blocked instead: the table gets "unreachable ::/0", so nothing
	// leaks past the tunnel and applications fall back to IPv4 at once.
	// (IPv4 is blocked the same way when Addresses has no IPv4 address.)
	IPv6 bool
}

// DNSBackend says how DNS is pointed at the tunnel.
type DNSBackend string

// DNS backends. Options.DNSBackend takes any of them; a Change always has a
// concrete one (resolved or resolvconf).
const (
	// DNSAuto uses systemd-resolved when it runs and manages
	// /etc/resolv.conf, else the file.
	DNSAuto DNSBackend = "auto"
	// DNSResolved sets the TUN's link DNS in systemd-resolved over D-Bus.
	DNSResolved DNSBackend = "resolved"
	// DNSResolvConf rewrites resolv.conf.
	DNSResolvConf DNSBackend = "resolvconf"
)

// Kind names what a Change does.
type Kind string

// The kinds of Change.
const (
	// KindAddress adds Prefix to the interface Link.
	KindAddress Kind = "address"
	// KindMTU sets the MTU of Link.
	KindMTU Kind = "mtu"
	// KindLinkUp sets Link up.
	KindLinkUp Kind = "link-up"
	// KindRoute adds a route to Prefix in Table, through Link, or of type
	// unreachable when Unreachable is set.
	KindRoute Kind = "route"
	// KindRule adds a policy routing rule of Family at Priority: "not
	// fwmark Mark table Table" (Not set), "table Table
	// suppress_prefixlength 0" (SuppressDefault set) or "to To table
	// Table".
	KindRule Kind = "rule"
	// KindSysctl sets the sysctl Sysctl (dotted name) to Value.
	KindSysctl Kind = "sysctl"
	// KindDNS points the system's resolver at DNS with Backend (for
	// resolved, on Link).
	KindDNS Kind = "dns"
)

// Change is one change to the system, as data. Which fields are used depends
// on Kind. Changes are journaled as JSON, so the field set is part of the
// journal format.
type Change struct {
	Kind Kind `json:"kind"`
	// Link is the interface (address, mtu, link-up, route through it,
	// resolved DNS).
	Link string `json:"link,omitempty"`
	// Prefix is the address (address) or the destination (route).
	Prefix netip.Prefix `json:"prefix,omitzero"`
	// MTU is the new MTU (mtu).
	MTU int `json:"mtu,omitempty"`
	// Table is the routing table (route, rule).
	Table int `json:"table,omitempty"`
	// Unreachable makes a route of type unreachable instead of via Link.
	Unreachable bool `json:"unreachable,omitempty"`
	// Family is 4 or 6 (rule).
	Family int `json:"family,omitempty"`
	// Priority is the rule's priority (rule).
	Priority int `json:"priority,omitempty"`
	// To is the rule's destination, "to To" (rule).
	To netip.Prefix `json:"to,omitzero"`
	// Mark is the rule's fwmark (rule).
	Mark uint32 `json:"mark,omitempty"`
	// Not inverts the rule's match: "not fwmark Mark".
	Not bool `json:"not,omitempty"`
	// SuppressDefault is "suppress_prefixlength 0": routes of prefix length
	// 0 (default routes) found in Table are ignored.
	SuppressDefault bool `json:"suppress_default,omitempty"`
	// Sysctl is the sysctl's dotted name and Value its new value (sysctl).
	Sysctl string `json:"sysctl,omitempty"`
	Value  string `json:"value,omitempty"`
	// DNS are the resolvers and Backend the way they are set (dns).
	DNS     []netip.Addr `json:"dns,omitempty"`
	Backend DNSBackend   `json:"backend,omitempty"`
}

// String describes the change in the words of ip(8) and sysctl(8).
func (c Change) String() string {
	switch c.Kind {
	case KindAddress:
		return fmt.Sprintf("ip address add %s dev %s", c.Prefix, c.Link)
	case KindMTU:
		return fmt.Sprintf("ip link set dev %s mtu %d", c.Link, c.MTU)
	case KindLinkUp:
		return fmt.Sprintf("ip link set dev %s up", c.Link)
	case KindRoute:
		if c.Unreachable {
			return fmt.Sprintf("ip -%d route add unreachable %s table %d", family(c.Prefix.Addr()), c.Prefix, c.Table)
		}
		return fmt.Sprintf("ip -%d route add %s dev %s table %d", family(c.Prefix.Addr()), c.Prefix, c.Link, c.Table)
	case KindRule:
		var b strings.Builder
		fmt.Fprintf(&b, "ip -%d rule add", c.Family)
		if c.Not {
			b.WriteString(" not")
		}
		if c.To.IsValid() {
			fmt.Fprintf(&b, " to %s", c.To)
		}
		if c.Mark != 0 {
			fmt.Fprintf(&b, " fwmark %d", c.Mark)
		}
		b.WriteString(" table ")
		b.WriteString(tableName(c.Table))
		if c.SuppressDefault {
			b.WriteString(" suppress_prefixlength 0")
		}
		fmt.Fprintf(&b, " pref %d", c.Priority)
		return b.String()
	case KindSysctl:
		return fmt.Sprintf("sysctl -w %s=%s", c.Sysctl, c.Value)
	case KindDNS:
		var b strings.Builder
		fmt.Fprintf(&b, "dns %s", c.Backend)
		if c.Backend == DNSResolved {
			fmt.Fprintf(&b, " link %s", c.Link)
		}
		for _, a := range c.DNS {
			fmt.Fprintf(&b, " nameserver %s", a)
		}
		if c.Backend == DNSResolved {
			b.WriteString(" domain ~. default-route")
		}
		return b.String()
	}
	return fmt.Sprintf("unknown change %q", string(c.Kind))
}

func tableName(t int) string {
	switch t {
	case tableMain:
		return "main"
	case tableLocal:
		return "local"
	case tableDefault:
		return "default"
	}
	return fmt.Sprint(t)
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// withDefaults returns c with the zero values of FwMark, Table and
// RulePriority replaced by their defaults.
func (c NetConfig) withDefaults() NetConfig {
	if c.FwMark == 0 {
		c.FwMark = DefaultFwMark
	}
	if c.Table == 0 {
		c.Table = DefaultTable
	}
	if c.RulePriority == 0 {
		c.RulePriority = DefaultRulePriority
	}
	return c
}

// Plan returns the changes Up makes for c, in order, with DNS set through
// backend (DNSResolved or DNSResolvConf). It is pure: it looks at nothing
// but its arguments, and it rejects configurations that would leak traffic
// or DNS or that the kernel would refuse.
//
// The order is: addresses, MTU, link up, the default routes in the tunnel
// table (IPv4, IPv6), src_valid_mark, the rules (IPv4, IPv6; "not fwmark"
// before "suppress_prefixlength 0", as wg-quick adds them, then one "to
// RESOLVER table TABLE" per DNS resolver), DNS. Undoing goes in reverse.
//
// The resolver rules go beyond wg-quick: the suppress rule lets every
// non-default route of the main table win, so a local network that
// overlaps the tunnel's resolver (a LAN of 10.0.0.0/8 and a resolver at
// 10.1.0.1) would otherwise take the DNS queries around the tunnel.
func Plan(c NetConfig, backend DNSBackend) ([]Change, error) {
	c = c.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	if backend != DNSResolved && backend != DNSResolvConf {
		return nil, fmt.Errorf("platform: plan: DNS backend %q is not one of %q, %q", backend, DNSResolved, DNSResolvConf)
	}
	var v4, v6 []netip.Prefix
	for _, p := range c.Addresses {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else if c.IPv6 {
			v6 = append(v6, p)
		}
	}
	tunnel4, tunnel6 := len(v4) > 0, len(v6) > 0
	var dns []netip.Addr
	for _, a := range c.DNS {
		if (a.Is4() && tunnel4) || (a.Is6() && tunnel6) {
			dns = append(dns, a)
		}
	}
	if len(dns) == 0 {
		return nil, fmt.Errorf("platform: plan: no DNS resolver of a tunnelled family among %v (IPv4 tunnelled: %v, IPv6 tunnelled: %v); DNS would leak", c.DNS, tunnel4, tunnel6)
	}
	if tunnel6 && c.MTU != 0 && c.MTU < 1280 {
		return nil, fmt.Errorf("platform: plan: MTU %d is below IPv6's minimum of 1280, the kernel would disable IPv6 on %s", c.MTU, c.Interface)
	}

	var plan []Change
	for _, p := range slices.Concat(v4, v6) {
		plan = append(plan, Change{Kind: KindAddress, Link: c.Interface, Prefix: p})
	}
	if c.MTU != 0 {
		plan = append(plan, Change{Kind: KindMTU, Link: c.Interface, MTU: c.MTU})
	}
	plan = append(plan, Change{Kind: KindLinkUp, Link: c.Interface})
	for _, f := range []struct {
		def    netip.Prefix
		tunnel bool
	}{{netip.MustParsePrefix("0.0.0.0/0"), tunnel4}, {netip.MustParsePrefix("::/0"), tunnel6}} {
		r := Change{Kind: KindRoute, Prefix: f.def, Table: c.Table}
		if f.tunnel {
			r.Link = c.Interface
		} else {
			r.Unreachable = true
		}
		plan = append(plan, r)
	}
	plan = append(plan, Change{Kind: KindSysctl, Sysctl: srcValidMark, Value: "1"})
	for _, fam := range []int{4, 6} {
		plan = append(plan,
			Change{Kind: KindRule, Family: fam, Priority: c.RulePriority, Not: true, Mark: c.FwMark, Table: c.Table},
			Change{Kind: KindRule, Family: fam, Priority: c.RulePriority - 1, Table: tableMain, SuppressDefault: true},
		)
		for _, a := range dns {
			if family(a) == fam {
				plan = append(plan, Change{Kind: KindRule, Family: fam, Priority: c.RulePriority - 2,
					To: netip.PrefixFrom(a, a.BitLen()), Table: c.Table})
			}
		}
	}
	d := Change{Kind: KindDNS, DNS: dns, Backend: backend}
	if backend == DNSResolved {
		d.Link = c.Interface
	}
	plan = append(plan, d)
	return plan, nil
}

// validate checks c (after withDefaults).
func (c NetConfig) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if err := validIfname(c.Interface); err != nil {
		errs = append(errs, err)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		bad("MTU %d is outside 576..65535", c.MTU)
	}
	if len(c.Addresses) == 0 {
		bad("no tunnel addresses")
	}
	seen := map[netip.Addr]bool{}
	for _, p := range c.Addresses {
		switch {
		case !p.IsValid():
			bad("invalid tunnel address %v", p)
		case p.Addr().Zone() != "" || p.Addr().Is4In6():
			bad("tunnel address %v has a zone or is IPv4-mapped", p)
		case seen[p.Addr()]:
			bad("tunnel address %v given twice", p.Addr())
		}
		seen[p.Addr()] = true
	}
	for _, a := range c.DNS {
		switch {
		case !a.IsValid() || a.Zone() != "" || a.Is4In6():
			bad("DNS resolver %v is not a plain IPv4 or IPv6 address", a)
		case a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast():
			bad("DNS resolver %v is unspecified, loopback, multicast or link-local: it cannot be inside the tunnel", a)
		}
	}
	switch c.Table {
	case tableDefault, tableMain, tableLocal:
		bad("routing table %d is reserved (default, main, local)", c.Table)
	}
	if c.Table < 0 || int64(c.Table) > 0xffffffff {
		bad("routing table %d is outside 1..4294967295", c.Table)
	}
	if c.RulePriority < 3 || c.RulePriority > 32766 {
		bad("rule priority %d is outside 3..32766", c.RulePriority)
	}
	if len(errs) > 0 {
		return fmt.Errorf("platform: invalid NetConfig: %w", errors.Join(errs...))
	}
	return nil
}

// validIfname checks an interface name the way the kernel does.
func validIfname(name string) error {
	if name == "" || len(name) > 15 || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n") {
		return fmt.Errorf("interface name %q is not a valid Linux interface name", name)
	}
	return nil
}
