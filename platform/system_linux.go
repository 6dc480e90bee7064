package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linuxOps makes changes with netlink, /proc/sys, systemd-resolved's D-Bus
// API and resolv.conf, in the network namespace of the calling process.
type linuxOps struct {
	log        *slog.Logger
	resolvConf string
	// procSys is where sysctls live (/proc/sys).
	procSys string
}

func newOps(opts Options, log *slog.Logger) ops {
	return &linuxOps{log: log, resolvConf: opts.ResolvConf, procSys: "/proc/sys"}
}

// lockDir takes an exclusive, non-blocking flock on dir/lock. The kernel
// drops it when the process dies, so a crashed daemon never blocks the next.
func lockDir(dir string) (func() error, error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("platform: open %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("platform: state directory %s is in use by another process (another nymvpnd?): %w", dir, err)
		}
		return nil, fmt.Errorf("platform: lock %s: %w", path, err)
	}
	return f.Close, nil
}

// allowedSysctls are the only sysctls a journal may make this package
// write.
var allowedSysctls = map[string]bool{srcValidMark: true}

func (o *linuxOps) sysctlPath(name string) (string, error) {
	if !allowedSysctls[name] {
		return "", fmt.Errorf("sysctl %q is not one this package sets", name)
	}
	return filepath.Join(o.procSys, strings.ReplaceAll(name, ".", "/")), nil
}

func (o *linuxOps) readSysctl(name string) (string, error) {
	path, err := o.sysctlPath(name)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (o *linuxOps) writeSysctl(name, val string) error {
	path, err := o.sysctlPath(name)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(val+"\n"), 0o644); err != nil {
		return fmt.Errorf("write sysctl %s=%s: %w", name, val, err)
	}
	return nil
}

// sameLink returns the link with index idx if it still exists under name,
// or nil when it is gone or the index now names another link.
func (o *linuxOps) sameLink(idx int, name string) (netlink.Link, error) {
	if idx <= 0 {
		return nil, nil
	}
	l, err := netlink.LinkByIndex(idx)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil, nil
		}
		return nil, fmt.Errorf("look up link %d: %w", idx, err)
	}
	if l.Attrs().Name != name {
		o.log.Info("link index now names another link; leaving it alone", "ifindex", idx, "journaled", name, "now", l.Attrs().Name)
		return nil, nil
	}
	return l, nil
}

// linkFor is sameLink for a change being made: the link must be there.
func (o *linuxOps) linkFor(r record) (netlink.Link, error) {
	l, err := o.sameLink(r.Undo.Ifindex, r.Change.Link)
	if err == nil && l == nil {
		err = fmt.Errorf("link %s (index %d) is gone", r.Change.Link, r.Undo.Ifindex)
	}
	return l, err
}

func (o *linuxOps) capture(ctx context.Context, r *record) error {
	c := r.Change
	switch c.Kind {
	case KindAddress, KindMTU, KindLinkUp:
		l, err := netlink.LinkByName(c.Link)
		if err != nil {
			return fmt.Errorf("look up interface %s: %w", c.Link, err)
		}
		a := l.Attrs()
		r.Undo.Ifindex, r.Undo.OldMTU, r.Undo.WasUp = a.Index, a.MTU, a.Flags&net.FlagUp != 0
		if c.Kind != KindMTU {
			r.Undo.OldMTU = 0
		}
		if c.Kind != KindLinkUp {
			r.Undo.WasUp = false
		}
	case KindRoute:
		if !c.Unreachable {
			l, err := netlink.LinkByName(c.Link)
			if err != nil {
				return fmt.Errorf("look up interface %s: %w", c.Link, err)
			}
			r.Undo.Ifindex = l.Attrs().Index
		}
	case KindRule:
	case KindSysctl:
		v, err := o.readSysctl(c.Sysctl)
		if err != nil {
			return err
		}
		r.Undo.OldValue = v
	case KindDNS:
		switch c.Backend {
		case DNSResolvConf:
			b, err := backupResolvConf(o.resolvConf, c.DNS)
			if err != nil {
				return err
			}
			r.Undo.ResolvConf = b
		case DNSResolved:
			l, err := netlink.LinkByName(c.Link)
			if err != nil {
				return fmt.Errorf("look up interface %s: %w", c.Link, err)
			}
			r.Undo.Ifindex = l.Attrs().Index
		default:
			return fmt.Errorf("unknown DNS backend %q", c.Backend)
		}
	default:
		return fmt.Errorf("unknown change kind %q", c.Kind)
	}
	return nil
}

