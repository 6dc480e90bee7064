package mixnode

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/metrics"
	"github.com/nymvpn/nymvpn/sphinx"
	"github.com/nymvpn/nymvpn/transport"
)

// Defaults; see Limits.
const (
	DefaultMaxDelay       = 10 * time.Second
	DefaultMaxConns       = 512
	DefaultQueueLength    = 4096
	DefaultConnQueue      = 1024
	DefaultLinkQueue      = 1024
	DefaultMaxDelayed     = 16384
	DefaultReplayCapacity = 1 << 22

	// HandshakeTimeout bounds an inbound Noise handshake.
	HandshakeTimeout = 10 * time.Second
	// IdleTimeout closes an inbound connection that sent nothing for so long.
	IdleTimeout = 5 * time.Minute
	// LinkIdle closes an outbound link unused for so long.
	LinkIdle = 2 * time.Minute
	// maxBatch is the most one transport message to a next hop carries:
	// queued packets are written together, one encryption and one write.
	maxBatch = 32 << 10
	// topologyRefresh is how often the node asks Config.Topology again.
	topologyRefresh = time.Second
)

// Limits bound what the node holds whatever its peers send. Zero fields take
// the defaults.
type Limits struct {
	// MaxDelay caps the delay a packet asks for (default 10 s, NymVPN's cap);
	// longer delays are cut to it and counted.
	MaxDelay time.Duration
	// MaxConns bounds inbound connections, handshaking or open (default
	// 512); more are closed at once and counted.
	MaxConns int
	// QueueLength bounds packets received and waiting for a worker
	// (default 4096).
	QueueLength int
	// ConnQueue bounds the packets of one inbound connection among them
	// (default 1024), so one peer cannot take the whole queue.
	ConnQueue int
	// LinkQueue bounds packets waiting for one next hop (default 1024).
	LinkQueue int
	// MaxDelayed bounds packets waiting out their delay (default 16384).
	MaxDelayed int
	// ReplayCapacity is the number of packets per key the replay filter is
	// sized for at ReplayFalsePositiveRate (default 2^22: 12 MiB per key).
	// Size it as peak packets/s × (epoch length + grace).
	ReplayCapacity int
	// Workers unwrap packets (default GOMAXPROCS).
	Workers int
}

func (l *Limits) fill() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if l.MaxDelay <= 0 {
		l.MaxDelay = DefaultMaxDelay
	}
	def(&l.MaxConns, DefaultMaxConns)
	def(&l.QueueLength, DefaultQueueLength)
	def(&l.ConnQueue, DefaultConnQueue)
	def(&l.LinkQueue, DefaultLinkQueue)
	def(&l.MaxDelayed, DefaultMaxDelayed)
	def(&l.ReplayCapacity, DefaultReplayCapacity)
	def(&l.Workers, runtime.GOMAXPROCS(0))
}

// Delivery is a packet for which this node was the final hop.
type Delivery struct {
	// Epoch of the key the packet was built for.
	Epoch     uint64
	Recipient sphinx.Recipient
	SURBID    sphinx.SURBID
	// IsReply marks a SURB reply: Payload is still encrypted.
	IsReply bool
	// Payload is valid during the call to Config.Final only.
	Payload []byte
}

// Config configures a node.
type Config struct {
	// ID names the node in logs.
	ID string
	// NoiseKey is the node's private Noise static key; its public key is
	// the node's Sphinx id and what the directory lists.
	NoiseKey transport.Key
	// Listen is the TCP address for node traffic; port 0 picks one.
	Listen netip.AddrPort
	// Topology returns the node's current copy of the directory: next hops
	// are looked up in it and only the nodes it lists may connect.
	Topology func() *directory.Topology
	// TopologyStale, if set, is called when a node is not found (at most
	// ten times a second): the owner may fetch a fresher topology, so a node
	// that just joined is found soon. It must not block.
	TopologyStale func()
	// EpochLength is the directory's epoch length.
	EpochLength time.Duration
	// KeyGrace is how long a key is still accepted after its epoch ended
	// (default one epoch length, NymVPN's "kept one epoch after").
	KeyGrace time.Duration
	// Final receives packets for which this node is the last hop: gateways
	// set it. It must not block. Nil makes a mix node, which drops them.
	Final func(*Delivery)
	// OnKeys is called (from the rotation goroutine) when the node's
	// published Sphinx keys changed: re-announce to the directory.
	OnKeys func()
	Limits Limits
	// Now is the clock for epochs (default time.Now). Delays always run on
	// the real clock.
	Now func() time.Time
	// Rand is the randomness for keys (default crypto/rand).
	Rand   io.Reader
	Logger *slog.Logger
}

