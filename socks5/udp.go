package socks5

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// udpResolveTimeout bounds the resolution of one destination name.
const udpResolveTimeout = 10 * time.Second

// maxReadErrors is how many consecutive failed reads a relay loop
// tolerates before ending the association. Some stacks report ICMP errors
// on unconnected UDP sockets as read errors (Windows: WSAECONNRESET), which
// must not kill the association.
const maxReadErrors = 64

// udpCacheSize bounds the per-association name cache.
const (
	udpCacheSize = 256
	udpCacheTTL  = time.Minute
)

// handleAssociate serves UDP ASSOCIATE: it opens a relay socket on the IP
// the control connection arrived on and a tunnel-side socket, replies with
// the relay address and relays until the control connection closes.
func (s *Server) handleAssociate(ctx context.Context, c net.Conn, req request, hsTimeout time.Duration, log *slog.Logger) error {
	client := c.RemoteAddr().String()
	if s.ListenPacket == nil {
		s.reject(c, ReplyCommandNotSupported)
		return fmt.Errorf("socks5: %s: UDP ASSOCIATE: no packet listener configured", client)
	}
	local, remote := addrPortOf(c.LocalAddr()), addrPortOf(c.RemoteAddr())
	if !local.Addr().IsValid() || !remote.Addr().IsValid() {
		s.reject(c, ReplyGeneralFailure)
		return fmt.Errorf("socks5: %s: UDP ASSOCIATE needs an IP control connection, have %v -> %v", client, c.RemoteAddr(), c.LocalAddr())
	}

	network := "udp6"
	if local.Addr().Is4() {
		network = "udp4"
	}
	relayConn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local.Addr(), 0)))
	if err != nil {
		s.reject(c, ReplyGeneralFailure)
		return fmt.Errorf("socks5: %s: UDP ASSOCIATE: open relay socket on %s: %w", client, local.Addr(), err)
	}
	defer relayConn.Close()

	tunnel, err := s.ListenPacket(ctx)
	if err != nil {
		s.reject(c, mapDialError(err))
		return fmt.Errorf("socks5: %s: UDP ASSOCIATE: open tunnel socket: %w", client, err)
	}
	defer tunnel.Close()

	a := &association{
		s:        s,
		log:      log,
		relay:    relayConn,
		tunnel:   tunnel,
		clientIP: remote.Addr().WithZone(""),
		cache:    make(map[string]cacheEntry),
	}
	if req.Dst.Port != 0 {
		// The client declared its source port; replies may flow at once.
		// The declared IP is ignored: the control connection's source is
		// authoritative (the client may sit behind NAT or not know it).
		ap := netip.AddrPortFrom(remote.Addr(), req.Dst.Port)
		a.fixedPort = req.Dst.Port
		a.client.Store(&ap)
	}

	// Count the association before the client can learn it exists.
	s.stats.udpTotal.Add(1)
	s.stats.udpActive.Add(1)
	defer s.stats.udpActive.Add(-1)

	_ = c.SetWriteDeadline(time.Now().Add(hsTimeout))
	bnd := boundAddr(relayConn.LocalAddr())
	if err := writeReply(c, ReplySucceeded, bnd); err != nil {
		return fmt.Errorf("socks5: %s: %w", client, err)
	}
	_ = c.SetDeadline(time.Time{})
	log.Debug("socks5: UDP association established", "relay", bnd.String())

	err = a.run(ctx, c, durationOr(s.UDPIdleTimeout, DefaultUDPIdleTimeout))
	log.Debug("socks5: UDP association ended", "err", err)
	if err != nil {
		return fmt.Errorf("socks5: %s: UDP association: %w", client, err)
	}
	return nil
}

type cacheEntry struct {
	ip      netip.Addr
	expires time.Time
}

// association is one UDP ASSOCIATE session.
type association struct {
	s      *Server
	log    *slog.Logger
	relay  *net.UDPConn   // client-facing
	tunnel net.PacketConn // tunnel-facing

	clientIP  netip.Addr // unmapped, zone-less IP of the control connection
	fixedPort uint16     // declared client port, 0 when learned
	client    atomic.Pointer[netip.AddrPort]
	lastSeen  atomic.Int64 // unix nanoseconds of the last relayed datagram

	ctx   context.Context       // set by run; bounds name resolution
	cache map[string]cacheEntry // used only by clientToTunnel
}

var errIdle = errors.New("idle timeout")

// run relays until the control connection closes, ctx ends, the idle
// timeout fires or a socket fails. It returns nil for a normal end.
func (a *association) run(ctx context.Context, ctrl net.Conn, idle time.Duration) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	a.ctx = ctx
	stop := context.AfterFunc(ctx, func() {
		a.relay.Close()
		a.tunnel.Close()
		ctrl.Close()
	})
	defer stop()
	a.touch()

	var wg sync.WaitGroup
	wg.Go(func() {
		// The association lives as long as the control connection;
		// anything the client sends on it is ignored.
		var b [256]byte
		for {
			if _, err := ctrl.Read(b[:]); err != nil {
				cancel(nil)
				return
			}
		}
	})
	wg.Go(func() {
		if err := a.clientToTunnel(); err != nil {
			cancel(err)
		}
		cancel(nil)
	})
	wg.Go(func() {
		if err := a.tunnelToClient(); err != nil {
			cancel(err)
		}
		cancel(nil)
	})
	wg.Go(func() {
		t := time.NewTimer(idle)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				since := time.Since(time.Unix(0, a.lastSeen.Load()))
				if since >= idle {
					cancel(errIdle)
					return
				}
				t.Reset(idle - since)
			}
		}
	})
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func (a *association) touch() { a.lastSeen.Store(time.Now().UnixNano()) }

