package platform

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
)

func watchNetwork(ctx context.Context, ignore func(string) bool, onChange func(NetworkChange)) error {
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: func(error) {}}); err != nil {
		return fmt.Errorf("watch network links: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: func(error) {}}); err != nil {
		return fmt.Errorf("watch network addresses: %w", err)
	}
	var last NetworkChange
	known := false
	check := func() {
		addrs, err := usableAddrs(ignore)
		if err != nil {
			return // keep the last verdict; the next event checks again
		}
		now := NetworkChange{Online: len(addrs) > 0, Addresses: addrs}
		if !known || now.Online != last.Online || !slices.Equal(now.Addresses, last.Addresses) {
			known, last = true, now
			onChange(now)
		}
	}
	check()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-links:
			if !ok {
				return fmt.Errorf("network link watch ended")
			}
			check()
		case _, ok := <-addrs:
			if !ok {
				return fmt.Errorf("network address watch ended")
			}
			check()
		}
	}
}

// usableAddrs lists the usable addresses of the interfaces that are up and
// not ignored, sorted.
func usableAddrs(ignore func(string) bool) ([]netip.Addr, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []netip.Addr
	for _, l := range ls {
		a := l.Attrs()
		if a.Flags&(1<<0) == 0 || a.OperState == netlink.OperDown || a.OperState == netlink.OperLowerLayerDown {
			continue // not administratively up, or no carrier
		}
		if ignore != nil && ignore(a.Name) {
			continue
		}
		as, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			continue // the link went away meanwhile
		}
		for _, ad := range as {
			if ip, ok := netip.AddrFromSlice(ad.IP); ok && usableAddr(ip.Unmap()) {
				out = append(out, ip.Unmap())
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out), nil
}
