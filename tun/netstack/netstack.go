// Package netstack is a userspace TUN device backed by gVisor's network stack.
//
// A Stack implements golang.zx2c4.com/wireguard/tun.Device, so it can be the
// TUN of a wireguard-go device. It serves two roles:
//
//   - As an ordinary host stack (Config.Forward == nil) it owns the addresses
//     in Config.Addresses, and user-space code dials and listens through the
//     tunnel with DialContext, ListenUDP and ListenTCP. The client uses this
//     for the entry hop of fast mode.
//
//   - As a forwarding stack (Config.Forward != nil) it additionally terminates
//     TCP, UDP and ICMP echo flows addressed to any destination (promiscuous
//     mode with spoofing) and hands them to a Forwarder, which re-originates
//     them, typically from the host's own sockets (DirectForwarder). Gateways
//     use this as a userspace exit that needs no root. A PolicyForwarder in
//     front restricts which flows are carried.
//
// Packets written into the device are validated (IP version, header length,
// total length against the buffer); malformed ones are dropped and counted in
// Stats, never passed to gVisor. ICMP echo requests to foreign destinations are
// intercepted before gVisor (which does not forward them), handed to
// Forwarder.Ping asynchronously, and answered with a synthesized echo reply
// when the destination answered.
package netstack

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

const (
	// UDPIdleTimeout is how long a forwarded UDP flow lives without a
	// datagram in either direction, unless Config.UDPIdleTimeout overrides it.
	UDPIdleTimeout = 2 * time.Minute

	// DefaultMTU is used when Config.MTU is zero.
	DefaultMTU = 1420

	// BatchSize is what Stack.BatchSize reports: Read returns up to this
	// many queued packets per call (fewer if fewer are queued).
	BatchSize = 64

	nicID = 1

	// outQueueLen is the number of packets gVisor may queue for Read before
	// it drops (TCP then retransmits).
	outQueueLen = 8192

	// TCP buffer auto-tuning ranges. A larger maximum lets a single flow
	// fill a fast tunnel; see BenchmarkTCPThroughput.
	tcpBufMin     = tcp.MinBufferSize
	tcpRcvBufDef  = 1 << 20
	tcpRcvBufMax  = 8 << 20
	tcpSndBufDef  = 1 << 20
	tcpSndBufMax  = 8 << 20
	udpBufDef     = 1 << 20
	udpBufMax     = 4 << 20
	fwdRcvWnd     = tcpRcvBufDef
	fwdMaxInFlite = 512 // concurrent TCP handshakes waiting on Forwarder.DialTCP

	// maxFlows bounds open forwarded TCP+UDP flows; beyond it new flows are
	// refused (TCP RST, UDP drop) and counted in Stats.DroppedLimit.
	maxFlows = 16384
	// maxPings bounds concurrent Forwarder.Ping calls.
	maxPings = 256

	tcpDialTimeout = 15 * time.Second
	pingTimeout    = 5 * time.Second
	// refusedUDPHold is how long datagrams of a refused UDP flow are
	// silently discarded before the Forwarder is asked again.
	refusedUDPHold = 5 * time.Second
)

// Config configures a Stack.
type Config struct {
	// Addresses are the stack's own addresses (IPv4 and/or IPv6).
	Addresses []netip.Addr
	// MTU of the device; 0 means DefaultMTU.
	MTU int
	// AllowLoopback accepts packets from/to 127.0.0.0/8 and ::1 on the
	// tunnel NIC (gVisor drops such "martian" packets otherwise). The local
	// test network runs everything on loopback and needs it.
	AllowLoopback bool
	// Forward, when non-nil, makes the stack terminate flows to any
	// destination (promiscuous + spoofing) and hand them to Forward. Nil: an
	// ordinary host stack.
	Forward Forwarder
	// UDPIdleTimeout overrides the package constant UDPIdleTimeout for
	// forwarded UDP flows when positive.
	UDPIdleTimeout time.Duration
	// Logger receives debug and warning logs; nil discards them.
	Logger *slog.Logger
}

