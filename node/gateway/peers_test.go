package gateway

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
)

// fakeDevice records UAPI operations and reports handshakes it is told of.
type fakeDevice struct {
	mu         sync.Mutex
	sets       []string
	handshakes map[transport.Key]time.Time
}

func (d *fakeDevice) IpcSet(s string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sets = append(d.sets, s)
	return nil
}

func (d *fakeDevice) IpcGet() (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	for k, t := range d.handshakes {
		fmt.Fprintf(&b, "public_key=%x\nlast_handshake_time_sec=%d\nlast_handshake_time_nsec=0\n", k[:], t.Unix())
	}
	return b.String(), nil
}

func TestPeerTablePoolAndExpiry(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	dev := &fakeDevice{handshakes: map[transport.Key]time.Time{}}
	// A /29 has indexes 0..7: 0 network, 1 gateway, 7 broadcast → 5 clients.
	pt, err := newPeerTable(dev, netip.MustParsePrefix("10.9.0.0/29"), netip.MustParsePrefix("fd00::/120"), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if pt.gw4.String() != "10.9.0.1" || pt.gw6.String() != "fd00::1" {
		t.Fatalf("gateway addresses %v %v", pt.gw4, pt.gw6)
	}
	keys := make([]transport.Key, 6)
	seen := map[netip.Addr]bool{}
	for i := range keys {
		keys[i] = transport.Key{byte(i + 1)}
		p, err := pt.register(registration.Peer{Role: "exit", WireGuardKey: keys[i]})
		if i == 5 {
			var re *registration.Error
			if err == nil || !asRegErr(err, &re) || re.Code != registration.CodePoolExhausted {
				t.Fatalf("6th client: %v, want pool_exhausted", err)
			}
			break
		}
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if seen[p.v4] || p.v4 == pt.gw4 || p.v4.String() == "10.9.0.7" || p.v4.String() == "10.9.0.0" {
			t.Fatalf("client %d got %v", i, p.v4)
		}
		seen[p.v4] = true
		if p.v6 != addrAt(pt.pool6, p.index) {
			t.Fatalf("v6 %v does not pair with index %d", p.v6, p.index)
		}
	}
	// Re-registration keeps the addresses.
	p0, _ := pt.lookup(addrAt(pt.pool4, 2))
	again, err := pt.register(registration.Peer{Role: "entry", WireGuardKey: p0.key})
	if err != nil || again.v4 != p0.v4 || again.role != "entry" {
		t.Fatalf("re-registration: %+v, %v", again, err)
	}
	// Time passes; one client keeps handshaking, the rest go idle.
	now = now.Add(10 * time.Minute)
	dev.handshakes[keys[1]] = now.Add(-time.Minute)
	removed, err := pt.expire(5 * time.Minute)
	if err != nil || removed != 4 || pt.count() != 1 {
		t.Fatalf("expire removed %d (%v), %d left; want 4 removed, 1 left", removed, err, pt.count())
	}
	if !strings.Contains(dev.sets[len(dev.sets)-1], "remove=true") {
		t.Fatal("expiry did not remove the WireGuard peer")
	}
	// Freed addresses are handed out again.
	if _, err := pt.register(registration.Peer{Role: "exit", WireGuardKey: keys[5]}); err != nil {
		t.Fatalf("register after expiry: %v", err)
	}
}

func asRegErr(err error, target **registration.Error) bool {
	e, ok := err.(*registration.Error)
	if ok {
		*target = e
	}
	return ok
}
