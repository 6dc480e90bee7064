package netstack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Flow identifies one forwarded flow as seen inside the tunnel: Src is the
// tunnel peer's side, Dst the destination it addressed. For ICMP, ports are 0.
type Flow struct{ Src, Dst netip.AddrPort }

func (f Flow) String() string { return f.Src.String() + "->" + f.Dst.String() }

// Forwarder decides and carries forwarded flows.
//
// Methods are called from stack goroutines and must not block for longer
// than a connection attempt; the context carries the deadline. Return an
// error to refuse the flow: TCP is answered with RST before the handshake
// completes (the stack dials upstream first, then accepts), UDP datagrams are
// dropped, ICMP echo requests go unanswered.
type Forwarder interface {
	// DialTCP returns the upstream connection to splice with the tunnel
	// side of the flow.
	DialTCP(ctx context.Context, f Flow) (net.Conn, error)
	// DialUDP returns a connected UDP socket. Datagrams are relayed both
	// ways; the flow is closed after UDPIdleTimeout without traffic.
	DialUDP(ctx context.Context, f Flow) (net.Conn, error)
	// Ping sends an echo request with payload to f.Dst and returns nil when
	// the destination answered; the stack then writes the echo reply into
	// the tunnel.
	Ping(ctx context.Context, f Flow, payload []byte) error
}

// flowCloser tears down one forwarded flow (or in-flight ping) on Close.
type flowCloser struct {
	once sync.Once
	fn   func()
}

func (c *flowCloser) close() { c.once.Do(c.fn) }

// track registers c so that Close tears it down and waits for it. It
// returns false when the stack is closing; the caller must then not start.
func (s *Stack) track(c *flowCloser) bool {
	s.flowsMu.Lock()
	defer s.flowsMu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.flows[c] = struct{}{}
	s.flowsWG.Add(1)
	return true
}

func (s *Stack) untrack(c *flowCloser) {
	s.flowsMu.Lock()
	delete(s.flows, c)
	s.flowsMu.Unlock()
	s.flowsWG.Done()
}

func addrPort(a tcpip.Address, port uint16) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(ip.Unmap(), port)
}

// flowOf converts a transport endpoint ID of an inbound packet to a Flow.
func flowOf(id stack.TransportEndpointID) Flow {
	return Flow{Src: addrPort(id.RemoteAddress, id.RemotePort), Dst: addrPort(id.LocalAddress, id.LocalPort)}
}

// admit checks the limits common to new TCP and UDP flows.
func (s *Stack) admit(f Flow) bool {
	if s.isLocal(f.Dst.Addr()) || !forwardable(f.Dst.Addr()) {
		// Flows to the stack's own addresses are served by its listeners
		// only; nothing listens here, so refuse.
		s.stats.droppedPolicy.Add(1)
		return false
	}
	if s.stats.flowsOpen.Load() >= maxFlows {
		s.stats.droppedLimit.Add(1)
		s.log.Warn("netstack: forwarded flow limit reached", "flow", f.String(), "limit", maxFlows)
		return false
	}
	return true
}

func (s *Stack) flowOpened() {
	s.stats.flowsOpen.Add(1)
	s.stats.flowsTotal.Add(1)
}

func (s *Stack) flowClosed() { s.stats.flowsOpen.Add(-1) }

// forwardTCP runs on its own goroutine (tcp.Forwarder starts one per SYN).
func (s *Stack) forwardTCP(r *tcp.ForwarderRequest) {
	f := flowOf(r.ID())
	if !s.admit(f) {
		r.Complete(true)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, tcpDialTimeout)
	up, err := s.fwd.DialTCP(ctx, f)
	cancel()
	if err == nil && up == nil {
		err = errors.New("forwarder returned no connection")
	}
	if err != nil {
		s.stats.droppedPolicy.Add(1)
		s.log.Debug("netstack: TCP flow refused", "flow", f.String(), "err", err)
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		r.Complete(true)
		up.Close()
		s.log.Debug("netstack: TCP handshake with tunnel peer failed", "flow", f.String(), "err", terr.String())
		return
	}
	r.Complete(false)
	ep.SocketOptions().SetKeepAlive(true)
	idle := tcpip.KeepaliveIdleOption(2 * time.Minute)
	ep.SetSockOpt(&idle)
	intvl := tcpip.KeepaliveIntervalOption(30 * time.Second)
	ep.SetSockOpt(&intvl)
	down := gonet.NewTCPConn(&wq, ep)
	abortDown := func() {
		// Linger with a zero timeout makes Close send RST.
		ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: true})
		down.Close()
	}
	abortUp := func() {
		if tc, ok := up.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		up.Close()
	}

	fc := &flowCloser{fn: func() { down.Close(); up.Close() }}
	if !s.track(fc) {
		fc.close()
		return
	}
	s.flowOpened()
	s.log.Debug("netstack: TCP flow open", "flow", f.String())
	defer func() {
		fc.close()
		s.flowClosed()
		s.untrack(fc)
		s.log.Debug("netstack: TCP flow closed", "flow", f.String())
	}()
	splice(down, up, abortDown, abortUp)
}

// splice copies both ways until both directions ended, propagating
// half-closes (EOF on one side becomes CloseWrite on the other). An error in
// either direction, such as a reset, aborts both sides, so that a reset
// upstream reaches the tunnel peer as a reset rather than a clean close.
func splice(a, b net.Conn, abortA, abortB func()) {
	var once sync.Once
	abort := func() { once.Do(func() { abortA(); abortB() }) }
	var wg sync.WaitGroup
	wg.Add(1)
	cp := func(dst, src net.Conn) {
		if _, err := io.Copy(dst, src); err != nil {
			abort()
			return
		}
		// Without CloseWrite the half-close cannot be passed on; the flow
		// then ends when the other direction does.
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() != nil {
			abort()
		}
	}
	go func() {
		defer wg.Done()
		cp(a, b)
	}()
	cp(b, a)
	wg.Wait()
}

