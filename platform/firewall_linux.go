package platform

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// firewallCommentMax is the longest comment nft(8) accepts.
const firewallCommentMax = 128

// Firewall applies kill-switch policies. On Linux the kill switch is one
// nftables table, "inet FirewallTable", in
// the network namespace of the calling process, with two base chains:
//
//	table inet nymvpn {
//		chain input  { type filter hook input  priority 0; policy drop; ... }
//		chain output { type filter hook output priority 0; policy drop; ... }
//	}
//
// holding PlanFirewall's rules in order, each with a counter and its Why as
// the rule's comment, so `nft list table inet nymvpn` explains itself.
// Nothing else of the system's ruleset is touched.
//
// Priority 0 (filter) is the conventional one, and the exact value does not
// change what the kill switch does: every base chain on a hook sees each
// packet, in priority order; a drop in any of them is final, while an accept
// only ends that one chain. So our table can only take traffic away: an
// accept here does not let through what another table (firewalld, ufw,
// docker) drops, and an accept there does not let through what we drop.
//
// The table is not owned by the process (no NFT_TABLE_F_OWNER): it stays
// when the daemon exits or crashes, which is the point of a kill switch, and
// a new daemon (or `nymvpnd cleanup`) replaces or removes it.
//
// Its methods are safe for concurrent use.
type Firewall struct {
	log *slog.Logger
	mu  sync.Mutex
	// conn is renewed by each method (fresh), as the library's Conn keeps
	// the first error of a batch's serialization for ever.
	conn *nftables.Conn
	// table is the table's name: FirewallTable, except for the scratch
	// table diagnose uses.
	table string
}

// NewFirewall returns the firewall of the calling process's network
// namespace, after checking that nftables answers (the nf_tables module,
// CAP_NET_ADMIN). It changes nothing: a table left by an earlier daemon stays
// until Apply or Remove.
func NewFirewall(log *slog.Logger) (*Firewall, error) {
	if log == nil {
		log = slog.Default()
	}
	f := &Firewall{log: log.With("component", "firewall"), table: FirewallTable}
	if err := f.fresh(); err != nil {
		return nil, err
	}
	if _, err := f.conn.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		return nil, fmt.Errorf("firewall: nftables does not answer: %w", err)
	}
	return f, nil
}

// fresh gives f a new connection (a netlink socket is opened for each
// request or batch).
func (f *Firewall) fresh() error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("firewall: nftables: %w", err)
	}
	f.conn = conn
	return nil
}

