package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/metrics"
	"github.com/nymvpn/nymvpn/node/mixnode"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/sphinx"
	"github.com/nymvpn/nymvpn/transport"
)

// Mixnet defaults.
const (
	DefaultMaxMixClients = 1024
	DefaultClientQueue   = 1024
	// ClientIdleTimeout closes a mixnet client that sent nothing for so long
	// (a mixnet client sends cover traffic all the time).
	ClientIdleTimeout = 5 * time.Minute
	clientHandshake   = 10 * time.Second
)

// MixnetConfig turns on the gateway's Sphinx side: it becomes a final
// Sphinx hop (mix_addr) and, with the entry role, takes mixnet clients
// (mix_client_addr).
type MixnetConfig struct {
	// Listen is the TCP address for Sphinx traffic from other nodes.
	Listen netip.AddrPort
	// ClientListen is the TCP address for mixnet clients (entry role only).
	ClientListen netip.AddrPort
	// EpochLength is the directory's epoch length; KeyGrace how long an old
	// key is still accepted (default one epoch).
	EpochLength, KeyGrace time.Duration
	// Limits bound the Sphinx engine (see mixnode.Limits).
	Limits mixnode.Limits
	// MaxClients bounds mixnet client connections (default 1024);
	// ClientQueue the deliveries waiting for one client (default 1024).
	MaxClients, ClientQueue int
	// OnKeys is called when the published Sphinx keys change.
	OnKeys func()
	// TopologyStale is called when a node is not found in the topology
	// (see mixnode.Config.TopologyStale).
	TopologyStale func()
	// Now is the clock for epochs (tests); default time.Now.
	Now func() time.Time
}

// ExitHandler takes Sphinx packets for which this gateway was the final hop
// and whose recipient is not a client connected here: the exit's IP packet
// router. Deliver must not block; d.Payload is valid during the call only.
// Without a handler such packets are dropped and counted (no_handler).
type ExitHandler interface {
	Deliver(d *mixnode.Delivery)
}

// mixSide is the gateway's Sphinx side.
type mixSide struct {
	g        *Gateway
	cfg      MixnetConfig
	node     *mixnode.Node
	clientLn net.Listener
	exit     atomic.Pointer[exitHolder]
	log      *slog.Logger

	mu      sync.Mutex
	clients map[sphinx.Recipient]*mixClient
	// allowances are the paid mixnet allowances by recipient key (bytes in
	// and out through this gateway), bought with RoleMixnet registrations.
	allowances map[sphinx.Recipient]*mixAllowance
	conns      map[net.Conn]struct{}
	closed     bool
	wg         sync.WaitGroup

	toClients, toExit, fromClients atomic.Uint64
	refusedLimit, refusedHello     atomic.Uint64
	refusedUnpaid, cutOff          atomic.Uint64
	refusedHandshake               atomic.Uint64
}

type exitHolder struct{ h ExitHandler }

// mixAllowance is one recipient's mixnet allowance.
type mixAllowance struct {
	left    atomic.Int64
	topUpAt int64
	updated time.Time
	// flushed is left as last written to the database (mixSide.mu).
	flushed int64
}

// mixClient is one connected client: a bounded queue of deliveries drained
// by a writer goroutine.
type mixClient struct {
	recipient sphinx.Recipient
	conn      *transport.Conn
	q         chan mixnet.Delivery
	done      chan struct{}
	once      sync.Once
	allowance *mixAllowance // nil: not metered
}

func (c *mixClient) close() {
	c.once.Do(func() {
		close(c.done)
		c.conn.Close()
	})
}

func (g *Gateway) startMixnet() error {
	cfg := *g.cfg.Mixnet
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = DefaultMaxMixClients
	}
	if cfg.ClientQueue <= 0 {
		cfg.ClientQueue = DefaultClientQueue
	}
	if g.cfg.Topology == nil {
		return errors.New("gateway: the mixnet needs the directory's topology")
	}
	m := &mixSide{g: g, cfg: cfg, log: g.log, clients: map[sphinx.Recipient]*mixClient{}, conns: map[net.Conn]struct{}{},
		allowances: map[sphinx.Recipient]*mixAllowance{}}
	node, err := mixnode.New(mixnode.Config{
		ID: g.cfg.ID, NoiseKey: g.cfg.NoiseKey, Listen: cfg.Listen, Topology: g.cfg.Topology,
		TopologyStale: cfg.TopologyStale,
		EpochLength:   cfg.EpochLength, KeyGrace: cfg.KeyGrace, Final: m.final, OnKeys: cfg.OnKeys,
		Limits: cfg.Limits, Now: cfg.Now, Logger: g.log,
	})
	if err != nil {
		return fmt.Errorf("gateway: mixnet: %w", err)
	}
	m.node = node
	if slices.Contains(g.cfg.Roles, directory.RoleEntry) {
		if !cfg.ClientListen.IsValid() {
			node.Close()
			return errors.New("gateway: an entry gateway with the mixnet needs a client listen address")
		}
		m.clientLn, err = net.Listen("tcp", cfg.ClientListen.String())
		if err != nil {
			node.Close()
			return fmt.Errorf("gateway: mixnet client listener: %w", err)
		}
		m.wg.Add(1)
		go m.acceptClients()
	}
	g.mix = m
	return nil
}

