package platform

import (
	"context"
	"net/netip"
)

// NetworkChange is what WatchNetwork reports.
type NetworkChange struct {
	// Online is true while some interface other than the tunnel's is up
	// with a global unicast address: the host could reach a gateway.
	Online bool
	// Addresses are the usable addresses of those interfaces, sorted: when
	// they change the host moved to another network (or woke up on one),
	// and the tunnel's outer socket should be rebuilt.
	Addresses []netip.Addr
}

// usableAddr reports whether an interface address could carry traffic to a
// gateway: loopback and link-local addresses cannot.
func usableAddr(a netip.Addr) bool {
	return a.IsValid() && !a.IsLoopback() && !a.IsLinkLocalUnicast() && !a.IsMulticast() && !a.IsUnspecified()
}

// WatchNetwork calls onChange with the host's connectivity at once and
// again whenever it or the set of usable addresses changes, until ctx ends. Interfaces for which ignore
// returns true (the tunnel's own TUN) do not count. On systems without a
// watcher it reports online once and returns nil, so the daemon never
// believes itself offline there.
func WatchNetwork(ctx context.Context, ignore func(ifname string) bool, onChange func(NetworkChange)) error {
	return watchNetwork(ctx, ignore, onChange)
}
