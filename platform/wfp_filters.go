package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// The kill switch on Windows will be filters of the Windows Filtering
// Platform. WFPFilters turns the planned rules into those filters, as data;
// adding them (FwpmFilterAdd0 in a dynamic session or with a provider of
// our own, in a sublayer of our own, resolving interface names to LUIDs and
// the daemon's path to an application id) is the applier's work, not
// written yet.

// The WFP layers the filters are on: the ALE (application layer
// enforcement) layers where connections are authorized, outbound (connect)
// and inbound (receive/accept), per family. The values are the FWPM_LAYER_*
// constants' names.
const (
	WFPLayerConnectV4 = "FWPM_LAYER_ALE_AUTH_CONNECT_V4"
	WFPLayerConnectV6 = "FWPM_LAYER_ALE_AUTH_CONNECT_V6"
	WFPLayerAcceptV4  = "FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4"
	WFPLayerAcceptV6  = "FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6"
)

// WFPFilter is one filter, as data.
type WFPFilter struct {
	// Name is the filter's display name: the rule's Why.
	Name  string
	Layer string
	// Weight orders the filters of a layer in our sublayer: the highest
	// weight that matches decides, so the plan's first match comes first.
	Weight uint64
	// Action is "permit" or "block" (FWP_ACTION_PERMIT, FWP_ACTION_BLOCK).
	Action string
	// Conditions must all hold (different fields are ANDed).
	Conditions []WFPCondition
}

// WFPCondition is one condition of a filter.
type WFPCondition struct {
	// Field is the FWPM_CONDITION_* constant's name, without the prefix:
	// IP_REMOTE_ADDRESS, IP_LOCAL_ADDRESS, IP_REMOTE_PORT, IP_LOCAL_PORT,
	// IP_PROTOCOL, IP_LOCAL_INTERFACE, ICMP_TYPE, ALE_APP_ID, FLAGS.
	Field string
	// Match is the FWP_MATCH_* type: EQUAL, or FLAGS_ALL_SET for FLAGS.
	Match string
	// Value is an address or prefix ("10.0.0.0/8", an FWP_V4_ADDR_MASK or
	// FWP_V6_ADDR_AND_MASK), a port, protocol or ICMP type number, an
	// interface name (the applier resolves it to a LUID), the daemon's
	// executable path (ALE_APP_ID), or a flag's name.
	Value string
}

func (c WFPCondition) String() string { return c.Field + " " + c.Match + " " + c.Value }

// WFPOptions say how WFPFilters expresses what WFP has no word for.
type WFPOptions struct {
	// DaemonPath is the daemon's executable. WFP cannot match SO_MARK; the
	// daemon's own sockets are those of its application (ALE_APP_ID).
	// Required when a rule has a mark.
	DaemonPath string
}

// WFPFilters turns rules, in PlanFirewall's order, into WFP filters: one
// per rule and family (a rule for both families gives one filter on each
// layer), weighted in plan order within each layer, and a block of
// everything at weight 0 on each of the four layers. Output rules go to the
// connect layers, input rules to the receive/accept layers, with their
// addresses and ports seen from this host (an output rule's Daddr is the
// remote address, an input rule's the local one).
//
// The ALE layers authorize a connection once and let the rest of it, both
// ways, through: the plan's Established rule needs no filter. Rules on "lo"
// become the loopback flag.
func WFPFilters(rules []FirewallRule, o WFPOptions) ([]WFPFilter, error) {
	var filters []WFPFilter
	for i, r := range rules {
		fs, err := wfpFilters(r, o)
		if err != nil {
			return nil, fmt.Errorf("firewall: wfp: rule %d (%s: %s): %w", i, r.Chain, r, err)
		}
		filters = append(filters, fs...)
	}
	// Weights: in each layer, from its number of filters down to 1 in plan
	// order; the final blocks have 0.
	count := map[string]uint64{}
	for _, f := range filters {
		count[f.Layer]++
	}
	for i := range filters {
		filters[i].Weight = count[filters[i].Layer]
		count[filters[i].Layer]--
	}
	for _, l := range []string{WFPLayerAcceptV4, WFPLayerAcceptV6, WFPLayerConnectV4, WFPLayerConnectV6} {
		filters = append(filters, WFPFilter{Name: "nymvpn: nothing else", Layer: l, Action: "block"})
	}
	return filters, nil
}

