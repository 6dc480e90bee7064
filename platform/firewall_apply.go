package platform

// The kill switch's appliers (NewFirewall, Firewall) are per system: nftables
// on Linux (firewall_linux.go); elsewhere NewFirewall reports that the kill
// switch is not implemented (wrapping errors.ErrUnsupported). What they share
// is here.

// AppliedFirewallRule is one rule of the firewall table as the kernel holds
// it, read back by Firewall.Rules: for diagnostics and for tests that compare
// the kernel's ruleset with the plan.
type AppliedFirewallRule struct {
	// Rule is the rule decoded from the kernel's expressions, with its
	// Chain and, from the rule's comment, its Why. For a rule of the
	// planned shape it equals the planned FirewallRule.
	Rule FirewallRule
	// Foreign is set when the rule is not of a shape this package writes
	// (someone edited the table by hand): Rule then has only Chain, Why and
	// Verdict, where they could be read.
	Foreign bool
	// Handle is the kernel's handle of the rule in its chain.
	Handle uint64
	// Packets and Bytes are the rule's counter.
	Packets, Bytes uint64
}
