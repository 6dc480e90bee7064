//go:build linux

package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// kernelTUNName is the name template of the exit TUN; the kernel picks the
// first free number.
const kernelTUNName = "nymx%d"

// Forwarding switches the kernel exit turns on (and restores on Close).
const (
	sysctlForward4 = "/proc/sys/net/ipv4/ip_forward"
	sysctlForward6 = "/proc/sys/net/ipv6/conf/all/forwarding"
)

// startKernelExit creates the exit TUN, gives it the gateway's tunnel
// addresses, installs the nftables table and turns on forwarding. On error
// everything done so far is undone.
func startKernelExit(cfg kernelExitConfig) (_ *kernelExit, err error) {
	k := &kernelExit{}
	defer func() {
		if err != nil {
			if cerr := k.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("gateway: undoing a failed kernel exit setup: %w", cerr))
			}
		}
	}()
	dev, err := tun.CreateTUN(kernelTUNName, cfg.MTU)
	if err != nil {
		return nil, fmt.Errorf("gateway: create the exit TUN (needs root or CAP_NET_ADMIN and /dev/net/tun): %w", err)
	}
	k.dev = dev
	// Closing the TUN deletes the interface with its addresses and routes.
	k.onClose("close the exit TUN", dev.Close)
	if k.name, err = dev.Name(); err != nil {
		return nil, fmt.Errorf("gateway: name of the exit TUN: %w", err)
	}
	k.table = "nymvpn_exit_" + k.name
	link, err := netlink.LinkByName(k.name)
	if err != nil {
		return nil, fmt.Errorf("gateway: look up %s: %w", k.name, err)
	}
	for _, a := range []struct {
		addr netip.Addr
		pool netip.Prefix
	}{{cfg.Gateway4, cfg.Pool4}, {cfg.Gateway6, cfg.Pool6}} {
		na := &netlink.Addr{
			IPNet: &net.IPNet{IP: a.addr.AsSlice(), Mask: net.CIDRMask(a.pool.Bits(), a.addr.BitLen())},
			Flags: unix.IFA_F_NODAD,
		}
		if err := netlink.AddrAdd(link, na); err != nil {
			return nil, fmt.Errorf("gateway: add %v/%d to %s: %w", a.addr, a.pool.Bits(), k.name, err)
		}
	}
	// The firewall goes in before forwarding is switched on, so there is no
	// moment in which the pools are forwarded unfiltered.
	if err := k.installFirewall(cfg); err != nil {
		return nil, err
	}
	for _, path := range []string{sysctlForward4, sysctlForward6} {
		if err := k.setSysctl(path, "1"); err != nil {
			return nil, err
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("gateway: set %s up: %w", k.name, err)
	}
	cfg.Logger.Info("kernel exit up", "tun", k.name, "nftables_table", "inet "+k.table, "pools", []netip.Prefix{cfg.Pool4, cfg.Pool6})
	return k, nil
}

// setSysctl writes val to a sysctl file and registers restoring the old value.
func (k *kernelExit) setSysctl(path, val string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("gateway: read %s: %w", path, err)
	}
	if strings.TrimSpace(string(old)) == val {
		return nil
	}
	if err := os.WriteFile(path, []byte(val+"\n"), 0o644); err != nil {
		return fmt.Errorf("gateway: enable forwarding in %s: %w", path, err)
	}
	k.onClose("restore "+path, func() error {
		if err := os.WriteFile(path, old, 0o644); err != nil {
			return fmt.Errorf("gateway: restore %s: %w", path, err)
		}
		return nil
	})
	return nil
}

