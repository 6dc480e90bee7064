package platform

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/internal/netnstest"
)

// TestWatchNetworkInNamespace: a namespace with only loopback is offline;
// a link with an address that comes up makes it online, taking the link
// down makes it offline again, and the tunnel's own link never counts.
func TestWatchNetworkInNamespace(t *testing.T) {
	a := newNS(t, "netmon")
	b := netnstest.New(t, "peer")
	w := a.helper(t, "watcher", "netmon", helperConfig{})
	next := func(want string) {
		t.Helper()
		// WaitFor matches the whole output so far: count the verdicts.
		re := regexp.MustCompile(`(?s)(NETWORK online=\w+ \[[^\]]*\]\n)+`)
		netnstest.Poll(t, time.Minute, "verdict "+want, func() error {
			m := re.FindString(w.Stdout())
			lines := strings.Split(strings.TrimSpace(m), "\n")
			if last := lines[len(lines)-1]; last != "NETWORK online="+want {
				return errorf("last verdict %q", last)
			}
			return nil
		})
	}
	next("false []")
	// The tunnel's link, up with an address, does not count.
	// (A veth pair: this kernel may lack the dummy driver.)
	a.MustRun(t, "ip", "link", "add", "nymvpn0", "type", "veth", "peer", "name", "nymvpn0p")
	a.MustRun(t, "ip", "addr", "add", "10.1.0.7/32", "dev", "nymvpn0")
	a.MustRun(t, "ip", "link", "set", "nymvpn0p", "up")
	a.MustRun(t, "ip", "link", "set", "nymvpn0", "up")
	aIf, _ := netnstest.Link(t, a.Namespace, netip.MustParsePrefix("172.30.9.1/24"), b, netip.MustParsePrefix("172.30.9.2/24"))
	next("true [172.30.9.1]")
	a.MustRun(t, "ip", "link", "set", aIf, "down")
	next("false []")
	a.MustRun(t, "ip", "link", "set", aIf, "up")
	next("true [172.30.9.1]")
	// Moving to another network: a new address is a change, online or not.
	a.MustRun(t, "ip", "addr", "add", "172.30.10.1/24", "dev", aIf)
	next("true [172.30.9.1 172.30.10.1]")
	a.MustRun(t, "ip", "addr", "del", "172.30.9.1/24", "dev", aIf)
	next("true [172.30.10.1]")
	if n := strings.Count(w.Stdout(), "NETWORK"); n != 6 {
		t.Errorf("%d verdicts, want 6 (one per change):\n%s", n, w.Stdout())
	}
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
