package socks5

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Default timeouts used when the corresponding Server field is zero.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultConnectTimeout   = 30 * time.Second
	DefaultUDPIdleTimeout   = 5 * time.Minute
)

// maxDialAttempts bounds how many resolved addresses CONNECT tries.
const maxDialAttempts = 16

// ErrServerClosed is returned by Serve and ServeConn after Close.
var ErrServerClosed = errors.New("socks5: server closed")

// Server is a SOCKS5 server. Its upstream side is entirely provided by the
// Dial, Resolve and ListenPacket functions. The zero value serves nothing
// useful: set at least Dial. A Server must not be copied after first use.
type Server struct {
	// Dial opens a TCP connection to a literal ip:port. network is "tcp4"
	// or "tcp6" according to the address family. When nil, CONNECT is
	// answered with "command not supported".
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Resolve resolves a host name remotely, through the tunnel. Names
	// sent by clients are never resolved locally. When nil, requests with
	// domain-name addresses are answered with "address type not
	// supported".
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// ListenPacket opens an unconnected tunnel-side UDP socket for UDP
	// ASSOCIATE; datagrams are written with *net.UDPAddr destinations.
	// When nil, UDP ASSOCIATE is answered with "command not supported".
	ListenPacket func(ctx context.Context) (net.PacketConn, error)

	// Username and Password, when either is non-empty, require RFC 1929
	// username/password authentication; otherwise only "no
	// authentication" is accepted.
	Username, Password string

	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger

	// HandshakeTimeout bounds the greeting, authentication and request
	// phase (DefaultHandshakeTimeout when zero).
	HandshakeTimeout time.Duration
	// ConnectTimeout bounds name resolution plus all connection attempts
	// of one CONNECT (DefaultConnectTimeout when zero).
	ConnectTimeout time.Duration
	// UDPIdleTimeout ends a UDP association after this long without a
	// datagram in either direction (DefaultUDPIdleTimeout when zero).
	UDPIdleTimeout time.Duration
	// MaxConns, when positive, limits concurrent connections accepted by
	// Serve; connections over the limit are closed immediately.
	MaxConns int

	initOnce  sync.Once
	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	serving   atomic.Int64 // connections handed by Serve to ServeConn

	stats struct {
		connsTotal, connsRejected                      atomic.Uint64
		connsActive, udpActive                         atomic.Int64
		connects, connectFailures, udpTotal            atomic.Uint64
		udpIn, udpOut, udpDropped                      atomic.Uint64
		malformedRequests, malformedDatagrams, foreign atomic.Uint64
		authFailures                                   atomic.Uint64
	}
}

// Stats is a snapshot of server counters.
type Stats struct {
	ConnectionsTotal      uint64 // TCP connections handled
	ConnectionsActive     int64  // TCP connections currently open
	ConnectionsRejected   uint64 // connections closed at once because of MaxConns
	ConnectRequests       uint64 // CONNECT requests received
	ConnectFailures       uint64 // CONNECT requests that failed to reach the target
	UDPAssociations       uint64 // UDP associations established
	UDPAssociationsActive int64
	// UDPDatagramsOut counts datagrams relayed from clients into the
	// tunnel, UDPDatagramsIn datagrams relayed from the tunnel to clients.
	UDPDatagramsOut, UDPDatagramsIn uint64
	// UDPDatagramsDropped counts every datagram not relayed, for any
	// reason (including those counted by the two fields below).
	UDPDatagramsDropped uint64
	// MalformedDatagrams counts client datagrams with an invalid SOCKS UDP
	// header, a non-zero FRAG or an invalid destination.
	MalformedDatagrams uint64
	// ForeignDatagrams counts datagrams that reached a relay socket from a
	// source other than the association's client.
	ForeignDatagrams uint64
	// MalformedRequests counts TCP connections rejected because the
	// greeting, authentication or request was malformed or truncated.
	MalformedRequests uint64
	// AuthFailures counts bad credentials and greetings offering no
	// acceptable method.
	AuthFailures uint64
}

