package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/nymvpn/nymvpn/tun/netstack"
	"golang.zx2c4.com/wireguard/tun"
)

// ExitDeviceConfig configures an ExitDevice.
type ExitDeviceConfig struct {
	// Pool4 and Pool6 hold the clients' addresses; the device takes the
	// first address of each (…1) as its own, where it answers DNS.
	Pool4, Pool6 netip.Prefix
	// MTU of the device (default 1500).
	MTU int
	// Policy is the exit policy, as for WireGuard exit clients: refusals,
	// outbound address, DNS upstream and the kernel mode.
	Policy ExitPolicy
	Logger *slog.Logger
}

// ExitDevice is an exit for IP packets that do not come through WireGuard:
// the mixnet IP packet router writes its clients' packets into it and reads
// what comes back. It is the gateway's own exit path with the same policy: a
// userspace forwarding stack that re-originates flows from the host's
// sockets, or, with Policy.Kernel, a kernel TUN with nftables masquerade
// beside that stack, which then only answers DNS on the device's addresses.
// The caller checks that a packet's source is the client that sent it.
type ExitDevice struct {
	tun.Device
	// Addr4 and Addr6 are the device's own addresses (DNS).
	Addr4, Addr6 netip.Addr

	stack  *netstack.Stack
	kexit  *kernelExit
	split  *splitDevice
	cancel context.CancelFunc
	wg     sync.WaitGroup

	flows, refused atomic.Int64
	closeOnce      sync.Once
	closeErr       error
}

// ExitDeviceStats counts an ExitDevice's work.
type ExitDeviceStats struct {
	// Flows are flows re-originated by the userspace stack; Refused flows
	// and DNS queries the policy refused.
	Flows, Refused int64
	Stack          netstack.Stats
	// KernelOut and KernelIn are packets written to and read from the
	// kernel TUN (kernel mode).
	KernelOut, KernelIn int64
}

