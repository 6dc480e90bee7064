package gateway

import (
	"encoding/hex"
	"errors"
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
	// failSets makes the next IpcSet calls fail.
	failSets int
}

func (d *fakeDevice) IpcSet(s string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failSets > 0 {
		d.failSets--
		return errors.New("fake device: set failed")
	}
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

// lastSet returns the last UAPI operation on key.
func (d *fakeDevice) lastSet(k transport.Key) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := len(d.sets) - 1; i >= 0; i-- {
		if strings.Contains(d.sets[i], "public_key="+hex.EncodeToString(k[:])) {
			return d.sets[i]
		}
	}
	return ""
}

// onDevice reports whether the device passes key's traffic: the peer is
// there with its allowed IPs.
func (d *fakeDevice) passes(k transport.Key) bool {
	s := d.lastSet(k)
	return s != "" && !strings.Contains(s, "remove=true") && strings.Contains(s, "allowed_ip=")
}

// paidTable is a peer table with one metered peer, on a fake device and a
// clock the test moves.
func paidTable(t *testing.T, grace time.Duration) (*peerTable, *fakeDevice, *time.Time, transport.Key) {
	t.Helper()
	now := time.Unix(1_800_000_000, 0)
	dev := &fakeDevice{counters: map[transport.Key][2]int64{}}
	pt, err := newPeerTable(dev, DefaultPool4, DefaultPool6, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	pt.grace = grace
	return pt, dev, &now, transport.Key{9}
}

// The race behind the e2e cut-off: a client that tops up when its allowance
// falls below the grant's top_up_at (a quarter ticket) still reaches zero
// before its new ticket lands whenever its traffic spends the margin faster
// than a meter interval plus a registration take. Here the client's ticket
// is on its way while the gateway counts the peer past zero: with the grace
// the peer keeps going, the late top-up first pays what it overdrew, and the
// WireGuard peer was never touched (no cut-off, no new handshake). Without
// it, the gateway cut the peer off at zero, and a registration arriving a
// moment later found it removed from the device.
func TestLateTopUpWithinGrace(t *testing.T) {
	const ticket, margin = 1000, 250
	pt, dev, now, key := paidTable(t, 2*time.Second)
	reg := func() {
		t.Helper()
		if _, err := pt.register(registration.Peer{Role: "entry", WireGuardKey: key}); err != nil {
			t.Fatal(err)
		}
	}
	meter := func() int {
		t.Helper()
		cut, err := pt.meter()
		if err != nil {
			t.Fatal(err)
		}
		return len(cut)
	}
	reg()
	pt.credit(key, "entry", ticket, margin)
	dev.count(key, 700, 100) // left 200: the client asks for a ticket
	if meter() != 0 {
		t.Fatal("cut off with allowance left")
	}
	dev.count(key, 300, 0) // the margin is spent before the ticket lands: −100
	*now = now.Add(time.Second)
	if meter() != 0 || !dev.passes(key) {
		t.Fatalf("cut off 100 bytes past zero, with a top-up on its way (last operation %q)", dev.lastSet(key))
	}
	*now = now.Add(500 * time.Millisecond)
	reg() // the top-up: same key, new ticket
	if got := pt.credit(key, "entry", ticket, margin); got != ticket-100 {
		t.Fatalf("top-up grant %d, want %d (the ticket first pays the 100 bytes overdrawn)", got, ticket-100)
	}
	if !dev.passes(key) {
		t.Fatalf("the peer does not pass traffic after its top-up: %q", dev.lastSet(key))
	}
	for _, s := range dev.sets {
		if strings.Contains(s, "remove=true") || strings.Contains(s, "replace_allowed_ips=true\n") && !strings.Contains(s, "allowed_ip=") {
			t.Fatalf("the peer was cut off on the way: %q", s)
		}
	}
	// The overdraft started a new grace: a later one starts its own.
	dev.count(key, ticket-100, 0)
	*now = now.Add(10 * time.Second)
	if meter() != 0 {
		t.Fatal("cut off at once when the allowance reached zero again")
	}
}

// The grace ends after its time or once the peer owes its whole top-up
// margin, whichever comes first; then the peer is cut off. A cut-off pauses
// the peer (no allowed IPs: nothing passes) rather than removing it, so its
// WireGuard session survives, and a top-up that arrives after it resumes the
// peer at once. A paused peer is charged nothing.
func TestGraceEndsAndPausedPeerResumes(t *testing.T) {
	const ticket, margin = 1000, 250
	for _, c := range []struct {
		name    string
		overrun int64
		wait    time.Duration
	}{
		{"grace time over", 10, 2 * time.Second},
		{"margin overdrawn", margin, 0},
		// A meter interval of fast traffic far past the margin: all of it
		// is owed, and one ticket does not resume the peer.
		{"three tickets overdrawn in one interval", 3 * ticket, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			pt, dev, now, key := paidTable(t, 2*time.Second)
			if _, err := pt.register(registration.Peer{Role: "exit", WireGuardKey: key}); err != nil {
				t.Fatal(err)
			}
			pt.credit(key, "exit", ticket, margin)
			dev.count(key, ticket+c.overrun-10, 0)
			cut, _ := pt.meter()
			if within := c.overrun-10 < margin; within == (len(cut) != 0) {
				t.Fatalf("%d overdrawn: cut off %v, want %v", c.overrun-10, len(cut) != 0, !within)
			}
			dev.count(key, 10, 0)
			*now = now.Add(c.wait)
			if more, _ := pt.meter(); len(cut)+len(more) != 1 {
				t.Fatalf("not cut off once: %d overdrawn after %v", c.overrun, c.wait)
			}
			last := dev.lastSet(key)
			if dev.passes(key) || strings.Contains(last, "remove=true") || !strings.Contains(last, "update_only=true") {
				t.Fatalf("cut-off operation %q: want the peer kept on the device without allowed IPs", last)
			}
			// Traffic of the paused peer (its own retries) costs nothing.
			dev.count(key, 5000, 0)
			if cut, _ := pt.meter(); len(cut) != 0 {
				t.Fatal("a paused peer was cut off again")
			}
			// A late top-up resumes the same WireGuard peer, which kept its
			// session; the ticket first pays the overdraft.
			if _, err := pt.register(registration.Peer{Role: "exit", WireGuardKey: key}); err != nil {
				t.Fatal(err)
			}
			if dev.passes(key) {
				t.Fatal("re-registration passed traffic before the ticket was credited")
			}
			owed := int64(c.overrun) // what passed before the cut-off
			if len(cut) != 0 {
				owed -= 10
			}
			got, n := pt.credit(key, "exit", ticket, margin), int64(1)
			for ; got <= 0; n++ {
				if dev.passes(key) {
					t.Fatalf("resumed %d in debt", got)
				}
				got = pt.credit(key, "exit", ticket, margin)
			}
			if want := n*ticket - owed; got != want || n != 1+owed/ticket {
				t.Fatalf("%d left after %d tickets, want %d: the tickets less the %d overdrawn", got, n, want, owed)
			}
			if !dev.passes(key) {
				t.Fatalf("not resumed by the top-up: %q", dev.lastSet(key))
			}
			if cut, _ := pt.meter(); len(cut) != 0 {
				t.Fatal("cut off again after the top-up")
			}
		})
	}
}

