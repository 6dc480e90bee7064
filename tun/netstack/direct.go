package netstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Protocol names passed to PolicyForwarder.Allow.
const (
	ProtoTCP  = "tcp"
	ProtoUDP  = "udp"
	ProtoICMP = "icmp"
)

// ErrDenied is wrapped by every refusal of a PolicyForwarder.
var ErrDenied = errors.New("netstack: flow denied by policy")

// DirectForwarder re-originates forwarded flows from the host's own sockets.
//
// ICMP echo goes through unprivileged ping sockets (icmp.ListenPacket with
// "udp4"/"udp6"), which Linux permits only to groups within the sysctl
// net.ipv4.ping_group_range (default "1 0": nobody; e.g.
// `sysctl -w net.ipv4.ping_group_range="0 2147483647"` allows everyone; the
// same sysctl governs IPv6). When that fails it falls back to raw
// "ip4:icmp"/"ip6:ipv6-icmp" sockets, which need root or CAP_NET_RAW. If
// neither works, Ping returns an error and echo requests go unanswered.
type DirectForwarder struct {
	// LocalAddr, if valid, is the source address bound for flows whose
	// destination has the same family (a gateway on 127.0.0.x re-originates
	// from its own loopback address). Other flows use the system's choice.
	LocalAddr netip.Addr
	// DialTimeout bounds connection attempts beyond the caller's context;
	// zero means no extra bound.
	DialTimeout time.Duration
}

var _ Forwarder = (*DirectForwarder)(nil)

func (d *DirectForwarder) local(dst netip.Addr) (netip.Addr, bool) {
	la := d.LocalAddr.Unmap()
	if !la.IsValid() || la.Is4() != dst.Is4() {
		return netip.Addr{}, false
	}
	return la, true
}

func (d *DirectForwarder) dialer(dst netip.Addr, udp bool) *net.Dialer {
	nd := &net.Dialer{Timeout: d.DialTimeout}
	if la, ok := d.local(dst); ok {
		if udp {
			nd.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(la, 0))
		} else {
			nd.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(la, 0))
		}
	}
	return nd
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// DialTCP implements Forwarder.
func (d *DirectForwarder) DialTCP(ctx context.Context, f Flow) (net.Conn, error) {
	dst := unmapped(f.Dst)
	c, err := d.dialer(dst.Addr(), false).DialContext(ctx, "tcp", dst.String())
	if err != nil {
		return nil, fmt.Errorf("direct forwarder: tcp %v: %w", f, err)
	}
	return c, nil
}

// DialUDP implements Forwarder.
func (d *DirectForwarder) DialUDP(ctx context.Context, f Flow) (net.Conn, error) {
	dst := unmapped(f.Dst)
	c, err := d.dialer(dst.Addr(), true).DialContext(ctx, "udp", dst.String())
	if err != nil {
		return nil, fmt.Errorf("direct forwarder: udp %v: %w", f, err)
	}
	return c, nil
}

// Ping implements Forwarder: it sends one echo request with payload to
// f.Dst and waits for the matching reply until ctx ends (at most 5 s
// without a deadline).
func (d *DirectForwarder) Ping(ctx context.Context, f Flow, payload []byte) error {
	dst := f.Dst.Addr().Unmap()
	c, raw, err := d.listenICMP(dst)
	if err != nil {
		return fmt.Errorf("direct forwarder: ping %v: %w", dst, err)
	}
	defer c.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var idseq [4]byte
	rand.Read(idseq[:])
	id, seq := int(binary.BigEndian.Uint16(idseq[:2])), int(binary.BigEndian.Uint16(idseq[2:]))
	var (
		reqType, replyType icmp.Type
		proto              int
	)
	if dst.Is4() {
		reqType, replyType, proto = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply, 1
	} else {
		reqType, replyType, proto = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
	}
	msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: id, Seq: seq, Data: payload}}
	wire, err := msg.Marshal(nil) // ICMPv6 checksums are filled in by the kernel
	if err != nil {
		return fmt.Errorf("direct forwarder: ping %v: marshal: %w", dst, err)
	}
	var to net.Addr = &net.UDPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	if raw {
		to = &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	}
	if _, err := c.WriteTo(wire, to); err != nil {
		return fmt.Errorf("direct forwarder: ping %v: send: %w", dst, err)
	}
	buf := make([]byte, 65536)
	for {
		n, peer, err := c.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("direct forwarder: ping %v: %w", dst, ctx.Err())
			}
			return fmt.Errorf("direct forwarder: ping %v: no reply: %w", dst, err)
		}
		if peerAddr(peer) != dst.WithZone("") {
			continue
		}
		rm, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || rm.Type != replyType {
			continue
		}
		echo, ok := rm.Body.(*icmp.Echo)
		// Ping sockets rewrite the identifier; raw sockets see every
		// reply on the host, so there it must match too.
		if !ok || echo.Seq != seq || (raw && echo.ID != id) || !bytes.Equal(echo.Data, payload) {
			continue
		}
		return nil
	}
}

