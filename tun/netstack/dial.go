package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	fa := tcpip.FullAddress{NIC: nicID, Port: ap.Port()}
	if a := ap.Addr(); a.IsValid() && !a.IsUnspecified() {
		fa.Addr = tcpip.AddrFromSlice(a.AsSlice())
	}
	return fa
}

func netProto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

// DialContext connects through the tunnel. network is tcp, tcp4, tcp6, udp,
// udp4 or udp6; address is a literal IP:port (no name resolution). UDP
// connections are connected sockets.
func (s *Stack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if s.ctx.Err() != nil {
		return nil, fmt.Errorf("netstack: dial %s %s: %w", network, address, net.ErrClosed)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("netstack: dial %s %q: need a literal IP:port: %w", network, address, err)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !ap.Addr().IsValid() || ap.Addr().IsUnspecified() || ap.Port() == 0 {
		return nil, fmt.Errorf("netstack: dial %s %s: unspecified address or port", network, address)
	}
	if err := checkFamily(network, ap.Addr()); err != nil {
		return nil, fmt.Errorf("netstack: dial %s %s: %w", network, address, err)
	}
	fa, proto := fullAddr(ap), netProto(ap.Addr())
	switch network {
	case "tcp", "tcp4", "tcp6":
		c, err := gonet.DialContextTCP(ctx, s.stack, fa, proto)
		if err != nil {
			return nil, fmt.Errorf("netstack: dial %s %s: %w", network, address, err)
		}
		return c, nil
	default: // udp, udp4, udp6: checkFamily rejected anything else
		c, err := gonet.DialUDP(s.stack, nil, &fa, proto)
		if err != nil {
			return nil, fmt.Errorf("netstack: dial %s %s: %w", network, address, err)
		}
		return &UDPConn{UDPConn: c}, nil
	}
}

func checkFamily(network string, a netip.Addr) error {
	switch network {
	case "tcp", "udp":
		return nil
	case "tcp4", "udp4":
		if !a.Is4() {
			return errors.New("not an IPv4 address")
		}
		return nil
	case "tcp6", "udp6":
		if !a.Is6() {
			return errors.New("not an IPv6 address")
		}
		return nil
	}
	return fmt.Errorf("unsupported network %q", network)
}

// listenProto picks the endpoint's network protocol for a listen address.
// An invalid address (zero AddrPort) means "any": a dual-stack IPv6
// endpoint when the stack has IPv6 (or nothing), else IPv4.
func (s *Stack) listenProto(a netip.Addr) (proto tcpip.NetworkProtocolNumber, dual bool) {
	switch {
	case a.Is4():
		return ipv4.ProtocolNumber, false
	case a.Is6():
		return ipv6.ProtocolNumber, a.IsUnspecified()
	case s.hasV4 && !s.hasV6:
		return ipv4.ProtocolNumber, false
	default:
		return ipv6.ProtocolNumber, true
	}
}

// ListenUDP opens an unconnected UDP socket in the stack. A zero port picks
// an ephemeral one; an unspecified or zero address binds to any address.
// The result is a *UDPConn; it takes and returns *net.UDPAddr.
func (s *Stack) ListenUDP(laddr netip.AddrPort) (net.PacketConn, error) {
	if s.ctx.Err() != nil {
		return nil, fmt.Errorf("netstack: listen udp %v: %w", laddr, net.ErrClosed)
	}
	a := laddr.Addr().Unmap()
	proto, dual := s.listenProto(a)
	fa := fullAddr(netip.AddrPortFrom(a, laddr.Port()))
	c, err := gonet.DialUDP(s.stack, &fa, nil, proto)
	if err != nil {
		return nil, fmt.Errorf("netstack: listen udp %v: %w", laddr, err)
	}
	return &UDPConn{UDPConn: c, dual: dual}, nil
}

// ListenTCP listens for TCP connections in the stack. A zero port picks an
// ephemeral one; an unspecified or zero address listens on all addresses.
func (s *Stack) ListenTCP(laddr netip.AddrPort) (net.Listener, error) {
	if s.ctx.Err() != nil {
		return nil, fmt.Errorf("netstack: listen tcp %v: %w", laddr, net.ErrClosed)
	}
	a := laddr.Addr().Unmap()
	proto, _ := s.listenProto(a)
	l, err := gonet.ListenTCP(s.stack, fullAddr(netip.AddrPortFrom(a, laddr.Port())), proto)
	if err != nil {
		return nil, fmt.Errorf("netstack: listen tcp %v: %w", laddr, err)
	}
	return l, nil
}

// UDPConn is a UDP socket of a Stack. It implements net.Conn and
// net.PacketConn; addresses are *net.UDPAddr with 4-byte IPs for IPv4.
type UDPConn struct {
	*gonet.UDPConn
	dual bool // dual-stack IPv6 endpoint: IPv4 peers are v4-mapped inside
}

// ReadFrom implements net.PacketConn.
func (c *UDPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := c.ReadFromUDPAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// ReadFromUDPAddrPort is ReadFrom returning a netip.AddrPort.
func (c *UDPConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, addr, err := c.UDPConn.ReadFrom(b)
	if err != nil {
		return n, netip.AddrPort{}, err
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return n, netip.AddrPort{}, fmt.Errorf("netstack: unexpected address type %T", addr)
	}
	ap := ua.AddrPort()
	return n, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// WriteTo implements net.PacketConn; addr must be a *net.UDPAddr.
func (c *UDPConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || ua == nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: c.LocalAddr(), Addr: addr, Err: fmt.Errorf("netstack: want *net.UDPAddr, got %T", addr)}
	}
	return c.WriteToUDPAddrPort(b, ua.AddrPort())
}

// WriteToUDPAddrPort is WriteTo with a netip.AddrPort.
func (c *UDPConn) WriteToUDPAddrPort(b []byte, ap netip.AddrPort) (int, error) {
	a := ap.Addr().Unmap()
	if c.dual && a.Is4() {
		a = netip.AddrFrom16(a.As16())
	}
	return c.UDPConn.WriteTo(b, &net.UDPAddr{IP: a.AsSlice(), Port: int(ap.Port())})
}