// Apply makes the firewall exactly PlanFirewall(p), replacing whatever the
// table held, in one netlink batch that the kernel commits atomically, so
// packets meet the old ruleset or the new one, never no rules or half of
// them; if the kernel refuses any part, it refuses the whole batch and the
// old ruleset stays. A policy with Block false removes the table.
//
// When the table is already there with our two base chains (any earlier
// Apply, also by a daemon that died), the batch keeps the table and the
// chains and replaces only the rules: it flushes the table's rules, sets
// the chains' policy to drop again, and adds the new rules. The chains are
// never unhooked, so their drop policy holds throughout.
//
// Otherwise (no table yet, or one that is not of our making) the batch
// adds the table, deletes it and adds it anew with its chains and rules.
// That way is not used to replace our own table because it leaks: the
// kernel unhooks the old base chains and only then gives the new ones their
// drop policy (nf_tables_commit defers a new base chain's drop policy to
// the end of the transaction so that loading a ruleset cannot cut the
// loader off), and a packet that comes in between and matches none of the
// new rules is accepted. TestFirewallReplaceIsAtomic catches it.
func (f *Firewall) Apply(p FirewallPolicy) error {
	rules, err := PlanFirewall(p)
	if err != nil {
		return err
	}
	if !p.Block {
		return f.Remove()
	}
	nrules := make([]nftRule, len(rules))
	for i, r := range rules {
		if nrules[i], err = nftRuleOf(r); err != nil {
			return fmt.Errorf("firewall: rule %d (%s): %w", i, r, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fresh(); err != nil {
		return err
	}
	chains, err := f.chains()
	if err != nil {
		return err
	}
	how := "created"
	if ours(chains) {
		how = "replaced the rules"
		if err = f.replaceRules(nrules); err != nil {
			f.log.Warn("firewall: replacing the rules failed; re-creating the table", "err", err)
		}
	}
	if how == "created" || err != nil {
		how = "created"
		if err := f.commit(nrules, true); err != nil {
			return f.diagnose(nrules, err)
		}
	}
	f.log.Info("firewall applied", "table", "inet "+f.table, "how", how, "rules", len(rules),
		"endpoints", len(p.Endpoints), "tunnel", p.Tunnel, "tunnel_dns", len(p.TunnelDNS), "allow_lan", p.AllowLAN)
	return nil
}

// chains lists the chains of the table (none when there is no table).
func (f *Firewall) chains() ([]*nftables.Chain, error) {
	all, err := f.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("firewall: list chains: %w", err)
	}
	var chains []*nftables.Chain
	for _, c := range all {
		if c.Table != nil && c.Table.Name == f.table {
			chains = append(chains, c)
		}
	}
	return chains, nil
}

// ours reports whether chains are exactly our two base chains: filter
// chains on the input and output hooks at priority 0.
func ours(chains []*nftables.Chain) bool {
	want := map[string]nftables.ChainHook{ChainInput: *nftables.ChainHookInput, ChainOutput: *nftables.ChainHookOutput}
	for _, c := range chains {
		hook, ok := want[c.Name]
		if !ok || c.Type != nftables.ChainTypeFilter || c.Hooknum == nil || *c.Hooknum != hook ||
			c.Priority == nil || *c.Priority != *nftables.ChainPriorityFilter {
			return false
		}
	}
	return len(chains) == len(want)
}

// replaceRules replaces the rules of our existing table in one batch,
// leaving the table and its base chains in place.
func (f *Firewall) replaceRules(rules []nftRule) error {
	t := f.tableRef()
	f.conn.AddTable(t)
	f.conn.FlushTable(t)
	chains := f.addChains(t, true)
	for _, r := range rules {
		f.conn.AddRule(&nftables.Rule{Table: t, Chain: chains[r.chain], Exprs: r.exprs, UserData: r.userData})
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("firewall: replace the rules of table inet %s: %w", f.table, err)
	}
	return nil
}

// Remove deletes the table, if there is one; the traffic then goes as if
// the kill switch never existed. Removing an absent table succeeds.
func (f *Firewall) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fresh(); err != nil {
		return err
	}
	t := f.tableRef()
	// Adding the table first makes the deletion valid whether or not it
	// existed; the batch is atomic, so an absent table never appears.
	f.conn.AddTable(t)
	f.conn.DelTable(t)
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("firewall: remove table inet %s: %w", f.table, err)
	}
	f.log.Info("firewall removed", "table", "inet "+f.table)
	return nil
}

// Active reports whether the table exists: a firewall applied earlier, by
// this process or by a daemon that crashed, blocks traffic until it is
// replaced or removed.
func (f *Firewall) Active() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fresh(); err != nil {
		return false, err
	}
	return f.active()
}

func (f *Firewall) active() (bool, error) {
	tables, err := f.conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("firewall: list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == f.table {
			return true, nil
		}
	}
	return false, nil
}

// Rules reads the table's rules back from the kernel, with their
// counters: the input chain's in order, then the output chain's, then those
// of any other chain someone added to the table (as Foreign rules). Without
// a table there are no rules (and no error).
func (f *Firewall) Rules() ([]AppliedFirewallRule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fresh(); err != nil {
		return nil, err
	}
	chains, err := f.chains()
	if err != nil {
		return nil, err
	}
	rank := func(c *nftables.Chain) int {
		switch c.Name {
		case ChainInput:
			return 0
		case ChainOutput:
			return 1
		}
		return 2
	}
	slices.SortFunc(chains, func(a, b *nftables.Chain) int {
		return cmp.Or(rank(a)-rank(b), strings.Compare(a.Name, b.Name))
	})
	var out []AppliedFirewallRule
	for _, c := range chains {
		rules, err := f.conn.GetRules(f.tableRef(), c)
		if err != nil {
			return nil, fmt.Errorf("firewall: list chain %s: %w", c.Name, err)
		}
		for _, r := range rules {
			a := decodeNftRule(c.Name, r)
			a.Foreign = a.Foreign || rank(c) == 2
			out = append(out, a)
		}
	}
	return out, nil
}

