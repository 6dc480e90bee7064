package platform

import (
	"net/netip"
	"strings"
	"testing"
)

func rulesText(t *testing.T, p FirewallPolicy) string {
	t.Helper()
	rules, err := PlanFirewall(p)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range rules {
		b.WriteString(r.Chain + ": " + r.String() + "\n")
	}
	return b.String()
}

const linkRules = `input: ct state established,related accept
input: meta nfproto ipv4 udp sport 67 udp dport 68 accept
input: meta nfproto ipv6 udp sport 547 udp dport 546 accept
input: meta nfproto ipv6 icmpv6 type 130 accept
input: meta nfproto ipv6 icmpv6 type 131 accept
input: meta nfproto ipv6 icmpv6 type 132 accept
input: meta nfproto ipv6 icmpv6 type 133 accept
input: meta nfproto ipv6 icmpv6 type 134 accept
input: meta nfproto ipv6 icmpv6 type 135 accept
input: meta nfproto ipv6 icmpv6 type 136 accept
input: meta nfproto ipv6 icmpv6 type 143 accept
`

func TestPlanFirewallOpen(t *testing.T) {
	if rules, err := PlanFirewall(FirewallPolicy{AllowLAN: true, Tunnel: "nymvpn0"}); err != nil || rules != nil {
		t.Fatalf("an open policy plans %v, %v; want no table", rules, err)
	}
}

func TestPlanFirewallBlocked(t *testing.T) {
	// Error, Offline, lockdown: nothing but loopback and the link itself.
	got := rulesText(t, FirewallPolicy{Block: true})
	want := `input: iifname "lo" accept
` + linkRules + `output: oifname "lo" accept
output: udp dport 53 drop
output: tcp dport 53 drop
output: meta nfproto ipv4 udp sport 68 udp dport 67 accept
output: meta nfproto ipv6 udp sport 546 udp dport 547 accept
output: meta nfproto ipv6 icmpv6 type 130 accept
output: meta nfproto ipv6 icmpv6 type 131 accept
output: meta nfproto ipv6 icmpv6 type 132 accept
output: meta nfproto ipv6 icmpv6 type 133 accept
output: meta nfproto ipv6 icmpv6 type 134 accept
output: meta nfproto ipv6 icmpv6 type 135 accept
output: meta nfproto ipv6 icmpv6 type 136 accept
output: meta nfproto ipv6 icmpv6 type 143 accept
`
	if got != want {
		t.Fatalf("blocked ruleset:\n%s\nwant:\n%s", got, want)
	}
}

func TestPlanFirewallConnecting(t *testing.T) {
	// Only the daemon's marked sockets, only to the directory and the
	// chosen entry gateway.
	got := rulesText(t, FirewallPolicy{Block: true, Endpoints: []Endpoint{
		{"udp", netip.MustParseAddrPort("172.31.1.1:51822")},
		{"tcp", netip.MustParseAddrPort("172.31.1.1:51821")},
		{"tcp", netip.MustParseAddrPort("172.31.1.1:8080")},
		{"udp", netip.MustParseAddrPort("172.31.1.1:51822")}, // duplicates fold
		{"udp", netip.MustParseAddrPort("[2001:db8::1]:51822")},
	}})
	for _, want := range []string{
		"output: udp dport 53 drop\noutput: tcp dport 53 drop\n" +
			"output: meta nfproto ipv4 meta mark 0xca6c ip daddr 172.31.1.1/32 tcp dport 51821 accept\n" +
			"output: meta nfproto ipv4 meta mark 0xca6c ip daddr 172.31.1.1/32 tcp dport 8080 accept\n" +
			"output: meta nfproto ipv4 meta mark 0xca6c ip daddr 172.31.1.1/32 udp dport 51822 accept\n" +
			"output: meta nfproto ipv6 meta mark 0xca6c ip6 daddr 2001:db8::1/128 udp dport 51822 accept\n",
	} {
		if !strings.Contains(got, want) {
			t.Fatalf("connecting ruleset lacks\n%s\nin\n%s", want, got)
		}
	}
	if strings.Contains(got, "oifname \"nymvpn0\"") || strings.Count(got, "mark") != 4 {
		t.Fatalf("connecting ruleset allows more than the endpoints:\n%s", got)
	}
}

