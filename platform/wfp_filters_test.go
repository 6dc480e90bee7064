package platform

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func wfpText(fs []WFPFilter) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%s %d %s %q", strings.TrimPrefix(f.Layer, "FWPM_LAYER_ALE_"), f.Weight, f.Action, f.Name)
		for _, c := range f.Conditions {
			b.WriteString(" [" + c.String() + "]")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func TestWFPFiltersConnected(t *testing.T) {
	p := FirewallPolicy{Block: true, Tunnel: "nymvpn0", AllowLAN: true,
		Endpoints: []Endpoint{{"udp", netip.MustParseAddrPort("192.0.2.1:51820")}},
		TunnelDNS: []netip.Addr{netip.MustParseAddr("10.1.0.1")}}
	rules, err := PlanFirewall(p)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := WFPFilters(rules, WFPOptions{DaemonPath: `C:\Program Files\NymVPN\nymvpnd.exe`})
	if err != nil {
		t.Fatal(err)
	}
	got := wfpText(fs)
	for _, want := range []string{
		// Loopback, both families, first in each layer; DNS.
		`AUTH_CONNECT_V4 14 permit "loopback" [FLAGS FLAGS_ALL_SET FWP_CONDITION_FLAG_IS_LOOPBACK]
AUTH_CONNECT_V6 16 permit "loopback" [FLAGS FLAGS_ALL_SET FWP_CONDITION_FLAG_IS_LOOPBACK]
AUTH_CONNECT_V4 13 permit "DNS to the tunnel's resolver" [IP_LOCAL_INTERFACE EQUAL nymvpn0] [IP_REMOTE_ADDRESS EQUAL 10.1.0.1] [IP_PROTOCOL EQUAL 17] [IP_REMOTE_PORT EQUAL 53]
AUTH_CONNECT_V4 12 permit "DNS to the tunnel's resolver" [IP_LOCAL_INTERFACE EQUAL nymvpn0] [IP_REMOTE_ADDRESS EQUAL 10.1.0.1] [IP_PROTOCOL EQUAL 6] [IP_REMOTE_PORT EQUAL 53]
AUTH_CONNECT_V4 11 block "DNS outside the tunnel" [IP_PROTOCOL EQUAL 17] [IP_REMOTE_PORT EQUAL 53]
AUTH_CONNECT_V6 15 block "DNS outside the tunnel" [IP_PROTOCOL EQUAL 17] [IP_REMOTE_PORT EQUAL 53]
`,
		// The daemon's sockets: its application.
		`AUTH_CONNECT_V4 9 permit "nymvpnd to udp/192.0.2.1:51820" [ALE_APP_ID EQUAL C:\Program Files\NymVPN\nymvpnd.exe] [IP_REMOTE_ADDRESS EQUAL 192.0.2.1] [IP_PROTOCOL EQUAL 17] [IP_REMOTE_PORT EQUAL 51820]
`,
		// Inbound: remote is the source.
		`AUTH_RECV_ACCEPT_V4 7 permit "DHCP" [IP_PROTOCOL EQUAL 17] [IP_REMOTE_PORT EQUAL 67] [IP_LOCAL_PORT EQUAL 68]
`,
		`AUTH_RECV_ACCEPT_V6 6 permit "IPv6 link housekeeping (NDP, MLD)" [IP_PROTOCOL EQUAL 58] [ICMP_TYPE EQUAL 135]
`,
		`AUTH_RECV_ACCEPT_V4 4 permit "local network" [IP_REMOTE_ADDRESS EQUAL 192.168.0.0/16]
`,
		`AUTH_CONNECT_V6 1 permit "local network" [IP_REMOTE_ADDRESS EQUAL ff02::/16]
AUTH_RECV_ACCEPT_V4 0 block "nymvpn: nothing else"
AUTH_RECV_ACCEPT_V6 0 block "nymvpn: nothing else"
AUTH_CONNECT_V4 0 block "nymvpn: nothing else"
AUTH_CONNECT_V6 0 block "nymvpn: nothing else"
`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("filters lack\n%s\nin\n%s", want, got)
		}
	}
	if strings.Contains(got, "replies") {
		t.Errorf("a filter for established connections:\n%s", got)
	}
	// In each layer the weights count down in plan order to the final
	// block at 0.
	last := map[string]uint64{}
	for _, f := range fs {
		if w, seen := last[f.Layer]; seen && f.Weight != w-1 {
			t.Errorf("%s: weight %d after %d", f.Layer, f.Weight, w)
		}
		last[f.Layer] = f.Weight
	}
	for l, w := range last {
		if w != 0 {
			t.Errorf("%s ends at weight %d", l, w)
		}
	}
}

func TestWFPFiltersRefuse(t *testing.T) {
	ok := FirewallRule{Chain: ChainOutput, Verdict: "accept"}
	for want, mod := range map[string]func(*FirewallRule){
		"unknown chain":                 func(r *FirewallRule) { r.Chain = "forward" },
		"unknown verdict":               func(r *FirewallRule) { r.Verdict = "reject" },
		"output interface in the input": func(r *FirewallRule) { r.Chain, r.OIF = ChainInput, "eth0" },
		"needs WFPOptions.DaemonPath":   func(r *FirewallRule) { r.Mark, r.Proto = 1, "udp" },
		"IPv4 prefix":                   func(r *FirewallRule) { r.Family, r.Daddr = 6, netip.MustParsePrefix("10.0.0.0/8") },
		"unknown protocol":              func(r *FirewallRule) { r.Proto = "sctp" },
		"ports with protocol":           func(r *FirewallRule) { r.Sport = 68 },
		"icmp in a rule for IPv6":       func(r *FirewallRule) { r.Family, r.Proto = 6, "icmp" },
		"established rule with other":   func(r *FirewallRule) { r.Established, r.Verdict = true, "drop" },
	} {
		r := ok
		mod(&r)
		if _, err := WFPFilters([]FirewallRule{r}, WFPOptions{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: error %v, want %q", r, err, want)
		}
	}
}
