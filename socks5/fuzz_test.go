package socks5

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// Seeds live in testdata/fuzz/<FuzzName>/.

// checkParseError fails on errors other than the parsers' own.
func checkParseError(t *testing.T, err error) {
	t.Helper()
	var pe *protoError
	switch {
	case errors.As(err, &pe):
		if pe.code != ReplyGeneralFailure && pe.code != ReplyAddressNotSupported {
			t.Fatalf("unexpected reply code %v for %v", pe.code, err)
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, errBadVersion), errors.Is(err, errNoMethods), errors.Is(err, errBadAuthVersion):
	default:
		t.Fatalf("unexpected error type %T: %v", err, err)
	}
}

// FuzzReadRequest fuzzes the TCP greeting parser and the request parser,
// both in sequence (as the server reads them) and the request parser on
// the raw input. Accepted messages must re-encode to exactly the bytes
// consumed, and no parser may read past its message's maximum length.
func FuzzReadRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var buf [255]byte
		methods, err := readGreeting(r, buf[:])
		consumed := len(data) - r.Len()
		if consumed > 2+255 {
			t.Fatalf("greeting parser consumed %d bytes", consumed)
		}
		if err == nil {
			enc := append([]byte{socksVersion, byte(len(methods))}, methods...)
			if !bytes.Equal(enc, data[:consumed]) {
				t.Fatalf("greeting %x re-encodes as %x", data[:consumed], enc)
			}
		} else {
			checkParseError(t, err)
		}

		for _, in := range [][]byte{data[consumed:], data} {
			r := bytes.NewReader(in)
			req, err := readRequest(r)
			n := len(in) - r.Len()
			if n > maxRequestLen {
				t.Fatalf("request parser consumed %d bytes", n)
			}
			if err != nil {
				checkParseError(t, err)
				continue
			}
			if req.Dst.IP.IsValid() == (req.Dst.Name != "") {
				t.Fatalf("address %+v has both or neither of IP and name", req.Dst)
			}
			if enc := appendMessage(nil, req.Cmd, req.Dst); !bytes.Equal(enc, in[:n]) {
				t.Fatalf("request %x re-encodes as %x", in[:n], enc)
			}
		}
	})
}

// FuzzReadUserPass fuzzes the RFC 1929 username/password parser.
func FuzzReadUserPass(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		user, pass, err := readUserPass(r)
		n := len(data) - r.Len()
		if n > 3+255+255 {
			t.Fatalf("consumed %d bytes", n)
		}
		if err != nil {
			checkParseError(t, err)
			return
		}
		enc := append([]byte{authVersion, byte(len(user))}, user...)
		enc = append(append(enc, byte(len(pass))), pass...)
		if !bytes.Equal(enc, data[:n]) {
			t.Fatalf("auth %x re-encodes as %x", data[:n], enc)
		}
	})
}

// FuzzReadReply fuzzes the client's reply parser.
func FuzzReadReply(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		code, bnd, err := readReply(r)
		n := len(data) - r.Len()
		if n > maxRequestLen {
			t.Fatalf("consumed %d bytes", n)
		}
		if err != nil {
			checkParseError(t, err)
			return
		}
		_ = code.String()
		_ = (&ReplyError{Code: code}).Error()
		if enc := appendMessage(nil, byte(code), bnd); !bytes.Equal(enc, data[:n]) {
			t.Fatalf("reply %x re-encodes as %x", data[:n], enc)
		}
	})
}