// Node is a running Sphinx node: a mix node, or the Sphinx side of a
// gateway.
type Node struct {
	cfg   Config
	lim   Limits
	log   *slog.Logger
	ln    net.Listener
	ring  *keyRing
	m     Metrics
	work  chan job
	sched *scheduler
	links *linkPool
	topo  topoCache
	bufs  sync.Pool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	connMu sync.Mutex
	conns  map[net.Conn]struct{}
}

// job is a received packet waiting for a worker.
type job struct {
	epoch uint64
	p     *[]byte
	owner *atomic.Int32 // the inbound connection's count of queued packets
}

// out is an unwrapped packet on its way to the next hop or the final
// handler.
type out struct {
	epoch     uint64
	p         *[]byte
	final     bool
	next      sphinx.NodeID
	recipient sphinx.Recipient
	surbID    sphinx.SURBID
	reply     bool
	payload   []byte // final: aliases *p
}

// New starts a node: it makes its keys for the current and the next epoch,
// listens and starts its workers.
func New(cfg Config) (*Node, error) {
	if cfg.NoiseKey.IsZero() {
		return nil, errors.New("mixnode: Noise key required")
	}
	if cfg.Topology == nil {
		return nil, errors.New("mixnode: the directory's topology is required")
	}
	if cfg.EpochLength < time.Second {
		return nil, fmt.Errorf("mixnode: epoch length %v, want at least 1s", cfg.EpochLength)
	}
	if cfg.KeyGrace <= 0 {
		cfg.KeyGrace = cfg.EpochLength
	}
	if cfg.KeyGrace > 4*cfg.EpochLength {
		return nil, fmt.Errorf("mixnode: key grace %v exceeds 4 epochs of %v", cfg.KeyGrace, cfg.EpochLength)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Limits.fill()
	n := &Node{
		cfg:   cfg,
		lim:   cfg.Limits,
		log:   cfg.Logger,
		conns: map[net.Conn]struct{}{},
		ring:  &keyRing{length: cfg.EpochLength, grace: cfg.KeyGrace, capacity: cfg.Limits.ReplayCapacity, rand: cfg.Rand},
		work:  make(chan job, cfg.Limits.QueueLength),
	}
	n.bufs.New = func() any {
		b := make([]byte, 0, mixnet.MaxPacketLength)
		return &b
	}
	n.sched = newScheduler(cfg.Limits.MaxDelayed)
	n.links = &linkPool{n: n, links: map[sphinx.NodeID]*link{}}
	if _, err := n.ring.rotate(cfg.Now()); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen.String())
	if err != nil {
		return nil, fmt.Errorf("mixnode: listen on %v: %w", cfg.Listen, err)
	}
	n.ln = ln
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.wg.Add(3 + n.lim.Workers)
	go n.acceptLoop()
	go n.rotateLoop()
	go func() {
		defer n.wg.Done()
		n.sched.run(n.ctx, func(o out) {
			n.m.delayed.Add(-1)
			n.dispatch(o)
		}, func(o out) {
			n.m.delayed.Add(-1)
			n.releaseOut(o)
		})
	}()
	for range n.lim.Workers {
		go n.worker()
	}
	n.log.Info("sphinx node up", "addr", n.Addr(), "epoch_length", cfg.EpochLength, "key_grace", cfg.KeyGrace,
		"final_hop", cfg.Final != nil, "workers", n.lim.Workers)
	return n, nil
}

// Addr is the address node traffic reaches.
func (n *Node) Addr() netip.AddrPort { return netip.MustParseAddrPort(n.ln.Addr().String()) }

// ID is the node's Sphinx id (its Noise public key).
func (n *Node) ID() sphinx.NodeID { return sphinx.NodeID(n.cfg.NoiseKey.Public()) }

// SphinxKeys are the keys the node publishes: the current epoch's and the
// next one's.
func (n *Node) SphinxKeys() []directory.SphinxKey { return n.ring.published(n.cfg.Now()) }

// Metrics returns the node's counters.
func (n *Node) Metrics() *Metrics { return &n.m }

// RotateKeys makes the next epoch's key and retires keys past their grace
// period, as the clock says now. The node does it by itself at every epoch
// boundary and key expiry; tests with a fake clock call it.
func (n *Node) RotateKeys() error {
	changed, err := n.ring.rotate(n.cfg.Now())
	if changed {
		n.log.Info("sphinx keys rotated", "keys", n.SphinxKeys())
		if n.cfg.OnKeys != nil {
			n.cfg.OnKeys()
		}
	}
	return err
}

