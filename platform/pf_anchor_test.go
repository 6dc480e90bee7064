package platform

import (
	"net/netip"
	"strings"
	"testing"
)

func pfText(t *testing.T, p FirewallPolicy, o PFOptions) string {
	t.Helper()
	rules, err := PlanFirewall(p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := PFAnchor(rules, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPFAnchorBlocked(t *testing.T) {
	got := pfText(t, FirewallPolicy{Block: true}, PFOptions{})
	want := `# nymvpn kill switch: every rule is quick, so the first match decides.
pass in quick on lo0 all label "loopback"
# in: replies to allowed connections: pf's state table passes them
pass in quick inet proto udp from any port 67 to any port 68 label "DHCP"
pass in quick inet6 proto udp from any port 547 to any port 546 label "DHCPv6"
pass in quick inet6 proto icmp6 all icmp6-type 130 label "IPv6 link housekeeping (NDP, MLD)"
pass in quick inet6 proto icmp6 all icmp6-type 131 label "IPv6 link housekeeping (NDP, MLD)"
pass in quick inet6 proto icmp6 all icmp6-type 132 label "IPv6 link housekeeping (NDP, MLD)"
pass in quick inet6 proto icmp6 all icmp6-type 133 label "IPv6 link housekeeping (NDP, MLD)"
pass in quick inet6 proto icmp6 all icmp6-type 134 label "IPv6 link housekeeping (NDP, MLD)"
pass in quick inet6 proto icmp6 all icmp6-type 135 label "IPv6 link housekeeping (NDP, MLD)"
pass in quick inet6 proto icmp6 all icmp6-type 136 label "IPv6 link housekeeping (NDP, MLD)"
pass in quick inet6 proto icmp6 all icmp6-type 143 label "IPv6 link housekeeping (NDP, MLD)"
pass out quick on lo0 all label "loopback"
block drop out quick proto udp from any to any port 53 label "DNS outside the tunnel"
block drop out quick proto tcp from any to any port 53 label "DNS outside the tunnel"
pass out quick inet proto udp from any port 68 to any port 67 label "DHCP"
pass out quick inet6 proto udp from any port 546 to any port 547 label "DHCPv6"
pass out quick inet6 proto icmp6 all icmp6-type 130 label "IPv6 link housekeeping (NDP, MLD)"
pass out quick inet6 proto icmp6 all icmp6-type 131 label "IPv6 link housekeeping (NDP, MLD)"
pass out quick inet6 proto icmp6 all icmp6-type 132 label "IPv6 link housekeeping (NDP, MLD)"
pass out quick inet6 proto icmp6 all icmp6-type 133 label "IPv6 link housekeeping (NDP, MLD)"
pass out quick inet6 proto icmp6 all icmp6-type 134 label "IPv6 link housekeeping (NDP, MLD)"
pass out quick inet6 proto icmp6 all icmp6-type 135 label "IPv6 link housekeeping (NDP, MLD)"
pass out quick inet6 proto icmp6 all icmp6-type 136 label "IPv6 link housekeeping (NDP, MLD)"
pass out quick inet6 proto icmp6 all icmp6-type 143 label "IPv6 link housekeeping (NDP, MLD)"
block drop quick all label "nymvpn: nothing else"
`
	if got != want {
		t.Fatalf("blocked anchor:\n%s\nwant:\n%s", got, want)
	}
}

func TestPFAnchorConnected(t *testing.T) {
	p := FirewallPolicy{Block: true, Tunnel: "utun4", AllowLAN: true,
		Endpoints: []Endpoint{{"udp", netip.MustParseAddrPort("192.0.2.1:51820")}, {"tcp", netip.MustParseAddrPort("[2001:db8::1]:443")}},
		TunnelDNS: []netip.Addr{netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("fc01::1")}}
	got := pfText(t, p, PFOptions{User: "_nymvpn", Loopback: "lo1"})
	for _, want := range []string{
		// In the plan's order: tunnel DNS, then DNS dropped, then the
		// daemon's sockets, then the tunnel, then the LAN.
		`pass out quick on lo1 all label "loopback"
pass out quick on utun4 inet proto udp from any to 10.1.0.1 port 53 label "DNS to the tunnel's resolver"
pass out quick on utun4 inet proto tcp from any to 10.1.0.1 port 53 label "DNS to the tunnel's resolver"
pass out quick on utun4 inet6 proto udp from any to fc01::1 port 53 label "DNS to the tunnel's resolver"
pass out quick on utun4 inet6 proto tcp from any to fc01::1 port 53 label "DNS to the tunnel's resolver"
block drop out quick proto udp from any to any port 53 label "DNS outside the tunnel"
block drop out quick proto tcp from any to any port 53 label "DNS outside the tunnel"
pass out quick inet6 proto tcp from any to 2001:db8::1 port 443 user _nymvpn label "nymvpnd to tcp/[2001:db8::1]:443"
pass out quick inet proto udp from any to 192.0.2.1 port 51820 user _nymvpn label "nymvpnd to udp/192.0.2.1:51820"
pass out quick on utun4 all label "through the tunnel"
`,
		`pass in quick on utun4 all label "from the tunnel"
`,
		`pass in quick inet from 10.0.0.0/8 to any label "local network"
`,
		`pass out quick inet6 from any to fc00::/7 label "local network"
pass out quick inet6 from any to ff02::/16 label "local network"
block drop quick all label "nymvpn: nothing else"
`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("connected anchor lacks\n%s\nin\n%s", want, got)
		}
	}
	rules, _ := PlanFirewall(p)
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != len(rules)+2 {
		t.Errorf("%d lines for %d rules (and a header and the final block)", len(lines), len(rules))
	}
	for _, l := range lines[1 : len(lines)-1] {
		if !strings.HasPrefix(l, "#") && !strings.Contains(l, " quick ") {
			t.Errorf("rule is not quick: %s", l)
		}
	}
}

func TestPFAnchorLabels(t *testing.T) {
	long := FirewallRule{Chain: ChainOutput, Proto: "udp", Mark: 1, Daddr: netip.MustParsePrefix("2001:db8::1/128"), Dport: 443, Verdict: "accept",
		Why: "nymvpnd to udp/[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535 — and more"}
	got, err := PFAnchor([]FirewallRule{long}, PFOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := `label "nymvpnd to udp/[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535 "` + "\n"
	if !strings.Contains(got, want) {
		t.Errorf("long label not cut to 63 bytes on a character boundary:\n%s", got)
	}
}

func TestPFAnchorRefuses(t *testing.T) {
	ok := FirewallRule{Chain: ChainOutput, Verdict: "accept"}
	for want, mod := range map[string]func(*FirewallRule){
		"unknown chain":                 func(r *FirewallRule) { r.Chain = "forward" },
		"unknown verdict":               func(r *FirewallRule) { r.Verdict = "reject" },
		"input interface in the output": func(r *FirewallRule) { r.IIF = "en0" },
		"a label with":                  func(r *FirewallRule) { r.Why = `say "hi"` },
		"IPv6 prefix":                   func(r *FirewallRule) { r.Family, r.Daddr = 4, netip.MustParsePrefix("fe80::/10") },
		"IPv4-mapped":                   func(r *FirewallRule) { r.Daddr = netip.MustParsePrefix("::ffff:10.0.0.1/128") },
		"unknown protocol":              func(r *FirewallRule) { r.Proto = "sctp" },
		"ports with protocol":           func(r *FirewallRule) { r.Dport = 53 },
		"only for tcp and udp":          func(r *FirewallRule) { r.Mark = 1 },
		"an ICMPv6 type with":           func(r *FirewallRule) { r.Proto, r.ICMPType = "icmp", 8 },
		"established rule with other":   func(r *FirewallRule) { r.Established, r.Proto = true, "tcp" },
	} {
		r := ok
		mod(&r)
		if _, err := PFAnchor([]FirewallRule{r}, PFOptions{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: error %v, want %q", r, err, want)
		}
	}
}