// SetExitHandler sets (or, with nil, removes) the handler of packets for
// which no connected client is the recipient.
func (g *Gateway) SetExitHandler(h ExitHandler) {
	if g.mix == nil {
		return
	}
	if h == nil {
		g.mix.exit.Store(nil)
		return
	}
	g.mix.exit.Store(&exitHolder{h})
}

// Mixnode returns the gateway's Sphinx engine (nil without the mixnet):
// Forward sends SURB replies, Metrics counts.
func (g *Gateway) Mixnode() *mixnode.Node {
	if g.mix == nil {
		return nil
	}
	return g.mix.node
}

// MixClientAddr is where mixnet clients connect (invalid if none).
func (g *Gateway) MixClientAddr() netip.AddrPort {
	if g.mix == nil || g.mix.clientLn == nil {
		return netip.AddrPort{}
	}
	return netip.MustParseAddrPort(g.mix.clientLn.Addr().String())
}

// final receives the packets for which this gateway is the last hop.
func (m *mixSide) final(d *mixnode.Delivery) {
	m.mu.Lock()
	c := m.clients[d.Recipient]
	m.mu.Unlock()
	if c != nil {
		del := mixnet.Delivery{Reply: d.IsReply, SURBID: d.SURBID, Payload: slices.Clone(d.Payload)}
		select {
		case c.q <- del:
			m.toClients.Add(1)
		default:
			m.node.Metrics().Drop(mixnode.DropClientFull)
		}
		return
	}
	if h := m.exit.Load(); h != nil {
		m.toExit.Add(1)
		h.h.Deliver(d)
		return
	}
	m.node.Metrics().Drop(mixnode.DropNoHandler)
}

func (m *mixSide) acceptClients() {
	defer m.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		raw, err := m.clientLn.Accept()
		if err != nil {
			m.mu.Lock()
			closed := m.closed
			m.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return
			}
			m.log.Warn("mixnet: accept client", "err", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		m.mu.Lock()
		if m.closed || len(m.conns) >= m.cfg.MaxClients {
			m.mu.Unlock()
			m.refusedLimit.Add(1)
			raw.Close()
			continue
		}
		m.conns[raw] = struct{}{}
		m.wg.Add(1)
		m.mu.Unlock()
		go m.serveClient(raw)
	}
}

// serveClient runs one client: Noise NK, the hello, then Send records in,
// Deliver records out.
func (m *mixSide) serveClient(raw net.Conn) {
	defer m.wg.Done()
	defer func() {
		m.mu.Lock()
		delete(m.conns, raw)
		m.mu.Unlock()
		raw.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), clientHandshake)
	defer cancel()
	tc, err := transport.Server(ctx, raw, transport.Config{Pattern: transport.NK, Prologue: []byte(mixnet.ClientPrologue), LocalStatic: m.g.cfg.NoiseKey})
	if err != nil {
		m.refusedHandshake.Add(1)
		m.log.Debug("mixnet: client handshake failed", "remote", raw.RemoteAddr(), "err", err)
		return
	}
	c, err := m.hello(tc)
	cancel()
	if err != nil {
		m.refusedHello.Add(1)
		m.log.Debug("mixnet: client hello refused", "remote", raw.RemoteAddr(), "err", err)
		tc.SetWriteDeadline(time.Now().Add(time.Second))
		tc.WriteMessage(mixnet.AppendError(nil, err.Error()))
		return
	}
	defer m.unregister(c)
	go m.writeClient(c)
	var buf []byte
	for {
		tc.SetReadDeadline(time.Now().Add(ClientIdleTimeout))
		msg, err := tc.ReadMessage(buf)
		if err != nil {
			return
		}
		if !m.charge(c, len(msg)) {
			return
		}
		m.clientMessage(msg)
		buf = msg[:0]
	}
}