func (f *Firewall) tableRef() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: f.table}
}

// commit replaces the table with one holding rules, in one batch. With
// hooks the chains are base chains (policy drop) on the input and output
// hooks; without (diagnose's scratch table) they are regular chains that no
// packet traverses.
func (f *Firewall) commit(rules []nftRule, hooks bool) error {
	t := f.tableRef()
	f.conn.AddTable(t)
	f.conn.DelTable(t)
	f.conn.AddTable(t)
	chains := f.addChains(t, hooks)
	for _, r := range rules {
		f.conn.AddRule(&nftables.Rule{Table: t, Chain: chains[r.chain], Exprs: r.exprs, UserData: r.userData})
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("firewall: replace table inet %s: %w", f.table, err)
	}
	return nil
}

// addChains adds (or, when they exist, updates) the input and output
// chains to the batch: base chains with policy drop when hooks is set.
func (f *Firewall) addChains(t *nftables.Table, hooks bool) map[string]*nftables.Chain {
	chains := map[string]*nftables.Chain{}
	for _, c := range []struct {
		name string
		hook *nftables.ChainHook
	}{{ChainInput, nftables.ChainHookInput}, {ChainOutput, nftables.ChainHookOutput}} {
		ch := &nftables.Chain{Name: c.name, Table: t}
		if hooks {
			drop := nftables.ChainPolicyDrop
			ch.Type, ch.Hooknum, ch.Priority, ch.Policy = nftables.ChainTypeFilter, c.hook, nftables.ChainPriorityFilter, &drop
		}
		chains[c.name] = f.conn.AddChain(ch)
	}
	return chains
}

// diagnose runs after the kernel refused a ruleset (err): it finds which
// rule the kernel refuses by adding them one at a time to a scratch table of
// regular chains, which no packet traverses, then deletes that table. The
// kernel's answer to a batch does not say which message failed.
func (f *Firewall) diagnose(rules []nftRule, err error) error {
	scratch := &Firewall{log: f.log, conn: f.conn, table: FirewallTable + "-check"}
	defer func() {
		t := scratch.tableRef()
		scratch.conn.AddTable(t)
		scratch.conn.DelTable(t)
		if derr := scratch.conn.Flush(); derr != nil {
			f.log.Warn("firewall: could not delete the scratch table", "table", "inet "+scratch.table, "err", derr)
		}
	}()
	if scratch.commit(nil, false) != nil {
		return err
	}
	t := scratch.tableRef()
	for i, r := range rules {
		scratch.conn.AddRule(&nftables.Rule{Table: t, Chain: &nftables.Chain{Name: r.chain, Table: t}, Exprs: r.exprs, UserData: r.userData})
		if rerr := scratch.conn.Flush(); rerr != nil {
			return fmt.Errorf("firewall: the kernel refused rule %d (%s: %s): %w", i, r.chain, r.text, rerr)
		}
	}
	return err
}

// nftRule is a FirewallRule translated into nftables expressions.
type nftRule struct {
	chain    string
	exprs    []expr.Any
	userData []byte
	text     string // FirewallRule.String, for errors
}

// Protocol numbers of FirewallRule.Proto.
var l4protos = map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "icmp": unix.IPPROTO_ICMP, "icmpv6": unix.IPPROTO_ICMPV6}

