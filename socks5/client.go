package socks5

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Client errors.
var (
	ErrNoAcceptableMethod = errors.New("socks5: proxy accepted none of the offered authentication methods")
	ErrAuthFailed         = errors.New("socks5: proxy rejected the username/password")
	ErrAssociationClosed  = errors.New("socks5: UDP association closed")
)

// Client talks to a SOCKS5 proxy. The zero value with Addr set uses no
// authentication.
type Client struct {
	// Addr is the proxy address, "host:port".
	Addr string
	// Username and Password, when either is non-empty, are offered with
	// RFC 1929 authentication (no-auth is offered as well).
	Username, Password string
	// Dialer reaches the proxy; nil means a zero net.Dialer.
	Dialer *net.Dialer
}

// DialThrough connects to target ("host:port", IP literal or name) through
// the SOCKS5 proxy at proxyAddr without authentication. Names are sent to
// the proxy unresolved.
func DialThrough(ctx context.Context, proxyAddr, network, target string) (net.Conn, error) {
	return (&Client{Addr: proxyAddr}).DialContext(ctx, network, target)
}

// AssociateUDP opens a UDP association with the SOCKS5 proxy at proxyAddr
// without authentication.
func AssociateUDP(ctx context.Context, proxyAddr string) (*UDPAssociation, error) {
	return (&Client{Addr: proxyAddr}).AssociateUDP(ctx)
}

// DialContext connects to target through the proxy. network must be "tcp",
// "tcp4" or "tcp6"; for IP literal targets the family must match, names are
// resolved by the proxy whatever the network. The returned connection is
// the raw proxy connection (a *net.TCPConn when Dialer is a net.Dialer), so
// CloseWrite works. ctx bounds the whole handshake. A non-success reply is
// returned as a *ReplyError.
func (cl *Client) DialContext(ctx context.Context, network, target string) (net.Conn, error) {
	dst, err := ParseAddr(target)
	if err != nil {
		return nil, err
	}
	switch network {
	case "tcp":
	case "tcp4", "tcp6":
		if dst.IP.IsValid() && (dst.IP.Unmap().Is4() != (network == "tcp4")) {
			return nil, fmt.Errorf("socks5: target %s does not match network %s", target, network)
		}
	default:
		return nil, fmt.Errorf("socks5: dial %s %s: %w", network, target, net.UnknownNetworkError(network))
	}
	c, _, err := cl.open(ctx, cmdConnect, dst)
	if err != nil {
		return nil, fmt.Errorf("socks5: CONNECT %s via %s: %w", target, cl.Addr, err)
	}
	return c, nil
}

// validate checks the configuration before anything is dialled.
func (cl *Client) validate() error {
	if len(cl.Username) > 255 || len(cl.Password) > 255 {
		return errors.New("socks5: username and password must be at most 255 bytes")
	}
	return nil
}

// open dials the proxy and runs greeting, authentication and one request.
func (cl *Client) open(ctx context.Context, cmd byte, dst Addr) (net.Conn, Addr, error) {
	if err := cl.validate(); err != nil {
		return nil, Addr{}, err
	}
	d := cl.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	c, err := d.DialContext(ctx, "tcp", cl.Addr)
	if err != nil {
		return nil, Addr{}, fmt.Errorf("dial proxy: %w", err)
	}
	bnd, err := cl.handshake(ctx, c, cmd, dst)
	if err != nil {
		c.Close()
		return nil, Addr{}, err
	}
	return c, bnd, nil
}

