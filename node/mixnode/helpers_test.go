package mixnode

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/metrics"
	"github.com/nymvpn/nymvpn/sphinx"
	"github.com/nymvpn/nymvpn/transport"
)

// testEpochLength and t0 put the fake clock in the middle of an epoch.
const testEpochLength = time.Minute

var t0 = directory.Genesis().Add(1000*testEpochLength + testEpochLength/2)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// detRand is a deterministic randomness source: SHA-256(label | counter).
type detRand struct {
	seed [32]byte
	ctr  uint64
	buf  []byte
}

func newDetRand(label string) *detRand { return &detRand{seed: sha256.Sum256([]byte(label))} }

func (r *detRand) Read(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if len(r.buf) == 0 {
			var in [40]byte
			copy(in[:], r.seed[:])
			binary.BigEndian.PutUint64(in[32:], r.ctr)
			r.ctr++
			sum := sha256.Sum256(in[:])
			r.buf = sum[:]
		}
		c := copy(p, r.buf)
		p, r.buf = p[c:], r.buf[c:]
	}
	return n, nil
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testNet is a topology of real Sphinx nodes on loopback plus a sender
// identity listed as a mix node, so the nodes accept its channel.
type testNet struct {
	t      testing.TB
	clock  *fakeClock
	topo   atomic.Pointer[directory.Topology]
	mu     sync.Mutex
	nodes  map[string]*Node
	order  []string
	extra  []directory.Node
	sender transport.Key
	keys   mixnet.KeyCache
}

func newTestNet(t testing.TB) *testNet {
	tn := &testNet{t: t, clock: &fakeClock{t: t0}, nodes: map[string]*Node{}}
	tn.sender = testKey(t, "sender")
	tn.extra = append(tn.extra, directory.Node{ID: "sender", Roles: []directory.Role{directory.RoleMixnode},
		NoiseKey: directory.Key32(tn.sender.Public()), MixAddr: "127.0.0.1:9"})
	tn.publish()
	return tn
}

func testKey(t testing.TB, label string) transport.Key {
	var k transport.Key
	newDetRand("noise/" + label).Read(k[:])
	return k
}

// add starts a node; final makes it a final hop (a gateway).
func (tn *testNet) add(id string, final func(*Delivery), lim Limits) *Node {
	tn.t.Helper()
	cfg := Config{
		ID: id, NoiseKey: testKey(tn.t, id), Listen: netip.MustParseAddrPort("127.0.0.1:0"),
		Topology: tn.topo.Load, EpochLength: testEpochLength, KeyGrace: testEpochLength / 2,
		Final: final, Limits: lim, Now: tn.clock.Now, Rand: newDetRand("sphinx/" + id), Logger: testLogger(tn.t).With("node", id),
	}
	n, err := New(cfg)
	if err != nil {
		tn.t.Fatal(err)
	}
	tn.t.Cleanup(func() { n.Close() })
	tn.mu.Lock()
	tn.nodes[id] = n
	tn.order = append(tn.order, id)
	tn.mu.Unlock()
	tn.publish()
	return n
}

// addDown lists a node that nobody serves (a next hop that is down).
func (tn *testNet) addDown(id string) directory.Node {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tn.t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	priv, _ := sphinx.GenerateKey(newDetRand("down/" + id))
	d := directory.Node{ID: id, Roles: []directory.Role{directory.RoleMixnode}, NoiseKey: directory.Key32(testKey(tn.t, id).Public()), MixAddr: addr}
	epoch, _ := directory.EpochAt(tn.clock.Now(), testEpochLength)
	d.SphinxKeys = []directory.SphinxKey{{Epoch: epoch, PublicKey: directory.Key32(priv.Public())}}
	tn.mu.Lock()
	tn.extra = append(tn.extra, d)
	tn.mu.Unlock()
	tn.publish()
	return d
}