// nftRuleOf translates r into the expressions nft(8) generates for
// r.String(), in the same order, followed by a counter and the verdict:
//
//	meta nfproto        meta load nfproto; cmp eq 2 (ipv4) or 10 (ipv6)
//	iifname, oifname    meta load iifname/oifname; cmp eq the name NUL-padded to 16 bytes
//	meta mark           meta load mark; cmp eq (host byte order)
//	ip/ip6 saddr/daddr  payload load @ network header; bitwise & mask (prefixes); cmp eq
//	meta l4proto        meta load l4proto; cmp eq
//	sport, dport        payload load 2 bytes @ transport header + 0 or 2; cmp eq (network order)
//	icmpv6 type         payload load 1 byte @ transport header + 0; cmp eq
//	ct state            ct load state; bitwise & established|related; cmp neq 0
//
// It refuses fields that would never match or that the kernel would refuse.
func nftRuleOf(r FirewallRule) (nftRule, error) {
	out := nftRule{chain: r.Chain, text: r.String()}
	switch r.Chain {
	case ChainInput:
		if r.OIF != "" {
			return out, errors.New("an output interface in the input chain")
		}
	case ChainOutput:
		if r.IIF != "" {
			return out, errors.New("an input interface in the output chain")
		}
	default:
		return out, fmt.Errorf("unknown chain %q", r.Chain)
	}
	var verdict expr.VerdictKind
	switch r.Verdict {
	case "accept":
		verdict = expr.VerdictAccept
	case "drop":
		verdict = expr.VerdictDrop
	default:
		return out, fmt.Errorf("unknown verdict %q", r.Verdict)
	}
	if len(r.Why) > firewallCommentMax {
		return out, fmt.Errorf("comment longer than %d bytes", firewallCommentMax)
	}
	if bytes.IndexByte([]byte(r.Why), 0) >= 0 {
		return out, errors.New("NUL byte in the comment")
	}
	family := r.Family
	for _, p := range []netip.Prefix{r.Saddr, r.Daddr} {
		if !p.IsValid() {
			continue
		}
		if p.Addr().Is4In6() {
			return out, fmt.Errorf("IPv4-mapped prefix %s", p)
		}
		f := addrFamily(p.Addr())
		if family == 0 {
			family = f
		}
		if f != family {
			return out, fmt.Errorf("IPv%d prefix %s in a rule for IPv%d", f, p, family)
		}
	}
	e := func(x ...expr.Any) { out.exprs = append(out.exprs, x...) }
	eq := func(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data} }
	switch family {
	case 0:
	case 4:
		e(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, eq([]byte{unix.NFPROTO_IPV4}))
	case 6:
		e(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, eq([]byte{unix.NFPROTO_IPV6}))
	default:
		return out, fmt.Errorf("unknown family %d", r.Family)
	}
	for _, m := range []struct {
		key  expr.MetaKey
		name string
	}{{expr.MetaKeyIIFNAME, r.IIF}, {expr.MetaKeyOIFNAME, r.OIF}} {
		if m.name == "" {
			continue
		}
		if len(m.name) >= unix.IFNAMSIZ || bytes.IndexByte([]byte(m.name), 0) >= 0 {
			return out, fmt.Errorf("invalid interface name %q", m.name)
		}
		e(&expr.Meta{Key: m.key, Register: 1}, eq(ifname(m.name)))
	}
	if r.Mark != 0 {
		e(&expr.Meta{Key: expr.MetaKeyMARK, Register: 1}, eq(binaryutil.NativeEndian.PutUint32(r.Mark)))
	}
	for _, a := range []struct {
		p          netip.Prefix
		off4, off6 uint32
	}{{r.Saddr, 12, 8}, {r.Daddr, 16, 24}} {
		if !a.p.IsValid() || a.p.Bits() == 0 {
			continue // any address of the family: the nfproto match does it
		}
		p := a.p.Masked()
		off := a.off4
		if family == 6 {
			off = a.off6
		}
		n := uint32(p.Addr().BitLen() / 8)
		e(&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n})
		if !p.IsSingleIP() {
			e(&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: prefixMask(p.Bits(), int(n)), Xor: make([]byte, n)})
		}
		e(eq(p.Addr().AsSlice()))
	}
	if r.Proto != "" {
		proto, ok := l4protos[r.Proto]
		if !ok {
			return out, fmt.Errorf("unknown protocol %q", r.Proto)
		}
		if (proto == unix.IPPROTO_ICMP && family == 6) || (proto == unix.IPPROTO_ICMPV6 && family == 4) {
			return out, fmt.Errorf("%s in a rule for IPv%d", r.Proto, family)
		}
		e(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, eq([]byte{proto}))
	}
	if r.Sport != 0 || r.Dport != 0 {
		if r.Proto != "tcp" && r.Proto != "udp" {
			return out, fmt.Errorf("ports with protocol %q", r.Proto)
		}
		for _, p := range []struct {
			port uint16
			off  uint32
		}{{r.Sport, 0}, {r.Dport, 2}} {
			if p.port != 0 {
				e(&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: p.off, Len: 2},
					eq(binaryutil.BigEndian.PutUint16(p.port)))
			}
		}
	}
	if r.ICMPType != 0 {
		if r.Proto != "icmpv6" {
			return out, fmt.Errorf("an ICMPv6 type with protocol %q", r.Proto)
		}
		e(&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			eq([]byte{r.ICMPType}))
	}
	if r.Established {
		e(&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
	}
	e(&expr.Counter{}, &expr.Verdict{Kind: verdict})
	if r.Why != "" {
		out.userData = userdata.AppendString(nil, userdata.TypeComment, r.Why)
	}
	return out, nil
}