// Stats are cumulative counters of a Stack. "In" is the direction from the
// tunnel into the stack (Write), "out" from the stack to the tunnel (Read).
type Stats struct {
	PacketsIn, PacketsOut uint64
	BytesIn, BytesOut     uint64
	// DroppedMalformed counts packets rejected by Write's validation.
	DroppedMalformed uint64
	// DroppedPolicy counts flows and echo requests the Forwarder refused
	// (or failed to carry).
	DroppedPolicy uint64
	// DroppedLimit counts flows and echo requests dropped because a
	// concurrency limit was reached, and outbound packets that did not fit
	// the caller's buffer.
	DroppedLimit uint64
	// DroppedQueueFull counts outbound packets dropped because the queue
	// towards Read was full (the reader did not keep up).
	DroppedQueueFull uint64
	// FlowsOpen is the number of forwarded TCP and UDP flows currently open;
	// FlowsTotal counts every forwarded flow ever opened.
	FlowsOpen, FlowsTotal uint64
	// PingsForwarded counts echo requests answered through the Forwarder.
	PingsForwarded uint64
}

type counters struct {
	packetsIn, packetsOut    atomic.Uint64
	bytesIn, bytesOut        atomic.Uint64
	droppedMalformed         atomic.Uint64
	droppedPolicy            atomic.Uint64
	droppedLimit             atomic.Uint64
	droppedQueueFull         atomic.Uint64
	flowsOpen, flowsTotal    atomic.Int64
	pingsForwarded, pingsRun atomic.Int64
}

// Stack is a userspace network stack that is also a tun.Device.
type Stack struct {
	cfg    Config
	log    *slog.Logger
	mtu    int
	ep     *channel.Endpoint
	stack  *stack.Stack
	fwd    Forwarder
	events chan tun.Event

	hasV4, hasV6 bool
	local        map[netip.Addr]struct{}

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	// mu guards closed against in-flight Writes: Write holds it shared while
	// injecting, Close exclusively.
	mu     sync.RWMutex
	closed bool

	flowsMu sync.Mutex
	flows   map[*flowCloser]struct{}
	flowsWG sync.WaitGroup

	udpIdle time.Duration
	stats   counters
}

var _ tun.Device = (*Stack)(nil)

// New builds a Stack. The returned device is up: Events delivers tun.EventUp.
func New(cfg Config) (*Stack, error) {
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < 576 || mtu > 65535 {
		return nil, fmt.Errorf("netstack: MTU %d out of range [576, 65535]", mtu)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	forwarding := cfg.Forward != nil
	s := &Stack{
		cfg:     cfg,
		log:     log,
		mtu:     mtu,
		ep:      channel.New(outQueueLen, uint32(mtu), ""),
		fwd:     cfg.Forward,
		events:  make(chan tun.Event, 1),
		local:   make(map[netip.Addr]struct{}),
		flows:   make(map[*flowCloser]struct{}),
		udpIdle: UDPIdleTimeout,
	}
	if cfg.UDPIdleTimeout > 0 {
		s.udpIdle = cfg.UDPIdleTimeout
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.stack = stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{
			ipv4.NewProtocolWithOptions(ipv4.Options{AllowExternalLoopbackTraffic: cfg.AllowLoopback}),
			ipv6.NewProtocolWithOptions(ipv6.Options{AllowExternalLoopbackTraffic: cfg.AllowLoopback}),
		},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		// HandleLocal lets a host stack talk to its own addresses. A
		// forwarding stack must not set it: in promiscuous mode every source
		// address would look local and every packet would be dropped.
		HandleLocal: !forwarding,
	})
	fail := func(err error) (*Stack, error) {
		s.stack.Close()
		s.cancel()
		return nil, err
	}
	if err := s.configureStack(); err != nil {
		return fail(err)
	}
	if terr := s.stack.CreateNIC(nicID, &countingEndpoint{Endpoint: s.ep, drops: &s.stats.droppedQueueFull}); terr != nil {
		return fail(fmt.Errorf("netstack: create NIC: %s", terr))
	}
	for _, a := range cfg.Addresses {
		a = a.Unmap()
		if !a.IsValid() || a.IsUnspecified() {
			return fail(fmt.Errorf("netstack: invalid stack address %v", a))
		}
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto = ipv6.ProtocolNumber
			s.hasV6 = true
		} else {
			s.hasV4 = true
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddrFromSlice(a.AsSlice()).WithPrefix()}
		if terr := s.stack.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); terr != nil {
			return fail(fmt.Errorf("netstack: add address %v: %s", a, terr))
		}
		s.local[a] = struct{}{}
	}
	if s.hasV4 || forwarding {
		s.stack.AddRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: nicID})
	}
	if s.hasV6 || forwarding {
		s.stack.AddRoute(tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: nicID})
	}
	if forwarding {
		if terr := s.stack.SetPromiscuousMode(nicID, true); terr != nil {
			return fail(fmt.Errorf("netstack: promiscuous mode: %s", terr))
		}
		if terr := s.stack.SetSpoofing(nicID, true); terr != nil {
			return fail(fmt.Errorf("netstack: spoofing: %s", terr))
		}
		tf := tcp.NewForwarder(s.stack, fwdRcvWnd, fwdMaxInFlite, s.forwardTCP)
		s.stack.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
		uf := udp.NewForwarder(s.stack, s.forwardUDP)
		s.stack.SetTransportProtocolHandler(udp.ProtocolNumber, uf.HandlePacket)
	}
	s.events <- tun.EventUp
	return s, nil
}