// Stats returns a snapshot of the server counters.
func (s *Server) Stats() Stats {
	st := &s.stats
	return Stats{
		ConnectionsTotal:      st.connsTotal.Load(),
		ConnectionsActive:     st.connsActive.Load(),
		ConnectionsRejected:   st.connsRejected.Load(),
		ConnectRequests:       st.connects.Load(),
		ConnectFailures:       st.connectFailures.Load(),
		UDPAssociations:       st.udpTotal.Load(),
		UDPAssociationsActive: st.udpActive.Load(),
		UDPDatagramsOut:       st.udpOut.Load(),
		UDPDatagramsIn:        st.udpIn.Load(),
		UDPDatagramsDropped:   st.udpDropped.Load(),
		MalformedDatagrams:    st.malformedDatagrams.Load(),
		ForeignDatagrams:      st.foreign.Load(),
		MalformedRequests:     st.malformedRequests.Load(),
		AuthFailures:          st.authFailures.Load(),
	}
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.listeners = make(map[net.Listener]struct{})
	})
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Serve accepts connections on l and serves each in its own goroutine. It
// returns ErrServerClosed after Close, or the accept error when l fails or
// is closed by someone else. Serve does not close l on return unless Close
// was called.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	log := s.logger().With("listener", l.Addr().String())
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() && !errors.Is(err, net.ErrClosed) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				log.Warn("socks5: accept failed, retrying", "err", err, "backoff", backoff)
				select {
				case <-time.After(backoff):
				case <-s.ctx.Done():
					return ErrServerClosed
				}
				continue
			}
			return fmt.Errorf("socks5: accept on %s: %w", l.Addr(), err)
		}
		backoff = 0
		// serving is counted here, not in the goroutine, so that a burst of
		// accepts cannot overshoot MaxConns.
		if n := s.serving.Add(1); s.MaxConns > 0 && n > int64(s.MaxConns) {
			s.serving.Add(-1)
			s.stats.connsRejected.Add(1)
			log.Warn("socks5: connection limit reached, closing", "client", c.RemoteAddr().String(), "max", s.MaxConns)
			c.Close()
			continue
		}
		go func() {
			defer s.serving.Add(-1)
			if err := s.ServeConn(s.ctx, c); err != nil && !errors.Is(err, ErrServerClosed) {
				log.Debug("socks5: connection ended", "client", c.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

// Close stops all Serve loops and closes every active connection and UDP
// association. It does not wait for handler goroutines to return.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cancel()
	var errs []error
	for l := range s.listeners {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("socks5: close listener %s: %w", l.Addr(), err))
		}
		delete(s.listeners, l)
	}
	return errors.Join(errs...)
}

// ServeConn serves one client connection and closes it before returning.
// The connection is also closed when ctx is cancelled or the server is
// closed. The returned error says why the session ended abnormally; a
// session that ran to a normal end returns nil.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	s.init()
	if s.ctx.Err() != nil {
		c.Close()
		return ErrServerClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopMerge := context.AfterFunc(s.ctx, cancel)
	defer stopMerge()
	stopClose := context.AfterFunc(ctx, func() { c.Close() })
	defer stopClose()
	defer c.Close()

	s.stats.connsTotal.Add(1)
	s.stats.connsActive.Add(1)
	defer s.stats.connsActive.Add(-1)

	err := s.serveConn(ctx, c)
	if err != nil && s.ctx.Err() != nil {
		return ErrServerClosed
	}
	return err
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) error {
	client := c.RemoteAddr().String()
	log := s.logger().With("client", client)
	hsTimeout := durationOr(s.HandshakeTimeout, DefaultHandshakeTimeout)
	_ = c.SetDeadline(time.Now().Add(hsTimeout))

	if err := s.negotiate(ctx, c); err != nil {
		return fmt.Errorf("socks5: handshake with %s: %w", client, err)
	}

	req, err := readRequest(c)
	if err != nil {
		if errors.Is(err, io.EOF) {
			// The client went away between authentication and the
			// request; nothing malformed was sent.
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("socks5: read request from %s: %w", client, err)
		}
		s.stats.malformedRequests.Add(1)
		code := ReplyGeneralFailure
		var pe *protoError
		if errors.As(err, &pe) {
			code = pe.code
		}
		s.reject(c, code)
		return fmt.Errorf("socks5: read request from %s: %w", client, err)
	}
	log = log.With("cmd", req.Cmd, "dst", req.Dst.String())

	switch req.Cmd {
	case cmdConnect:
		return s.handleConnect(ctx, c, req, hsTimeout, log)
	case cmdUDPAssociate:
		return s.handleAssociate(ctx, c, req, hsTimeout, log)
	case cmdBind:
		s.reject(c, ReplyCommandNotSupported)
		return fmt.Errorf("socks5: %s: BIND is not supported", client)
	default:
		s.stats.malformedRequests.Add(1)
		s.reject(c, ReplyCommandNotSupported)
		return fmt.Errorf("socks5: %s: unknown command %#x", client, req.Cmd)
	}
}