func (n *Node) rotateLoop() {
	defer n.wg.Done()
	for {
		now := n.cfg.Now()
		_, start := directory.EpochAt(now, n.cfg.EpochLength)
		next := start.Add(n.cfg.EpochLength)
		for _, k := range n.ring.snapshot() {
			if k.expires.After(now) && k.expires.Before(next) {
				next = k.expires
			}
		}
		t := time.NewTimer(next.Sub(now) + 10*time.Millisecond)
		select {
		case <-n.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := n.RotateKeys(); err != nil {
			n.log.Error("sphinx key rotation", "err", err)
		}
	}
}

// Lookup finds a node of the topology by its Sphinx id.
func (n *Node) Lookup(id sphinx.NodeID) (*directory.Node, bool) {
	return n.topo.lookup(n.cfg.Topology, n.cfg.TopologyStale, id)
}

// allowPeer admits initiators the directory lists as mix nodes or gateways.
func (n *Node) allowPeer(k transport.Key) bool {
	d, ok := n.Lookup(sphinx.NodeID(k))
	return ok && (d.Has(directory.RoleMixnode) || d.IsGateway())
}

func (n *Node) acceptLoop() {
	defer n.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := n.ln.Accept()
		if err != nil {
			if n.closed.Load() {
				return
			}
			// Out of descriptors and the like: wait a little, do not spin.
			n.log.Warn("mixnode: accept", "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-n.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if !n.track(c) {
			n.m.refused[RefusedLimit].Add(1)
			c.Close()
			continue
		}
		n.wg.Add(1)
		go n.serve(c)
	}
}

func (n *Node) track(c net.Conn) bool {
	n.connMu.Lock()
	defer n.connMu.Unlock()
	if n.closed.Load() || len(n.conns) >= n.lim.MaxConns {
		return false
	}
	n.conns[c] = struct{}{}
	return true
}

func (n *Node) untrack(c net.Conn) {
	n.connMu.Lock()
	delete(n.conns, c)
	n.connMu.Unlock()
	c.Close()
}

// serve reads packets from one inbound node connection.
func (n *Node) serve(raw net.Conn) {
	defer n.wg.Done()
	defer n.untrack(raw)
	ctx, cancel := context.WithTimeout(n.ctx, HandshakeTimeout)
	tc, err := transport.Server(ctx, raw, transport.Config{
		Pattern: transport.IK, Prologue: []byte(mixnet.NodePrologue),
		LocalStatic: n.cfg.NoiseKey, AllowPeer: n.allowPeer,
	})
	cancel()
	if err != nil {
		if errors.Is(err, transport.ErrPeerNotAllowed) {
			n.m.refused[RefusedPeer].Add(1)
		} else {
			n.m.refused[RefusedHandshake].Add(1)
		}
		n.log.Debug("mixnode: inbound handshake failed", "remote", raw.RemoteAddr(), "err", err)
		return
	}
	n.m.conns.Add(1)
	defer n.m.conns.Add(-1)
	var queued atomic.Int32 // this connection's packets in the processing queue
	var buf []byte
	for {
		tc.SetReadDeadline(time.Now().Add(IdleTimeout))
		msg, err := tc.ReadMessage(buf)
		if err != nil {
			if !n.closed.Load() && !errors.Is(err, io.EOF) {
				n.log.Debug("mixnode: inbound connection ended", "remote", raw.RemoteAddr(), "err", err)
			}
			return
		}
		n.eachPacket(msg, func(epoch uint64, pkt []byte) { n.enqueue(epoch, pkt, &queued) })
		buf = msg[:0]
	}
}

// HandleMessage takes one decrypted message from a node channel: a run of
// Packet records. Anything else is counted as malformed. The node copies
// what it keeps; msg may be reused on return.
func (n *Node) HandleMessage(msg []byte) {
	n.eachPacket(msg, func(epoch uint64, pkt []byte) { n.enqueue(epoch, pkt, nil) })
}

// eachPacket calls fn for every well-formed Packet record of msg, counting
// what it receives and what is malformed.
func (n *Node) eachPacket(msg []byte, fn func(epoch uint64, pkt []byte)) {
	for len(msg) > 0 {
		k, body, rest, err := mixnet.NextRecord(msg)
		if err != nil {
			n.m.Drop(DropMalformed)
			return
		}
		msg = rest
		if k != mixnet.KindPacket {
			n.m.Drop(DropMalformed)
			continue
		}
		n.m.Received(FromNode)
		epoch, pkt, err := mixnet.ParsePacket(body)
		if err != nil {
			n.m.Drop(DropMalformed)
			continue
		}
		fn(epoch, pkt)
	}
}

func (n *Node) getBuf(pkt []byte) *[]byte {
	p := n.bufs.Get().(*[]byte)
	*p = append((*p)[:0], pkt...)
	return p
}

func (n *Node) putBuf(p *[]byte) {
	if cap(*p) == mixnet.MaxPacketLength {
		n.bufs.Put(p)
	}
}

// enqueue queues a packet for the workers; owner, if not nil, counts the
// packets of one connection, bounded by Limits.ConnQueue.
func (n *Node) enqueue(epoch uint64, pkt []byte, owner *atomic.Int32) {
	if n.closed.Load() {
		n.m.Drop(DropClosed)
		return
	}
	if owner != nil && owner.Add(1) > int32(n.lim.ConnQueue) {
		owner.Add(-1)
		n.m.Drop(DropQueueFull)
		return
	}
	p := n.getBuf(pkt)
	select {
	case n.work <- job{epoch: epoch, p: p, owner: owner}:
		n.m.queued.Add(1)
	default:
		if owner != nil {
			owner.Add(-1)
		}
		n.m.Drop(DropQueueFull)
		n.putBuf(p)
	}
}

func (n *Node) worker() {
	defer n.wg.Done()
	for {
		select {
		case j := <-n.work:
			n.m.queued.Add(-1)
			if j.owner != nil {
				j.owner.Add(-1)
			}
			n.process(j)
		case <-n.ctx.Done():
			return
		}
	}
}

// process unwraps one packet and sends it on, now or after its delay.
// Order of work: the epoch's key (a map lookup), then sphinx Unwrap — one
// DH, the header MAC, only then the replay filter, then decryption — so
// nothing but a DH is spent on a packet that fails its MAC, and such a
// packet never touches the replay filter.
func (n *Node) process(j job) {
	k, why := n.ring.lookup(j.epoch, n.cfg.Now())
	if why != DropNone {
		n.m.Drop(why)
		n.putBuf(j.p)
		return
	}
	res, err := k.node.Unwrap(*j.p, k.filter)
	if err != nil {
		n.m.Drop(classify(err))
		n.putBuf(j.p)
		return
	}
	n.m.processed.Add(1)
	o := out{epoch: j.epoch, p: j.p}
	if res.Final {
		if n.cfg.Final == nil {
			n.m.Drop(DropNotRelay)
			n.putBuf(j.p)
			return
		}
		o.final, o.recipient, o.surbID, o.reply, o.payload = true, res.Recipient, res.SURBID, res.IsReply, res.Payload
	} else {
		o.next = res.NextHop
	}
	d := res.Delay
	if d > n.lim.MaxDelay {
		d = n.lim.MaxDelay
		n.m.delayCapped.Add(1)
	}
	if d <= 0 {
		n.dispatch(o)
		return
	}
	n.m.delayed.Add(1)
	if !n.sched.add(time.Now().Add(d), o) {
		n.m.delayed.Add(-1)
		n.m.Drop(DropDelayFull)
		n.putBuf(j.p)
	}
}

func classify(err error) DropReason {
	switch {
	case errors.Is(err, sphinx.ErrInvalidMAC):
		return DropMAC
	case errors.Is(err, sphinx.ErrReplay):
		return DropReplay
	case errors.Is(err, sphinx.ErrPayloadIntegrity):
		return DropPayload
	}
	return DropMalformed
}

// dispatch hands an unwrapped packet on: to the next hop's link, or to the
// final handler.
func (n *Node) dispatch(o out) {
	if o.final {
		n.cfg.Final(&Delivery{Epoch: o.epoch, Recipient: o.recipient, SURBID: o.surbID, IsReply: o.reply, Payload: o.payload})
		n.m.delivered.Add(1)
		n.putBuf(o.p)
		return
	}
	n.links.send(o.next, o.epoch, o.p)
}

// releaseOut drops a delayed packet the node will not send (shutdown).
func (n *Node) releaseOut(o out) {
	n.m.Drop(DropClosed)
	n.putBuf(o.p)
}

// Forward sends a ready packet, built for epoch, to the node next: a
// gateway forwarding a client's packet to layer 1, or sending a SURB reply.
// It reports whether the packet was queued; drops are counted.
func (n *Node) Forward(next sphinx.NodeID, epoch uint64, pkt []byte) bool {
	if !mixnet.PacketLengthOK(len(pkt)) {
		n.m.Drop(DropMalformed)
		return false
	}
	if n.closed.Load() {
		n.m.Drop(DropClosed)
		return false
	}
	return n.links.send(next, epoch, n.getBuf(pkt))
}

// Families returns the node's metrics for the Prometheus exposition.
func (n *Node) Families() []metrics.Family {
	fams := n.m.families()
	now := n.cfg.Now()
	cur, _ := directory.EpochAt(now, n.cfg.EpochLength)
	keys := n.ring.snapshot()
	fams = append(fams,
		metrics.One("nym_mix_epoch", "Current epoch.", metrics.Gauge, float64(cur)),
		metrics.One("nym_mix_topology_nodes", "Nodes in the node's copy of the directory.", metrics.Gauge, float64(topologyNodes(n.cfg.Topology()))),
		metrics.One("nym_mix_sphinx_keys", "Sphinx keys held (current, next, and older ones in their grace period).", metrics.Gauge, float64(len(keys))),
		metrics.One("nym_mix_replay_filter_capacity", "Packets per key the replay filters are sized for.", metrics.Gauge, float64(n.lim.ReplayCapacity)),
		metrics.One("nym_mix_replay_filter_target_false_positive_rate", "False-positive rate of a replay filter at capacity.", metrics.Gauge, ReplayFalsePositiveRate),
	)
	entries := metrics.Family{Name: "nym_mix_replay_filter_entries", Help: "Tags recorded in the replay filter of each key, by epoch.", Type: metrics.Gauge}
	fpr := metrics.Family{Name: "nym_mix_replay_filter_false_positive_rate", Help: "Estimated false-positive rate of each key's replay filter now, by epoch.", Type: metrics.Gauge}
	mem := 0
	for _, k := range keys {
		l := []metrics.Label{{Name: "epoch", Value: strconv.FormatUint(k.epoch, 10)}}
		entries.Samples = append(entries.Samples, metrics.Sample{Labels: l, Value: float64(k.filter.Count())})
		fpr.Samples = append(fpr.Samples, metrics.Sample{Labels: l, Value: k.filter.FalsePositiveRate()})
		mem += k.filter.Bytes()
	}
	return append(fams, entries, fpr,
		metrics.One("nym_mix_replay_filter_bytes", "Memory of all replay filters.", metrics.Gauge, float64(mem)))
}

// MetricsHandler serves Families at each request.
func (n *Node) MetricsHandler() http.Handler { return metrics.Handler(n.Families) }

// Close stops the node: listener, connections, links, workers. Packets in
// queues are dropped (and counted as closed).
func (n *Node) Close() error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	n.cancel()
	err := n.ln.Close()
	n.connMu.Lock()
	for c := range n.conns {
		c.Close()
	}
	n.connMu.Unlock()
	n.links.close()
	n.wg.Wait()
	for {
		select {
		case j := <-n.work:
			n.m.queued.Add(-1)
			n.m.Drop(DropClosed)
			n.putBuf(j.p)
		default:
			if err != nil && !errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("mixnode: close: %w", err)
			}
			return nil
		}
	}
}