func (s *Stack) configureStack() error {
	sack := tcpip.TCPSACKEnabled(true)
	if terr := s.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); terr != nil {
		return fmt.Errorf("netstack: enable TCP SACK: %s", terr)
	}
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcpBufMin, Default: tcpRcvBufDef, Max: tcpRcvBufMax}
	if terr := s.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv); terr != nil {
		return fmt.Errorf("netstack: TCP receive buffer range: %s", terr)
	}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: tcpBufMin, Default: tcpSndBufDef, Max: tcpSndBufMax}
	if terr := s.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &snd); terr != nil {
		return fmt.Errorf("netstack: TCP send buffer range: %s", terr)
	}
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	if terr := s.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &moderate); terr != nil {
		return fmt.Errorf("netstack: TCP receive buffer moderation: %s", terr)
	}
	if terr := s.stack.SetOption(tcpip.ReceiveBufferSizeOption{Min: stack.MinBufferSize, Default: udpBufDef, Max: udpBufMax}); terr != nil {
		return fmt.Errorf("netstack: receive buffer range: %s", terr)
	}
	if terr := s.stack.SetOption(tcpip.SendBufferSizeOption{Min: stack.MinBufferSize, Default: udpBufDef, Max: udpBufMax}); terr != nil {
		return fmt.Errorf("netstack: send buffer range: %s", terr)
	}
	return nil
}

// Name implements tun.Device.
func (s *Stack) Name() (string, error) { return "netstack", nil }

// File implements tun.Device; a userspace stack has no file.
func (s *Stack) File() *os.File { return nil }

// MTU implements tun.Device.
func (s *Stack) MTU() (int, error) { return s.mtu, nil }

// BatchSize implements tun.Device.
func (s *Stack) BatchSize() int { return BatchSize }

// Events implements tun.Device. The channel is closed by Close.
func (s *Stack) Events() <-chan tun.Event { return s.events }

// Read implements tun.Device: it blocks until the stack has at least one
// packet for the tunnel, then returns as many queued packets as there are
// buffers (up to BatchSize is useful). A packet larger than its buffer is
// dropped and counted in Stats.DroppedLimit. After Close it returns
// os.ErrClosed.
func (s *Stack) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if offset < 0 || len(sizes) < len(bufs) {
		return 0, fmt.Errorf("netstack: read: bad offset %d or %d sizes for %d buffers", offset, len(sizes), len(bufs))
	}
	n := 0
	for n == 0 {
		pkt := s.ep.ReadContext(s.ctx)
		if pkt == nil {
			return 0, os.ErrClosed
		}
		for pkt != nil {
			if s.copyOut(pkt, bufs[n], offset, &sizes[n]) {
				n++
				if n == len(bufs) {
					break
				}
			}
			pkt = s.ep.Read()
		}
	}
	return n, nil
}

// copyOut copies pkt into buf[offset:], releases pkt and reports whether it
// fit.
func (s *Stack) copyOut(pkt *stack.PacketBuffer, buf []byte, offset int, size *int) bool {
	defer pkt.DecRef()
	total := pkt.Size()
	if offset < 0 || offset > len(buf) || total > len(buf)-offset {
		s.stats.droppedLimit.Add(1)
		s.log.Debug("netstack: outbound packet does not fit read buffer", "size", total, "buf", len(buf)-offset)
		return false
	}
	w := offset
	for _, sl := range pkt.AsSlices() {
		w += copy(buf[w:], sl)
	}
	*size = total
	s.stats.packetsOut.Add(1)
	s.stats.bytesOut.Add(uint64(total))
	return true
}

