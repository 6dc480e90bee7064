package mixnode

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/sphinx"
	"github.com/nymvpn/nymvpn/transport"
)

// A packet crosses a mix and reaches the final node intact; counters and
// the metrics exposition agree.
func TestRelayAndDeliver(t *testing.T) {
	tn := newTestNet(t)
	mix := tn.add("mix", nil, Limits{})
	col := newCollector()
	gw := tn.add("gw", col.final, Limits{})
	e := tn.epoch()
	c := tn.dial("mix")
	msg := []byte("through one mix")
	tn.send(c, e, tn.packet(e, sphinx.RegularGeometry(), 0, msg, "mix", "gw"))
	d := col.next(t)
	if !bytes.Equal(d.Payload, msg) || d.Recipient != (sphinx.Recipient{1}) || d.SURBID != (sphinx.SURBID{2}) || d.Epoch != e || d.IsReply {
		t.Fatalf("delivery %+v", d)
	}
	// Ack geometry too.
	tn.send(c, e, tn.packet(e, sphinx.AckGeometry(), 0, []byte("ack"), "mix", "gw"))
	if d := col.next(t); string(d.Payload) != "ack" {
		t.Fatalf("ack delivery %q", d.Payload)
	}
	waitFor(t, "counters", func() bool { return mix.Metrics().Forwarded() == 2 && gw.Metrics().Delivered() == 2 })
	m := scrape(t, mix)
	if m[`nym_mix_packets_received_total{source="node"}`] != 2 || m["nym_mix_packets_processed_total"] != 2 ||
		m["nym_mix_packets_forwarded_total"] != 2 || m["nym_mix_links_out"] != 1 || m[`nym_mix_replay_filter_entries{epoch="`+itoa(e)+`"}`] != 2 {
		t.Errorf("mix metrics: %v", m)
	}
	if mix.Metrics().DroppedTotal() != 0 || gw.Metrics().DroppedTotal() != 0 {
		t.Errorf("drops: mix %d, gw %d", mix.Metrics().DroppedTotal(), gw.Metrics().DroppedTotal())
	}
}

func itoa(e uint64) string { return string(appendUint(nil, e)) }

func appendUint(b []byte, v uint64) []byte {
	if v >= 10 {
		b = appendUint(b, v/10)
	}
	return append(b, byte('0'+v%10))
}

// Every kind of bad packet is dropped and counted under its reason, and the
// node keeps working.
func TestDropsCounted(t *testing.T) {
	tn := newTestNet(t)
	mix := tn.add("mix", nil, Limits{})
	tn.add("other", nil, Limits{})
	col := newCollector()
	gw := tn.add("gw", col.final, Limits{})
	e := tn.epoch()
	c := tn.dial("mix")
	g := sphinx.RegularGeometry()
	good := func() []byte { return tn.packet(e, g, 0, []byte("ok"), "mix", "gw") }
	expect := func(n *Node, r DropReason, want float64) {
		t.Helper()
		waitFor(t, r.String()+" drop", func() bool { return n.Metrics().Dropped(r) >= uint64(want) })
		if got := dropped(t, n, r); got != want {
			t.Errorf("%s: %v drops in /metrics, want %v", r, got, want)
		}
	}

	// Tampered header: the MAC fails at the mix, and the packet never
	// reaches the replay filter.
	p := good()
	p[40] ^= 1
	tn.send(c, e, p)
	expect(mix, DropMAC, 1)
	if got := scrape(t, mix)[`nym_mix_replay_filter_entries{epoch="`+itoa(e)+`"}`]; got != 0 {
		t.Errorf("a packet with a bad MAC reached the replay filter (%v entries)", got)
	}

	// Wrong key: built for another node's key, sent to this one.
	tn.send(c, e, tn.packet(e, g, 0, []byte("x"), "other", "gw"))
	expect(mix, DropMAC, 2)

	// Tampered payload: relays cannot tell, the final hop can.
	p = good()
	p[len(p)-1] ^= 1
	tn.send(c, e, p)
	expect(gw, DropPayload, 1)

	// Replay: the second copy is dropped.
	p = good()
	tn.send(c, e, p, p)
	expect(mix, DropReplay, 1)
	col.next(t)

	// Expired and unknown keys.
	tn.send(c, e-2, good())
	expect(mix, DropExpiredKey, 1)
	tn.send(c, e+2, good())
	expect(mix, DropUnknownKey, 1)

	// Malformed: a record of the wrong kind, a packet of no known size, a
	// torn record, a small-order group element.
	msg := mixnet.AppendRecord(nil, mixnet.KindHello, make([]byte, 64))
	msg = mixnet.AppendRecord(msg, mixnet.KindPacket, make([]byte, 8+100))
	if err := c.WriteMessage(msg); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage([]byte{byte(mixnet.KindPacket), 0xff}); err != nil {
		t.Fatal(err)
	}
	tn.send(c, e, make([]byte, g.PacketLength))
	expect(mix, DropMalformed, 4)

	// A final-hop packet at a mix node.
	tn.send(c, e, tn.packet(e, g, 0, []byte("end"), "mix"))
	expect(mix, DropNotRelay, 1)

	// Still working.
	tn.send(c, e, good())
	if d := col.next(t); string(d.Payload) != "ok" {
		t.Fatalf("after the bad packets: %q", d.Payload)
	}
}