// A registration with a ticket runs in steps: the WireGuard peer is updated
// (register), then the ticket is credited. A meter round between the two
// that cuts the peer off must not leave it cut off once credited: before,
// credit added the ticket to a peer removed from the device, answered the
// client with a grant, and nothing put the peer back.
func TestCutOffBetweenRegisterAndCredit(t *testing.T) {
	pt, dev, now, key := paidTable(t, 0) // no grace: cut off at zero
	if _, err := pt.register(registration.Peer{Role: "entry", WireGuardKey: key}); err != nil {
		t.Fatal(err)
	}
	pt.credit(key, "entry", 1000, 250)
	dev.count(key, 1000, 0)
	if _, err := pt.register(registration.Peer{Role: "entry", WireGuardKey: key}); err != nil { // the top-up arrives
		t.Fatal(err)
	}
	*now = now.Add(time.Second)
	if cut, _ := pt.meter(); len(cut) != 1 { // before its ticket is credited
		t.Fatal("not cut off at zero")
	}
	if got := pt.credit(key, "entry", 1000, 250); got != 1000 {
		t.Fatalf("grant %d, want 1000", got)
	}
	if !dev.passes(key) {
		t.Fatalf("credited but cut off: last operation %q", dev.lastSet(key))
	}
}

// A paused peer expires when idle since its cut-off, whatever its
// handshakes (a client may keep a paused session alive forever).
func TestPausedPeerExpires(t *testing.T) {
	pt, dev, now, key := paidTable(t, 0)
	dev.handshakes = map[transport.Key]time.Time{}
	if _, err := pt.register(registration.Peer{Role: "entry", WireGuardKey: key}); err != nil {
		t.Fatal(err)
	}
	pt.credit(key, "entry", 100, 25)
	dev.count(key, 100, 0)
	if cut, _ := pt.meter(); len(cut) != 1 {
		t.Fatal("not cut off")
	}
	*now = now.Add(10 * time.Minute)
	dev.handshakes[key] = now.Add(-time.Second)
	if n, err := pt.expire(5 * time.Minute); err != nil || n != 1 || !strings.Contains(dev.lastSet(key), "remove=true") {
		t.Fatalf("paused peer: %d expired (%v), last operation %q", n, err, dev.lastSet(key))
	}
}

// A resume the device refused is tried again by the next meter round: a
// peer credited with allowance never stays cut off.
func TestFailedResumeRetried(t *testing.T) {
	pt, dev, _, key := paidTable(t, 0)
	if _, err := pt.register(registration.Peer{Role: "exit", WireGuardKey: key}); err != nil {
		t.Fatal(err)
	}
	pt.credit(key, "exit", 100, 25)
	dev.count(key, 100, 0)
	if cut, _ := pt.meter(); len(cut) != 1 {
		t.Fatal("not cut off")
	}
	dev.failSets = 1
	pt.credit(key, "exit", 100, 25)
	if dev.passes(key) {
		t.Fatal("resumed although the device refused")
	}
	if _, err := pt.meter(); err != nil {
		t.Fatal(err)
	}
	if !dev.passes(key) {
		t.Fatalf("not resumed by the next meter round: %q", dev.lastSet(key))
	}
}
