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

// fakeDevice records UAPI operations and reports the handshakes and byte
// counters ({rx, tx}) it is told of.
type fakeDevice struct {
	mu         sync.Mutex
	sets       []string
	handshakes map[transport.Key]time.Time
	counters   map[transport.Key][2]int64
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
	for k, c := range d.counters {
		fmt.Fprintf(&b, "public_key=%x\nrx_bytes=%d\ntx_bytes=%d\n", k[:], c[0], c[1])
	}
	return b.String(), nil
}

func (d *fakeDevice) count(k transport.Key, rx, tx int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.counters[k]
	d.counters[k] = [2]int64{c[0] + rx, c[1] + tx}
}

// A top-up's grant is what the peer has left at that moment: the traffic
// since the last meter round is charged first, so a client that counts down
// from the grant with its own counters never believes it has more than the
// gateway lets it use. A peer that spends it is cut off at the next round.
func TestCreditChargesTrafficNotYetMetered(t *testing.T) {
	dev := &fakeDevice{counters: map[transport.Key][2]int64{}}
	pt, err := newPeerTable(dev, DefaultPool4, DefaultPool6, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	key := transport.Key{7}
	credit := func(bytes int64) int64 {
		t.Helper()
		if _, err := pt.register(registration.Peer{Role: "exit", WireGuardKey: key}); err != nil {
			t.Fatal(err)
		}
		return pt.credit(key, "exit", bytes, bytes/4)
	}
	meter := func() int {
		t.Helper()
		cut, err := pt.meter()
		if err != nil {
			t.Fatal(err)
		}
		return len(cut)
	}
	if got := credit(1000); got != 1000 {
		t.Fatalf("first grant %d, want 1000", got)
	}
	dev.count(key, 200, 100)
	if meter() != 0 {
		t.Fatal("cut off with allowance left")
	}
	dev.count(key, 300, 400) // not metered yet when the top-up comes
	if got := credit(1000); got != 1000-300-700+1000 {
		t.Fatalf("top-up grant %d, want %d (the traffic since the last meter round charged)", got, 1000-300-700+1000)
	}
	if meter() != 0 {
		t.Fatal("cut off with allowance left")
	}
	if _, left, _, _ := pt.allowanceOf(key); left != 1000 {
		t.Fatalf("after a meter round with no traffic: %d left, want 1000 (nothing charged twice)", left)
	}
	dev.count(key, 999, 0)
	if meter() != 0 {
		t.Fatal("cut off with 1 byte left")
	}
	dev.count(key, 0, 1)
	if meter() != 1 {
		t.Fatal("not cut off once the allowance is spent")
	}
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