// A packet under the previous epoch's key is accepted during the grace
// period and refused after it; the node publishes the current and next keys.
func TestKeyRotationOverlap(t *testing.T) {
	tn := newTestNet(t)
	mix := tn.add("mix", nil, Limits{})
	col := newCollector()
	tn.add("gw", col.final, Limits{})
	e := tn.epoch()
	g := sphinx.AckGeometry()
	early := tn.packet(e, g, 0, []byte("early"), "mix", "gw")
	late := tn.packet(e, g, 0, []byte("late"), "mix", "gw")
	if keys := mix.SphinxKeys(); len(keys) != 2 || keys[0].Epoch != e || keys[1].Epoch != e+1 {
		t.Fatalf("published keys %+v, want epochs %d and %d", keys, e, e+1)
	}

	rotate := func(at time.Time) {
		tn.clock.Set(at)
		for _, id := range []string{"mix", "gw"} {
			if err := tn.nodes[id].RotateKeys(); err != nil {
				t.Fatal(err)
			}
		}
		tn.publish()
	}
	// Next epoch, within the grace period (half an epoch).
	next := t0.Add(testEpochLength) // t0 is mid-epoch: this is mid-(e+1)
	rotate(next.Add(-testEpochLength/2 + testEpochLength/4))
	if keys := mix.SphinxKeys(); len(keys) != 2 || keys[0].Epoch != e+1 || keys[1].Epoch != e+2 {
		t.Fatalf("published keys after rotation %+v", keys)
	}
	c := tn.dial("mix")
	tn.send(c, e, early)
	if d := col.next(t); string(d.Payload) != "early" {
		t.Fatalf("delivery %q", d.Payload)
	}
	// The new epoch's key works too.
	tn.send(c, e+1, tn.packet(e+1, g, 0, []byte("new"), "mix", "gw"))
	if d := col.next(t); string(d.Payload) != "new" {
		t.Fatalf("delivery %q", d.Payload)
	}
	// Past the grace period: the old key is gone.
	rotate(next.Add(-testEpochLength/2 + testEpochLength/2 + time.Second))
	tn.send(c, e, late)
	waitFor(t, "expired key drop", func() bool { return mix.Metrics().Dropped(DropExpiredKey) == 1 })
	if m := scrape(t, mix); m["nym_mix_sphinx_keys"] != 2 || m[`nym_mix_packets_dropped_total{reason="expired_key"}`] != 1 {
		t.Errorf("metrics after expiry: keys %v, expired %v", m["nym_mix_sphinx_keys"], m[`nym_mix_packets_dropped_total{reason="expired_key"}`])
	}
}

// The delay asked for is applied (never shorter), and capped.
func TestDelay(t *testing.T) {
	tn := newTestNet(t)
	mix := tn.add("mix", nil, Limits{MaxDelay: 200 * time.Millisecond})
	col := newCollector()
	tn.add("gw", col.final, Limits{})
	e := tn.epoch()
	c := tn.dial("mix")
	const d = 50 * time.Millisecond
	p := tn.packet(e, sphinx.AckGeometry(), d, []byte("slow"), "mix", "gw")
	start := time.Now()
	tn.send(c, e, p)
	col.next(t)
	if el := time.Since(start); el < d {
		t.Errorf("delivered after %v, before the %v delay", el, d)
	}
	// An hour is cut to the cap.
	p = tn.packet(e, sphinx.AckGeometry(), time.Hour, []byte("capped"), "mix", "gw")
	start = time.Now()
	tn.send(c, e, p)
	col.next(t)
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("capped packet after %v", el)
	}
	if got := scrape(t, mix)["nym_mix_delay_capped_total"]; got != 1 {
		t.Errorf("delay_capped %v", got)
	}
}