func wfpFilters(r FirewallRule, o WFPOptions) ([]WFPFilter, error) {
	var outbound bool
	switch r.Chain {
	case ChainInput:
		if r.OIF != "" {
			return nil, errors.New("an output interface in the input chain")
		}
	case ChainOutput:
		outbound = true
		if r.IIF != "" {
			return nil, errors.New("an input interface in the output chain")
		}
	default:
		return nil, fmt.Errorf("unknown chain %q", r.Chain)
	}
	action := map[string]string{"accept": "permit", "drop": "block"}[r.Verdict]
	if action == "" {
		return nil, fmt.Errorf("unknown verdict %q", r.Verdict)
	}
	if r.Established {
		if r.Verdict != "accept" || r != (FirewallRule{Chain: r.Chain, Established: true, Verdict: r.Verdict, Why: r.Why}) {
			return nil, errors.New("an established rule with other matches or a drop: the ALE layers cannot say it")
		}
		return nil, nil
	}
	family := r.Family
	if family != 0 && family != 4 && family != 6 {
		return nil, fmt.Errorf("unknown family %d", r.Family)
	}
	for _, p := range []netip.Prefix{r.Saddr, r.Daddr} {
		if !p.IsValid() {
			continue
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("IPv4-mapped prefix %s", p)
		}
		f := addrFamily(p.Addr())
		if family == 0 {
			family = f
		}
		if f != family {
			return nil, fmt.Errorf("IPv%d prefix %s in a rule for IPv%d", f, p, family)
		}
	}
	var proto int
	switch r.Proto {
	case "":
	case "tcp":
		proto = 6
	case "udp":
		proto = 17
	case "icmp":
		proto = 1
		if family == 6 {
			return nil, errors.New("icmp in a rule for IPv6")
		}
		family = 4
	case "icmpv6":
		proto = 58
		if family == 4 {
			return nil, errors.New("icmpv6 in a rule for IPv4")
		}
		family = 6
	default:
		return nil, fmt.Errorf("unknown protocol %q", r.Proto)
	}
	if (r.Sport != 0 || r.Dport != 0) && proto != 6 && proto != 17 {
		return nil, fmt.Errorf("ports with protocol %q", r.Proto)
	}
	if r.ICMPType != 0 && proto != 58 {
		return nil, fmt.Errorf("an ICMPv6 type with protocol %q", r.Proto)
	}

	var cs []WFPCondition
	eq := func(field, value string) { cs = append(cs, WFPCondition{Field: field, Match: "EQUAL", Value: value}) }
	if ifc := r.IIF + r.OIF; ifc == "lo" {
		cs = append(cs, WFPCondition{Field: "FLAGS", Match: "FLAGS_ALL_SET", Value: "FWP_CONDITION_FLAG_IS_LOOPBACK"})
	} else if ifc != "" {
		eq("IP_LOCAL_INTERFACE", ifc)
	}
	if r.Mark != 0 {
		if o.DaemonPath == "" {
			return nil, errors.New("a rule for the daemon's sockets needs WFPOptions.DaemonPath")
		}
		eq("ALE_APP_ID", o.DaemonPath)
	}
	// Remote and local, as this host sees them.
	remoteAddr, localAddr, remotePort, localPort := r.Daddr, r.Saddr, r.Dport, r.Sport
	if !outbound {
		remoteAddr, localAddr, remotePort, localPort = r.Saddr, r.Daddr, r.Sport, r.Dport
	}
	if remoteAddr.IsValid() {
		eq("IP_REMOTE_ADDRESS", wfpPrefix(remoteAddr))
	}
	if localAddr.IsValid() {
		eq("IP_LOCAL_ADDRESS", wfpPrefix(localAddr))
	}
	if proto != 0 {
		eq("IP_PROTOCOL", strconv.Itoa(proto))
	}
	if remotePort != 0 {
		eq("IP_REMOTE_PORT", strconv.Itoa(int(remotePort)))
	}
	if localPort != 0 {
		eq("IP_LOCAL_PORT", strconv.Itoa(int(localPort)))
	}
	if r.ICMPType != 0 {
		eq("ICMP_TYPE", strconv.Itoa(int(r.ICMPType)))
	}
	families := []int{family}
	if family == 0 {
		families = []int{4, 6}
	}
	var out []WFPFilter
	for _, f := range families {
		layer := map[[2]bool]string{
			{true, true}: WFPLayerConnectV4, {true, false}: WFPLayerConnectV6,
			{false, true}: WFPLayerAcceptV4, {false, false}: WFPLayerAcceptV6,
		}[[2]bool{outbound, f == 4}]
		out = append(out, WFPFilter{Name: r.Why, Layer: layer, Action: action, Conditions: slices.Clone(cs)})
	}
	return out, nil
}

// wfpPrefix writes a host without its full-length prefix.
func wfpPrefix(p netip.Prefix) string {
	p = p.Masked()
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}