// NewExitDevice starts an exit device. In kernel mode it creates a TUN
// (nymx<N>) with the device's addresses and its own nftables table, and
// turns on forwarding; Close undoes that.
func NewExitDevice(cfg ExitDeviceConfig) (*ExitDevice, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if !cfg.Pool4.Addr().Is4() || !cfg.Pool6.Addr().Is6() || cfg.Pool4.Bits() > 30 || cfg.Pool6.Bits() > 126 {
		return nil, fmt.Errorf("gateway: exit device pools %v and %v: want an IPv4 and an IPv6 prefix with room for clients", cfg.Pool4, cfg.Pool6)
	}
	if cfg.Policy.Kernel && cfg.Policy.AllowLoopback {
		return nil, errors.New("gateway: the kernel exit cannot reach loopback (the kernel does not forward to it); use the userspace exit for a loopback network")
	}
	cfg.Pool4, cfg.Pool6 = cfg.Pool4.Masked(), cfg.Pool6.Masked()
	d := &ExitDevice{Addr4: cfg.Pool4.Addr().Next(), Addr6: cfg.Pool6.Addr().Next()}
	fw := &exitDeviceForwarder{d: d, policy: cfg.Policy, pools: []netip.Prefix{cfg.Pool4, cfg.Pool6},
		direct: &netstack.DirectForwarder{LocalAddr: cfg.Policy.OutboundAddr}, log: cfg.Logger}
	var err error
	d.stack, err = netstack.New(netstack.Config{
		Addresses: []netip.Addr{d.Addr4, d.Addr6}, MTU: cfg.MTU, AllowLoopback: cfg.Policy.AllowLoopback,
		Forward: fw, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: exit device stack: %w", err)
	}
	d.Device = d.stack
	if cfg.Policy.Kernel {
		k, err := startKernelExit(kernelExitConfig{
			Pool4: cfg.Pool4, Pool6: cfg.Pool6, Gateway4: d.Addr4, Gateway6: d.Addr6,
			MTU: cfg.MTU, Deny: cfg.Policy.Deny, Outbound: cfg.Policy.OutboundAddr, Logger: cfg.Logger,
		})
		if err != nil {
			d.stack.Close()
			return nil, err
		}
		own := func(pkt []byte) bool {
			_, dst, ok := netstack.PacketAddrs(pkt)
			return ok && dst != d.Addr4 && dst != d.Addr6
		}
		if d.split, err = newSplitDevice(d.stack, k.dev, own, cfg.Logger); err != nil {
			d.stack.Close()
			return nil, errors.Join(err, k.Close())
		}
		d.kexit, d.Device = k, d.split
	}
	if cfg.Policy.DNSUpstream.IsValid() {
		ctx, cancel := context.WithCancel(context.Background())
		d.cancel = cancel
		r := &dnsRelay{stack: d.stack, upstream: cfg.Policy.DNSUpstream, wg: &d.wg, log: cfg.Logger,
			allow: func(a net.Addr) (netip.AddrPort, bool) {
				ap, err := netip.ParseAddrPort(a.String())
				if err != nil || !fw.client(ap.Addr()) {
					d.refused.Add(1)
					return ap, false
				}
				return ap, true
			},
			refused: func() { d.refused.Add(1) }}
		if err := r.serve(ctx, []netip.Addr{d.Addr4, d.Addr6}); err != nil {
			d.Close()
			return nil, fmt.Errorf("gateway: exit device DNS relay: %w", err)
		}
	}
	return d, nil
}

// Stats returns the device's counters.
func (d *ExitDevice) Stats() ExitDeviceStats {
	st := ExitDeviceStats{Flows: d.flows.Load(), Refused: d.refused.Load(), Stack: d.stack.Stats()}
	if d.split != nil {
		st.KernelOut, st.KernelIn, _ = d.split.stats()
	}
	return st
}

// Kernel reports the kernel TUN's name, or "" in userspace mode.
func (d *ExitDevice) Kernel() string {
	if d.kexit == nil {
		return ""
	}
	return d.kexit.name
}

// Close stops the device and, in kernel mode, undoes its host changes.
func (d *ExitDevice) Close() error {
	d.closeOnce.Do(func() {
		if d.cancel != nil {
			d.cancel()
		}
		d.closeErr = d.Device.Close()
		d.wg.Wait()
		if d.kexit != nil {
			if err := d.kexit.Close(); err != nil {
				d.closeErr = errors.Join(d.closeErr, fmt.Errorf("gateway: undo the exit device's kernel exit: %w", err))
			}
		}
	})
	return d.closeErr
}

// exitDeviceForwarder applies the exit policy to an ExitDevice's flows.
type exitDeviceForwarder struct {
	d      *ExitDevice
	policy ExitPolicy
	pools  []netip.Prefix
	direct *netstack.DirectForwarder
	log    *slog.Logger
}

var _ netstack.Forwarder = (*exitDeviceForwarder)(nil)

func (f *exitDeviceForwarder) client(a netip.Addr) bool {
	a = a.Unmap()
	return f.pools[0].Contains(a) || f.pools[1].Contains(a)
}

func (f *exitDeviceForwarder) check(fl netstack.Flow, proto string) error {
	err := f.policy.refuse(fl.Dst.Addr().Unmap(), f.pools...)
	if err == nil && !f.client(fl.Src.Addr()) {
		err = fmt.Errorf("%w: %s from %v, not a client address", errPolicy, proto, fl.Src)
	}
	if err != nil {
		f.d.refused.Add(1)
		f.log.Debug("exit device flow refused", "flow", fl, "proto", proto, "err", err)
		return err
	}
	f.d.flows.Add(1)
	return nil
}

func (f *exitDeviceForwarder) DialTCP(ctx context.Context, fl netstack.Flow) (net.Conn, error) {
	if err := f.check(fl, "tcp"); err != nil {
		return nil, err
	}
	return f.direct.DialTCP(ctx, fl)
}

func (f *exitDeviceForwarder) DialUDP(ctx context.Context, fl netstack.Flow) (net.Conn, error) {
	if err := f.check(fl, "udp"); err != nil {
		return nil, err
	}
	return f.direct.DialUDP(ctx, fl)
}

func (f *exitDeviceForwarder) Ping(ctx context.Context, fl netstack.Flow, payload []byte) error {
	if err := f.check(fl, "icmp"); err != nil {
		return err
	}
	return f.direct.Ping(ctx, fl, payload)
}