// publish rebuilds the topology from the nodes' current keys.
func (tn *testNet) publish() {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	epoch, start := directory.EpochAt(tn.clock.Now(), testEpochLength)
	top := &directory.Topology{Epoch: epoch, EpochStart: start, EpochLength: directory.Duration(testEpochLength)}
	for _, id := range tn.order {
		n := tn.nodes[id]
		role := directory.RoleMixnode
		if n.cfg.Final != nil {
			role = directory.RoleExit
		}
		top.Nodes = append(top.Nodes, directory.Node{ID: id, Roles: []directory.Role{role}, NoiseKey: directory.Key32(n.cfg.NoiseKey.Public()),
			MixAddr: n.Addr().String(), SphinxKeys: n.SphinxKeys()})
	}
	top.Nodes = append(top.Nodes, tn.extra...)
	tn.topo.Store(top)
}

func (tn *testNet) node(id string) directory.Node {
	tn.t.Helper()
	n, ok := tn.topo.Load().Node(id)
	if !ok {
		tn.t.Fatalf("no node %s", id)
	}
	return *n
}

// packet builds a packet over the nodes ids for epoch with the given delay
// at every hop but the last.
func (tn *testNet) packet(epoch uint64, g *sphinx.Geometry, delay time.Duration, msg []byte, ids ...string) []byte {
	tn.t.Helper()
	var nodes []directory.Node
	for _, id := range ids {
		nodes = append(nodes, tn.node(id))
	}
	hops, err := tn.keys.Hops(nodes, epoch)
	if err != nil {
		tn.t.Fatal(err)
	}
	for i := range hops[:len(hops)-1] {
		hops[i].Delay = delay
	}
	pkt, err := g.NewPacket(rand.Reader, hops, &sphinx.Destination{Recipient: sphinx.Recipient{1}, SURBID: sphinx.SURBID{2}}, msg)
	if err != nil {
		tn.t.Fatal(err)
	}
	return pkt
}

func (tn *testNet) epoch() uint64 {
	e, _ := directory.EpochAt(tn.clock.Now(), testEpochLength)
	return e
}

// dial opens a sender channel to node id.
func (tn *testNet) dial(id string) *transport.Conn {
	tn.t.Helper()
	d := tn.node(id)
	raw, err := net.Dial("tcp", d.MixAddr)
	if err != nil {
		tn.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := transport.Client(ctx, raw, transport.Config{Pattern: transport.IK, Prologue: []byte(mixnet.NodePrologue),
		LocalStatic: tn.sender, RemoteStatic: transport.Key(d.NoiseKey)})
	if err != nil {
		tn.t.Fatal(err)
	}
	tn.t.Cleanup(func() { c.Close() })
	return c
}

// send writes pkts as Packet records of epoch, one message.
func (tn *testNet) send(c *transport.Conn, epoch uint64, pkts ...[]byte) {
	tn.t.Helper()
	var msg []byte
	for _, p := range pkts {
		msg = mixnet.AppendPacket(msg, epoch, p)
	}
	if err := c.WriteMessage(msg); err != nil {
		tn.t.Fatal(err)
	}
}

// collector gathers a final node's deliveries.
type collector struct {
	ch chan Delivery
}

func newCollector() *collector { return &collector{ch: make(chan Delivery, 4096)} }

func (c *collector) final(d *Delivery) {
	cp := *d
	cp.Payload = bytes.Clone(d.Payload)
	select {
	case c.ch <- cp:
	default:
	}
}

func (c *collector) next(t testing.TB) Delivery {
	t.Helper()
	select {
	case d := <-c.ch:
		return d
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery within 30 s")
	}
	return Delivery{}
}

// waitFor polls cond until it holds (30 s at most).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// scrape reads a node's /metrics.
func scrape(t testing.TB, n *Node) map[string]float64 {
	t.Helper()
	srv := httptest.NewServer(n.MetricsHandler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, err := metrics.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func dropped(t testing.TB, n *Node, reason DropReason) float64 {
	t.Helper()
	return scrape(t, n)[`nym_mix_packets_dropped_total{reason="`+reason.String()+`"}`]
}