// ifname is an interface name as nft matches it: NUL-padded to IFNAMSIZ.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// prefixMask is the network mask of bits ones in n bytes.
func prefixMask(bits, n int) []byte {
	m := make([]byte, n)
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
			bits -= 8
		case bits > 0:
			m[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
	return m
}

// decodeNftRule reads a rule of the table back into a FirewallRule: the
// inverse of nftRuleOf. Anything else makes the rule Foreign.
func decodeNftRule(chain string, r *nftables.Rule) AppliedFirewallRule {
	a := AppliedFirewallRule{Handle: r.Handle}
	fr := FirewallRule{Chain: chain, Why: comment(r.UserData)}
	foreign := false
	xs := r.Exprs
	// take consumes the next expression.
	take := func() expr.Any {
		if len(xs) == 0 {
			return nil
		}
		x := xs[0]
		xs = xs[1:]
		return x
	}
	eq := func() ([]byte, bool) {
		c, ok := take().(*expr.Cmp)
		if !ok || c.Op != expr.CmpOpEq || c.Register != 1 {
			return nil, false
		}
		return c.Data, true
	}
	verdictSeen := false
	for len(xs) > 0 && !foreign {
		switch x := take().(type) {
		case *expr.Meta:
			d, ok := eq()
			if !ok || x.SourceRegister || x.Register != 1 {
				foreign = true
				break
			}
			switch {
			case x.Key == expr.MetaKeyNFPROTO && len(d) == 1 && d[0] == unix.NFPROTO_IPV4:
				fr.Family = 4
			case x.Key == expr.MetaKeyNFPROTO && len(d) == 1 && d[0] == unix.NFPROTO_IPV6:
				fr.Family = 6
			case x.Key == expr.MetaKeyIIFNAME && len(d) == unix.IFNAMSIZ:
				fr.IIF = string(bytes.TrimRight(d, "\x00"))
			case x.Key == expr.MetaKeyOIFNAME && len(d) == unix.IFNAMSIZ:
				fr.OIF = string(bytes.TrimRight(d, "\x00"))
			case x.Key == expr.MetaKeyMARK && len(d) == 4:
				fr.Mark = binaryutil.NativeEndian.Uint32(d)
			case x.Key == expr.MetaKeyL4PROTO && len(d) == 1:
				foreign = true
				for name, p := range l4protos {
					if p == d[0] {
						fr.Proto, foreign = name, false
					}
				}
			default:
				foreign = true
			}
		case *expr.Payload:
			if x.OperationType != expr.PayloadLoad || x.DestRegister != 1 {
				foreign = true
				break
			}
			var mask []byte
			if b, ok := peek[*expr.Bitwise](xs); ok {
				take()
				if b.SourceRegister != 1 || b.DestRegister != 1 || b.Len != x.Len || !bytes.Equal(b.Xor, make([]byte, b.Len)) {
					foreign = true
					break
				}
				mask = b.Mask
			}
			d, ok := eq()
			if !ok || uint32(len(d)) != x.Len {
				foreign = true
				break
			}
			switch x.Base {
			case expr.PayloadBaseNetworkHeader:
				p, ok := decodePrefix(fr.Family, x.Offset, d, mask)
				switch {
				case !ok:
					foreign = true
				case x.Offset == 12 || x.Offset == 8:
					fr.Saddr = p
				default:
					fr.Daddr = p
				}
			case expr.PayloadBaseTransportHeader:
				switch {
				case mask != nil:
					foreign = true
				case x.Offset == 0 && x.Len == 2:
					fr.Sport = binary.BigEndian.Uint16(d)
				case x.Offset == 2 && x.Len == 2:
					fr.Dport = binary.BigEndian.Uint16(d)
				case x.Offset == 0 && x.Len == 1 && fr.Proto == "icmpv6":
					fr.ICMPType = d[0]
				default:
					foreign = true
				}
			default:
				foreign = true
			}
		case *expr.Ct:
			b, ok1 := take().(*expr.Bitwise)
			c, ok2 := take().(*expr.Cmp)
			if !ok1 || !ok2 || x.Key != expr.CtKeySTATE || x.Register != 1 ||
				!bytes.Equal(b.Mask, binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)) ||
				c.Op != expr.CmpOpNeq || !bytes.Equal(c.Data, make([]byte, 4)) {
				foreign = true
				break
			}
			fr.Established = true
		case *expr.Counter:
			a.Packets, a.Bytes = x.Packets, x.Bytes
		case *expr.Verdict:
			switch x.Kind {
			case expr.VerdictAccept:
				fr.Verdict = "accept"
			case expr.VerdictDrop:
				fr.Verdict = "drop"
			default:
				foreign = true
			}
			verdictSeen = true
			if len(xs) > 0 {
				foreign = true
			}
		default:
			foreign = true
		}
	}
	if foreign || !verdictSeen {
		// Keep what is certain: the chain, the comment, the verdict and
		// the counter wherever they are.
		a.Foreign = true
		fr = FirewallRule{Chain: chain, Why: fr.Why}
		for _, x := range r.Exprs {
			switch x := x.(type) {
			case *expr.Counter:
				a.Packets, a.Bytes = x.Packets, x.Bytes
			case *expr.Verdict:
				switch x.Kind {
				case expr.VerdictAccept:
					fr.Verdict = "accept"
				case expr.VerdictDrop:
					fr.Verdict = "drop"
				}
			}
		}
	}
	a.Rule = fr
	return a
}