// hello reads and checks the client's hello and registers it.
func (m *mixSide) hello(tc *transport.Conn) (*mixClient, error) {
	tc.SetReadDeadline(time.Now().Add(clientHandshake))
	msg, err := tc.ReadMessage(nil)
	if err != nil {
		return nil, fmt.Errorf("reading hello: %w", err)
	}
	k, body, rest, err := mixnet.NextRecord(msg)
	if err != nil || k != mixnet.KindHello || len(rest) != 0 {
		return nil, fmt.Errorf("first message is not a hello")
	}
	r, proof, err := mixnet.ParseHello(body)
	if err != nil {
		return nil, err
	}
	if !mixnet.VerifyHello(m.g.cfg.NoiseKey, r, tc.HandshakeHash(), proof) {
		return nil, errors.New("hello proof does not match the recipient key")
	}
	c := &mixClient{recipient: r, conn: tc, q: make(chan mixnet.Delivery, m.cfg.ClientQueue), done: make(chan struct{})}
	if m.paid() {
		a := m.known(r)
		if a == nil || a.left.Load() <= 0 {
			m.refusedUnpaid.Add(1)
			return nil, fmt.Errorf("payment required: register a %v ticket for this key (registration role %q) first", credential.MixnetEntry, registration.RoleMixnet)
		}
		c.allowance = a
	}
	m.mu.Lock()
	old := m.clients[r]
	m.clients[r] = c
	m.mu.Unlock()
	if old != nil {
		// The same key again: a reconnect. The new channel wins.
		old.close()
	}
	tc.SetWriteDeadline(time.Now().Add(mixnet.WriteTimeout))
	if err := tc.WriteMessage(mixnet.AppendRecord(nil, mixnet.KindWelcome)); err != nil {
		m.unregister(c)
		return nil, fmt.Errorf("welcome: %w", err)
	}
	return c, nil
}

func (m *mixSide) unregister(c *mixClient) {
	m.mu.Lock()
	if m.clients[c.recipient] == c {
		delete(m.clients, c.recipient)
	}
	m.mu.Unlock()
	c.close()
}

// writeClient batches the client's deliveries into transport messages.
func (m *mixSide) writeClient(c *mixClient) {
	var msg []byte
	for {
		var d mixnet.Delivery
		select {
		case d = <-c.q:
		case <-c.done:
			return
		}
		msg = mixnet.AppendDeliver(msg[:0], &d)
	fill:
		for len(msg) < 32<<10 {
			select {
			case d = <-c.q:
				msg = mixnet.AppendDeliver(msg, &d)
			default:
				break fill
			}
		}
		if !m.charge(c, len(msg)) {
			return
		}
		c.conn.SetWriteDeadline(time.Now().Add(mixnet.WriteTimeout))
		if err := c.conn.WriteMessage(msg); err != nil {
			m.log.Debug("mixnet: write to client failed", "err", err)
			c.close()
			return
		}
	}
}

// clientMessage forwards a client's Send records to their first hop, a mix
// node of the topology (the gateway relays to nothing else).
func (m *mixSide) clientMessage(msg []byte) {
	met := m.node.Metrics()
	for len(msg) > 0 {
		k, body, rest, err := mixnet.NextRecord(msg)
		if err != nil {
			met.Drop(mixnode.DropMalformed)
			return
		}
		msg = rest
		if k != mixnet.KindSend {
			met.Drop(mixnode.DropMalformed)
			continue
		}
		met.Received(mixnode.FromClient)
		first, epoch, pkt, err := mixnet.ParseSend(body)
		if err != nil {
			met.Drop(mixnode.DropMalformed)
			continue
		}
		if d, ok := m.node.Lookup(first); !ok || !d.Has(directory.RoleMixnode) {
			met.Drop(mixnode.DropBadFirstHop)
			continue
		}
		if m.node.Forward(first, epoch, pkt) {
			m.fromClients.Add(1)
		}
	}
}

func (m *mixSide) close() error {
	m.mu.Lock()
	m.closed = true
	for c := range m.conns {
		c.Close()
	}
	for _, c := range m.clients {
		c.close()
	}
	m.mu.Unlock()
	if m.clientLn != nil {
		m.clientLn.Close()
	}
	m.wg.Wait()
	return m.node.Close()
}