// A flood cannot grow the node beyond its limits: delayed packets, link
// queues and connections are bounded and the excess is dropped and counted.
func TestFloodBounded(t *testing.T) {
	tn := newTestNet(t)
	lim := Limits{MaxDelay: time.Hour, MaxDelayed: 4, LinkQueue: 4, QueueLength: 64, MaxConns: 3}
	mix := tn.add("mix", nil, lim)
	col := newCollector()
	tn.add("gw", col.final, Limits{})
	tn.addDown("down")
	e := tn.epoch()
	g := sphinx.AckGeometry()
	c := tn.dial("mix")
	m := mix.Metrics()

	// Delayed packets: 4 held, the rest dropped.
	const n = 24
	var pkts [][]byte
	for range n {
		pkts = append(pkts, tn.packet(e, g, time.Hour, []byte("later"), "mix", "gw"))
	}
	tn.send(c, e, pkts...)
	waitFor(t, "every delayed packet accounted for", func() bool {
		return m.ReceivedFrom(FromNode) == n && m.queued.Load() == 0 && m.Processed()+m.Dropped(DropQueueFull) == n
	})
	if m.Delayed() != 4 || m.Dropped(DropDelayFull)+m.Dropped(DropQueueFull) != n-4 {
		t.Errorf("delayed %d, delay_full %d, queue_full %d", m.Delayed(), m.Dropped(DropDelayFull), m.Dropped(DropQueueFull))
	}

	// A next hop that is down: its queue stays bounded and is dropped.
	before, proc0, qfull0 := m.ReceivedFrom(FromNode), m.Processed(), m.Dropped(DropQueueFull)
	pkts = pkts[:0]
	for range n {
		pkts = append(pkts, tn.packet(e, g, 0, []byte("nowhere"), "mix", "down"))
	}
	tn.send(c, e, pkts...)
	waitFor(t, "packets to the dead hop accounted for", func() bool {
		proc := m.Processed() - proc0
		return m.ReceivedFrom(FromNode) == before+n && proc+m.Dropped(DropQueueFull)-qfull0 == n &&
			m.Dropped(DropLinkDown)+m.Dropped(DropLinkFull) == proc
	})
	if m.Dropped(DropLinkDown) == 0 || m.Forwarded() != 0 {
		t.Errorf("link_down %d, forwarded %d: a dead next hop", m.Dropped(DropLinkDown), m.Forwarded())
	}
	if l := m.links.Load(); l > 2 {
		t.Errorf("%d links open", l)
	}

	// Connections: the sender's channel is one; two idle TCP connections
	// fill the limit; the next is refused.
	var idle []net.Conn
	for range 2 {
		cn, err := net.Dial("tcp", mix.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, cn)
	}
	waitFor(t, "connections tracked", func() bool {
		mix.connMu.Lock()
		defer mix.connMu.Unlock()
		return len(mix.conns) == 3
	})
	cn, err := net.Dial("tcp", mix.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	cn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := cn.Read(make([]byte, 1)); err == nil {
		t.Error("connection beyond the limit was not closed")
	}
	if got := scrape(t, mix)[`nym_mix_connections_refused_total{reason="limit"}`]; got != 1 {
		t.Errorf("refused(limit) = %v", got)
	}
	for _, cn := range idle {
		cn.Close()
	}
	// Junk in one message: counted, nothing kept.
	junk := make([]byte, 60000)
	for i := range junk {
		junk[i] = byte(i * 7)
	}
	mix.HandleMessage(junk)
	if m.Dropped(DropMalformed) == 0 {
		t.Error("junk not counted as malformed")
	}
	if d := mix.sched.len(); d > lim.MaxDelayed {
		t.Errorf("%d delayed packets held, limit %d", d, lim.MaxDelayed)
	}
}

// The processing queue is bounded: with no worker draining it, packets
// beyond its length are dropped and counted.
func TestQueueBounded(t *testing.T) {
	n := &Node{work: make(chan job, 2)}
	n.bufs.New = func() any {
		b := make([]byte, 0, mixnet.MaxPacketLength)
		return &b
	}
	var msg []byte
	for range 5 {
		msg = mixnet.AppendPacket(msg, 1, make([]byte, sphinx.AckGeometry().PacketLength))
	}
	n.HandleMessage(msg)
	if n.m.Dropped(DropQueueFull) != 3 || n.m.queued.Load() != 2 || len(n.work) != 2 {
		t.Fatalf("queue_full %d, queued %d", n.m.Dropped(DropQueueFull), n.m.queued.Load())
	}

	// One connection's share is bounded too.
	n = &Node{work: make(chan job, 10), lim: Limits{ConnQueue: 2}}
	n.bufs.New = func() any {
		b := make([]byte, 0, mixnet.MaxPacketLength)
		return &b
	}
	var owner, other atomic.Int32
	pkt := make([]byte, sphinx.AckGeometry().PacketLength)
	for range 5 {
		n.enqueue(1, pkt, &owner)
	}
	n.enqueue(1, pkt, &other)
	if n.m.Dropped(DropQueueFull) != 3 || owner.Load() != 2 || other.Load() != 1 || len(n.work) != 3 {
		t.Fatalf("per connection: queue_full %d, owner %d, other %d", n.m.Dropped(DropQueueFull), owner.Load(), other.Load())
	}
}

// An initiator the directory does not list is refused at the handshake.
func TestUnknownPeerRefused(t *testing.T) {
	tn := newTestNet(t)
	mix := tn.add("mix", nil, Limits{})
	raw, err := net.Dial("tcp", mix.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stranger := testKey(t, "stranger")
	c, err := transport.Client(ctx, raw, transport.Config{Pattern: transport.IK, Prologue: []byte(mixnet.NodePrologue),
		LocalStatic: stranger, RemoteStatic: mix.cfg.NoiseKey.Public()})
	if err == nil {
		// IK: the initiator learns of the refusal when reading.
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.ReadMessage(nil); err == nil {
			t.Fatal("stranger's channel stayed open")
		}
	}
	waitFor(t, "refusal counted", func() bool { return mix.Metrics().Refused(RefusedPeer) == 1 })
}

// Forward (a gateway sending a client's packet) reaches the next hop;
// unknown next hops and bad sizes are counted.
func TestForward(t *testing.T) {
	tn := newTestNet(t)
	entry := tn.add("entry", newCollector().final, Limits{})
	tn.add("mix", nil, Limits{})
	col := newCollector()
	tn.add("gw", col.final, Limits{})
	e := tn.epoch()
	p := tn.packet(e, sphinx.RegularGeometry(), 0, []byte("fwd"), "mix", "gw")
	mixID := sphinx.NodeID(tn.node("mix").NoiseKey)
	if !entry.Forward(mixID, e, p) {
		t.Fatal("Forward refused")
	}
	if d := col.next(t); string(d.Payload) != "fwd" {
		t.Fatalf("delivery %q", d.Payload)
	}
	if entry.Forward(sphinx.NodeID{9}, e, p) || entry.Metrics().Dropped(DropUnknownHop) != 1 {
		t.Error("unknown next hop not refused")
	}
	if entry.Forward(mixID, e, p[:100]) || entry.Metrics().Dropped(DropMalformed) != 1 {
		t.Error("bad size not refused")
	}
}

// Close stops everything and New refuses bad configurations.
func TestConfigAndClose(t *testing.T) {
	tn := newTestNet(t)
	for name, cfg := range map[string]Config{
		"no key":      {Topology: tn.topo.Load, EpochLength: time.Minute},
		"no topology": {NoiseKey: testKey(t, "x"), EpochLength: time.Minute},
		"short epoch": {NoiseKey: testKey(t, "x"), Topology: tn.topo.Load, EpochLength: time.Millisecond},
		"long grace":  {NoiseKey: testKey(t, "x"), Topology: tn.topo.Load, EpochLength: time.Minute, KeyGrace: time.Hour},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	n := tn.add("mix", nil, Limits{})
	addr := n.Addr()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", netip.AddrPortFrom(addr.Addr(), addr.Port()).String()); err == nil {
		c.Close()
		t.Error("listener still open after Close")
	}
	if n.Forward(sphinx.NodeID{}, 0, make([]byte, sphinx.AckGeometry().PacketLength)) {
		t.Error("Forward after Close")
	}
}

// The link to a next hop survives the next hop restarting: the mix notices
// the dead channel, reconnects and delivers again, still over one link.
func TestLinkReconnect(t *testing.T) {
	tn := newTestNet(t)
	mix := tn.add("mix", nil, Limits{})
	col := newCollector()
	gw := tn.add("gw", col.final, Limits{})
	e := tn.epoch()
	c := tn.dial("mix")
	g := sphinx.AckGeometry()
	tn.send(c, e, tn.packet(e, g, 0, []byte("before"), "mix", "gw"))
	col.next(t)
	addr := gw.Addr()
	gw.Close()
	// Same key, same Sphinx keys (deterministic randomness), same address.
	cfg := gw.cfg
	cfg.Listen = addr
	cfg.Rand = newDetRand("sphinx/gw")
	gw2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer gw2.Close()
	// Packets written into the old channel before its end was seen are lost
	// on the wire, as on any network; keep sending until one arrives.
	m := mix.Metrics()
	deadline := time.Now().Add(30 * time.Second)
	for gw2.Metrics().Delivered() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no delivery after the next hop restarted")
		}
		before := m.Forwarded() + m.Dropped(DropLinkDown)
		tn.send(c, e, tn.packet(e, g, 0, []byte("after"), "mix", "gw"))
		waitFor(t, "the packet written or dropped", func() bool { return m.Forwarded()+m.Dropped(DropLinkDown) > before })
	}
	if d := col.next(t); string(d.Payload) != "after" {
		t.Fatalf("delivery %q", d.Payload)
	}
	if l := m.links.Load(); l != 1 {
		t.Errorf("%d links, want the one link reused", l)
	}
}
