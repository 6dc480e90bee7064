// Package iprouter is the IP packet router of an exit gateway: the far end
// of mixnet mode. The gateway hands it the Sphinx packets for which it was
// the final hop (gateway.ExitHandler); the router speaks package ipr with
// the clients that sent them.
//
// For every forward fragment it first sends the fragment's SURB-ACK on to
// its first hop, then puts messages together per session (a random tag the
// client chose) and handles their items: Open gives the session an IPv4 and
// an IPv6 address from its pools (10.0.0.0/16 and fc00::/112 by default,
// NymVPN's; the router itself is …1 of each and answers DNS there), IP
// packets from the session's own addresses go into the exit device
// (gateway.ExitDevice: the gateway's exit policy, its userspace forwarding
// stack or, as root, a kernel TUN with nftables masquerade), SURBs are kept
// for replies, Ping is answered at once.
//
// The mixes reorder packets, and TCP takes reordering for loss: the router
// writes a client's IP packets in the order of its messages, holding those
// that come early for up to the Open's Hold (ipr.Reorderer). Packets the
// device sends to a client's address are bundled, as NymVPN's router does,
// into reply messages (IP items with their lengths) that fill their reply
// fragments (2039 bytes each, up to 8): a bundle leaves when no MTU-sized
// packet would fit in what is left of its last fragment, or after the
// bundling delay the client's Open asked for (FlushDelay by default). Every reply uses one of the client's
// SURBs, so the router never learns the client's gateway; each reply tells
// the client how many SURBs are left. When only the reserve is left the
// router asks for more (NeedSURBs, at most every NeedSURBsEvery) and holds
// the client's packets, up to a bound, until they come. SURBs built for an
// epoch older than the previous one are dead (their keys are gone) and
// dropped. A session the client has not sent anything on for IdleTimeout is
// freed with its addresses.
//
// With Config.Pay (an exit gateway that takes tickets) sessions pay with
// mixnet-exit tickets: the Open carries one, or the session is refused
// (Error ErrPaymentRequired; a ticket Pay refuses gets ErrTicketRefused with
// its reason). Each ticket buys an allowance of IP bytes, counted both ways
// as the packets pass; when what is left falls below the top-up level the
// router sends NeedTicket (once per crossing, again every NeedTicketEvery
// while no ticket comes), and a Ticket item extends the allowance. At zero
// the session's packets are dropped and counted (Stats.Unpaid), and the
// client is told once (ErrPaymentRequired), until a ticket comes.
package iprouter

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/mixnet/ipr"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/gateway"
	"github.com/nymvpn/nymvpn/node/mixnode"
	"github.com/nymvpn/nymvpn/sphinx"
	"github.com/nymvpn/nymvpn/tun/netstack"
)

// Defaults, NymVPN's where it has them.
var (
	DefaultPool4 = netip.MustParsePrefix("10.0.0.0/16")
	DefaultPool6 = netip.MustParsePrefix("fc00::/112")
)

const (
	// DefaultMTU is the largest IP packet a client may send: with its item
	// header it fits one forward fragment (ipr.ForwardData) with room for a
	// small packet beside it.
	DefaultMTU = 1500
	// DefaultFlushDelay is how long a bundle waits for more packets (NymVPN:
	// 20 ms) unless the client's Open asks for another delay.
	DefaultFlushDelay = 20 * time.Millisecond
	// DefaultHold is how long the client's IP packets wait for those of
	// earlier messages unless its Open says.
	DefaultHold = 100 * time.Millisecond
	// DefaultIdleTimeout frees a session that sent nothing for so long
	// (clients ping every second).
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultMaxSURBs bounds the SURBs held for one session.
	DefaultMaxSURBs = 4096
	// DefaultSURBReserve SURBs are kept for control replies (Pong, NeedSURBs,
	// Welcome) when the client's data has used the rest.
	DefaultSURBReserve = 4
	// DefaultHeld bounds the bytes of packets held for a client without
	// SURBs; older ones are dropped first.
	DefaultHeld = 256 << 10
	// NeedSURBsEvery is the shortest interval between two requests for SURBs.
	NeedSURBsEvery = 200 * time.Millisecond
	// NeedTicketEvery is the shortest interval between two requests for a
	// ticket while the session's allowance stays below the top-up level.
	NeedTicketEvery = 5 * time.Second
	// inQueue bounds fragments waiting for a worker.
	inQueue = 4096
	// unopenedIdle frees a session that never opened after so long.
	unopenedIdle = 30 * time.Second
)