// negotiate runs method selection and, if configured, RFC 1929
// authentication.
func (s *Server) negotiate(ctx context.Context, c net.Conn) error {
	var buf [255]byte
	methods, err := readGreeting(c, buf[:])
	switch {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("client closed before greeting: %w", err)
	case errors.Is(err, errNoMethods):
		s.stats.malformedRequests.Add(1)
		s.rejectWith(c, []byte{socksVersion, methodNoAcceptable})
		return err
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("read greeting: %w", err) // shutting down, not malformed
	case err != nil:
		// A wrong version (SOCKS4, HTTP, TLS...) cannot be answered in a
		// format the peer understands; just close.
		s.stats.malformedRequests.Add(1)
		s.rejectWith(c, nil)
		return fmt.Errorf("read greeting: %w", err)
	}

	needAuth := s.Username != "" || s.Password != ""
	want := byte(methodNoAuth)
	if needAuth {
		want = methodUserPass
	}
	found := false
	for _, m := range methods {
		if m == want {
			found = true
			break
		}
	}
	if !found {
		s.stats.authFailures.Add(1)
		s.rejectWith(c, []byte{socksVersion, methodNoAcceptable})
		return fmt.Errorf("no acceptable authentication method among %v", methods)
	}
	if _, err := c.Write([]byte{socksVersion, want}); err != nil {
		return fmt.Errorf("write method selection: %w", err)
	}
	if !needAuth {
		return nil
	}

	user, pass, err := readUserPass(c)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("client closed before authentication: %w", err)
		}
		s.stats.malformedRequests.Add(1)
		s.rejectWith(c, []byte{authVersion, authFailure})
		return fmt.Errorf("read authentication: %w", err)
	}
	userOK := subtle.ConstantTimeCompare([]byte(user), []byte(s.Username))
	passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(s.Password))
	if userOK&passOK != 1 {
		s.stats.authFailures.Add(1)
		s.rejectWith(c, []byte{authVersion, authFailure})
		return fmt.Errorf("authentication failed for user %q", user)
	}
	if _, err := c.Write([]byte{authVersion, authSuccess}); err != nil {
		return fmt.Errorf("write authentication status: %w", err)
	}
	return nil
}

// lingerTimeout bounds how long a rejected connection is drained.
const lingerTimeout = 2 * time.Second

// reject sends a failure reply and lingers; see rejectWith.
func (s *Server) reject(c net.Conn, code ReplyCode) {
	var buf [maxRequestLen]byte
	s.rejectWith(c, appendMessage(buf[:0], byte(code), Addr{}))
}

// rejectWith writes msg (if any), half-closes the connection and drains
// what the client still sends (bounded in bytes and time) so that the final
// close does not become a TCP reset that could destroy the reply in the
// client's receive queue.
func (s *Server) rejectWith(c net.Conn, msg []byte) {
	timeout := durationOr(s.HandshakeTimeout, DefaultHandshakeTimeout)
	if len(msg) > 0 {
		_ = c.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := c.Write(msg); err != nil {
			return
		}
	}
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(min(timeout, lingerTimeout)))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// writeReply writes a reply with the given code and bound address.
func writeReply(c net.Conn, code ReplyCode, bnd Addr) error {
	var buf [maxRequestLen]byte
	if _, err := c.Write(appendMessage(buf[:0], byte(code), bnd)); err != nil {
		return fmt.Errorf("write reply %q: %w", code, err)
	}
	return nil
}

// addrPortOf extracts an IP and port from a net.Addr, unmapping
// IPv4-mapped IPv6 addresses. It returns an invalid AddrPort when the
// address carries no IP.
func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	case nil:
		return netip.AddrPort{}
	default:
		p, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.AddrPort{}
		}
		ap = p
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// boundAddr converts a local address into the BND field of a reply, with
// zones stripped and 0.0.0.0:0 when unknown.
func boundAddr(a net.Addr) Addr {
	ap := addrPortOf(a)
	if !ap.Addr().IsValid() {
		return Addr{IP: netip.IPv4Unspecified()}
	}
	return Addr{IP: ap.Addr().WithZone(""), Port: ap.Port()}
}

// usableIP normalises a destination IP and reports whether traffic may be
// sent to it.
func usableIP(ip netip.Addr) (netip.Addr, bool) {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return ip, false
	}
	return ip, true
}

// lookup turns a request destination into candidate IPs, resolving names
// through s.Resolve.
func (s *Server) lookup(ctx context.Context, dst Addr) ([]netip.Addr, ReplyCode, error) {
	if dst.IP.IsValid() {
		return []netip.Addr{dst.IP}, ReplySucceeded, nil
	}
	if !validName(dst.Name) {
		return nil, ReplyHostUnreachable, fmt.Errorf("invalid host name %q", dst.Name)
	}
	if ip, err := netip.ParseAddr(dst.Name); err == nil && ip.Zone() == "" {
		return []netip.Addr{ip}, ReplySucceeded, nil
	}
	if s.Resolve == nil {
		return nil, ReplyAddressNotSupported, errors.New("no resolver configured for domain names")
	}
	ips, err := s.Resolve(ctx, dst.Name)
	if err != nil {
		code := ReplyHostUnreachable
		if isTimeout(err) {
			code = ReplyTTLExpired
		}
		return nil, code, fmt.Errorf("resolve %q: %w", dst.Name, err)
	}
	if len(ips) == 0 {
		return nil, ReplyHostUnreachable, fmt.Errorf("resolve %q: no addresses", dst.Name)
	}
	return ips, ReplySucceeded, nil
}