// Write implements tun.Device: each packet in bufs[i][offset:] is validated
// and injected into the stack. Malformed packets are dropped and counted;
// they do not make Write fail. After Close it returns os.ErrClosed.
func (s *Stack) Write(bufs [][]byte, offset int) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, os.ErrClosed
	}
	for _, b := range bufs {
		if offset < 0 || offset > len(b) {
			s.stats.droppedMalformed.Add(1)
			continue
		}
		s.writeOne(b[offset:])
	}
	return len(bufs), nil
}

func (s *Stack) writeOne(pkt []byte) {
	info, ok := parsePacket(pkt)
	if !ok {
		s.stats.droppedMalformed.Add(1)
		return
	}
	pkt = pkt[:info.totalLen]
	if s.fwd != nil && info.isICMP && !s.isLocal(info.dst) {
		s.handleForeignICMP(pkt, info)
		return
	}
	s.countIn(pkt)
	s.inject(pkt, info.v6)
}

func (s *Stack) countIn(pkt []byte) {
	s.stats.packetsIn.Add(1)
	s.stats.bytesIn.Add(uint64(len(pkt)))
}

// inject hands a validated packet to gVisor. The payload is copied, so the
// caller may reuse pkt.
func (s *Stack) inject(pkt []byte, v6 bool) {
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	if v6 {
		s.ep.InjectInbound(ipv6.ProtocolNumber, pb)
	} else {
		s.ep.InjectInbound(ipv4.ProtocolNumber, pb)
	}
	pb.DecRef()
}

// writeOutbound queues a packet built outside gVisor (an echo reply) for
// Read.
func (s *Stack) writeOutbound(pkt []byte) {
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	defer pb.DecRef()
	var list stack.PacketBufferList
	list.PushBack(pb)
	if n, _ := s.ep.WritePackets(list); n == 0 {
		s.stats.droppedQueueFull.Add(1)
	}
}

// countingEndpoint counts the packets channel.Endpoint drops silently when
// its queue is full.
type countingEndpoint struct {
	*channel.Endpoint
	drops *atomic.Uint64
}

// WritePackets implements stack.LinkEndpoint.
func (e *countingEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n, err := e.Endpoint.WritePackets(pkts)
	if err == nil && n < pkts.Len() {
		e.drops.Add(uint64(pkts.Len() - n))
	}
	return n, err
}

func (s *Stack) isLocal(a netip.Addr) bool {
	_, ok := s.local[a]
	return ok
}

// Close shuts the stack down: readers are unblocked with os.ErrClosed, the
// Events channel is closed, forwarded flows are torn down. It is idempotent.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	s.cancel()
	s.flowsMu.Lock()
	for f := range s.flows {
		f.close()
	}
	s.flowsMu.Unlock()
	s.stack.Close()
	if terr := s.stack.RemoveNIC(nicID); terr != nil {
		s.log.Debug("netstack: remove NIC", "err", terr.String())
	}
	s.ep.Close()
	s.flowsWG.Wait()
	s.stack.Wait()
	close(s.events)
	return nil
}

// Stats returns a snapshot of the counters.
func (s *Stack) Stats() Stats {
	c := &s.stats
	return Stats{
		PacketsIn:        c.packetsIn.Load(),
		PacketsOut:       c.packetsOut.Load(),
		BytesIn:          c.bytesIn.Load(),
		BytesOut:         c.bytesOut.Load(),
		DroppedMalformed: c.droppedMalformed.Load(),
		DroppedPolicy:    c.droppedPolicy.Load(),
		DroppedLimit:     c.droppedLimit.Load(),
		DroppedQueueFull: c.droppedQueueFull.Load(),
		FlowsOpen:        uint64(max(c.flowsOpen.Load(), 0)),
		FlowsTotal:       uint64(c.flowsTotal.Load()),
		PingsForwarded:   uint64(c.pingsForwarded.Load()),
	}
}

// Addresses returns the stack's own addresses.
func (s *Stack) Addresses() []netip.Addr {
	out := make([]netip.Addr, 0, len(s.local))
	for _, a := range s.cfg.Addresses {
		if a = a.Unmap(); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