// forwardUDP runs synchronously on the packet-processing path, so it only
// creates the tunnel-side endpoint (which captures the first datagram) and
// leaves the upstream dial to a goroutine.
func (s *Stack) forwardUDP(r *udp.ForwarderRequest) {
	f := flowOf(r.ID())
	if !s.admit(f) {
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		s.log.Debug("netstack: UDP endpoint for flow", "flow", f.String(), "err", terr.String())
		return
	}
	down := gonet.NewUDPConn(&wq, ep)
	fc := &flowCloser{}
	var up atomic.Pointer[net.Conn]
	fc.fn = func() {
		down.Close()
		if c := up.Load(); c != nil {
			(*c).Close()
		}
	}
	if !s.track(fc) {
		down.Close()
		return
	}
	s.flowOpened()
	go s.relayUDP(f, down, fc, &up)
}

func (s *Stack) relayUDP(f Flow, down *gonet.UDPConn, fc *flowCloser, upp *atomic.Pointer[net.Conn]) {
	defer func() {
		fc.close()
		s.flowClosed()
		s.untrack(fc)
		s.log.Debug("netstack: UDP flow closed", "flow", f.String())
	}()
	ctx, cancel := context.WithTimeout(s.ctx, tcpDialTimeout)
	up, err := s.fwd.DialUDP(ctx, f)
	cancel()
	if err == nil && up == nil {
		err = errors.New("forwarder returned no connection")
	}
	if err != nil {
		s.stats.droppedPolicy.Add(1)
		s.log.Debug("netstack: UDP flow refused", "flow", f.String(), "err", err)
		// Keep the tunnel-side endpoint for a while so that the flow's
		// further datagrams are discarded here rather than asking the
		// Forwarder again for each one.
		down.SetReadDeadline(time.Now().Add(refusedUDPHold))
		buf := make([]byte, 64) // datagrams are discarded; truncation is fine
		for first := true; ; first = false {
			if _, err := down.Read(buf); err != nil {
				return
			}
			if !first { // the first datagram was counted with the refusal
				s.stats.droppedPolicy.Add(1)
			}
		}
	}
	upp.Store(&up)
	if s.ctx.Err() != nil {
		up.Close()
		return
	}
	s.log.Debug("netstack: UDP flow open", "flow", f.String())

	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	relay := func(dst, src net.Conn) {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if errors.Is(err, syscall.ECONNREFUSED) {
				// An ICMP port unreachable reported on the connected
				// upstream socket: the flow may still recover.
				continue
			}
			if err != nil {
				fc.close()
				return
			}
			last.Store(time.Now().UnixNano())
			if _, err := dst.Write(buf[:n]); err != nil {
				// A datagram is lost, not the flow: ICMP errors upstream
				// (port unreachable) surface as write errors on connected
				// sockets. Once the flow is torn down the next Read fails.
				s.log.Debug("netstack: UDP relay write", "flow", f.String(), "err", err)
			}
		}
	}
	go relay(up, down)
	go relay(down, up)
	go func() {
		t := time.NewTimer(s.udpIdle)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				idle := time.Since(time.Unix(0, last.Load()))
				if idle >= s.udpIdle {
					fc.close()
					return
				}
				t.Reset(s.udpIdle - idle)
			}
		}
	}()
	wg.Wait()
	close(done)
}

// handleForeignICMP deals with an ICMP packet written into a forwarding
// stack for a destination that is not the stack's own. Echo requests are
// answered through Forwarder.Ping; other messages (errors about forwarded
// flows) go to gVisor. Fragmented ICMP is dropped, as gVisor would answer a
// reassembled echo request itself.
func (s *Stack) handleForeignICMP(pkt []byte, info pktInfo) {
	msg, ok := echoRequest(pkt, info)
	if !ok && !info.fragment && info.l4off > 0 && info.l4off < info.totalLen {
		t := pkt[info.l4off]
		if (!info.v6 && t == icmpv4EchoRequest) || (info.v6 && t == icmpv6EchoRequest) {
			// An echo request that failed validation.
			s.stats.droppedMalformed.Add(1)
			return
		}
	}
	s.countIn(pkt)
	if info.fragment {
		s.stats.droppedPolicy.Add(1)
		return
	}
	if !ok {
		s.inject(pkt, info.v6)
		return
	}
	if !forwardable(info.dst) {
		s.stats.droppedPolicy.Add(1)
		return
	}
	if s.stats.pingsRun.Load() >= maxPings {
		s.stats.droppedLimit.Add(1)
		return
	}
	f := Flow{Src: netip.AddrPortFrom(info.src, 0), Dst: netip.AddrPortFrom(info.dst, 0)}
	// Copy what the goroutine needs: pkt belongs to the caller.
	req := append([]byte(nil), msg...)
	ctx, cancel := context.WithTimeout(s.ctx, pingTimeout)
	fc := &flowCloser{fn: cancel}
	if !s.track(fc) {
		cancel()
		return
	}
	s.stats.pingsRun.Add(1)
	go func() {
		defer func() {
			cancel()
			s.stats.pingsRun.Add(-1)
			s.untrack(fc)
		}()
		if err := s.fwd.Ping(ctx, f, req[icmpHeader:]); err != nil {
			s.stats.droppedPolicy.Add(1)
			s.log.Debug("netstack: echo request not answered", "flow", f.String(), "err", err)
			return
		}
		s.stats.pingsForwarded.Add(1)
		s.writeOutbound(echoReply(info, req))
	}()
}