// exitDenied are the destinations the kernel exit never forwards to, besides
// the gateway's pools and the operator's Deny list: unspecified, loopback,
// link-local, multicast and broadcast.
var exitDenied = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("255.255.255.255/32"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// installFirewall creates (or atomically replaces) the gateway's nftables
// table, in family inet:
//
//	chain forward (filter, hook forward):
//	  oifname TUN ct state established,related accept
//	  oifname TUN drop                          # nothing else into the pools
//	  iifname TUN daddr {pools, exitDenied, Deny} drop
//	  iifname TUN accept
//	chain input (filter, hook input):
//	  iifname TUN ct state established,related accept
//	  iifname TUN drop                          # not the host's own services
//	chain postrouting (nat, hook postrouting):
//	  saddr pool oifname != TUN masquerade      # or snat to Outbound
//
// Every rule counts. Close deletes the table.
func (k *kernelExit) installFirewall(cfg kernelExitConfig) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("gateway: nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: k.table}
	// Add-delete-add in one batch: a table left over by a crashed gateway is
	// replaced, and the kernel applies the batch atomically.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	in := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	rule := func(ch *nftables.Chain, parts ...[]expr.Any) {
		var exprs []expr.Any
		for _, p := range parts {
			exprs = append(exprs, p...)
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	}
	counted := func(v expr.VerdictKind) []expr.Any {
		return []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: v}}
	}

	rule(fwd, matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpEq, k.name), matchEstablished(), counted(expr.VerdictAccept))
	rule(fwd, matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpEq, k.name), counted(expr.VerdictDrop))
	denied := append([]netip.Prefix{cfg.Pool4, cfg.Pool6}, exitDenied...)
	denied = append(denied, cfg.Deny...)
	for _, p := range denied {
		if !p.IsValid() {
			continue
		}
		rule(fwd, matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpEq, k.name), matchPrefix(p, false), counted(expr.VerdictDrop))
	}
	rule(fwd, matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpEq, k.name), counted(expr.VerdictAccept))

	rule(in, matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpEq, k.name), matchEstablished(), counted(expr.VerdictAccept))
	rule(in, matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpEq, k.name), counted(expr.VerdictDrop))

	for _, pool := range []netip.Prefix{cfg.Pool4, cfg.Pool6} {
		var nat []expr.Any
		if o := cfg.Outbound; o.IsValid() && o.Unmap().Is4() == pool.Addr().Is4() {
			nat = []expr.Any{&expr.Counter{},
				&expr.Immediate{Register: 1, Data: o.Unmap().AsSlice()},
				&expr.NAT{Type: expr.NATTypeSourceNAT, Family: uint32(nfproto(pool.Addr().Is4())), RegAddrMin: 1}}
		} else {
			nat = []expr.Any{&expr.Counter{}, &expr.Masq{}}
		}
		rule(post, matchPrefix(pool, true), matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, k.name), nat)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("gateway: install nftables table inet %s: %w", k.table, err)
	}
	k.onClose("delete the nftables table", func() error {
		c, err := nftables.New()
		if err != nil {
			return fmt.Errorf("gateway: nftables: %w", err)
		}
		c.DelTable(t)
		if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("gateway: delete nftables table inet %s: %w", k.table, err)
		}
		return nil
	})
	return nil
}

// matchIfname compares the input or output interface name.
func matchIfname(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: b},
	}
}

func nfproto(v4 bool) byte {
	if v4 {
		return unix.NFPROTO_IPV4
	}
	return unix.NFPROTO_IPV6
}

// matchPrefix matches the packet's source (src) or destination address
// against p, and its family.
func matchPrefix(p netip.Prefix, src bool) []expr.Any {
	p = p.Masked()
	v4 := p.Addr().Is4()
	var off, n uint32 = 16, 4 // IPv4 destination
	switch {
	case v4 && src:
		off = 12
	case !v4 && src:
		off, n = 8, 16
	case !v4:
		off, n = 24, 16
	}
	out := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto(v4)}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
	}
	if p.Bits() < int(n*8) {
		out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n,
			Mask: net.CIDRMask(p.Bits(), int(n*8)), Xor: make([]byte, n)})
	}
	return append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()})
}

// matchEstablished matches ct state established,related.
func matchEstablished() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}