func TestPlanFirewallConnected(t *testing.T) {
	got := rulesText(t, FirewallPolicy{Block: true, Tunnel: "nymvpn0", FwMark: 0x1234,
		TunnelDNS: []netip.Addr{netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("fc01::1")},
		Endpoints: []Endpoint{{"udp", netip.MustParseAddrPort("172.31.1.1:51822")}}})
	want := `input: iifname "lo" accept
input: iifname "nymvpn0" accept
` + linkRules + `output: oifname "lo" accept
output: meta nfproto ipv4 oifname "nymvpn0" ip daddr 10.1.0.1/32 udp dport 53 accept
output: meta nfproto ipv4 oifname "nymvpn0" ip daddr 10.1.0.1/32 tcp dport 53 accept
output: meta nfproto ipv6 oifname "nymvpn0" ip6 daddr fc01::1/128 udp dport 53 accept
output: meta nfproto ipv6 oifname "nymvpn0" ip6 daddr fc01::1/128 tcp dport 53 accept
output: udp dport 53 drop
output: tcp dport 53 drop
output: meta nfproto ipv4 meta mark 0x1234 ip daddr 172.31.1.1/32 udp dport 51822 accept
output: oifname "nymvpn0" accept
output: meta nfproto ipv4 udp sport 68 udp dport 67 accept
output: meta nfproto ipv6 udp sport 546 udp dport 547 accept
output: meta nfproto ipv6 icmpv6 type 130 accept
output: meta nfproto ipv6 icmpv6 type 131 accept
output: meta nfproto ipv6 icmpv6 type 132 accept
output: meta nfproto ipv6 icmpv6 type 133 accept
output: meta nfproto ipv6 icmpv6 type 134 accept
output: meta nfproto ipv6 icmpv6 type 135 accept
output: meta nfproto ipv6 icmpv6 type 136 accept
output: meta nfproto ipv6 icmpv6 type 143 accept
`
	if got != want {
		t.Fatalf("connected ruleset:\n%s\nwant:\n%s", got, want)
	}
}

func TestPlanFirewallAllowLAN(t *testing.T) {
	got := rulesText(t, FirewallPolicy{Block: true, AllowLAN: true, Tunnel: "nymvpn0",
		TunnelDNS: []netip.Addr{netip.MustParseAddr("10.1.0.1")}})
	for _, want := range []string{
		"output: meta nfproto ipv4 ip daddr 192.168.0.0/16 accept\n",
		"input: meta nfproto ipv4 ip saddr 192.168.0.0/16 accept\n",
		"output: meta nfproto ipv6 ip6 daddr fe80::/10 accept\n",
		"output: meta nfproto ipv4 ip daddr 239.255.255.250/32 accept\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("LAN ruleset lacks %q", want)
		}
	}
	// DNS to a LAN resolver is dropped before the LAN is allowed.
	if strings.Index(got, "output: udp dport 53 drop") > strings.Index(got, "output: meta nfproto ipv4 ip daddr 192.168.0.0/16") {
		t.Errorf("the LAN allowance comes before the DNS drop:\n%s", got)
	}
	// 100.64/10 (carrier-grade NAT) and public space stay closed.
	for _, never := range []string{"100.64.", "0.0.0.0/0", "::/0"} {
		if strings.Contains(got, never) {
			t.Errorf("LAN ruleset opens %s", never)
		}
	}
}

func TestPlanFirewallRejectsBadInput(t *testing.T) {
	for name, p := range map[string]FirewallPolicy{
		"icmp endpoint":      {Block: true, Endpoints: []Endpoint{{"icmp", netip.MustParseAddrPort("1.2.3.4:1")}}},
		"port zero":          {Block: true, Endpoints: []Endpoint{{"udp", netip.MustParseAddrPort("1.2.3.4:0")}}},
		"DNS without tunnel": {Block: true, TunnelDNS: []netip.Addr{netip.MustParseAddr("10.1.0.1")}},
		"zero endpoint":      {Block: true, Endpoints: []Endpoint{{Proto: "udp"}}},
	} {
		if _, err := PlanFirewall(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
