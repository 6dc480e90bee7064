// Package platform is the daemon's system integration: it sends the
// machine's traffic and DNS through the tunnel's TUN device and later puts the
// machine back exactly as it was, after a clean disconnect and after a crash.
//
// The work is planned as data first: Plan turns a NetConfig into the list of
// Changes (addresses, MTU, link up, routes, policy rules, a sysctl, DNS) that
// Up then makes one by one, in the style of wg-quick on Linux:
//
//	ip -4 rule add not fwmark $MARK table $TABLE pref $PREF
//	ip -4 rule add table main suppress_prefixlength 0 pref $PREF-1
//	ip -4 rule add to $RESOLVER table $TABLE pref $PREF-2
//	ip -4 route add 0.0.0.0/0 dev $TUN table $TABLE
//	(and the same for IPv6, with "unreachable ::/0" when IPv6 is not tunnelled)
//
// The daemon's own outer sockets carry SO_MARK=$MARK, so they skip the first
// rule and use the main table; everything else goes to the tunnel, except
// destinations with a more specific route in the main table (the local
// network), as with wg-quick. The tunnel's DNS resolvers are routed into the
// tunnel even then. Routes alone do not stop leaks: between Down and the next
// Up traffic takes the normal routes. That is the kill switch's job.
//
// The kill switch: PlanFirewall turns a FirewallPolicy (block, the endpoints
// the daemon's marked sockets may reach, the tunnel interface and its
// resolvers, the LAN) into the exact ruleset as data, and Firewall applies
// it on Linux as one nftables table, inet nymvpn, that outlives the daemon
// (so a crash keeps blocking). PFAnchor and WFPFilters render the same rules
// for macOS pf and Windows WFP; their appliers are not written yet.
//
// WatchNetwork reports connectivity and address changes (netlink).
//
// Every change is written to a journal in Options.StateDir, and fsync'd,
// before it is made, together with what undoing it needs (old sysctl value,
// old MTU, the exact old bytes of resolv.conf). Down undoes the changes in
// reverse order; Recover does the same from the journal a crashed daemon left
// behind. Undoing a change that was never made is harmless, so a crash at any
// point between journal and change is covered.
//
// Linux is implemented (netlink, /proc/sys, systemd-resolved over D-Bus or
// /etc/resolv.conf), in the network namespace of the calling process. On
// other systems the package builds, Plan works, and Up reports that system
// integration is not implemented there yet (wrapping errors.ErrUnsupported).
package platform