func (o *linuxOps) apply(ctx context.Context, r record) error {
	c := r.Change
	switch c.Kind {
	case KindAddress:
		l, err := o.linkFor(r)
		if err != nil {
			return err
		}
		err = netlink.AddrAdd(l, nlAddr(c.Prefix))
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%w (addresses on the TUN are platform's to add and remove: do not add them before Up)", err)
		}
		return err
	case KindMTU:
		l, err := o.linkFor(r)
		if err != nil {
			return err
		}
		return netlink.LinkSetMTU(l, c.MTU)
	case KindLinkUp:
		l, err := o.linkFor(r)
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	case KindRoute:
		if !c.Unreachable {
			if _, err := o.linkFor(r); err != nil {
				return err
			}
		}
		err := netlink.RouteAdd(nlRoute(r))
		if c.Unreachable && c.Prefix.Addr().Is6() && errors.Is(err, unix.EAFNOSUPPORT) {
			o.log.Info("IPv6 is not available in the kernel; nothing to block", "change", c.String())
			return nil
		}
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%w (is another VPN using table %d?)", err, c.Table)
		}
		return err
	case KindRule:
		err := netlink.RuleAdd(nlRule(c))
		if c.Family == 6 && errors.Is(err, unix.EAFNOSUPPORT) {
			o.log.Info("IPv6 is not available in the kernel; nothing to route", "change", c.String())
			return nil
		}
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%w (is another VPN using the same rule?)", err)
		}
		return err
	case KindSysctl:
		if _, err := o.sysctlPath(c.Sysctl); err != nil {
			return err
		}
		return o.writeSysctl(c.Sysctl, c.Value)
	case KindDNS:
		switch c.Backend {
		case DNSResolvConf:
			if r.Undo.ResolvConf == nil {
				return errors.New("no resolv.conf backup in the record")
			}
			return r.Undo.ResolvConf.apply()
		case DNSResolved:
			if _, err := o.linkFor(r); err != nil {
				return err
			}
			return resolvedSetLink(ctx, o.log, r.Undo.Ifindex, c.DNS)
		}
		return fmt.Errorf("unknown DNS backend %q", c.Backend)
	}
	return fmt.Errorf("unknown change kind %q", c.Kind)
}

func (o *linuxOps) undo(ctx context.Context, r record) error {
	c := r.Change
	switch c.Kind {
	case KindAddress, KindMTU, KindLinkUp:
		l, err := o.sameLink(r.Undo.Ifindex, c.Link)
		if err != nil || l == nil {
			return err // a link that is gone took its configuration along
		}
		switch c.Kind {
		case KindAddress:
			if err := netlink.AddrDel(l, nlAddr(c.Prefix)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENODEV) {
				return err
			}
		case KindMTU:
			if r.Undo.OldMTU > 0 && l.Attrs().MTU != r.Undo.OldMTU {
				if err := netlink.LinkSetMTU(l, r.Undo.OldMTU); err != nil && !errors.Is(err, unix.ENODEV) {
					return err
				}
			}
		case KindLinkUp:
			if !r.Undo.WasUp {
				if err := netlink.LinkSetDown(l); err != nil && !errors.Is(err, unix.ENODEV) {
					return err
				}
			}
		}
		return nil
	case KindRoute:
		if !c.Unreachable {
			l, err := o.sameLink(r.Undo.Ifindex, c.Link)
			if err != nil || l == nil {
				return err // routes through a link go with it
			}
		}
		err := netlink.RouteDel(nlRoute(r))
		if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EAFNOSUPPORT) {
			return err
		}
		return nil
	case KindRule:
		err := netlink.RuleDel(nlRule(c))
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EAFNOSUPPORT) {
			return err
		}
		return nil
	case KindSysctl:
		if r.Undo.OldValue == "" {
			return nil
		}
		cur, err := o.readSysctl(c.Sysctl)
		if err != nil {
			return err
		}
		if cur == r.Undo.OldValue {
			return nil
		}
		return o.writeSysctl(c.Sysctl, r.Undo.OldValue)
	case KindDNS:
		switch c.Backend {
		case DNSResolvConf:
			if r.Undo.ResolvConf == nil {
				return errors.New("no resolv.conf backup in the record")
			}
			return r.Undo.ResolvConf.restore(o.log)
		case DNSResolved:
			l, err := o.sameLink(r.Undo.Ifindex, c.Link)
			if err != nil || l == nil {
				return err // resolved forgets the settings of a link that is gone
			}
			return resolvedRevertLink(ctx, r.Undo.Ifindex)
		}
		return fmt.Errorf("unknown DNS backend %q", c.Backend)
	}
	return fmt.Errorf("unknown change kind %q", c.Kind)
}

func (o *linuxOps) dnsBackend(ctx context.Context, configured DNSBackend) (DNSBackend, error) {
	switch configured {
	case DNSResolvConf:
		return DNSResolvConf, nil
	case DNSResolved:
		if err := resolvedReachable(ctx); err != nil {
			return "", fmt.Errorf("platform: DNS backend resolved: systemd-resolved is not reachable on the system D-Bus: %w", err)
		}
		return DNSResolved, nil
	}
	if err := resolvedReachable(ctx); err != nil {
		o.log.Debug("systemd-resolved not reachable; DNS through resolv.conf", "reason", err)
		return DNSResolvConf, nil
	}
	if !resolvConfUsesResolved(o.resolvConf) {
		o.log.Info("systemd-resolved runs but does not manage resolv.conf; DNS through resolv.conf", "path", o.resolvConf)
		return DNSResolvConf, nil
	}
	return DNSResolved, nil
}

