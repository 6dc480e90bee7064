package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"
)

// systemd-resolved's D-Bus API (org.freedesktop.resolve1(5)).
const (
	resolvedName   = "org.freedesktop.resolve1"
	resolvedPath   = "/org/freedesktop/resolve1"
	resolvedIface  = "org.freedesktop.resolve1.Manager"
	dbusTimeout    = 10 * time.Second
	errNoSuchLink  = "org.freedesktop.resolve1.NoSuchLink"
	errUnknownCall = "org.freedesktop.DBus.Error.UnknownMethod"
)

// resolvedDNS is one entry of SetLinkDNS's a(iay).
type resolvedDNS struct {
	Family  int32
	Address []byte
}

// resolvedDomain is one entry of SetLinkDomains's a(sb).
type resolvedDomain struct {
	Domain      string
	RoutingOnly bool
}

// withResolved connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS, or the
// standard socket), bounded by ctx or dbusTimeout, and calls f with
// resolved's manager object.
func withResolved(ctx context.Context, f func(ctx context.Context, conn *dbus.Conn, obj dbus.BusObject) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dbusTimeout)
		defer cancel()
	}
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("connect to the system D-Bus: %w", err)
	}
	defer conn.Close()
	return f(ctx, conn, conn.Object(resolvedName, resolvedPath))
}

// resolvedReachable returns nil when systemd-resolved owns its name on the
// system bus.
func resolvedReachable(ctx context.Context) error {
	return withResolved(ctx, func(ctx context.Context, conn *dbus.Conn, _ dbus.BusObject) error {
		var has bool
		if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, resolvedName).Store(&has); err != nil {
			return fmt.Errorf("ask the bus for %s: %w", resolvedName, err)
		}
		if !has {
			return fmt.Errorf("%s has no owner on the system bus", resolvedName)
		}
		return nil
	})
}

// resolvedSetLink makes link ifindex the DNS route for every name: its
// servers are dns, its domain the routing-only "~.", and it is a default
// route for DNS.
func resolvedSetLink(ctx context.Context, log *slog.Logger, ifindex int, dns []netip.Addr) error {
	servers := make([]resolvedDNS, 0, len(dns))
	for _, a := range dns {
		fam := int32(unix.AF_INET)
		if a.Is6() {
			fam = unix.AF_INET6
		}
		servers = append(servers, resolvedDNS{Family: fam, Address: a.AsSlice()})
	}
	return withResolved(ctx, func(ctx context.Context, _ *dbus.Conn, obj dbus.BusObject) error {
		idx := int32(ifindex)
		if err := obj.CallWithContext(ctx, resolvedIface+".SetLinkDNS", 0, idx, servers).Err; err != nil {
			return fmt.Errorf("resolved SetLinkDNS(%d, %v): %w", ifindex, dns, err)
		}
		if err := obj.CallWithContext(ctx, resolvedIface+".SetLinkDomains", 0, idx, []resolvedDomain{{Domain: ".", RoutingOnly: true}}).Err; err != nil {
			return fmt.Errorf("resolved SetLinkDomains(%d, ~.): %w", ifindex, err)
		}
		err := obj.CallWithContext(ctx, resolvedIface+".SetLinkDefaultRoute", 0, idx, true).Err
		var de dbus.Error
		if errors.As(err, &de) && de.Name == errUnknownCall {
			// systemd before 240: "~." alone routes every name here.
			log.Info("systemd-resolved has no SetLinkDefaultRoute; relying on the ~. domain")
			err = nil
		}
		if err != nil {
			return fmt.Errorf("resolved SetLinkDefaultRoute(%d, true): %w", ifindex, err)
		}
		return nil
	})
}

// resolvedRevertLink drops every DNS setting of link ifindex.
func resolvedRevertLink(ctx context.Context, ifindex int) error {
	return withResolved(ctx, func(ctx context.Context, _ *dbus.Conn, obj dbus.BusObject) error {
		err := obj.CallWithContext(ctx, resolvedIface+".RevertLink", 0, int32(ifindex)).Err
		var de dbus.Error
		if errors.As(err, &de) && de.Name == errNoSuchLink {
			return nil
		}
		if err != nil {
			return fmt.Errorf("resolved RevertLink(%d): %w", ifindex, err)
		}
		return nil
	})
}