func (a *association) drop() { a.s.stats.udpDropped.Add(1) }

// isClosed reports whether err comes from a socket closed by run.
func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// clientToTunnel reads client datagrams from the relay socket and sends
// their payloads into the tunnel.
func (a *association) clientToTunnel() error {
	st := &a.s.stats
	buf := make([]byte, 65535)
	errs := 0
	for {
		n, src, err := a.relay.ReadFromUDPAddrPort(buf)
		if err != nil {
			if isClosed(err) {
				return nil
			}
			if errs++; errs > maxReadErrors {
				return fmt.Errorf("read relay socket: %w", err)
			}
			a.log.Debug("socks5: relay socket read failed", "err", err)
			continue
		}
		errs = 0
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if !a.accepts(src) {
			st.foreign.Add(1)
			a.drop()
			a.log.Debug("socks5: dropped datagram from foreign source", "src", src.String())
			continue
		}
		frag, dst, payload, err := parseUDPDatagram(buf[:n])
		if err != nil || frag != 0 {
			st.malformedDatagrams.Add(1)
			a.drop()
			a.log.Debug("socks5: dropped malformed datagram", "err", err, "frag", frag)
			continue
		}
		if a.client.Load() == nil {
			a.client.Store(&src)
		}
		ip, err := a.resolve(dst)
		if err != nil {
			a.drop()
			a.log.Debug("socks5: dropped datagram", "dst", dst.String(), "err", err)
			continue
		}
		to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, dst.Port))
		if _, err := a.tunnel.WriteTo(payload, to); err != nil {
			if isClosed(err) {
				return nil
			}
			// Per-datagram failures (no route, buffer full) are not
			// fatal to the association.
			a.drop()
			a.log.Debug("socks5: tunnel write failed", "dst", to.String(), "err", err)
			continue
		}
		st.udpOut.Add(1)
		a.touch()
	}
}

// accepts reports whether a datagram from src belongs to the client.
func (a *association) accepts(src netip.AddrPort) bool {
	if src.Addr().WithZone("") != a.clientIP {
		return false
	}
	if a.fixedPort != 0 {
		return src.Port() == a.fixedPort
	}
	if cur := a.client.Load(); cur != nil {
		return *cur == src
	}
	return true
}

// resolve returns the destination IP of a client datagram, resolving names
// through the server's resolver with a small cache.
func (a *association) resolve(dst Addr) (netip.Addr, error) {
	if dst.Port == 0 {
		a.s.stats.malformedDatagrams.Add(1)
		return netip.Addr{}, errors.New("destination port 0")
	}
	if dst.IP.IsValid() {
		ip, ok := usableIP(dst.IP)
		if !ok {
			a.s.stats.malformedDatagrams.Add(1)
			return netip.Addr{}, fmt.Errorf("destination %s not allowed", dst.IP)
		}
		return ip, nil
	}
	if e, ok := a.cache[dst.Name]; ok && time.Now().Before(e.expires) {
		return e.ip, nil
	}
	if !validName(dst.Name) {
		a.s.stats.malformedDatagrams.Add(1)
		return netip.Addr{}, fmt.Errorf("invalid host name %q", dst.Name)
	}
	ctx, cancel := context.WithTimeout(a.ctx, udpResolveTimeout)
	ips, _, err := a.s.lookup(ctx, dst)
	cancel()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, ip := range ips {
		if ip, ok := usableIP(ip); ok {
			if len(a.cache) >= udpCacheSize {
				clear(a.cache)
			}
			a.cache[dst.Name] = cacheEntry{ip: ip, expires: time.Now().Add(udpCacheTTL)}
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("resolve %q: no usable address among %v", dst.Name, ips)
}

// tunnelToClient reads datagrams from the tunnel socket and sends them to
// the client with a SOCKS UDP header.
func (a *association) tunnelToClient() error {
	st := &a.s.stats
	buf := make([]byte, maxIPUDPHeaderLen+65535)
	errs := 0
	for {
		n, from, err := a.tunnel.ReadFrom(buf[maxIPUDPHeaderLen:])
		if err != nil {
			if isClosed(err) {
				return nil
			}
			if errs++; errs > maxReadErrors {
				return fmt.Errorf("read tunnel socket: %w", err)
			}
			a.log.Debug("socks5: tunnel socket read failed", "err", err)
			continue
		}
		errs = 0
		src := addrPortOf(from)
		cl := a.client.Load()
		if !src.Addr().IsValid() || cl == nil {
			a.drop()
			continue
		}
		src = netip.AddrPortFrom(src.Addr().WithZone(""), src.Port())
		start := maxIPUDPHeaderLen - udpHeaderLen(src.Addr())
		appendUDPHeader(buf[start:start], AddrFromAddrPort(src))
		if _, err := a.relay.WriteToUDPAddrPort(buf[start:maxIPUDPHeaderLen+n], *cl); err != nil {
			if isClosed(err) {
				return nil
			}
			a.drop()
			a.log.Debug("socks5: relay write failed", "client", cl.String(), "err", err)
			continue
		}
		st.udpIn.Add(1)
		a.touch()
	}
}