func topologyNodes(t *directory.Topology) int {
	if t == nil {
		return 0
	}
	return len(t.Nodes)
}

// topoCache indexes the topology by Sphinx id, asking the source at most
// once per topologyRefresh.
type topoCache struct {
	mu    sync.Mutex
	src   *directory.Topology
	at    time.Time
	byKey map[sphinx.NodeID]*directory.Node
}

func (c *topoCache) lookup(get func() *directory.Topology, stale func(), id sphinx.NodeID) (*directory.Node, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byKey == nil || time.Since(c.at) >= topologyRefresh {
		c.refresh(get)
	}
	d, ok := c.byKey[id]
	if !ok && time.Since(c.at) >= topologyRefresh/10 {
		// A node that just joined: look again, at most ten times a second,
		// and tell the owner its copy may be old.
		c.refresh(get)
		d, ok = c.byKey[id]
		if !ok && stale != nil {
			stale()
		}
	}
	return d, ok
}

func (c *topoCache) refresh(get func() *directory.Topology) {
	c.at = time.Now()
	t := get()
	if t == nil || t == c.src {
		return
	}
	c.src = t
	c.byKey = make(map[sphinx.NodeID]*directory.Node, len(t.Nodes))
	for i := range t.Nodes {
		if !t.Nodes[i].NoiseKey.IsZero() {
			c.byKey[sphinx.NodeID(t.Nodes[i].NoiseKey)] = &t.Nodes[i]
		}
	}
}