func peerAddr(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.IPAddr:
		ip = a.IP
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}

// listenICMP opens an unprivileged ping socket, or a raw ICMP socket when
// ping sockets are not permitted.
func (d *DirectForwarder) listenICMP(dst netip.Addr) (c *icmp.PacketConn, raw bool, err error) {
	dgram, rawNet, bind := "udp4", "ip4:icmp", "0.0.0.0"
	if dst.Is6() {
		dgram, rawNet, bind = "udp6", "ip6:ipv6-icmp", "::"
	}
	if la, ok := d.local(dst); ok {
		bind = la.String()
	}
	c, err = icmp.ListenPacket(dgram, bind)
	if err == nil {
		return c, false, nil
	}
	c, rerr := icmp.ListenPacket(rawNet, bind)
	if rerr == nil {
		return c, true, nil
	}
	return nil, false, fmt.Errorf("no ICMP socket (ping socket: %w; raw socket: %w; see net.ipv4.ping_group_range)", err, rerr)
}

// PolicyForwarder asks Allow about every flow before passing it to Next.
// proto is ProtoTCP, ProtoUDP or ProtoICMP. A nil Allow denies everything.
// Refusals wrap ErrDenied.
type PolicyForwarder struct {
	Allow func(f Flow, proto string) error
	Next  Forwarder
}

var _ Forwarder = (*PolicyForwarder)(nil)

func (p *PolicyForwarder) check(f Flow, proto string) error {
	if p.Allow == nil {
		return fmt.Errorf("%w: %s %v: no policy", ErrDenied, proto, f)
	}
	if err := p.Allow(f, proto); err != nil {
		if errors.Is(err, ErrDenied) {
			return err
		}
		return fmt.Errorf("%w: %s %v: %w", ErrDenied, proto, f, err)
	}
	if p.Next == nil {
		return fmt.Errorf("policy forwarder: %s %v: no next forwarder", proto, f)
	}
	return nil
}

// DialTCP implements Forwarder.
func (p *PolicyForwarder) DialTCP(ctx context.Context, f Flow) (net.Conn, error) {
	if err := p.check(f, ProtoTCP); err != nil {
		return nil, err
	}
	return p.Next.DialTCP(ctx, f)
}

// DialUDP implements Forwarder.
func (p *PolicyForwarder) DialUDP(ctx context.Context, f Flow) (net.Conn, error) {
	if err := p.check(f, ProtoUDP); err != nil {
		return nil, err
	}
	return p.Next.DialUDP(ctx, f)
}

// Ping implements Forwarder.
func (p *PolicyForwarder) Ping(ctx context.Context, f Flow, payload []byte) error {
	if err := p.check(f, ProtoICMP); err != nil {
		return err
	}
	return p.Next.Ping(ctx, f, payload)
}

// AllowOnly returns an Allow function for PolicyForwarder that permits flows
// of proto to exactly the listed destinations and denies everything else
// (an entry gateway forwarding only to exit gateways' WireGuard ports). For
// ProtoICMP only the address of each destination counts.
func AllowOnly(proto string, dsts ...netip.AddrPort) func(Flow, string) error {
	set := make(map[netip.AddrPort]struct{}, len(dsts))
	for _, d := range dsts {
		if proto == ProtoICMP {
			d = netip.AddrPortFrom(d.Addr(), 0)
		}
		set[unmapped(d)] = struct{}{}
	}
	return func(f Flow, p string) error {
		if p != proto {
			return fmt.Errorf("%w: protocol %s not allowed", ErrDenied, p)
		}
		dst := unmapped(f.Dst)
		if proto == ProtoICMP {
			dst = netip.AddrPortFrom(dst.Addr(), 0)
		}
		if _, ok := set[dst]; !ok {
			return fmt.Errorf("%w: destination %v not allowed", ErrDenied, f.Dst)
		}
		return nil
	}
}