// FuzzParseUDPDatagram fuzzes the SOCKS UDP header parser. Accepted
// datagrams must be exactly header plus payload, and the header must
// re-encode to the same bytes.
func FuzzParseUDPDatagram(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		frag, dst, payload, err := parseUDPDatagram(data)
		if err != nil {
			return
		}
		hdr := appendUDPHeader(nil, dst)
		hdr[2] = frag
		if len(hdr) > maxUDPHeaderLen {
			t.Fatalf("header of %d bytes", len(hdr))
		}
		if !bytes.Equal(append(hdr, payload...), data) {
			t.Fatalf("datagram %x re-encodes as %x + %x", data, hdr, payload)
		}
		if dst.IP.IsValid() && udpHeaderLen(dst.IP) != len(hdr) {
			t.Fatalf("udpHeaderLen(%v) = %d, header is %d bytes", dst.IP, udpHeaderLen(dst.IP), len(hdr))
		}
		_ = dst.String()
	})
}

// FuzzServeConn feeds arbitrary client bytes to a whole server session
// with in-memory upstreams: nothing may panic, hang or produce unbounded
// output, and every session must end.
func FuzzServeConn(f *testing.F) {
	f.Fuzz(func(t *testing.T, auth bool, data []byte) {
		srv := &Server{
			Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
				ap, err := netip.ParseAddrPort(address)
				if err != nil {
					t.Fatalf("Dial got a non-literal address %q", address)
				}
				if want := map[bool]string{true: "tcp4", false: "tcp6"}[ap.Addr().Is4()]; network != want {
					t.Fatalf("Dial(%q, %q): want network %s", network, address, want)
				}
				return newMemConn(nil), nil
			},
			Resolve: func(ctx context.Context, host string) ([]netip.Addr, error) {
				if !validName(host) {
					t.Errorf("resolver got invalid name %q", host)
				}
				return []netip.Addr{netip.MustParseAddr("192.0.2.1")}, nil
			},
			ListenPacket: func(ctx context.Context) (net.PacketConn, error) { return newMemPacketConn(), nil },
			Logger:       testLogger(),
		}
		if auth {
			srv.Username, srv.Password = "u", "p"
		}
		defer srv.Close()
		c := newMemConn(data)
		_ = srv.ServeConn(context.Background(), c)
		if out := c.written(); len(out) > 2+2+maxRequestLen {
			t.Fatalf("server wrote %d bytes of protocol replies: %x", len(out), out)
		}
		if st := srv.Stats(); st.ConnectionsActive != 0 || st.UDPAssociationsActive != 0 {
			t.Fatalf("session leaked: %+v", st)
		}
	})
}

// memConn is an in-memory net.Conn: reads return the given bytes then EOF,
// writes are collected (the relay's copy of upstream data is discarded by
// giving upstream nothing to send).
type memConn struct {
	mu     sync.Mutex
	r      *bytes.Reader
	w      bytes.Buffer
	closed bool
}

func newMemConn(in []byte) *memConn { return &memConn{r: bytes.NewReader(in)} }

func (c *memConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.r.Read(b)
}

func (c *memConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if c.w.Len() < 1<<20 {
		c.w.Write(b)
	}
	return len(b), nil
}

func (c *memConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.w.Bytes())
}

func (c *memConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *memConn) CloseWrite() error { return nil }

func (c *memConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1080}
}

func (c *memConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}

func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// memPacketConn is a tunnel-side PacketConn that receives nothing.
type memPacketConn struct {
	once   sync.Once
	closed chan struct{}
}

func newMemPacketConn() *memPacketConn { return &memPacketConn{closed: make(chan struct{})} }

func (p *memPacketConn) ReadFrom([]byte) (int, net.Addr, error) {
	<-p.closed
	return 0, nil, net.ErrClosed
}

func (p *memPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if _, ok := addr.(*net.UDPAddr); !ok {
		return 0, errors.New("not a UDP address")
	}
	return len(b), nil
}

func (p *memPacketConn) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

func (p *memPacketConn) LocalAddr() net.Addr              { return &net.UDPAddr{} }
func (p *memPacketConn) SetDeadline(time.Time) error      { return nil }
func (p *memPacketConn) SetReadDeadline(time.Time) error  { return nil }
func (p *memPacketConn) SetWriteDeadline(time.Time) error { return nil }