func (cl *Client) handshake(ctx context.Context, c net.Conn, cmd byte, dst Addr) (Addr, error) {
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	bnd, err := cl.exchange(c, cmd, dst)
	if !stop() && err != nil {
		return Addr{}, fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	if err != nil {
		return Addr{}, err
	}
	if ctx.Err() != nil {
		return Addr{}, ctx.Err()
	}
	_ = c.SetDeadline(time.Time{})
	return bnd, nil
}

func (cl *Client) exchange(c net.Conn, cmd byte, dst Addr) (Addr, error) {
	auth := cl.Username != "" || cl.Password != ""
	greeting := []byte{socksVersion, 1, methodNoAuth}
	if auth {
		greeting = []byte{socksVersion, 2, methodNoAuth, methodUserPass}
	}
	if _, err := c.Write(greeting); err != nil {
		return Addr{}, fmt.Errorf("write greeting: %w", err)
	}
	var sel [2]byte
	if err := readFull(c, sel[:], true); err != nil {
		return Addr{}, fmt.Errorf("read method selection: %w", err)
	}
	if sel[0] != socksVersion {
		return Addr{}, fmt.Errorf("method selection version %#x: %w", sel[0], errBadVersion)
	}
	switch {
	case sel[1] == methodNoAuth:
	case sel[1] == methodUserPass && auth:
		msg := make([]byte, 0, 3+len(cl.Username)+len(cl.Password))
		msg = append(msg, authVersion, byte(len(cl.Username)))
		msg = append(msg, cl.Username...)
		msg = append(msg, byte(len(cl.Password)))
		msg = append(msg, cl.Password...)
		if _, err := c.Write(msg); err != nil {
			return Addr{}, fmt.Errorf("write authentication: %w", err)
		}
		var st [2]byte
		if err := readFull(c, st[:], true); err != nil {
			return Addr{}, fmt.Errorf("read authentication status: %w", err)
		}
		if st[1] != authSuccess {
			return Addr{}, ErrAuthFailed
		}
	case sel[1] == methodNoAcceptable:
		return Addr{}, ErrNoAcceptableMethod
	default:
		return Addr{}, fmt.Errorf("proxy selected unoffered method %#x", sel[1])
	}

	var buf [maxRequestLen]byte
	if _, err := c.Write(appendMessage(buf[:0], cmd, dst)); err != nil {
		return Addr{}, fmt.Errorf("write request: %w", err)
	}
	code, bnd, err := readReply(c)
	if err != nil {
		return Addr{}, fmt.Errorf("read reply: %w", err)
	}
	if code != ReplySucceeded {
		return Addr{}, &ReplyError{Code: code}
	}
	return bnd, nil
}

// UDPAssociation is a client-side SOCKS5 UDP association. It ends when
// Close is called or the proxy closes the control connection.
type UDPAssociation struct {
	ctrl  net.Conn
	conn  *net.UDPConn
	relay netip.AddrPort

	readMu sync.Mutex
	rbuf   []byte

	closeOnce sync.Once
	closed    chan struct{}
}

// AssociateUDP opens a UDP association. It binds a local UDP socket on the
// address the control connection uses and declares it to the proxy.
func (cl *Client) AssociateUDP(ctx context.Context) (*UDPAssociation, error) {
	if err := cl.validate(); err != nil {
		return nil, err
	}
	d := cl.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	ctrl, err := d.DialContext(ctx, "tcp", cl.Addr)
	if err != nil {
		return nil, fmt.Errorf("socks5: UDP ASSOCIATE via %s: dial proxy: %w", cl.Addr, err)
	}
	a, err := cl.associate(ctx, ctrl)
	if err != nil {
		ctrl.Close()
		return nil, fmt.Errorf("socks5: UDP ASSOCIATE via %s: %w", cl.Addr, err)
	}
	return a, nil
}

func (cl *Client) associate(ctx context.Context, ctrl net.Conn) (*UDPAssociation, error) {
	local, remote := addrPortOf(ctrl.LocalAddr()), addrPortOf(ctrl.RemoteAddr())
	if !local.Addr().IsValid() || !remote.Addr().IsValid() {
		return nil, fmt.Errorf("control connection %v -> %v is not IP", ctrl.LocalAddr(), ctrl.RemoteAddr())
	}
	network := "udp6"
	if local.Addr().Is4() {
		network = "udp4"
	}
	uc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local.Addr(), 0)))
	if err != nil {
		return nil, fmt.Errorf("open local UDP socket: %w", err)
	}
	declared := addrPortOf(uc.LocalAddr())
	bnd, err := cl.handshake(ctx, ctrl, cmdUDPAssociate, AddrFromAddrPort(netip.AddrPortFrom(declared.Addr().WithZone(""), declared.Port())))
	if err != nil {
		uc.Close()
		return nil, err
	}
	if !bnd.IP.IsValid() {
		uc.Close()
		return nil, fmt.Errorf("proxy returned a non-IP relay address %s", bnd)
	}
	relayIP := bnd.IP.Unmap()
	if relayIP.IsUnspecified() {
		relayIP = remote.Addr()
	}
	a := &UDPAssociation{
		ctrl:   ctrl,
		conn:   uc,
		relay:  netip.AddrPortFrom(relayIP, bnd.Port),
		rbuf:   make([]byte, 65535),
		closed: make(chan struct{}),
	}
	go func() {
		// The proxy ends the association by closing the control
		// connection; stop the UDP socket so readers notice.
		var b [64]byte
		for {
			if _, err := ctrl.Read(b[:]); err != nil {
				a.Close()
				return
			}
		}
	}()
	return a, nil
}