// Config configures a router.
type Config struct {
	// Forward sends a ready Sphinx packet built for epoch to the node next:
	// the gateway's mixnode.Node.Forward. Acks and replies leave through it.
	Forward func(next sphinx.NodeID, epoch uint64, pkt []byte) bool
	// EpochLength is the directory's epoch length: SURBs of epochs before the
	// previous one are dropped.
	EpochLength time.Duration
	// Pool4 and Pool6 hold the clients' addresses (default DefaultPool4 and
	// DefaultPool6).
	Pool4, Pool6 netip.Prefix
	MTU          int
	// Policy is the exit policy (package gateway's, with its kernel mode and
	// DNS upstream).
	Policy gateway.ExitPolicy
	// FlushDelay (default DefaultFlushDelay; negative: none) bounds how long
	// a reply bundle waits to fill.
	FlushDelay  time.Duration
	IdleTimeout time.Duration
	MaxSURBs    int
	SURBReserve int
	// Pay, if set, makes sessions pay with mixnet-exit tickets: it redeems
	// one (from an Open or a Ticket item, never empty) and returns the IP
	// bytes it buys and the allowance below which the router asks for the
	// next ticket, or an error whose text goes to the client (Error
	// ErrTicketRefused; keep it free of secrets). It runs on the worker
	// handling the session's message, which waits for it. Nil: sessions
	// are free and not metered.
	Pay func(ticket []byte) (bandwidth, topUpAt int64, err error)
	// Now is the clock of epochs and idleness (tests); default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Router is a running IP packet router.
type Router struct {
	cfg  Config
	dev  *gateway.ExitDevice
	geo  *sphinx.Geometry
	log  *slog.Logger
	in   chan []byte
	done chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	sessions map[ipr.Tag]*session
	byAddr   map[netip.Addr]*session
	// free address indexes: the next never used, and those given back.
	nextIndex, maxIndex uint32
	freed               []uint32

	closeOnce sync.Once
	st        counters
}

type counters struct {
	fragments, malformed, inDropped, acks, messages       atomic.Uint64
	ipIn, ipOut, bytesIn, bytesOut, spoofed, unknown      atomic.Uint64
	replies, surbsIn, surbsUsed, surbsExpired, surbsExtra atomic.Uint64
	needSURBs, held, heldDropped, opened, freedIdle       atomic.Uint64
	refused, pings, duplicates                            atomic.Uint64
	tickets, ticketsRefused, needTickets, unpaid          atomic.Uint64
	paymentRequired                                       atomic.Uint64
}

// Stats is a snapshot of a router's counters.
type Stats struct {
	Sessions int
	// Fragments received, Malformed ones, InDropped because the input queue
	// was full, Acks sent on, Messages put together, Duplicates (fragments
	// that added nothing).
	Fragments, Malformed, InDropped, Acks, Messages, Duplicates uint64
	// IP packets and bytes from clients (In) and to them (Out); Spoofed
	// packets with a source that is not the session's; Unknown messages for
	// sessions the router does not have.
	IPIn, IPOut, BytesIn, BytesOut, Spoofed, Unknown uint64
	// Replies sent (one SURB each); SURBs received, used, dropped as expired
	// or beyond MaxSURBs.
	Replies, SURBsIn, SURBsUsed, SURBsExpired, SURBsExtra uint64
	// NeedSURBs requests sent; packets Held for want of SURBs and dropped
	// from that hold.
	NeedSURBs, Held, HeldDropped uint64
	// Sessions Opened, freed for idleness, Refused (pool, payment); Pings
	// answered.
	Opened, FreedIdle, Refused, Pings uint64
	// Payment (Config.Pay): Tickets accepted and TicketsRefused (in Opens
	// and Ticket items); NeedTickets requests sent; Unpaid IP packets
	// dropped, both ways, because their session's allowance ran out;
	// PaymentRequired errors sent for that (once per exhaustion) or for an
	// Open without a ticket.
	Tickets, TicketsRefused, NeedTickets, Unpaid, PaymentRequired uint64
	Device                                                        gateway.ExitDeviceStats
}

// New starts a router and its exit device.
func New(cfg Config) (*Router, error) {
	if cfg.Forward == nil {
		return nil, errors.New("iprouter: no Forward: the router sends acks and replies through the gateway's Sphinx engine")
	}
	if cfg.EpochLength <= 0 {
		return nil, errors.New("iprouter: no epoch length")
	}
	if !cfg.Pool4.IsValid() {
		cfg.Pool4 = DefaultPool4
	}
	if !cfg.Pool6.IsValid() {
		cfg.Pool6 = DefaultPool6
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < 1280 || ipr.ItemLength(cfg.MTU) > ipr.ForwardData {
		return nil, fmt.Errorf("iprouter: MTU %d: want 1280..%d (one packet per forward fragment)", cfg.MTU, ipr.ForwardData-ipr.ItemHeaderLength)
	}
	if cfg.FlushDelay == 0 {
		cfg.FlushDelay = DefaultFlushDelay
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxSURBs <= 0 {
		cfg.MaxSURBs = DefaultMaxSURBs
	}
	if cfg.SURBReserve <= 0 {
		cfg.SURBReserve = DefaultSURBReserve
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("part", "iprouter")
	dev, err := gateway.NewExitDevice(gateway.ExitDeviceConfig{Pool4: cfg.Pool4, Pool6: cfg.Pool6, MTU: cfg.MTU, Policy: cfg.Policy, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("iprouter: %w", err)
	}
	hosts4 := uint64(1) << (32 - cfg.Pool4.Masked().Bits())
	hosts6 := uint64(1) << min(32, 128-cfg.Pool6.Masked().Bits())
	r := &Router{
		cfg: cfg, dev: dev, geo: sphinx.RegularGeometry(), log: log,
		in: make(chan []byte, inQueue), done: make(chan struct{}),
		sessions: map[ipr.Tag]*session{}, byAddr: map[netip.Addr]*session{},
		// .0 is the network, .1 the router, the last the IPv4 broadcast.
		nextIndex: 2, maxIndex: uint32(min(hosts4, hosts6) - 2),
	}
	workers := 2
	r.wg.Add(workers + 2)
	for range workers {
		go r.worker()
	}
	go r.readLoop()
	go r.janitor()
	log.Info("IP packet router up", "pools", []netip.Prefix{cfg.Pool4, cfg.Pool6}, "router", []netip.Addr{dev.Addr4, dev.Addr6},
		"mtu", cfg.MTU, "kernel_tun", dev.Kernel(), "flush_delay", cfg.FlushDelay)
	return r, nil
}

// Addrs are the router's own addresses: clients' DNS servers.
func (r *Router) Addrs() []netip.Addr { return []netip.Addr{r.dev.Addr4, r.dev.Addr6} }

// KernelTUN is the exit device's kernel TUN, or "" in userspace mode.
func (r *Router) KernelTUN() string { return r.dev.Kernel() }

// Deliver implements gateway.ExitHandler: it queues the packet's payload
// for the workers, or drops it when they are behind.
func (r *Router) Deliver(d *mixnode.Delivery) {
	if d.IsReply {
		r.st.malformed.Add(1)
		return
	}
	b := append(make([]byte, 0, len(d.Payload)), d.Payload...)
	select {
	case r.in <- b:
	default:
		r.st.inDropped.Add(1)
	}
}

// Stats returns the router's counters.
func (r *Router) Stats() Stats {
	r.mu.Lock()
	n := len(r.sessions)
	r.mu.Unlock()
	s := &r.st
	return Stats{
		Sessions: n, Fragments: s.fragments.Load(), Malformed: s.malformed.Load(), InDropped: s.inDropped.Load(),
		Acks: s.acks.Load(), Messages: s.messages.Load(), Duplicates: s.duplicates.Load(),
		IPIn: s.ipIn.Load(), IPOut: s.ipOut.Load(), BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(),
		Spoofed: s.spoofed.Load(), Unknown: s.unknown.Load(),
		Replies: s.replies.Load(), SURBsIn: s.surbsIn.Load(), SURBsUsed: s.surbsUsed.Load(),
		SURBsExpired: s.surbsExpired.Load(), SURBsExtra: s.surbsExtra.Load(),
		NeedSURBs: s.needSURBs.Load(), Held: s.held.Load(), HeldDropped: s.heldDropped.Load(),
		Opened: s.opened.Load(), FreedIdle: s.freedIdle.Load(), Refused: s.refused.Load(), Pings: s.pings.Load(),
		Tickets: s.tickets.Load(), TicketsRefused: s.ticketsRefused.Load(), NeedTickets: s.needTickets.Load(),
		Unpaid: s.unpaid.Load(), PaymentRequired: s.paymentRequired.Load(),
		Device: r.dev.Stats(),
	}
}

// Close stops the router and its device (undoing the kernel exit).
func (r *Router) Close() error {
	var err error
	r.closeOnce.Do(func() {
		close(r.done)
		err = r.dev.Close()
		r.wg.Wait()
		r.mu.Lock()
		for _, s := range r.sessions {
			s.mu.Lock()
			s.closed = true
			s.stopTimers()
			s.mu.Unlock()
		}
		r.mu.Unlock()
	})
	return err
}

func (r *Router) worker() {
	defer r.wg.Done()
	for {
		select {
		case b := <-r.in:
			r.fragment(b)
		case <-r.done:
			return
		}
	}
}

// fragment handles one forward fragment: its ack first, then reassembly.
func (r *Router) fragment(b []byte) {
	r.st.fragments.Add(1)
	f, err := ipr.ParseForward(b)
	if err != nil {
		r.st.malformed.Add(1)
		r.log.Debug("malformed forward fragment", "err", err)
		return
	}
	if r.cfg.Forward(f.Ack.FirstHop, f.Ack.Epoch, f.Ack.Packet) {
		r.st.acks.Add(1)
	}
	now := r.cfg.Now()
	s := r.session(f.Tag, now)
	if s == nil {
		r.st.unknown.Add(1)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastSeen = now
	msg, dup, err := s.reasm.Add(f.MsgID, f.Index, f.Count, f.Data, now)
	switch {
	case err != nil:
		r.st.malformed.Add(1)
		return
	case dup:
		r.st.duplicates.Add(1)
		return
	case msg == nil:
		return
	}
	r.st.messages.Add(1)
	s.message(f.MsgID, msg)
}

// session returns the session of tag, made (not yet open) if new; nil when
// the router holds as many sessions as it has addresses.
func (r *Router) session(tag ipr.Tag, now time.Time) *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sessions[tag]
	if s == nil {
		if len(r.sessions) > int(r.maxIndex) {
			return nil
		}
		s = &session{r: r, tag: tag, lastSeen: now}
		r.sessions[tag] = s
	}
	return s
}

// readLoop reads what the exit device sends to clients and queues it for
// their sessions.
func (r *Router) readLoop() {
	defer r.wg.Done()
	n := r.dev.BatchSize()
	bufs := make([][]byte, n)
	sizes := make([]int, n)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	touched := map[*session]bool{}
	for {
		k, err := r.dev.Read(bufs, sizes, 0)
		for i := range k {
			pkt := bufs[i][:sizes[i]]
			_, dst, ok := netstack.PacketAddrs(pkt)
			if !ok {
				continue
			}
			r.mu.Lock()
			s := r.byAddr[dst]
			r.mu.Unlock()
			if s == nil {
				continue
			}
			s.mu.Lock()
			s.queue(pkt)
			s.mu.Unlock()
			touched[s] = true
		}
		for s := range touched {
			s.mu.Lock()
			s.pump(false)
			s.mu.Unlock()
			delete(touched, s)
		}
		if err != nil && k == 0 {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			select {
			case <-r.done:
				return
			default:
			}
			r.log.Debug("exit device read", "err", err)
		}
	}
}

// janitor frees idle sessions.
func (r *Router) janitor() {
	defer r.wg.Done()
	t := time.NewTicker(min(r.cfg.IdleTimeout/4, 30*time.Second))
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		now := r.cfg.Now()
		r.mu.Lock()
		var idle []*session
		for _, s := range r.sessions {
			idle = append(idle, s)
		}
		r.mu.Unlock()
		for _, s := range idle {
			s.mu.Lock()
			limit := r.cfg.IdleTimeout
			if !s.v4.IsValid() {
				// Never opened: fragments of a stranger, or a lost Open.
				limit = min(limit, unopenedIdle)
			}
			old := now.Sub(s.lastSeen) > limit
			s.mu.Unlock()
			if old {
				r.free(s)
				r.st.freedIdle.Add(1)
			}
		}
	}
}

// epochOK reports whether a SURB built for epoch can still be used: its
// keys live through the next epoch.
func (r *Router) epochOK(epoch uint64) bool {
	cur, _ := directory.EpochAt(r.cfg.Now(), r.cfg.EpochLength)
	return epoch+1 >= cur
}

// allocate gives a session addresses: the wanted ones if free and in the
// pools, else the next free pair.
func (r *Router) allocate(s *session, want4, want6 netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if want := r.indexOf(want4, want6); want != 0 && r.byAddr[want4] == nil && r.byAddr[want6] == nil {
		r.claim(want)
		return r.bind(s, want)
	}
	var idx uint32
	switch {
	case len(r.freed) > 0:
		idx = r.freed[len(r.freed)-1]
		r.freed = r.freed[:len(r.freed)-1]
	case r.nextIndex <= r.maxIndex:
		idx = r.nextIndex
		r.nextIndex++
	default:
		return errors.New("no free address")
	}
	for r.byAddr[addrAt(r.cfg.Pool4, idx)] != nil { // taken by a wanted pair
		if r.nextIndex > r.maxIndex {
			return errors.New("no free address")
		}
		idx = r.nextIndex
		r.nextIndex++
	}
	return r.bind(s, idx)
}

// indexOf returns the pool index of a wanted address pair, or 0.
func (r *Router) indexOf(a4, a6 netip.Addr) uint32 {
	if !a4.Is4() || !a6.Is6() || !r.cfg.Pool4.Contains(a4) || !r.cfg.Pool6.Contains(a6) {
		return 0
	}
	i4 := offset(r.cfg.Pool4, a4)
	if i4 < 2 || i4 > uint64(r.maxIndex) || offset(r.cfg.Pool6, a6) != i4 {
		return 0
	}
	return uint32(i4)
}

// claim takes idx out of the free list (or moves nextIndex past it).
func (r *Router) claim(idx uint32) {
	for i, f := range r.freed {
		if f == idx {
			r.freed = append(r.freed[:i], r.freed[i+1:]...)
			return
		}
	}
	for r.nextIndex <= idx {
		if r.nextIndex != idx {
			r.freed = append(r.freed, r.nextIndex)
		}
		r.nextIndex++
	}
}

func (r *Router) bind(s *session, idx uint32) error {
	s.v4, s.v6 = addrAt(r.cfg.Pool4, idx), addrAt(r.cfg.Pool6, idx)
	r.byAddr[s.v4], r.byAddr[s.v6] = s, s
	s.index = idx
	return nil
}

// release gives back the addresses allocate gave s (the Open was then
// refused).
func (r *Router) release(s *session) {
	r.mu.Lock()
	if r.byAddr[s.v4] == s {
		delete(r.byAddr, s.v4)
		delete(r.byAddr, s.v6)
		r.freed = append(r.freed, s.index)
	}
	s.v4, s.v6, s.index = netip.Addr{}, netip.Addr{}, 0
	r.mu.Unlock()
}

// free forgets a session and gives its addresses back.
func (r *Router) free(s *session) {
	r.mu.Lock()
	if r.sessions[s.tag] == s {
		delete(r.sessions, s.tag)
		if s.v4.IsValid() {
			delete(r.byAddr, s.v4)
			delete(r.byAddr, s.v6)
			r.freed = append(r.freed, s.index)
		}
	}
	r.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.stopTimers()
	s.mu.Unlock()
}

// addrAt is the address at index i of prefix p.
func addrAt(p netip.Prefix, i uint32) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for k := len(b) - 1; k >= 0 && i > 0; k-- {
		v := uint32(b[k]) + i&0xff
		b[k] = byte(v)
		i = i>>8 + v>>8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// offset is a's index in p (the low 32 bits of the difference).
func offset(p netip.Prefix, a netip.Addr) uint64 {
	x, y := p.Masked().Addr().AsSlice(), a.AsSlice()
	var d uint64
	for k := max(0, len(x)-4); k < len(x); k++ {
		d = d<<8 | uint64(y[k]-x[k])
	}
	return d
}

// parseSURB decodes a SURB item.
func (r *Router) parseSURB(body []byte) (*mixnet.SURB, error) {
	return mixnet.ParseSURB(r.geo, body)
}