func (m *mixSide) families() []metrics.Family {
	m.mu.Lock()
	clients := len(m.clients)
	m.mu.Unlock()
	lbl := func(k, v string) []metrics.Label { return []metrics.Label{{Name: k, Value: v}} }
	return append(m.node.Families(),
		metrics.One("nym_gateway_mixnet_clients", "Mixnet clients connected (hello accepted).", metrics.Gauge, float64(clients)),
		metrics.One("nym_gateway_mixnet_client_packets_total", "Sphinx packets from clients forwarded to their first mix.", metrics.Counter, float64(m.fromClients.Load())),
		metrics.Family{Name: "nym_gateway_mixnet_deliveries_total", Help: "Final-hop packets handed on, by destination.", Type: metrics.Counter, Samples: []metrics.Sample{
			{Labels: lbl("to", "client"), Value: float64(m.toClients.Load())},
			{Labels: lbl("to", "exit"), Value: float64(m.toExit.Load())},
		}},
		metrics.Family{Name: "nym_gateway_mixnet_clients_refused_total", Help: "Mixnet client connections refused, by reason.", Type: metrics.Counter, Samples: []metrics.Sample{
			{Labels: lbl("reason", "limit"), Value: float64(m.refusedLimit.Load())},
			{Labels: lbl("reason", "handshake"), Value: float64(m.refusedHandshake.Load())},
			{Labels: lbl("reason", "hello"), Value: float64(m.refusedHello.Load())},
			{Labels: lbl("reason", "unpaid"), Value: float64(m.refusedUnpaid.Load())},
		}},
		metrics.One("nym_gateway_mixnet_clients_cut_off_total", "Mixnet clients disconnected when their allowance ran out.", metrics.Counter, float64(m.cutOff.Load())),
	)
}

// Families returns the gateway's metrics for the Prometheus exposition:
// registrations, peers, flows and, with the mixnet, the Sphinx engine's and
// the mixnet clients'.
func (g *Gateway) Families() []metrics.Family {
	st := g.Stats()
	lbl := func(k, v string) []metrics.Label { return []metrics.Label{{Name: k, Value: v}} }
	fams := []metrics.Family{
		metrics.One("nym_gateway_peers", "WireGuard clients registered.", metrics.Gauge, float64(st.Peers)),
		{Name: "nym_gateway_registrations_total", Help: "Registration requests, by outcome.", Type: metrics.Counter, Samples: []metrics.Sample{
			{Labels: lbl("result", "accepted"), Value: float64(st.Registered)},
			{Labels: lbl("result", "refused"), Value: float64(st.Refused)},
			{Labels: lbl("result", "failed"), Value: float64(st.Failed)},
		}},
		{Name: "nym_gateway_flows_total", Help: "Flows forwarded, by client role.", Type: metrics.Counter, Samples: []metrics.Sample{
			{Labels: lbl("role", "entry"), Value: float64(st.EntryFlows)},
			{Labels: lbl("role", "exit"), Value: float64(st.ExitFlows)},
		}},
		metrics.One("nym_gateway_flows_refused_total", "Flows refused by the entry or exit policy.", metrics.Counter, float64(st.PolicyRefused)),
		{Name: "nym_gateway_tickets_total", Help: "Tickets presented, by outcome.", Type: metrics.Counter, Samples: []metrics.Sample{
			{Labels: lbl("result", "accepted"), Value: float64(st.TicketsAccepted)},
			{Labels: lbl("result", "refused"), Value: float64(st.TicketsRefused)},
		}},
		metrics.One("nym_gateway_ticket_serials", "Spent ticket serials on record.", metrics.Gauge, float64(st.SerialsStored)),
		metrics.One("nym_gateway_ticket_reports_pending", "Spent tickets not yet taken by every issuer.", metrics.Gauge, float64(st.ReportsPending)),
		metrics.One("nym_gateway_ticket_reported_total", "Spent tickets reported to issuers.", metrics.Counter, float64(st.Reported)),
		metrics.One("nym_gateway_peers_cut_off_total", "Peers cut off when their allowance ran out without a top-up.", metrics.Counter, float64(st.CutOff)),
	}
	if g.mix != nil {
		fams = append(fams, g.mix.families()...)
	}
	return fams
}

// paid reports whether mixnet clients must have a paid allowance: whenever
// the gateway takes tickets (only --free-pass admits them unpaid).
func (m *mixSide) paid() bool { return m.g.pay != nil && !m.g.cfg.FreePass }

