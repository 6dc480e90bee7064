package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/tun/netstack"
)

// dnsTimeout bounds one relayed DNS exchange.
const dnsTimeout = 5 * time.Second

// maxDNSInFlight bounds concurrent relayed queries so a flood cannot exhaust
// the gateway's sockets.
const maxDNSInFlight = 256

// serveDNS relays DNS sent to the gateway's tunnel addresses (UDP and TCP
// port 53) to the configured upstream, for exit clients only.
func (g *Gateway) serveDNS(ctx context.Context) error {
	r := &dnsRelay{stack: g.stack, upstream: g.cfg.Exit.DNSUpstream, wg: &g.wg, log: g.log,
		allow:   func(a net.Addr) (netip.AddrPort, bool) { return g.exitClient(a) },
		refused: func() { g.stats.refused.Add(1) }}
	return r.serve(ctx, g.TunnelAddrs())
}

// dnsRelay answers DNS on addresses of a userspace stack by asking an
// upstream resolver: the gateway's relay for exit clients, and the mixnet IP
// packet router's (ExitDevice).
type dnsRelay struct {
	stack    *netstack.Stack
	upstream netip.AddrPort
	// allow says whether a query's source may use the relay (it counts its
	// own refusals), and returns it as an address.
	allow func(net.Addr) (netip.AddrPort, bool)
	// refused counts queries dropped because too many were in flight.
	refused func()
	wg      *sync.WaitGroup
	log     *slog.Logger
}

// serve listens on port 53 of addrs in the stack until ctx ends.
func (r *dnsRelay) serve(ctx context.Context, addrs []netip.Addr) error {
	up := r.upstream
	sem := make(chan struct{}, maxDNSInFlight)
	for _, a := range addrs {
		pc, err := r.stack.ListenUDP(netip.AddrPortFrom(a, 53))
		if err != nil {
			return err
		}
		ln, err := r.stack.ListenTCP(netip.AddrPortFrom(a, 53))
		if err != nil {
			pc.Close()
			return err
		}
		context.AfterFunc(ctx, func() { pc.Close(); ln.Close() })
		r.wg.Add(2)
		go func() {
			defer r.wg.Done()
			buf := make([]byte, 65535)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				src, ok := r.allow(from)
				if !ok {
					continue
				}
				select {
				case sem <- struct{}{}:
				default:
					r.refused()
					continue
				}
				q := append([]byte(nil), buf[:n]...)
				go func() {
					defer func() { <-sem }()
					if reply, err := exchangeUDP(ctx, up, q); err == nil {
						pc.WriteTo(reply, net.UDPAddrFromAddrPort(src))
					} else {
						r.log.Debug("DNS relay", "err", err)
					}
				}()
			}
		}()
		go func() {
			defer r.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				if _, ok := r.allow(c.RemoteAddr()); !ok {
					c.Close()
					continue
				}
				go relayTCP(ctx, c, up)
			}
		}()
	}
	return nil
}

// exitClient reports whether addr belongs to a registered exit client.
func (g *Gateway) exitClient(addr net.Addr) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return ap, false
	}
	p, ok := g.peers.lookup(ap.Addr())
	if !ok || p.role != registration.RoleExit {
		g.stats.refused.Add(1)
		return ap, false
	}
	return ap, true
}

func exchangeUDP(ctx context.Context, up netip.AddrPort, q []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", up.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func relayTCP(ctx context.Context, c net.Conn, up netip.AddrPort) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 4*dnsTimeout)
	defer cancel()
	var d net.Dialer
	u, err := d.DialContext(ctx, "tcp", up.String())
	if err != nil {
		return
	}
	defer u.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	u.SetDeadline(dl)
	done := make(chan struct{})
	go func() { io.Copy(u, c); close(done) }()
	io.Copy(c, u)
	<-done
}
