package gateway

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
	"go.etcd.io/bbolt"
)

// The meter loop's flush writes what the peers' traffic changed, only that,
// in one transaction; records idle for AllowanceRetention are pruned, and
// a record pending in memory wins over the stored one.
func TestAllowanceFlushAndPrune(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "tickets.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	store, err := openAllowanceStore(db, clock)
	if err != nil {
		t.Fatal(err)
	}
	dev := &fakeDevice{counters: map[transport.Key][2]int64{}}
	pt, err := newPeerTable(dev, DefaultPool4, DefaultPool6, clock)
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{peers: pt, allowances: store, log: slog.New(slog.DiscardHandler)}
	a, b := transport.Key{1}, transport.Key{2}
	for _, k := range []transport.Key{a, b} {
		if _, err := pt.register(registration.Peer{Role: registration.RoleEntry, WireGuardKey: k}); err != nil {
			t.Fatal(err)
		}
		pt.credit(k, registration.RoleEntry, 1000, 250)
	}
	if err := g.flushAllowances(); err != nil {
		t.Fatal(err)
	}
	if n := store.count(); n != 2 {
		t.Fatalf("%d records after the first flush, want 2", n)
	}
	now = now.Add(6 * 24 * time.Hour)
	dev.count(a, 300, 0) // b idles
	if _, err := pt.meter(); err != nil {
		t.Fatal(err)
	}
	if r, ok := g.storedAllowance(a, registration.RoleEntry); !ok || r.Left != 700 {
		t.Fatalf("pending record of a: %+v %v, want 700 left", r, ok)
	}
	if d := pt.takeDirty(); len(d) != 1 {
		t.Fatalf("dirty after a meter round: %v, want only the peer that moved bytes", d)
	} else {
		pt.requeue(d)
	}
	if err := g.flushAllowances(); err != nil {
		t.Fatal(err)
	}
	if r, ok, err := store.load(allowanceKey{key: a, role: registration.RoleEntry}); err != nil || !ok || r.Left != 700 || r.TopUpAt != 250 || !r.Updated.Equal(now) {
		t.Fatalf("stored record of a: %+v %v %v", r, ok, err)
	}
	if _, ok, _ := store.load(allowanceKey{key: a, role: registration.RoleExit}); ok {
		t.Fatal("a record for a role the key never paid")
	}
	now = now.Add(2 * 24 * time.Hour) // b idle for 8 days, a for 2
	if n, err := store.prune(); err != nil || n != 1 {
		t.Fatalf("pruned %d (%v), want b's record", n, err)
	}
	if _, ok, _ := store.load(allowanceKey{key: b, role: registration.RoleEntry}); ok {
		t.Fatal("b's record survived a week idle")
	}
	if _, ok, _ := store.load(allowanceKey{key: a, role: registration.RoleEntry}); !ok {
		t.Fatal("a's record was pruned")
	}
}