// RelayAddr returns the proxy's UDP relay address.
func (a *UDPAssociation) RelayAddr() netip.AddrPort { return a.relay }

// LocalAddr returns the local UDP address datagrams are sent from.
func (a *UDPAssociation) LocalAddr() net.Addr { return a.conn.LocalAddr() }

// Done is closed when the association has ended.
func (a *UDPAssociation) Done() <-chan struct{} { return a.closed }

// WriteTo sends payload to target ("host:port", IP literal or name resolved
// by the proxy) through the relay. It returns len(payload) on success.
func (a *UDPAssociation) WriteTo(payload []byte, target string) (int, error) {
	dst, err := ParseAddr(target)
	if err != nil {
		return 0, err
	}
	pkt := make([]byte, 0, maxUDPHeaderLen+len(payload))
	pkt = appendUDPHeader(pkt, dst)
	pkt = append(pkt, payload...)
	if _, err := a.conn.WriteToUDPAddrPort(pkt, a.relay); err != nil {
		if a.isClosed() {
			return 0, ErrAssociationClosed
		}
		return 0, fmt.Errorf("socks5: send datagram to %s via %s: %w", target, a.relay, err)
	}
	return len(payload), nil
}

// ReadFrom reads the next datagram relayed by the proxy into p and returns
// its length (truncated to len(p)) and source "ip:port". Datagrams not
// coming from the relay or carrying an invalid header are skipped.
func (a *UDPAssociation) ReadFrom(p []byte) (int, string, error) {
	a.readMu.Lock()
	defer a.readMu.Unlock()
	for {
		n, src, err := a.conn.ReadFromUDPAddrPort(a.rbuf)
		if err != nil {
			if a.isClosed() {
				return 0, "", ErrAssociationClosed
			}
			return 0, "", fmt.Errorf("socks5: read from relay %s: %w", a.relay, err)
		}
		if src.Addr().Unmap().WithZone("") != a.relay.Addr().WithZone("") || src.Port() != a.relay.Port() {
			continue
		}
		frag, from, payload, err := parseUDPDatagram(a.rbuf[:n])
		if err != nil || frag != 0 {
			continue
		}
		return copy(p, payload), from.String(), nil
	}
}

// SetReadDeadline sets the deadline for ReadFrom.
func (a *UDPAssociation) SetReadDeadline(t time.Time) error { return a.conn.SetReadDeadline(t) }

func (a *UDPAssociation) isClosed() bool {
	select {
	case <-a.closed:
		return true
	default:
		return false
	}
}

// Close ends the association: it closes the control connection, which
// tells the proxy to release the relay, and the local UDP socket.
func (a *UDPAssociation) Close() error {
	var err error
	a.closeOnce.Do(func() {
		close(a.closed)
		err = errors.Join(a.ctrl.Close(), a.conn.Close())
	})
	if err != nil {
		return fmt.Errorf("socks5: close UDP association: %w", err)
	}
	return nil
}
