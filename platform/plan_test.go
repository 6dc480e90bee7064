package platform

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func prefixes(s ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, x := range s {
		ps = append(ps, netip.MustParsePrefix(x))
	}
	return ps
}

func addrs(s ...string) []netip.Addr {
	var as []netip.Addr
	for _, x := range s {
		as = append(as, netip.MustParseAddr(x))
	}
	return as
}

func planStrings(t *testing.T, c NetConfig, b DNSBackend) []string {
	t.Helper()
	plan, err := Plan(c, b)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	var s []string
	for _, ch := range plan {
		s = append(s, ch.String())
	}
	return s
}

func checkPlan(t *testing.T, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestPlanIPv4Only(t *testing.T) {
	got := planStrings(t, NetConfig{
		Interface: "nymvpn0", MTU: 1340,
		Addresses: prefixes("10.1.0.7/32"),
		DNS:       addrs("10.1.0.1"),
	}, DNSResolvConf)
	checkPlan(t, got, []string{
		"ip address add 10.1.0.7/32 dev nymvpn0",
		"ip link set dev nymvpn0 mtu 1340",
		"ip link set dev nymvpn0 up",
		"ip -4 route add 0.0.0.0/0 dev nymvpn0 table 51820",
		"ip -6 route add unreachable ::/0 table 51820",
		"sysctl -w net.ipv4.conf.all.src_valid_mark=1",
		"ip -4 rule add not fwmark 51820 table 51820 pref 32765",
		"ip -4 rule add table main suppress_prefixlength 0 pref 32764",
		"ip -4 rule add to 10.1.0.1/32 table 51820 pref 32763",
		"ip -6 rule add not fwmark 51820 table 51820 pref 32765",
		"ip -6 rule add table main suppress_prefixlength 0 pref 32764",
		"dns resolvconf nameserver 10.1.0.1",
	})
}

func TestPlanDualStack(t *testing.T) {
	got := planStrings(t, NetConfig{
		Interface: "nymvpn0", MTU: 1340,
		Addresses: prefixes("fc01::7/128", "10.1.0.7/32"),
		DNS:       addrs("10.1.0.1", "fc01::1"),
		IPv6:      true,
	}, DNSResolvConf)
	checkPlan(t, got, []string{
		"ip address add 10.1.0.7/32 dev nymvpn0",
		"ip address add fc01::7/128 dev nymvpn0",
		"ip link set dev nymvpn0 mtu 1340",
		"ip link set dev nymvpn0 up",
		"ip -4 route add 0.0.0.0/0 dev nymvpn0 table 51820",
		"ip -6 route add ::/0 dev nymvpn0 table 51820",
		"sysctl -w net.ipv4.conf.all.src_valid_mark=1",
		"ip -4 rule add not fwmark 51820 table 51820 pref 32765",
		"ip -4 rule add table main suppress_prefixlength 0 pref 32764",
		"ip -4 rule add to 10.1.0.1/32 table 51820 pref 32763",
		"ip -6 rule add not fwmark 51820 table 51820 pref 32765",
		"ip -6 rule add table main suppress_prefixlength 0 pref 32764",
		"ip -6 rule add to fc01::1/128 table 51820 pref 32763",
		"dns resolvconf nameserver 10.1.0.1 nameserver fc01::1",
	})
}

// With IPv6 off, an IPv6 address and resolver are left out and IPv6 is
// blocked in the table.
func TestPlanIPv6Disabled(t *testing.T) {
	got := planStrings(t, NetConfig{
		Interface: "nymvpn0",
		Addresses: prefixes("10.1.0.7/32", "fc01::7/128"),
		DNS:       addrs("fc01::1", "10.1.0.1"),
		IPv6:      false,
	}, DNSResolvConf)
	checkPlan(t, got, []string{
		"ip address add 10.1.0.7/32 dev nymvpn0",
		"ip link set dev nymvpn0 up",
		"ip -4 route add 0.0.0.0/0 dev nymvpn0 table 51820",
		"ip -6 route add unreachable ::/0 table 51820",
		"sysctl -w net.ipv4.conf.all.src_valid_mark=1",
		"ip -4 rule add not fwmark 51820 table 51820 pref 32765",
		"ip -4 rule add table main suppress_prefixlength 0 pref 32764",
		"ip -4 rule add to 10.1.0.1/32 table 51820 pref 32763",
		"ip -6 rule add not fwmark 51820 table 51820 pref 32765",
		"ip -6 rule add table main suppress_prefixlength 0 pref 32764",
		"dns resolvconf nameserver 10.1.0.1",
	})
}

// IPv6 asked for but no IPv6 address: blocked just the same.
func TestPlanIPv6WithoutAddress(t *testing.T) {
	plan, err := Plan(NetConfig{Interface: "tun0", Addresses: prefixes("10.1.0.7/32"), DNS: addrs("10.1.0.1"), IPv6: true}, DNSResolvConf)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, c := range plan {
		if c.Kind == KindRoute && c.Prefix.Addr().Is6() {
			found = true
			if !c.Unreachable || c.Link != "" {
				t.Errorf("IPv6 default route %q, want unreachable", c)
			}
		}
	}
	if !found {
		t.Error("no IPv6 default route in the plan")
	}
}

// An IPv6-only tunnel blocks IPv4 the same way.
func TestPlanIPv6Only(t *testing.T) {
	got := planStrings(t, NetConfig{
		Interface: "nymvpn0", MTU: 1280,
		Addresses: prefixes("fc01::7/128"),
		DNS:       addrs("fc01::1", "10.1.0.1"),
		IPv6:      true,
	}, DNSResolvConf)
	checkPlan(t, got, []string{
		"ip address add fc01::7/128 dev nymvpn0",
		"ip link set dev nymvpn0 mtu 1280",
		"ip link set dev nymvpn0 up",
		"ip -4 route add unreachable 0.0.0.0/0 table 51820",
		"ip -6 route add ::/0 dev nymvpn0 table 51820",
		"sysctl -w net.ipv4.conf.all.src_valid_mark=1",
		"ip -4 rule add not fwmark 51820 table 51820 pref 32765",
		"ip -4 rule add table main suppress_prefixlength 0 pref 32764",
		"ip -6 rule add not fwmark 51820 table 51820 pref 32765",
		"ip -6 rule add table main suppress_prefixlength 0 pref 32764",
		"ip -6 rule add to fc01::1/128 table 51820 pref 32763",
		"dns resolvconf nameserver fc01::1",
	})
}

func TestPlanCustomTableMarkPriority(t *testing.T) {
	got := planStrings(t, NetConfig{
		Interface: "wg-nym", Addresses: prefixes("10.9.0.2/32"), DNS: addrs("10.9.0.1"),
		FwMark: 0xca6d, Table: 1000, RulePriority: 100,
	}, DNSResolved)
	checkPlan(t, got, []string{
		"ip address add 10.9.0.2/32 dev wg-nym",
		"ip link set dev wg-nym up",
		"ip -4 route add 0.0.0.0/0 dev wg-nym table 1000",
		"ip -6 route add unreachable ::/0 table 1000",
		"sysctl -w net.ipv4.conf.all.src_valid_mark=1",
		"ip -4 rule add not fwmark 51821 table 1000 pref 100",
		"ip -4 rule add table main suppress_prefixlength 0 pref 99",
		"ip -4 rule add to 10.9.0.1/32 table 1000 pref 98",
		"ip -6 rule add not fwmark 51821 table 1000 pref 100",
		"ip -6 rule add table main suppress_prefixlength 0 pref 99",
		"dns resolved link wg-nym nameserver 10.9.0.1 domain ~. default-route",
	})
}

// The plan is data: the fields, not only the strings, are what Up uses.
func TestPlanFields(t *testing.T) {
	plan, err := Plan(NetConfig{Interface: "nymvpn0", Addresses: prefixes("10.1.0.7/32"), DNS: addrs("10.1.0.1")}, DNSResolvConf)
	if err != nil {
		t.Fatal(err)
	}
	rule := plan[5]
	want := Change{Kind: KindRule, Family: 4, Priority: 32765, Not: true, Mark: 51820, Table: 51820}
	if !reflect.DeepEqual(rule, want) {
		t.Errorf("rule %+v, want %+v", rule, want)
	}
	again, _ := Plan(NetConfig{Interface: "nymvpn0", Addresses: prefixes("10.1.0.7/32"), DNS: addrs("10.1.0.1")}, DNSResolvConf)
	if !reflect.DeepEqual(plan, again) {
		t.Error("Plan is not deterministic")
	}
}

func TestPlanRejects(t *testing.T) {
	ok := NetConfig{Interface: "nymvpn0", MTU: 1340, Addresses: prefixes("10.1.0.7/32", "fc01::7/128"), DNS: addrs("10.1.0.1"), IPv6: true}
	for _, tc := range []struct {
		name    string
		mod     func(*NetConfig)
		backend DNSBackend
		want    string
	}{
		{"no interface", func(c *NetConfig) { c.Interface = "" }, DNSResolvConf, "interface name"},
		{"long interface", func(c *NetConfig) { c.Interface = "a-very-long-name0" }, DNSResolvConf, "interface name"},
		{"slash in interface", func(c *NetConfig) { c.Interface = "a/b" }, DNSResolvConf, "interface name"},
		{"tiny MTU", func(c *NetConfig) { c.MTU = 100 }, DNSResolvConf, "MTU"},
		{"MTU below IPv6 minimum", func(c *NetConfig) { c.MTU = 1200 }, DNSResolvConf, "1280"},
		{"no addresses", func(c *NetConfig) { c.Addresses = nil }, DNSResolvConf, "no tunnel addresses"},
		{"duplicate address", func(c *NetConfig) { c.Addresses = prefixes("10.1.0.7/32", "10.1.0.7/24") }, DNSResolvConf, "twice"},
		{"invalid address", func(c *NetConfig) { c.Addresses = []netip.Prefix{{}} }, DNSResolvConf, "invalid"},
		{"no DNS", func(c *NetConfig) { c.DNS = nil }, DNSResolvConf, "DNS would leak"},
		{"only v6 DNS with v6 off", func(c *NetConfig) { c.IPv6 = false; c.DNS = addrs("fc01::1") }, DNSResolvConf, "DNS would leak"},
		{"loopback DNS", func(c *NetConfig) { c.DNS = addrs("127.0.0.53") }, DNSResolvConf, "loopback"},
		{"main table", func(c *NetConfig) { c.Table = 254 }, DNSResolvConf, "reserved"},
		{"negative table", func(c *NetConfig) { c.Table = -1 }, DNSResolvConf, "outside"},
		{"priority too high", func(c *NetConfig) { c.RulePriority = 40000 }, DNSResolvConf, "priority"},
		{"priority 2", func(c *NetConfig) { c.RulePriority = 2 }, DNSResolvConf, "priority"},
		{"auto backend", func(c *NetConfig) {}, DNSAuto, "DNS backend"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			_, err := Plan(c, tc.backend)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Plan error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := Plan(ok, DNSResolvConf); err != nil {
		t.Errorf("the valid base config: %v", err)
	}
}
