package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The kill switch on macOS will be a pf anchor. PFAnchor renders the
// planned rules as that anchor's text; loading it (pfctl -a ANCHOR -f -,
// with the anchor referenced at the top of the main ruleset and pf enabled)
// is the applier's work, not written yet.

// PFOptions say how PFAnchor expresses what pf has no word for.
type PFOptions struct {
	// User stands for the socket mark: pf cannot match SO_MARK, so a rule
	// for the daemon's marked sockets matches the sockets of the user the
	// daemon runs as ("user root"), which is wider: any process of that
	// user may reach the endpoints. Default "root".
	User string
	// Loopback is the loopback interface, which the plan calls "lo".
	// Default "lo0".
	Loopback string
}

// pfLabelMax is the longest label pf keeps (PF_RULE_LABEL_SIZE less the
// terminating NUL).
const pfLabelMax = 63

// PFAnchor renders rules, in PlanFirewall's order, as pf rules. pf lets
// the last matching rule decide unless a rule is "quick", so every rule is
// quick, and the anchor ends with a quick block of everything: the first
// match decides and what matches nothing is dropped, as in the plan. Each
// rule's Why becomes its label, which pfctl -s labels shows with counters
// (cut to pf's 63 bytes).
//
// pf keeps state for what it passes, so replies pass without a rule: the
// plan's Established rule becomes a comment. Rules on "lo" go to
// o.Loopback, and the socket mark becomes "user o.User" (see PFOptions).
func PFAnchor(rules []FirewallRule, o PFOptions) (string, error) {
	if o.User == "" {
		o.User = "root"
	}
	if o.Loopback == "" {
		o.Loopback = "lo0"
	}
	var b strings.Builder
	b.WriteString("# nymvpn kill switch: every rule is quick, so the first match decides.\n")
	for i, r := range rules {
		line, err := pfRule(r, o)
		if err != nil {
			return "", fmt.Errorf("firewall: pf: rule %d (%s: %s): %w", i, r.Chain, r, err)
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	b.WriteString(`block drop quick all label "nymvpn: nothing else"` + "\n")
	return b.String(), nil
}

func pfRule(r FirewallRule, o PFOptions) (string, error) {
	if strings.ContainsAny(r.Why, "\"$\\\n") {
		return "", errors.New(`a label with ", $, \ or a newline`)
	}
	var dir string
	switch r.Chain {
	case ChainInput:
		dir = "in"
		if r.OIF != "" {
			return "", errors.New("an output interface in the input chain")
		}
	case ChainOutput:
		dir = "out"
		if r.IIF != "" {
			return "", errors.New("an input interface in the output chain")
		}
	default:
		return "", fmt.Errorf("unknown chain %q", r.Chain)
	}
	if r.Established {
		if r.Verdict != "accept" || r != (FirewallRule{Chain: r.Chain, Established: true, Verdict: r.Verdict, Why: r.Why}) {
			return "", errors.New("an established rule with other matches or a drop: pf's state table cannot say it")
		}
		return "# " + dir + ": " + r.Why + ": pf's state table passes them", nil
	}
	w := []string{}
	switch r.Verdict {
	case "accept":
		w = append(w, "pass")
	case "drop":
		w = append(w, "block", "drop")
	default:
		return "", fmt.Errorf("unknown verdict %q", r.Verdict)
	}
	w = append(w, dir, "quick")
	if ifc := r.IIF + r.OIF; ifc != "" {
		if ifc == "lo" {
			ifc = o.Loopback
		}
		w = append(w, "on", ifc)
	}
	family := r.Family
	for _, p := range []netip.Prefix{r.Saddr, r.Daddr} {
		if !p.IsValid() {
			continue
		}
		if p.Addr().Is4In6() {
			return "", fmt.Errorf("IPv4-mapped prefix %s", p)
		}
		f := addrFamily(p.Addr())
		if family == 0 {
			family = f
		}
		if f != family {
			return "", fmt.Errorf("IPv%d prefix %s in a rule for IPv%d", f, p, family)
		}
	}
	switch r.Proto {
	case "icmp":
		if family == 6 {
			return "", errors.New("icmp in a rule for IPv6")
		}
		family = 4
	case "icmpv6":
		if family == 4 {
			return "", errors.New("icmpv6 in a rule for IPv4")
		}
		family = 6
	}
	switch family {
	case 0:
	case 4:
		w = append(w, "inet")
	case 6:
		w = append(w, "inet6")
	default:
		return "", fmt.Errorf("unknown family %d", r.Family)
	}
	switch r.Proto {
	case "":
	case "tcp", "udp", "icmp":
		w = append(w, "proto", r.Proto)
	case "icmpv6":
		w = append(w, "proto", "icmp6")
	default:
		return "", fmt.Errorf("unknown protocol %q", r.Proto)
	}
	if (r.Sport != 0 || r.Dport != 0) && r.Proto != "tcp" && r.Proto != "udp" {
		return "", fmt.Errorf("ports with protocol %q", r.Proto)
	}
	host := func(p string, port uint16) []string {
		h := []string{p}
		if port != 0 {
			h = append(h, "port", strconv.Itoa(int(port)))
		}
		return h
	}
	if r.Saddr.IsValid() || r.Daddr.IsValid() || r.Sport != 0 || r.Dport != 0 {
		from, to := "any", "any"
		if r.Saddr.IsValid() {
			from = pfPrefix(r.Saddr)
		}
		if r.Daddr.IsValid() {
			to = pfPrefix(r.Daddr)
		}
		w = append(w, "from")
		w = append(w, host(from, r.Sport)...)
		w = append(w, "to")
		w = append(w, host(to, r.Dport)...)
	} else {
		w = append(w, "all")
	}
	if r.Mark != 0 {
		if r.Proto != "tcp" && r.Proto != "udp" {
			return "", errors.New("pf matches the daemon's sockets (user) only for tcp and udp")
		}
		w = append(w, "user", o.User)
	}
	if r.ICMPType != 0 {
		if r.Proto != "icmpv6" {
			return "", fmt.Errorf("an ICMPv6 type with protocol %q", r.Proto)
		}
		w = append(w, "icmp6-type", strconv.Itoa(int(r.ICMPType)))
	}
	if r.Why != "" {
		label := r.Why
		if len(label) > pfLabelMax {
			label = label[:pfLabelMax]
			for !utf8.ValidString(label) {
				label = label[:len(label)-1] // not in the middle of a character
			}
		}
		w = append(w, "label", `"`+label+`"`)
	}
	return strings.Join(w, " "), nil
}

// pfPrefix writes a host without its full-length prefix, as pfctl shows
// it.
func pfPrefix(p netip.Prefix) string {
	p = p.Masked()
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}
