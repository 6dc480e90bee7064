package platform

import (
	"context"
	"fmt"
	"net/netip"

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
	last, known := false, false
	check := func() {
		online, err := hostOnline(ignore)
		if err != nil {
			return // keep the last verdict; the next event checks again
		}
		if !known || online != last {
			known, last = true, online
			onChange(NetworkChange{Online: online})
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

// hostOnline looks for an interface that is up, not ignored, with a usable
// address.
func hostOnline(ignore func(string) bool) (bool, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return false, fmt.Errorf("list links: %w", err)
	}
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
				return true, nil
			}
		}
	}
	return false, nil
}
