package platform

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/nymvpn/nymvpn/internal/netnstest"
)

// The firewall's root tests apply policies in network namespaces through
// helper processes (firewall_helpers_linux_test.go), exactly as the daemon
// would, and look at the result with nft(8), real traffic, a packet capture
// on the client's link and counters of a second, observing table.

func fwRequireNft(t *testing.T) {
	t.Helper()
	netnstest.RequireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs the nft command (nftables; scripts/deps.sh installs it)")
	}
}

// fwRun runs the fw helper in n with ops and returns its output, failing
// the test if any op fails.
func fwRun(t *testing.T, n *netnstest.Namespace, cfg fwHelper) string {
	t.Helper()
	out, err := n.Run("env", fwArgs(t, "fw", cfg)...)
	if err != nil || strings.Contains(out, " error: ") {
		t.Fatalf("firewall helper %v: %v\n%s", cfg.Ops, err, out)
	}
	return out
}

// fwRules parses the "FW rules" line of the fw helper's output.
func fwRules(t *testing.T, out string) []AppliedFirewallRule {
	t.Helper()
	m := regexp.MustCompile(`(?m)^FW rules ([\[n].*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no rules in the helper's output:\n%s", out)
	}
	var rs []AppliedFirewallRule
	if err := json.Unmarshal([]byte(m[1]), &rs); err != nil {
		t.Fatalf("rules: %v", err)
	}
	return rs
}

func fwMustPlan(t *testing.T, p FirewallPolicy) []FirewallRule {
	t.Helper()
	rules, err := PlanFirewall(p)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// fwSameRules compares rules read back from the kernel with the plan: the
// same rules, in the same order.
func fwSameRules(t *testing.T, what string, got, want []FirewallRule) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	var b strings.Builder
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = fmt.Sprintf("%s: %s # %s", got[i].Chain, got[i], got[i].Why)
		}
		if i < len(want) {
			w = fmt.Sprintf("%s: %s # %s", want[i].Chain, want[i], want[i].Why)
		}
		mark := " "
		if g != w || (i < len(got) && i < len(want) && got[i] != want[i]) {
			mark = "!"
		}
		fmt.Fprintf(&b, "%s %3d got  %s\n      want %s\n", mark, i, g, w)
	}
	t.Errorf("%s: %d rules, want the %d planned:\n%s", what, len(got), len(want), b.String())
}

// nftTable is `nft -j list table inet NAME`, decoded: the chains and the
// rules, as nft understands the kernel's expressions.
type nftTable struct {
	chains map[string]nftChain
	rules  []nftListedRule
}

type nftChain struct {
	Type, Hook, Policy string
	Prio               int
}

type nftListedRule struct {
	rule    FirewallRule
	packets uint64
	// unknown lists what the decoder did not understand.
	unknown []string
}

// nftListTable lists a table with nft -j in n.
func nftListTable(t *testing.T, n *netnstest.Namespace, name string) nftTable {
	t.Helper()
	out := n.MustRun(t, "nft", "-j", "list", "table", "inet", name)
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j: %v\n%s", err, out)
	}
	tab := nftTable{chains: map[string]nftChain{}}
	for _, obj := range doc.Nftables {
		if raw, ok := obj["chain"]; ok {
			var c struct {
				Name, Type, Hook, Policy string
				Prio                     int
			}
			if err := json.Unmarshal(raw, &c); err != nil {
				t.Fatal(err)
			}
			tab.chains[c.Name] = nftChain{c.Type, c.Hook, c.Policy, c.Prio}
		}
		if raw, ok := obj["rule"]; ok {
			var r struct {
				Chain   string
				Comment string
				Expr    []map[string]json.RawMessage
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				t.Fatal(err)
			}
			tab.rules = append(tab.rules, decodeNftJSON(r.Chain, r.Comment, r.Expr))
		}
	}
	return tab
}

// ICMPv6 types by the names nft prints.
var nftICMPv6Types = map[string]uint8{"nd-router-solicit": 133, "nd-router-advert": 134, "nd-neighbor-solicit": 135, "nd-neighbor-advert": 136,
	"mld-listener-query": 130, "mld-listener-report": 131, "mld-listener-done": 132, "mld2-listener-report": 143}

// decodeNftJSON turns one rule of nft's JSON back into a FirewallRule. nft
// leaves out the dependencies it implies (meta nfproto before ip/ip6 and
// icmpv6, meta l4proto before ports), so the decoder puts them back, as
// PlanFirewall sets them.
func decodeNftJSON(chain, comment string, exprs []map[string]json.RawMessage) nftListedRule {
	lr := nftListedRule{rule: FirewallRule{Chain: chain, Why: comment}}
	r := &lr.rule
	for _, e := range exprs {
		switch {
		case e["accept"] != nil:
			r.Verdict = "accept"
		case e["drop"] != nil:
			r.Verdict = "drop"
		case e["counter"] != nil:
			var c struct{ Packets uint64 }
			json.Unmarshal(e["counter"], &c)
			lr.packets = c.Packets
		case e["match"] != nil:
			var m struct {
				Op   string
				Left struct {
					Meta    *struct{ Key string }
					Ct      *struct{ Key string }
					Payload *struct{ Protocol, Field string }
				}
				Right json.RawMessage
			}
			if err := json.Unmarshal(e["match"], &m); err != nil {
				lr.unknown = append(lr.unknown, string(e["match"]))
				continue
			}
			var s string
			var num uint64
			var list []string
			var pfx struct {
				Prefix *struct {
					Addr string
					Len  int
				}
			}
			json.Unmarshal(m.Right, &s)
			json.Unmarshal(m.Right, &num)
			json.Unmarshal(m.Right, &list)
			json.Unmarshal(m.Right, &pfx)
			ok := true
			switch l := m.Left; {
			case l.Meta != nil && m.Op == "==":
				switch l.Meta.Key {
				case "nfproto":
					r.Family = map[string]int{"ipv4": 4, "ipv6": 6}[s]
				case "iifname":
					r.IIF = s
				case "oifname":
					r.OIF = s
				case "mark":
					r.Mark = uint32(num)
				case "l4proto":
					r.Proto = map[string]string{"tcp": "tcp", "udp": "udp", "icmp": "icmp", "ipv6-icmp": "icmpv6"}[s]
				default:
					ok = false
				}
			case l.Ct != nil && l.Ct.Key == "state" && m.Op == "in" && slices.Equal(list, []string{"established", "related"}):
				r.Established = true
			case l.Payload != nil && m.Op == "==":
				switch p := l.Payload; {
				case p.Protocol == "ip" || p.Protocol == "ip6":
					r.Family = map[string]int{"ip": 4, "ip6": 6}[p.Protocol]
					var prefix netip.Prefix
					if pfx.Prefix != nil {
						a, err := netip.ParseAddr(pfx.Prefix.Addr)
						ok = err == nil
						prefix = netip.PrefixFrom(a, pfx.Prefix.Len)
					} else {
						a, err := netip.ParseAddr(s)
						ok = err == nil
						prefix = netip.PrefixFrom(a, a.BitLen())
					}
					switch p.Field {
					case "saddr":
						r.Saddr = prefix
					case "daddr":
						r.Daddr = prefix
					default:
						ok = false
					}
				case (p.Protocol == "tcp" || p.Protocol == "udp") && p.Field == "sport":
					r.Proto, r.Sport = p.Protocol, uint16(num)
				case (p.Protocol == "tcp" || p.Protocol == "udp") && p.Field == "dport":
					r.Proto, r.Dport = p.Protocol, uint16(num)
				case p.Protocol == "icmpv6" && p.Field == "type":
					r.Family, r.Proto, r.ICMPType = 6, "icmpv6", nftICMPv6Types[s]
					ok = r.ICMPType != 0
				default:
					ok = false
				}
			default:
				ok = false
			}
			if !ok {
				lr.unknown = append(lr.unknown, string(e["match"]))
			}
		default:
			for k, v := range e {
				lr.unknown = append(lr.unknown, k+": "+string(v))
			}
		}
	}
	return lr
}

// fwCheckKernelRuleset checks the table in n against the plan of p, as nft
// reads it (chains, hooks, priority, policy; every rule, its order and
// comment) and as Firewall.Rules reads it (rules, the helper's output out).
func fwCheckKernelRuleset(t *testing.T, n *netnstest.Namespace, p FirewallPolicy, out string) {
	t.Helper()
	plan := fwMustPlan(t, p)
	tab := nftListTable(t, n, FirewallTable)
	for name, hook := range map[string]string{ChainInput: "input", ChainOutput: "output"} {
		if c, want := tab.chains[name], (nftChain{"filter", hook, "drop", 0}); c != want {
			t.Errorf("chain %s: %+v, want %+v", name, c, want)
		}
	}
	if len(tab.chains) != 2 {
		t.Errorf("chains %v, want input and output", tab.chains)
	}
	var fromNft []FirewallRule
	for _, r := range tab.rules {
		if len(r.unknown) > 0 {
			t.Errorf("nft shows rule %q with what the plan has not: %v", r.rule.Why, r.unknown)
		}
		fromNft = append(fromNft, r.rule)
	}
	fwSameRules(t, "nft -j list table", fromNft, plan)
	if out == "" {
		return
	}
	var fromRules []FirewallRule
	for _, r := range fwRules(t, out) {
		if r.Foreign {
			t.Errorf("Rules reads rule %q as foreign", r.Rule.Why)
		}
		fromRules = append(fromRules, r.Rule)
	}
	fwSameRules(t, "Firewall.Rules", fromRules, plan)
}

// The traffic test's network: a client namespace whose firewall is under
// test, linked to a peer namespace by two veth pairs. The first is the
// client's real ("outer") link, to an internet host, a gateway and a LAN on
// the same wire; the second plays the tunnel (the policy's Tunnel is its
// name in the client), with the tunnel's resolver at its far end.
//
//	client                                 peer
//	outer  192.0.2.2/24  2001:db8:1::2/64  192.0.2.1  2001:db8:1::1 (gateway endpoints)
//	       192.168.7.2/24 fd00:7::2/64     192.168.7.1  fd00:7::1 (LAN)
//	tunnel 100.64.0.2/24 2001:db8:64::2/64 100.64.0.1  2001:db8:64::1 (resolver), 100.64.0.53
//	                                       lo: 203.0.113.10 (via outer), 198.51.100.10 (via the tunnel)
type fwNet struct {
	client, peer  *netnstest.Namespace
	outer, tunnel string // the client's interfaces
}

var (
	fwGatewayTCP  = netip.MustParseAddrPort("192.0.2.1:4443")
	fwGatewayUDP  = netip.MustParseAddrPort("192.0.2.1:51820")
	fwGatewayUDP6 = netip.MustParseAddrPort("[2001:db8:1::1]:51820")
	fwResolvers   = []netip.Addr{netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("2001:db8:64::1")}
)

func newFwNet(t *testing.T) *fwNet {
	t.Helper()
	fwRequireNft(t)
	client, peer := netnstest.New(t, "fwc"), netnstest.New(t, "fwp")
	pfx := netip.MustParsePrefix
	cOut, pOut := netnstest.Link(t, client, pfx("192.0.2.2/24"), peer, pfx("192.0.2.1/24"))
	for _, a := range []string{"2001:db8:1::2/64", "192.168.7.2/24", "fd00:7::2/64"} {
		client.AddAddr(t, cOut, pfx(a))
	}
	for _, a := range []string{"2001:db8:1::1/64", "192.168.7.1/24", "fd00:7::1/64"} {
		peer.AddAddr(t, pOut, pfx(a))
	}
	cTun, pTun := netnstest.Link(t, client, pfx("100.64.0.2/24"), peer, pfx("100.64.0.1/24"))
	client.AddAddr(t, cTun, pfx("2001:db8:64::2/64"))
	peer.AddAddr(t, pTun, pfx("2001:db8:64::1/64"))
	peer.AddAddr(t, pTun, pfx("100.64.0.53/24"))
	peer.AddAddr(t, "lo", pfx("203.0.113.10/32"))
	peer.AddAddr(t, "lo", pfx("198.51.100.10/32"))
	client.DefaultRoute(t, netip.MustParseAddr("192.0.2.1"))
	client.DefaultRoute(t, netip.MustParseAddr("2001:db8:1::1"))
	client.Route(t, pfx("198.51.100.0/24"), netip.MustParseAddr("100.64.0.1"))
	return &fwNet{client: client, peer: peer, outer: cOut, tunnel: cTun}
}

// fwState is what a policy allows, for the test's own model of it.
type fwState struct{ endpoints, tunnel, lan bool }

// fwCase is a probe of the traffic test and when it should pass.
type fwCase struct {
	id      string
	inbound bool // from the peer to the client
	proto   string
	to      string // "ADDR:PORT", or "ADDR" for icmp
	mark    uint32
	pass    func(fwState) bool
}

var (
	fwNever       = func(fwState) bool { return false }
	fwAlways      = func(fwState) bool { return true }
	fwIfEndpoints = func(s fwState) bool { return s.endpoints }
	fwIfTunnel    = func(s fwState) bool { return s.tunnel }
	fwIfLAN       = func(s fwState) bool { return s.lan }
)

var fwCases = []fwCase{
	// Nothing unmarked leaves by the real link, whatever it is.
	{"udp-internet", false, "udp", "192.0.2.1:5000", 0, fwNever},
	{"tcp-internet", false, "tcp", "192.0.2.1:4444", 0, fwNever},
	{"icmp-internet", false, "icmp", "192.0.2.1", 0, fwNever},
	{"udp6-internet", false, "udp", "[2001:db8:1::1]:5000", 0, fwNever},
	{"icmp6-internet", false, "icmp", "2001:db8:1::1", 0, fwNever},
	{"tcp-far", false, "tcp", "203.0.113.10:4444", 0, fwNever},
	{"dns-udp-internet", false, "udp", "192.0.2.1:53", 0, fwNever},
	{"dns-tcp-internet", false, "tcp", "192.0.2.1:53", 0, fwNever},
	{"dns-udp6-internet", false, "udp", "[2001:db8:1::1]:53", 0, fwNever},
	{"dns-udp-internet-marked", false, "udp", "192.0.2.1:53", DefaultFwMark, fwNever},
	// The daemon's marked sockets reach the gateway's endpoints, and only
	// those, and only marked; the replies come back.
	{"tcp-endpoint-marked", false, "tcp", fwGatewayTCP.String(), DefaultFwMark, fwIfEndpoints},
	{"udp-endpoint-marked", false, "udp", fwGatewayUDP.String(), DefaultFwMark, fwIfEndpoints},
	{"udp6-endpoint-marked", false, "udp", fwGatewayUDP6.String(), DefaultFwMark, fwIfEndpoints},
	{"tcp-endpoint-unmarked", false, "tcp", fwGatewayTCP.String(), 0, fwNever},
	{"udp-endpoint-unmarked", false, "udp", fwGatewayUDP.String(), 0, fwNever},
	{"udp-endpoint-othermark", false, "udp", fwGatewayUDP.String(), 1234, fwNever},
	{"tcp-endpoint-udp-port-marked", false, "tcp", fwGatewayUDP.String(), DefaultFwMark, fwNever},
	{"udp-otherport-marked", false, "udp", "192.0.2.1:5000", DefaultFwMark, fwNever},
	{"tcp-otherport-marked", false, "tcp", "192.0.2.1:4444", DefaultFwMark, fwNever},
	{"tcp-otheraddr-marked", false, "tcp", "203.0.113.10:4443", DefaultFwMark, fwNever},
	// Everything through the tunnel, once there is one.
	{"udp-tunnel", false, "udp", "100.64.0.1:5000", 0, fwIfTunnel},
	{"tcp-tunnel", false, "tcp", "100.64.0.1:4444", 0, fwIfTunnel},
	{"icmp-tunnel", false, "icmp", "100.64.0.1", 0, fwIfTunnel},
	{"udp6-tunnel", false, "udp", "[2001:db8:64::1]:5000", 0, fwIfTunnel},
	{"icmp6-tunnel", false, "icmp", "2001:db8:64::1", 0, fwIfTunnel},
	{"udp-far-via-tunnel", false, "udp", "198.51.100.10:5000", 0, fwIfTunnel},
	// DNS only to the tunnel's resolvers, only through the tunnel.
	{"dns-udp-tunnel", false, "udp", "100.64.0.1:53", 0, fwIfTunnel},
	{"dns-tcp-tunnel", false, "tcp", "100.64.0.1:53", 0, fwIfTunnel},
	{"dns-udp6-tunnel", false, "udp", "[2001:db8:64::1]:53", 0, fwIfTunnel},
	{"dns-udp-tunnel-other", false, "udp", "100.64.0.53:53", 0, fwNever},
	{"dns-tcp-tunnel-other", false, "tcp", "100.64.0.53:53", 0, fwNever},
	// The LAN when allowed, DNS excepted.
	{"udp-lan", false, "udp", "192.168.7.1:5000", 0, fwIfLAN},
	{"tcp-lan", false, "tcp", "192.168.7.1:4444", 0, fwIfLAN},
	{"icmp-lan", false, "icmp", "192.168.7.1", 0, fwIfLAN},
	{"udp6-lan", false, "udp", "[fd00:7::1]:5000", 0, fwIfLAN},
	{"dns-udp-lan", false, "udp", "192.168.7.1:53", 0, fwNever},
	{"dns-tcp-lan", false, "tcp", "192.168.7.1:53", 0, fwNever},
	// Loopback always, DNS too (a local stub resolver).
	{"udp-loopback", false, "udp", "127.0.0.1:7000", 0, fwAlways},
	{"tcp-loopback", false, "tcp", "127.0.0.1:7000", 0, fwAlways},
	{"udp6-loopback", false, "udp", "[::1]:7000", 0, fwAlways},
	{"dns-udp-loopback", false, "udp", "127.0.0.53:53", 0, fwAlways},

	// Inbound: nothing from outside, except from the tunnel and the LAN.
	{"in-udp", true, "udp", "192.0.2.2:7000", 0, fwNever},
	{"in-tcp", true, "tcp", "192.0.2.2:7000", 0, fwNever},
	{"in-icmp", true, "icmp", "192.0.2.2", 0, fwNever},
	{"in-udp6", true, "udp", "[2001:db8:1::2]:7000", 0, fwNever},
	{"in-icmp6", true, "icmp", "2001:db8:1::2", 0, fwNever},
	{"in-udp-tunnel", true, "udp", "100.64.0.2:7000", 0, fwIfTunnel},
	{"in-tcp-tunnel", true, "tcp", "100.64.0.2:7000", 0, fwIfTunnel},
	{"in-icmp-tunnel", true, "icmp", "100.64.0.2", 0, fwIfTunnel},
	{"in-udp-lan", true, "udp", "192.168.7.2:7000", 0, fwIfLAN},
	{"in-tcp-lan", true, "tcp", "192.168.7.2:7000", 0, fwIfLAN},
	{"in-icmp-lan", true, "icmp", "192.168.7.2", 0, fwIfLAN},
	{"in-udp6-lan", true, "udp", "[fd00:7::2]:7000", 0, fwIfLAN},
}

// fwPorts hands out the probes' source ports and ICMP identifiers, unique
// in the test binary, so that no probe meets another's connection state.
var fwPorts atomic.Uint32

func nextFwPort() uint16 {
	fwPorts.CompareAndSwap(0, 20000)
	return uint16(fwPorts.Add(1))
}

func (c fwCase) probe(s fwState) fwProbe {
	to, err := netip.ParseAddrPort(c.to)
	if err != nil {
		to = netip.AddrPortFrom(netip.MustParseAddr(c.to), 0)
	}
	return fwProbe{ID: c.id, Proto: c.proto, To: to, Port: nextFwPort(), Mark: c.mark, Pass: c.pass(s)}
}

// Barriers: the last probe of each side goes where the policy always lets
// it (DHCP), so that once it is seen everything sent before it has been.
var (
	fwOutBarrier = fwProbe{ID: "barrier-out", Proto: "udp", To: netip.MustParseAddrPort("[2001:db8:1::1]:547"), Port: 546, Pass: true}
	fwInBarrier  = fwProbe{ID: "barrier-in", Proto: "udp", To: netip.MustParseAddrPort("192.0.2.2:68"), Port: 67, Pass: true}
)

// fwObserveTable counts, in a table of its own hooked after ours (priority
// 10), the packets of every probe that our firewall let through: output
// for the client's probes, input for the peer's.
func fwObserveTable(probes []fwProbe, inbound map[string]bool) string {
	var in, out strings.Builder
	for _, p := range probes {
		var match string
		switch {
		case p.Proto == "icmp" && p.To.Addr().Is4():
			match = fmt.Sprintf("icmp type echo-request icmp id %d", p.Port)
		case p.Proto == "icmp":
			match = fmt.Sprintf("icmpv6 type echo-request icmpv6 id %d", p.Port)
		default:
			match = fmt.Sprintf("%s sport %d", p.Proto, p.Port)
		}
		b := &out
		if inbound[p.ID] {
			b = &in
		}
		fmt.Fprintf(b, "\t\t%s counter comment %q\n", match, p.ID)
	}
	return fmt.Sprintf(`table inet nymt-observe
delete table inet nymt-observe
table inet nymt-observe {
	chain input {
		type filter hook input priority 10; policy accept;
%s	}
	chain output {
		type filter hook output priority 10; policy accept;
%s	}
}
`, in.String(), out.String())
}

// TestFirewallTraffic applies the policy of each state of the tunnel, with
// and without AllowLAN, and checks it with real traffic: what each probe
// got (an answer, or nothing), what the observing table counted after our
// firewall (nothing for what must not pass), and what a capture on the
// client's real link saw (no packet of a blocked probe, nothing else than
// the allowed traffic, neighbour discovery and DHCP). The applying process
// exits before the traffic: the rules stay.
func TestFirewallTraffic(t *testing.T) {
	n := newFwNet(t)
	n.client.Start(t, "client-serve", "env", fwArgs(t, "fwserve", fwHelper{TCP: []uint16{7000}, UDP: []uint16{7000, 53, 68}})...).
		WaitFor(t, regexp.MustCompile(`SERVING`), time.Minute)
	n.peer.Start(t, "peer-serve", "env", fwArgs(t, "fwserve", fwHelper{TCP: []uint16{4443, 4444, 53}, UDP: []uint16{5000, 51820, 53, 547}})...).
		WaitFor(t, regexp.MustCompile(`SERVING`), time.Minute)

	blocked := FirewallPolicy{Block: true}
	connecting := FirewallPolicy{Block: true, Endpoints: []Endpoint{{"tcp", fwGatewayTCP}, {"udp", fwGatewayUDP}, {"udp", fwGatewayUDP6}}}
	connected := connecting
	connected.Tunnel, connected.TunnelDNS = n.tunnel, fwResolvers
	for _, tc := range []struct {
		name   string
		policy FirewallPolicy
		state  fwState
	}{
		{"blocked", blocked, fwState{}},
		{"connecting", connecting, fwState{endpoints: true}},
		{"connected", connected, fwState{endpoints: true, tunnel: true}},
		{"connected-lan", connected, fwState{endpoints: true, tunnel: true, lan: true}},
		{"connecting-lan", connecting, fwState{endpoints: true, lan: true}},
		{"blocked-lan", blocked, fwState{lan: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.policy.AllowLAN = tc.state.lan
			out := fwRun(t, n.client, fwHelper{Ops: []string{"apply", "rules"}, Policy: tc.policy})
			fwCheckKernelRuleset(t, n.client, tc.policy, out)
			n.checkTraffic(t, tc.state)
		})
	}
}

func (n *fwNet) checkTraffic(t *testing.T, s fwState) {
	var in, out, all []fwProbe
	inbound := map[string]bool{}
	byPort := map[uint16]fwProbe{}
	for _, c := range fwCases {
		p := c.probe(s)
		if c.inbound {
			in = append(in, p)
			inbound[p.ID] = true
		} else {
			out = append(out, p)
		}
		all = append(all, p)
		byPort[p.Port] = p
	}
	obs := filepath.Join(t.TempDir(), "observe.nft")
	if err := os.WriteFile(obs, []byte(fwObserveTable(all, inbound)), 0o644); err != nil {
		t.Fatal(err)
	}
	n.client.MustRun(t, "nft", "-f", obs)
	t.Cleanup(func() { n.client.Run("nft", "delete", "table", "inet", "nymt-observe") })

	capture := n.client.Start(t, "capture", "env", fwArgs(t, "fwcapture", fwHelper{Iface: n.outer})...)
	capture.WaitFor(t, regexp.MustCompile(`CAPTURING`), time.Minute)

	// Inbound first, so that the capture, which ends at the outbound
	// barrier, also covers the client's answers to them.
	results := map[string]string{}
	for _, side := range []struct {
		ns      *netnstest.Namespace
		probes  []fwProbe
		barrier fwProbe
	}{{n.peer, in, fwInBarrier}, {n.client, out, fwOutBarrier}} {
		res, err := side.ns.Run("env", fwArgs(t, "fwprobe", fwHelper{Probes: side.probes, Barrier: &side.barrier})...)
		if err != nil {
			t.Fatalf("probes: %v\n%s", err, res)
		}
		for _, m := range regexp.MustCompile(`(?m)^PROBE (\S+) (.*)$`).FindAllStringSubmatch(res, -1) {
			results[m[1]] = m[2]
		}
	}
	for _, p := range append(all, fwInBarrier, fwOutBarrier) {
		got, ok := results[p.ID]
		switch {
		case !ok:
			t.Errorf("%s: no result", p)
		case p.Pass && got != "pass":
			t.Errorf("%s: should pass: %s", p, got)
		case !p.Pass && got == "pass":
			t.Errorf("%s: LEAK: got through", p)
		}
	}

	// The observer's counters.
	counted := map[string]uint64{}
	for _, r := range nftListTable(t, n.client, "nymt-observe").rules {
		counted[r.rule.Why] = r.packets
	}
	for _, p := range all {
		c, ok := counted[p.ID]
		switch {
		case !ok:
			t.Errorf("%s: no counter in the observing table", p)
		case p.Pass && c == 0:
			t.Errorf("%s: passed, but the observing table counted nothing: the observation is broken", p)
		case !p.Pass && c != 0:
			t.Errorf("%s: LEAK: %d packets got past the firewall", p, c)
		}
	}

	// The capture on the real link, up to the outbound barrier.
	capture.WaitFor(t, regexp.MustCompile(`CAP out ipv6 udp 2001:db8:1::2 546 2001:db8:1::1 547`), time.Minute)
	capture.Stop()
	var seen int
	for line := range strings.Lines(capture.Stdout()) {
		f := strings.Fields(line)
		if len(f) != 8 || f[0] != "CAP" {
			continue
		}
		if f[1] != "out" {
			continue
		}
		seen++
		if strings.Join(f[4:], " ") == "2001:db8:1::2 546 2001:db8:1::1 547" {
			break
		}
		if why := fwCapturedAllowed(f[2:], s, byPort); why != "" {
			t.Errorf("LEAK on the link: %s (%s)", strings.TrimSpace(line), why)
		}
	}
	if seen == 0 {
		t.Error("the capture saw nothing, not even the barrier")
	}
}

// fwCapturedAllowed says why an outgoing packet the capture saw ("l3 proto
// src port dst port") must not be there, or "" when the policy allows it.
func fwCapturedAllowed(f []string, s fwState, byPort map[uint16]fwProbe) string {
	l3, proto := f[0], f[1]
	if l3 == "arp" {
		return ""
	}
	if l3 != "ipv4" && l3 != "ipv6" {
		return "not IP"
	}
	dst, err := netip.ParseAddr(f[4])
	if err != nil {
		return "unparsed"
	}
	sport, _ := strconv.Atoi(f[3])
	dport, _ := strconv.Atoi(f[5])
	switch {
	case proto == "icmpv6" && ((dport >= 130 && dport <= 136) || dport == 143):
		return "" // neighbour discovery, multicast listener messages
	case proto == "udp" && ((sport == 68 && dport == 67) || (sport == 546 && dport == 547)):
		return "" // DHCP
	case s.lan && fwIsLAN(dst) && !((proto == "udp" || proto == "tcp") && dport == 53):
		return ""
	}
	if p, ok := byPort[uint16(sport)]; ok && (p.Proto == proto || (p.Proto == "icmp" && proto == "icmpv6")) {
		if p.Pass {
			return ""
		}
		return "probe " + p.String() + ", which must not pass"
	}
	return "no probe of the test sends this"
}

// fwIsLAN is the test's own list of what AllowLAN opens.
func fwIsLAN(a netip.Addr) bool {
	for _, p := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "224.0.0.0/24", "239.255.255.250/32", "fe80::/10", "fc00::/7", "ff02::/16"} {
		if netip.MustParsePrefix(p).Contains(a) {
			return true
		}
	}
	return false
}

// TestFirewallReplaceIsAtomic: every Apply and Remove is one transaction
// of the kernel (`nft monitor` shows one new generation for each: the
// first creates the table, the next replace all its rules and nothing
// else), and the table ends as the last plan. Meanwhile a flood of
// datagrams that every policy blocks never gets out; it did while Apply
// deleted and re-created the table (see Apply).
func TestFirewallReplaceIsAtomic(t *testing.T) {
	n := newFwNet(t)
	mon := n.client.Start(t, "monitor", "nft", "monitor")
	netnstest.Poll(t, time.Minute, "nft monitor to listen", func() error {
		n.client.MustRun(t, "nft", "add table inet nymt-ready; delete table inet nymt-ready")
		if !strings.Contains(mon.Stdout(), "delete table inet nymt-ready") {
			return errors.New("the monitor has not seen the probe table")
		}
		return nil
	})
	start := len(mon.Stdout())

	a := FirewallPolicy{Block: true}
	b := FirewallPolicy{Block: true, Endpoints: []Endpoint{{"udp", fwGatewayUDP}}, Tunnel: n.tunnel, TunnelDNS: fwResolvers, AllowLAN: true}
	fwRun(t, n.client, fwHelper{Ops: []string{"apply"}, Policy: a})

	// Datagrams that both policies block flood the link while the table is
	// replaced again and again: to the internet, and DNS to the LAN, which
	// only half of b's rules would let through (the LAN rule without the
	// DNS rule before it).
	capture := n.client.Start(t, "capture", "env", fwArgs(t, "fwcapture", fwHelper{Iface: n.outer})...)
	capture.WaitFor(t, regexp.MustCompile(`CAPTURING`), time.Minute)
	flood := n.client.Start(t, "flood", "env", fwArgs(t, "fwprobe", fwHelper{Flood: true, Probes: []fwProbe{
		{ID: "flood-internet", Proto: "udp", To: netip.MustParseAddrPort("203.0.113.10:9999"), Port: nextFwPort()},
		{ID: "flood-lan-dns", Proto: "udp", To: netip.MustParseAddrPort("192.168.7.1:53"), Port: nextFwPort()},
	}})...)
	flood.WaitFor(t, regexp.MustCompile(`FLOODING`), time.Minute)
	const rounds = 10
	last := a
	for i := range rounds {
		last = a
		if i%2 == 0 {
			last = b
		}
		fwRun(t, n.client, fwHelper{Ops: []string{"apply"}, Policy: last})
	}
	flood.Stop()
	fwCheckKernelRuleset(t, n.client, last, "")
	fwRun(t, n.client, fwHelper{Ops: []string{"remove", "remove"}})

	// One generation per apply (the first, then the rounds), and per
	// remove (the second one removes nothing, but it is a transaction too).
	total := 1 + rounds + 2
	mon.WaitFor(t, regexp.MustCompile(fmt.Sprintf(`(?s)(# new generation.*){%d}`, total)), time.Minute)
	gens := strings.Split(mon.Stdout()[start:], "# new generation")
	gens = gens[:len(gens)-1] // what follows the last marker
	if len(gens) != total {
		t.Fatalf("%d generations, want %d:\n%s", len(gens), total, mon.Stdout()[start:])
	}
	prev := 0
	for i, g := range gens {
		if i > 0 {
			_, g, _ = strings.Cut(g, "\n") // the end of the marker's line
		}
		p := a
		if i >= 1 && i <= rounds && (i-1)%2 == 0 {
			p = b
		}
		deltable := strings.Count(g, "delete table inet nymvpn\n")
		delrule := strings.Count(g, "delete rule inet nymvpn ")
		addrule := strings.Count(g, "add rule inet nymvpn ")
		switch want := len(fwMustPlan(t, p)); {
		case i == 0:
			// A new table: created in one go.
			if deltable != 1 || addrule != want {
				t.Errorf("the first apply is not one transaction creating the table with its %d rules:\n%s", want, g)
			}
		case i <= rounds:
			// Our table: the rules are replaced, the table and its
			// chains stay.
			if deltable != 0 || delrule != prev || addrule != want {
				t.Errorf("apply %d does not replace the %d old rules with the %d new in one transaction (%d table deletions, %d rules deleted, %d added):\n%s",
					i, prev, want, deltable, delrule, addrule, g)
			}
		default:
			if deltable != 1 || addrule != 0 {
				t.Errorf("remove %d is not one deletion of the table:\n%s", i-rounds, g)
			}
		}
		prev = addrule
	}
	out := flood.Stdout()
	if m := regexp.MustCompile(`FLOOD sent (\d+) refused (\d+)`).FindStringSubmatch(out); m == nil || m[1] != "0" || m[2] == "0" {
		t.Errorf("the flood got out, or never ran: %s", out)
	}
	// Through the link, the barrier to be sure the capture has seen all.
	n.peer.Start(t, "peer-serve", "env", fwArgs(t, "fwserve", fwHelper{UDP: []uint16{547}})...).
		WaitFor(t, regexp.MustCompile(`SERVING`), time.Minute)
	fwRun(t, n.client, fwHelper{Ops: []string{"apply"}, Policy: a})
	if res, err := n.client.Run("env", fwArgs(t, "fwprobe", fwHelper{Barrier: &fwOutBarrier})...); err != nil || !strings.Contains(res, "PROBE barrier-out pass") {
		t.Fatalf("barrier: %v\n%s", err, res)
	}
	capture.WaitFor(t, regexp.MustCompile(`CAP out ipv6 udp 2001:db8:1::2 546 2001:db8:1::1 547`), time.Minute)
	capture.Stop()
	for line := range strings.Lines(capture.Stdout()) {
		if strings.HasPrefix(line, "CAP out") && (strings.Contains(line, " 9999\n") || strings.Contains(line, "192.168.7.1 53\n")) {
			t.Errorf("LEAK during the replacements: %s", strings.TrimSpace(line))
		}
	}
}

// TestFirewallRemoveRestores: with other tables in place, Apply then
// Remove leaves `nft list ruleset` as it was, byte for byte; Remove again
// and Apply of a policy without Block succeed and change nothing.
func TestFirewallRemoveRestores(t *testing.T) {
	fwRequireNft(t)
	n := netnstest.New(t, "fwrm")
	rs := filepath.Join(t.TempDir(), "other.nft")
	if err := os.WriteFile(rs, []byte(`table inet other {
	chain input {
		type filter hook input priority -5; policy accept;
		tcp dport 22 counter accept comment "ssh"
	}
	chain output {
		type filter hook output priority 5; policy accept;
	}
}
table ip legacy {
	chain forward {
		type filter hook forward priority 0; policy drop;
	}
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	n.MustRun(t, "nft", "-f", rs)
	before := n.MustRun(t, "nft", "list", "ruleset")
	p := FirewallPolicy{Block: true, Endpoints: []Endpoint{{"udp", fwGatewayUDP}}, Tunnel: "nymvpn0", TunnelDNS: fwResolvers, AllowLAN: true}
	out := fwRun(t, n, fwHelper{Ops: []string{"active", "apply", "active", "rules", "remove", "active"}, Policy: p})
	if got := regexp.MustCompile(`FW active (true|false)`).FindAllString(out, -1); !slices.Equal(got, []string{"FW active false", "FW active true", "FW active false"}) {
		t.Errorf("Active before, after Apply, after Remove: %v", got)
	}
	if len(fwRules(t, out)) != len(fwMustPlan(t, p)) {
		t.Errorf("Rules while applied: %d rules, want %d", len(fwRules(t, out)), len(fwMustPlan(t, p)))
	}
	if after := n.MustRun(t, "nft", "list", "ruleset"); after != before {
		t.Errorf("nft list ruleset after Remove:\n%s\nbefore Apply:\n%s", after, before)
	}
	out = fwRun(t, n, fwHelper{Ops: []string{"remove", "apply", "rules"}, Policy: FirewallPolicy{AllowLAN: true}})
	if !strings.Contains(out, "FW rules null\n") {
		t.Errorf("rules without a table:\n%s", out)
	}
	fwRun(t, n, fwHelper{Ops: []string{"apply"}, Policy: p})
	fwRun(t, n, fwHelper{Ops: []string{"apply"}, Policy: FirewallPolicy{}})
	if after := n.MustRun(t, "nft", "list", "ruleset"); after != before {
		t.Errorf("nft list ruleset after Apply without Block:\n%s\nbefore:\n%s", after, before)
	}
}

// TestFirewallSurvivesTheDaemon: the firewall of a daemon killed with
// SIGKILL stays and keeps blocking; a new process sees it (Active), reads
// it, replaces it and removes it.
func TestFirewallSurvivesTheDaemon(t *testing.T) {
	n := newFwNet(t)
	n.peer.Start(t, "peer-serve", "env", fwArgs(t, "fwserve", fwHelper{UDP: []uint16{51820}})...).
		WaitFor(t, regexp.MustCompile(`SERVING`), time.Minute)
	p := FirewallPolicy{Block: true, Endpoints: []Endpoint{{"udp", fwGatewayUDP}}}
	daemon := n.client.Start(t, "daemon", "env", fwArgs(t, "fw", fwHelper{Ops: []string{"apply"}, Policy: p, Hold: true})...)
	daemon.WaitFor(t, regexp.MustCompile(`FW holding`), time.Minute)
	if strings.Contains(daemon.Stdout(), " error: ") {
		t.Fatalf("apply: %s", daemon.Stdout())
	}
	syscall.Kill(daemon.Pid(), syscall.SIGKILL)
	<-daemon.Exited()
	daemon.Stop()

	fwCheckKernelRuleset(t, n.client, p, "")
	probes := []fwProbe{
		{ID: "unmarked", Proto: "udp", To: fwGatewayUDP, Port: nextFwPort()},
		{ID: "marked", Proto: "udp", To: fwGatewayUDP, Port: nextFwPort(), Mark: DefaultFwMark, Pass: true},
	}
	res, err := n.client.Run("env", fwArgs(t, "fwprobe", fwHelper{Probes: probes})...)
	if err != nil || !strings.Contains(res, "PROBE unmarked blocked") || !strings.Contains(res, "PROBE marked pass") {
		t.Errorf("traffic after the daemon died: %v\n%s", err, res)
	}

	q := FirewallPolicy{Block: true, Tunnel: n.tunnel, TunnelDNS: fwResolvers}
	out := fwRun(t, n.client, fwHelper{Ops: []string{"active", "rules", "apply", "rules"}, Policy: q})
	if !strings.Contains(out, "FW active true") {
		t.Errorf("a new process does not see the table:\n%s", out)
	}
	rules := regexp.MustCompile(`(?m)^FW rules [\[n].*$`).FindAllString(out, -1)
	if len(rules) != 2 {
		t.Fatalf("rules:\n%s", out)
	}
	var old []FirewallRule
	for _, r := range fwRules(t, rules[0]) {
		old = append(old, r.Rule)
	}
	fwSameRules(t, "the dead daemon's rules read by a new process", old, fwMustPlan(t, p))
	fwCheckKernelRuleset(t, n.client, q, rules[1])
	out = fwRun(t, n.client, fwHelper{Ops: []string{"remove", "active"}})
	if !strings.Contains(out, "FW active false") {
		t.Errorf("after Remove:\n%s", out)
	}
}

// TestFirewallRefusedRule: when the kernel refuses a rule, Apply names it,
// the firewall in place stays exactly as it was, and the scratch table of
// the diagnosis is gone.
func TestFirewallRefusedRule(t *testing.T) {
	fwRequireNft(t)
	n := netnstest.New(t, "fwbad")
	p := FirewallPolicy{Block: true, Endpoints: []Endpoint{{"udp", fwGatewayUDP}}, AllowLAN: true}
	fwRun(t, n, fwHelper{Ops: []string{"apply"}, Policy: p})
	before := n.MustRun(t, "nft", "list", "ruleset")
	out, err := n.Run("env", fwArgs(t, "fw", fwHelper{Ops: []string{"broken"}, Policy: FirewallPolicy{Block: true}, BrokenAt: 5})...)
	if err != nil {
		t.Fatal(err, out)
	}
	mustContain(t, "the refused apply", out, "FW broken error: firewall: the kernel refused rule 5 (output: jump nowhere):", "no such file or directory")
	if after := n.MustRun(t, "nft", "list", "ruleset"); after != before {
		t.Errorf("ruleset after a refused apply:\n%s\nbefore:\n%s", after, before)
	}
}

// TestFirewallReplacesAForeignTable: a table of our name that Apply did not
// make ends as exactly the plan: re-created when its chains are not ours
// (other hooks or priorities, regular chains, more chains), its rules
// replaced and the policy set to drop when they are.
func TestFirewallReplacesAForeignTable(t *testing.T) {
	fwRequireNft(t)
	for name, table := range map[string]string{
		"accepting (replaced the rules)": `table inet nymvpn {
	chain input {
		type filter hook input priority 0; policy accept;
		counter accept comment "not ours"
	}
	chain output {
		type filter hook output priority 0; policy accept;
	}
}`,
		"other-priority": `table inet nymvpn {
	chain input {
		type filter hook input priority 10; policy drop;
	}
	chain output {
		type filter hook output priority 0; policy drop;
	}
}`,
		"regular-chain": `table inet nymvpn {
	chain input {
		type filter hook input priority 0; policy drop;
	}
	chain output {
		accept
	}
}`,
		"extra-chain": `table inet nymvpn {
	chain input {
		type filter hook input priority 0; policy drop;
	}
	chain output {
		type filter hook output priority 0; policy drop;
		jump extra
	}
	chain extra {
		accept
	}
}`,
	} {
		t.Run(name, func(t *testing.T) {
			n := netnstest.New(t, "fwforeign")
			f := filepath.Join(t.TempDir(), "foreign.nft")
			if err := os.WriteFile(f, []byte(table), 0o644); err != nil {
				t.Fatal(err)
			}
			n.MustRun(t, "nft", "-f", f)
			p := FirewallPolicy{Block: true, Endpoints: []Endpoint{{"udp", fwGatewayUDP}}, AllowLAN: true}
			out := fwRun(t, n, fwHelper{Ops: []string{"apply", "rules"}, Policy: p})
			if strings.Contains(name, "replaced the rules") {
				mustContain(t, "apply", out, `how="replaced the rules"`)
			} else {
				mustContain(t, "apply", out, "how=created")
			}
			fwCheckKernelRuleset(t, n, p, out)
			// Now it is ours: the next Apply replaces the rules.
			out = fwRun(t, n, fwHelper{Ops: []string{"apply"}, Policy: p})
			mustContain(t, "apply", out, `how="replaced the rules"`)
		})
	}
}

// fwTestPolicies are policies of every state, for the tests without root.
var fwTestPolicies = []FirewallPolicy{
	{Block: true},
	{Block: true, AllowLAN: true},
	{Block: true, Endpoints: []Endpoint{{"tcp", fwGatewayTCP}, {"udp", fwGatewayUDP6}}, FwMark: 0x1234},
	{Block: true, Endpoints: []Endpoint{{"udp", fwGatewayUDP}}, Tunnel: "nymvpn0", TunnelDNS: fwResolvers, AllowLAN: true},
}

// TestNftRuleRoundTrip: every planned rule, translated into expressions
// and read back, is the same rule (without the kernel: the root tests do it
// through the kernel and nft).
func TestNftRuleRoundTrip(t *testing.T) {
	for _, p := range fwTestPolicies {
		for i, r := range fwMustPlan(t, p) {
			nr, err := nftRuleOf(r)
			if err != nil {
				t.Fatalf("rule %d (%s): %v", i, r, err)
			}
			if nr.chain != r.Chain {
				t.Errorf("rule %d: chain %q, want %q", i, nr.chain, r.Chain)
			}
			exprs := slices.Clone(nr.exprs)
			for j, e := range exprs {
				if _, ok := e.(*expr.Counter); ok {
					exprs[j] = &expr.Counter{Packets: 7, Bytes: 700}
				}
			}
			got := decodeNftRule(r.Chain, &nftables.Rule{Exprs: exprs, UserData: nr.userData, Handle: 42})
			if got.Foreign || got.Rule != r || got.Packets != 7 || got.Bytes != 700 || got.Handle != 42 {
				t.Errorf("rule %d: %s # %s\nread back as %+v", i, r, r.Why, got)
			}
		}
	}
}

// TestNftRuleExpressions pins the byte orders and paddings nft uses.
func TestNftRuleExpressions(t *testing.T) {
	r := FirewallRule{Chain: ChainOutput, Family: 4, OIF: "nymvpn0", Mark: 0xca6c, Proto: "udp",
		Daddr: netip.MustParsePrefix("192.168.0.0/16"), Sport: 68, Dport: 53, Verdict: "drop", Why: "test"}
	nr, err := nftRuleOf(r)
	if err != nil {
		t.Fatal(err)
	}
	eq := func(d []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: d} }
	want := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, eq([]byte{2}),
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, eq([]byte("nymvpn0\x00\x00\x00\x00\x00\x00\x00\x00\x00")),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1}, eq(binaryutil.NativeEndian.PutUint32(0xca6c)),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		eq([]byte{192, 168, 0, 0}),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, eq([]byte{17}),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2}, eq([]byte{0, 68}),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}, eq([]byte{0, 53}),
		&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop},
	}
	if !reflect.DeepEqual(nr.exprs, want) {
		t.Errorf("expressions:\n%s\nwant:\n%s", fwDumpExprs(nr.exprs), fwDumpExprs(want))
	}
	if ud := []byte("\x00\x05test\x00"); !bytes.Equal(nr.userData, ud) {
		t.Errorf("user data %q, want %q", nr.userData, ud)
	}
}

func fwDumpExprs(xs []expr.Any) string {
	var b strings.Builder
	for _, x := range xs {
		fmt.Fprintf(&b, "\t%T %+v\n", x, x)
	}
	return b.String()
}

// TestNftRuleRefuses: rules that could never match, or that the kernel
// would refuse, are errors before anything is sent.
func TestNftRuleRefuses(t *testing.T) {
	ok := FirewallRule{Chain: ChainOutput, Verdict: "accept"}
	for want, mod := range map[string]func(*FirewallRule){
		"unknown chain":                 func(r *FirewallRule) { r.Chain = "forward" },
		"unknown verdict":               func(r *FirewallRule) { r.Verdict = "reject" },
		"input interface in the output": func(r *FirewallRule) { r.IIF = "eth0" },
		"output interface in the input": func(r *FirewallRule) { r.Chain, r.OIF = ChainInput, "eth0" },
		"invalid interface name":        func(r *FirewallRule) { r.OIF = "a-very-long-name0" },
		"unknown family":                func(r *FirewallRule) { r.Family = 5 },
		"IPv6 prefix":                   func(r *FirewallRule) { r.Family, r.Daddr = 4, netip.MustParsePrefix("fe80::/10") },
		"IPv4-mapped":                   func(r *FirewallRule) { r.Daddr = netip.MustParsePrefix("::ffff:10.0.0.1/128") },
		"unknown protocol":              func(r *FirewallRule) { r.Proto = "sctp" },
		"icmpv6 in a rule for IPv4":     func(r *FirewallRule) { r.Family, r.Proto = 4, "icmpv6" },
		"ports with protocol":           func(r *FirewallRule) { r.Proto, r.Dport = "icmp", 53 },
		"ICMPv6 type with":              func(r *FirewallRule) { r.Proto, r.ICMPType = "icmp", 8 },
		"comment longer":                func(r *FirewallRule) { r.Why = strings.Repeat("x", 129) },
		"NUL byte":                      func(r *FirewallRule) { r.Why = "a\x00b" },
	} {
		r := ok
		mod(&r)
		if _, err := nftRuleOf(r); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: error %v, want %q", r, err, want)
		}
	}
	if _, err := nftRuleOf(ok); err != nil {
		t.Errorf("%+v: %v", ok, err)
	}
}

// TestDecodeForeignRule: a rule someone else put in the table is reported
// as foreign, with what can be read of it; malformed user data is no
// comment and no panic.
func TestDecodeForeignRule(t *testing.T) {
	got := decodeNftRule(ChainOutput, &nftables.Rule{
		Exprs:    []expr.Any{&expr.Log{}, &expr.Counter{Packets: 3, Bytes: 9}, &expr.Verdict{Kind: expr.VerdictAccept}},
		UserData: userdata.AppendString(nil, userdata.TypeComment, "someone's"),
	})
	want := AppliedFirewallRule{Rule: FirewallRule{Chain: ChainOutput, Verdict: "accept", Why: "someone's"}, Foreign: true, Packets: 3, Bytes: 9}
	if got != want {
		t.Errorf("foreign rule read as %+v, want %+v", got, want)
	}
	for _, ud := range [][]byte{{0}, {0, 200, 'a'}, {1, 1, 'x', 0, 9, 'y'}} {
		if c := comment(ud); c != "" {
			t.Errorf("comment(%q) = %q", ud, c)
		}
	}
	// A rule that matches but ends without a verdict is not ours either.
	got = decodeNftRule(ChainInput, &nftables.Rule{Exprs: []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")}}})
	if !got.Foreign {
		t.Errorf("rule without a verdict read as %+v", got)
	}
}