// charge takes n bytes from c's allowance; when it runs out the client is
// disconnected (it should have topped up when the allowance fell below the
// grant's TopUpAt) and charge reports false.
func (m *mixSide) charge(c *mixClient, n int) bool {
	if c.allowance == nil {
		return true
	}
	if c.allowance.left.Add(-int64(n)) > 0 {
		return true
	}
	m.cutOff.Add(1)
	m.log.Info("mixnet client cut off: allowance ran out without a top-up")
	c.close()
	return false
}

// registerMixnet credits a mixnet allowance to the recipient key of a
// RoleMixnet registration (entry gateways with the mixnet only).
func (g *Gateway) registerMixnet(p registration.Peer) (*registration.Grant, error) {
	m := g.mix
	if m == nil || m.clientLn == nil {
		return nil, registration.Errorf(registration.CodeRoleNotServed, "gateway %s takes no mixnet clients", g.cfg.ID)
	}
	grant := &registration.Grant{GatewayKey: g.cfg.WireGuardKey.Public()}
	if !m.paid() {
		grant.Bandwidth = 1 << 62 // not metered
		return grant, nil
	}
	r := sphinx.Recipient(p.WireGuardKey)
	a := m.known(r)
	if len(p.Ticket) == 0 {
		if a == nil || a.left.Load() <= 0 {
			return nil, registration.Errorf(registration.CodePaymentRequired, "gateway %s requires a %v ticket", g.cfg.ID, credential.MixnetEntry)
		}
		m.mu.Lock()
		grant.Bandwidth, grant.TopUpAt = a.left.Load(), a.topUpAt
		m.mu.Unlock()
		return grant, nil
	}
	bought, err := g.pay.redeem(p.Ticket, p.Role)
	if err != nil {
		g.stats.ticketsRefused.Add(1)
		return nil, err
	}
	g.stats.tickets.Add(1)
	now := time.Now()
	m.mu.Lock()
	if a = m.allowances[r]; a == nil {
		// Forget allowances spent long ago before adding one.
		for k, o := range m.allowances {
			if left := o.left.Load(); left <= 0 && left == o.flushed && now.Sub(o.updated) > ClientIdleTimeout {
				delete(m.allowances, k)
			}
		}
		a = &mixAllowance{}
		m.allowances[r] = a
	}
	a.topUpAt, a.updated = g.pay.topUpAt(credential.MixnetEntry), now
	topUpAt := a.topUpAt
	if a.left.Load() < 0 {
		a.left.Store(0)
	}
	m.mu.Unlock()
	grant.Bandwidth, grant.TopUpAt = a.left.Add(bought), topUpAt
	if err := g.flushAllowances(); err != nil {
		g.log.Warn("writing the allowance bought (retried with the next flush)", "err", err)
	}
	g.log.Info("mixnet allowance bought", "allowance", grant.Bandwidth)
	return grant, nil
}

// known returns r's allowance: the one in memory, or the one the database
// kept (a restart in between), which it then holds in memory; nil if none.
func (m *mixSide) known(r sphinx.Recipient) *mixAllowance {
	m.mu.Lock()
	a := m.allowances[r]
	m.mu.Unlock()
	if a != nil {
		return a
	}
	rec, ok := m.g.storedAllowance(r, registration.RoleMixnet)
	if !ok {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if a = m.allowances[r]; a == nil {
		a = &mixAllowance{topUpAt: rec.TopUpAt, updated: time.Now(), flushed: rec.Left}
		a.left.Store(rec.Left)
		m.allowances[r] = a
	}
	return a
}

// takeDirty returns the allowances whose bytes left changed since they were
// last written, as written now.
func (m *mixSide) takeDirty() map[allowanceKey]allowanceRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[allowanceKey]allowanceRecord{}
	for r, a := range m.allowances {
		if left := a.left.Load(); left != a.flushed {
			out[allowanceKey{key: r, role: registration.RoleMixnet}] = allowanceRecord{Left: left, TopUpAt: a.topUpAt}
			a.flushed = left
		}
	}
	return out
}

// requeue has the next takeDirty return recs' keys again (a failed write).
func (m *mixSide) requeue(recs map[allowanceKey]allowanceRecord) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, rec := range recs {
		if a := m.allowances[sphinx.Recipient(k.key)]; a != nil && a.flushed == rec.Left {
			a.flushed = math.MinInt64 // anything but what it holds
		}
	}
}
