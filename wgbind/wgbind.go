// Package wgbind lets a wireguard-go device send its UDP through any
// net.PacketConn: a socket bound to one chosen address (a gateway on loopback) or
// a UDP socket inside another tunnel's userspace network stack (the inner hop of
// fast mode, whose packets must travel through the entry tunnel).
package wgbind

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
)

// ListenFunc opens the packet conn a Bind uses; port 0 means any port.
type ListenFunc func(port uint16) (net.PacketConn, error)

// Bind is a conn.Bind over one net.PacketConn, opened with Listen.
type Bind struct {
	Listen ListenFunc

	mu sync.Mutex
	pc net.PacketConn
}

// New returns a Bind that opens its socket with listen.
func New(listen ListenFunc) *Bind { return &Bind{Listen: listen} }

// UDP returns a Bind whose socket listens on addr's IP (the port comes from
// the device, or addr's port when the device asks for any).
func UDP(addr netip.Addr) *Bind {
	return New(func(port uint16) (net.PacketConn, error) {
		return net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
	})
}

// Endpoint is a peer address.
type Endpoint netip.AddrPort

var _ conn.Endpoint = Endpoint{}

func (Endpoint) ClearSrc()             {}
func (Endpoint) SrcToString() string   { return "" }
func (Endpoint) SrcIP() netip.Addr     { return netip.Addr{} }
func (e Endpoint) DstIP() netip.Addr   { return netip.AddrPort(e).Addr() }
func (e Endpoint) DstToString() string { return netip.AddrPort(e).String() }
func (e Endpoint) DstToBytes() []byte {
	b, _ := netip.AddrPort(e).MarshalBinary()
	return b
}

// Open opens the socket and returns its receive function.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pc != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	pc, err := b.Listen(port)
	if err != nil {
		return nil, 0, fmt.Errorf("wgbind: listen on port %d: %w", port, err)
	}
	actual := port
	if ap, err := netip.ParseAddrPort(pc.LocalAddr().String()); err == nil {
		actual = ap.Port()
	}
	b.pc = pc
	recv := func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, addr, err := readFrom(pc, packets[0])
		if err != nil {
			return 0, err
		}
		sizes[0] = n
		eps[0] = Endpoint(addr)
		return 1, nil
	}
	return []conn.ReceiveFunc{recv}, actual, nil
}

// readFrom avoids an allocation per packet where the conn allows it.
func readFrom(pc net.PacketConn, p []byte) (int, netip.AddrPort, error) {
	if u, ok := pc.(interface {
		ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error)
	}); ok {
		n, ap, err := u.ReadFromUDPAddrPort(p)
		return n, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), err
	}
	n, addr, err := pc.ReadFrom(p)
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, netip.AddrPort{}, fmt.Errorf("wgbind: unexpected address type %T", addr)
	}
	ap := ua.AddrPort()
	return n, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// Close closes the socket; receive functions then return net.ErrClosed.
func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pc == nil {
		return nil
	}
	err := b.pc.Close()
	b.pc = nil
	return err
}

// SetMark is not supported: these sockets are not subject to policy routing.
func (b *Bind) SetMark(uint32) error { return nil }

// Send writes each buffer as one datagram to ep.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(Endpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	b.mu.Lock()
	pc := b.pc
	b.mu.Unlock()
	if pc == nil {
		return net.ErrClosed
	}
	dst := net.UDPAddrFromAddrPort(netip.AddrPort(e))
	for _, buf := range bufs {
		if _, err := pc.WriteTo(buf, dst); err != nil {
			return fmt.Errorf("wgbind: send to %v: %w", dst, err)
		}
	}
	return nil
}

// ParseEndpoint parses "ip:port".
func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, fmt.Errorf("wgbind: endpoint %q: %w", s, err)
	}
	if !ap.IsValid() || ap.Port() == 0 {
		return nil, errors.New("wgbind: endpoint needs an address and a port")
	}
	return Endpoint(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())), nil
}

// BatchSize is one: each read returns one datagram.
func (b *Bind) BatchSize() int { return 1 }