// peek returns the first expression of xs if it has type T.
func peek[T expr.Any](xs []expr.Any) (T, bool) {
	var zero T
	if len(xs) == 0 {
		return zero, false
	}
	x, ok := xs[0].(T)
	return x, ok
}

// decodePrefix reads an address match at offset of the network header of
// family: the address d, under mask when there is one.
func decodePrefix(family int, offset uint32, d, mask []byte) (netip.Prefix, bool) {
	want4 := family == 4 && (offset == 12 || offset == 16) && len(d) == 4
	want6 := family == 6 && (offset == 8 || offset == 24) && len(d) == 16
	if !want4 && !want6 {
		return netip.Prefix{}, false
	}
	addr, _ := netip.AddrFromSlice(d)
	bits := len(d) * 8
	if mask != nil {
		if len(mask) != len(d) {
			return netip.Prefix{}, false
		}
		bits = 0
		for _, b := range mask {
			for i := 7; i >= 0 && b&(1<<i) != 0; i-- {
				bits++
			}
		}
		if !bytes.Equal(mask, prefixMask(bits, len(d))) {
			return netip.Prefix{}, false // not a prefix mask
		}
	}
	p := netip.PrefixFrom(addr, bits)
	return p, p.Masked() == p
}

// comment reads the comment of a rule's user data (TLVs of type, length,
// value; the comment NUL-terminated), tolerating anything malformed.
func comment(ud []byte) string {
	for len(ud) >= 2 {
		typ, n := ud[0], int(ud[1])
		if len(ud) < 2+n {
			break
		}
		if userdata.Type(typ) == userdata.TypeComment {
			return string(bytes.TrimRight(ud[2:2+n], "\x00"))
		}
		ud = ud[2+n:]
	}
	return ""
}