// resolvConfUsesResolved reports whether path is systemd-resolved's: a
// symlink into /run/systemd/resolve (or to /usr/lib/systemd/resolv.conf), or
// a file whose only nameservers are resolved's stubs.
func resolvConfUsesResolved(path string) bool {
	if target, err := os.Readlink(path); err == nil {
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		target = filepath.Clean(target)
		return strings.HasPrefix(target, "/run/systemd/resolve/") || target == "/usr/lib/systemd/resolv.conf" || target == "/lib/systemd/resolv.conf"
	}
	b, err := readSmall(path, maxResolvConf)
	if err != nil {
		return false
	}
	stub := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if f[1] != "127.0.0.53" && f[1] != "127.0.0.54" {
				return false
			}
			stub = true
		}
	}
	return stub
}

// sweep deletes, in both families, the "not fwmark" rules to h.Table with
// h.FwMark; where one was found at h.RulePriority, the "table main
// suppress_prefixlength 0" rule at the priority below it and the "to
// RESOLVER" rules to h.Table two below; and every route in h.Table.
func (o *linuxOps) sweep(ctx context.Context, h journalHeader) error {
	var errs []error
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := listRetry(func() ([]netlink.Rule, error) { return netlink.RuleList(fam) })
		if err != nil {
			if !errors.Is(err, unix.EAFNOSUPPORT) {
				errs = append(errs, fmt.Errorf("list rules: %w", err))
			}
			continue
		}
		ours := map[int]bool{}
		for _, r := range rules {
			if r.Table == h.Table && r.Invert && r.Mark == h.FwMark {
				ours[r.Priority] = true
				o.log.Warn("deleting a leftover rule", "rule", r.String())
				if err := netlink.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("delete %s: %w", r, err))
				}
			}
		}
		for _, r := range rules {
			suppress := r.Table == tableMain && r.SuppressPrefixlen == 0 && r.Priority == h.RulePriority-1
			resolver := r.Table == h.Table && r.Dst != nil && r.Mark == 0 && r.Priority == h.RulePriority-2
			if (suppress || resolver) && ours[h.RulePriority] {
				o.log.Warn("deleting a leftover rule", "rule", r.String())
				if err := netlink.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("delete %s: %w", r, err))
				}
			}
		}
		routes, err := listRetry(func() ([]netlink.Route, error) {
			return netlink.RouteListFiltered(fam, &netlink.Route{Table: h.Table}, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			if !errors.Is(err, unix.EAFNOSUPPORT) {
				errs = append(errs, fmt.Errorf("list routes in table %d: %w", h.Table, err))
			}
			continue
		}
		for _, rt := range routes {
			o.log.Warn("deleting a leftover route", "route", rt.String())
			if err := netlink.RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("delete route %s: %w", rt, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("platform: sweep table %d, fwmark %d: %w", h.Table, h.FwMark, err)
	}
	return nil
}

// listRetry retries a netlink dump that the kernel interrupted because the
// list changed meanwhile.
func listRetry[T any](f func() ([]T, error)) ([]T, error) {
	var err error
	for range 5 {
		var l []T
		if l, err = f(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return l, err
		}
	}
	return nil, err
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// nlAddr is an interface address; IPv6 ones skip duplicate address
// detection, which would keep them unusable for a second or more.
func nlAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: prefixNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// nlRoute is the route of a route change: through the journaled link, or
// unreachable. A route through a link has scope link, as ip(8) gives it.
func nlRoute(r record) *netlink.Route {
	c := r.Change
	rt := &netlink.Route{Dst: prefixNet(c.Prefix), Table: c.Table, Family: netlink.FAMILY_V4}
	if c.Prefix.Addr().Is6() {
		rt.Family = netlink.FAMILY_V6
	}
	if c.Unreachable {
		rt.Type = unix.RTN_UNREACHABLE
	} else {
		rt.LinkIndex = r.Undo.Ifindex
		if c.Prefix.Addr().Is4() {
			rt.Scope = netlink.SCOPE_LINK
		}
	}
	return rt
}

func nlRule(c Change) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = netlink.FAMILY_V4
	if c.Family == 6 {
		r.Family = netlink.FAMILY_V6
	}
	r.Priority = c.Priority
	r.Table = c.Table
	r.Mark = c.Mark
	r.Invert = c.Not
	if c.To.IsValid() {
		r.Dst = prefixNet(c.To)
	}
	if c.SuppressDefault {
		r.SuppressPrefixlen = 0
	}
	return r
}
