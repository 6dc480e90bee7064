package mixnode

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/sphinx"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpora in testdata/fuzz")

// fuzzNode is a final-hop node with deterministic keys at a fixed time, so
// committed seeds stay valid packets for it. Its topology lists only itself:
// relayed packets end as unknown_next_hop without network traffic.
func fuzzNode(t testing.TB, final func(*Delivery)) *Node {
	t.Helper()
	key := testKey(t, "fuzz")
	var topo *directory.Topology
	n, err := New(Config{
		ID: "fuzz", NoiseKey: key, Listen: netip.MustParseAddrPort("127.0.0.1:0"),
		Topology: func() *directory.Topology { return topo }, EpochLength: testEpochLength,
		Final: final, Now: func() time.Time { return t0 }, Rand: newDetRand("fuzz-sphinx"),
		Limits: Limits{ReplayCapacity: 1 << 16, Workers: 1}, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	epoch, _ := directory.EpochAt(t0, testEpochLength)
	topo = &directory.Topology{Epoch: epoch, EpochLength: directory.Duration(testEpochLength), Nodes: []directory.Node{{
		ID: "fuzz", Roles: []directory.Role{directory.RoleExit}, NoiseKey: directory.Key32(key.Public()),
		MixAddr: n.Addr().String(), SphinxKeys: n.SphinxKeys(),
	}}}
	return n
}

// FuzzProcess feeds a decrypted node-channel message (records) to the
// packet pipeline synchronously: parsing, key lookup, Unwrap, delay cap,
// dispatch. Nothing may panic, every packet must be counted once, and what
// reaches the final handler must fit the geometry.
func FuzzProcess(f *testing.F) {
	var delivered int
	n := fuzzNode(f, func(d *Delivery) {
		delivered++
		if len(d.Payload) > sphinx.RegularGeometry().PayloadLength {
			panic(fmt.Sprintf("delivery of %d bytes", len(d.Payload)))
		}
	})
	defer n.Close()
	f.Add([]byte{})
	f.Add(mixnet.AppendPacket(nil, 1, make([]byte, sphinx.AckGeometry().PacketLength)))
	// verdicts are the outcomes of a packet's processing: unwrapped, or
	// dropped before or by Unwrap. (What happens after, such as an unknown
	// next hop after a delay, may be counted later, asynchronously.)
	verdicts := func(m *Metrics) uint64 {
		v := m.Processed()
		for _, r := range []DropReason{DropMalformed, DropMAC, DropReplay, DropExpiredKey, DropUnknownKey, DropPayload} {
			v += m.Dropped(r)
		}
		return v
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		m := &n.m
		before := verdicts(m)
		recv := m.ReceivedFrom(FromNode)
		malformed := m.Dropped(DropMalformed)
		n.eachPacket(msg, func(epoch uint64, pkt []byte) {
			n.process(job{epoch: epoch, p: n.getBuf(pkt)})
		})
		// Every packet record received gets exactly one verdict; malformed
		// records that were not packets count as drops too.
		got := verdicts(m) - before
		want := m.ReceivedFrom(FromNode) - recv
		if extra := m.Dropped(DropMalformed) - malformed; got < want || got > want+extra {
			t.Fatalf("%d packet records, %d outcomes (%d malformed)", want, got, extra)
		}
	})
}

// TestFuzzSeeds writes the committed seed corpus with -update and checks
// that it is there.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzProcess")
	if *update {
		writeProcessSeeds(t, dir)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("%d seeds in %s; regenerate with go test ./node/mixnode -run TestFuzzSeeds -update", len(files), dir)
	}
	// The seeds are still valid packets for the fuzz node (its keys are
	// deterministic): they reach the final handler and the relay path.
	n := fuzzNode(t, func(*Delivery) {})
	defer n.Close()
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if lines[0] != "go test fuzz v1" || len(lines) != 2 || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: not a go test fuzz v1 file with one []byte value", p)
		}
		msg, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		n.eachPacket([]byte(msg), func(epoch uint64, pkt []byte) {
			n.process(job{epoch: epoch, p: n.getBuf(pkt)})
		})
	}
	m := n.Metrics()
	// Relayed seeds ask for a 1 ms delay: wait for the scheduler.
	waitFor(t, "delayed seeds", func() bool { return m.Dropped(DropUnknownHop) >= 2 })
	if m.Delivered() < 4 || m.Dropped(DropUnknownHop) < 2 || m.Dropped(DropExpiredKey) < 2 || m.Dropped(DropMalformed) < 2 {
		t.Errorf("seeds no longer reach the pipeline: delivered %d, unknown hop %d, expired %d, malformed %d; regenerate with -update",
			m.Delivered(), m.Dropped(DropUnknownHop), m.Dropped(DropExpiredKey), m.Dropped(DropMalformed))
	}
}

func writeProcessSeeds(t *testing.T, dir string) {
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := fuzzNode(t, func(*Delivery) {})
	defer n.Close()
	self := n.cfg.Topology().Nodes[0]
	epoch := n.cfg.Topology().Epoch
	var keys mixnet.KeyCache
	hops, err := keys.Hops([]directory.Node{self}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	other := sphinx.Hop{ID: sphinx.NodeID{7}, PublicKey: hops[0].PublicKey}
	dest := &sphinx.Destination{Recipient: sphinx.Recipient{1}, SURBID: sphinx.SURBID{2}}
	write := func(name string, msg []byte) {
		var b strings.Builder
		fmt.Fprintf(&b, "go test fuzz v1\n[]byte(%q)\n", msg)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rnd := newDetRand("seeds")
	for _, g := range []*sphinx.Geometry{sphinx.RegularGeometry(), sphinx.AckGeometry()} {
		final, err := g.NewPacket(rnd, hops, dest, []byte("final hop"))
		if err != nil {
			t.Fatal(err)
		}
		relay, err := g.NewPacket(rnd, []sphinx.Hop{{ID: hops[0].ID, PublicKey: hops[0].PublicKey, Delay: time.Millisecond}, other}, dest, []byte("relay"))
		if err != nil {
			t.Fatal(err)
		}
		surb, _, err := g.NewSURB(rnd, hops, dest)
		if err != nil {
			t.Fatal(err)
		}
		reply, err := g.NewPacketFromSURB(surb, []byte("reply"))
		if err != nil {
			t.Fatal(err)
		}
		sfx := fmt.Sprint(g.PacketLength)
		write("final-"+sfx, mixnet.AppendPacket(nil, epoch, final))
		write("relay-"+sfx, mixnet.AppendPacket(nil, epoch, relay))
		write("reply-"+sfx, mixnet.AppendPacket(nil, epoch, reply))
		write("two-"+sfx, mixnet.AppendPacket(mixnet.AppendPacket(nil, epoch, final), epoch+1, relay))
		write("old-epoch-"+sfx, mixnet.AppendPacket(nil, epoch-1, final))
	}
	write("torn", []byte{byte(mixnet.KindPacket), 0x09, 0x6d, 0, 0})
	write("wrong-kind", mixnet.AppendRecord(nil, mixnet.KindHello, make([]byte, 64)))
	sum := sha256.Sum256([]byte("junk"))
	write("junk", []byte(hex.EncodeToString(sum[:])))
}