// handleConnect serves CONNECT: dial, reply with the bound address, relay.
func (s *Server) handleConnect(ctx context.Context, c net.Conn, req request, hsTimeout time.Duration, log *slog.Logger) error {
	s.stats.connects.Add(1)
	client := c.RemoteAddr().String()
	if s.Dial == nil {
		s.reject(c, ReplyCommandNotSupported)
		return fmt.Errorf("socks5: %s: CONNECT %s: no dialer configured", client, req.Dst)
	}
	if req.Dst.Port == 0 {
		s.stats.malformedRequests.Add(1)
		s.reject(c, ReplyGeneralFailure)
		return fmt.Errorf("socks5: %s: CONNECT %s: port 0", client, req.Dst)
	}
	if req.Dst.Name != "" && !validName(req.Dst.Name) {
		s.stats.malformedRequests.Add(1)
		s.reject(c, ReplyHostUnreachable)
		return fmt.Errorf("socks5: %s: CONNECT: invalid host name %q", client, req.Dst.Name)
	}

	dctx, cancel := context.WithTimeout(ctx, durationOr(s.ConnectTimeout, DefaultConnectTimeout))
	up, code, err := s.dialTarget(dctx, req.Dst)
	cancel()
	if err != nil {
		s.stats.connectFailures.Add(1)
		s.reject(c, code)
		return fmt.Errorf("socks5: %s: CONNECT %s: %w", client, req.Dst, err)
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { up.Close() })
	defer stop()

	_ = c.SetWriteDeadline(time.Now().Add(hsTimeout))
	if err := writeReply(c, ReplySucceeded, boundAddr(up.LocalAddr())); err != nil {
		return fmt.Errorf("socks5: %s: %w", client, err)
	}
	_ = c.SetDeadline(time.Time{})
	log.Debug("socks5: connected", "upstream", up.RemoteAddr().String())
	if err := relay(c, up); err != nil {
		return fmt.Errorf("socks5: %s: relay to %s: %w", client, req.Dst, err)
	}
	return nil
}

// dialTarget resolves dst if needed and tries its addresses in order.
func (s *Server) dialTarget(ctx context.Context, dst Addr) (net.Conn, ReplyCode, error) {
	ips, code, err := s.lookup(ctx, dst)
	if err != nil {
		return nil, code, err
	}
	candidates := make([]netip.Addr, 0, min(len(ips), maxDialAttempts))
	for _, ip := range ips {
		if ip, ok := usableIP(ip); ok && len(candidates) < maxDialAttempts {
			candidates = append(candidates, ip)
		}
	}
	if len(candidates) == 0 {
		return nil, ReplyHostUnreachable, fmt.Errorf("no usable address among %v", ips)
	}
	var firstErr error
	for i, ip := range candidates {
		network := "tcp6"
		if ip.Is4() {
			network = "tcp4"
		}
		actx, cancel := partialDeadline(ctx, len(candidates)-i)
		conn, err := s.Dial(actx, network, netip.AddrPortFrom(ip, dst.Port).String())
		cancel()
		if err == nil {
			return conn, ReplySucceeded, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, mapDialError(firstErr), firstErr
}

// partialDeadline gives one of the remaining attempts its share of the
// time left in ctx (at least 2 s, when that much is left).
func partialDeadline(ctx context.Context, remaining int) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok || remaining <= 1 {
		return context.WithCancel(ctx)
	}
	left := time.Until(deadline)
	share := left / time.Duration(remaining)
	if share < 2*time.Second {
		share = min(left, 2*time.Second)
	}
	return context.WithTimeout(ctx, share)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// relay copies in both directions until both are done, propagating
// half-closes where the connections support them.
func relay(a, b net.Conn) error {
	errc := make(chan error, 2)
	cp := func(dst, src net.Conn) {
		bufp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bufp)
		_, err := io.CopyBuffer(dst, src, *bufp)
		if err == nil {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				err = cw.CloseWrite()
			} else {
				err = dst.Close()
			}
		}
		if err != nil {
			a.Close()
			b.Close()
		}
		errc <- err
	}
	go cp(b, a)
	go cp(a, b)
	err1, err2 := <-errc, <-errc
	a.Close()
	b.Close()
	for _, err := range []error{err1, err2} {
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
	}
	return nil
}
