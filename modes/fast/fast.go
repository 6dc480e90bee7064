// Package fast is the fast-mode client: two WireGuard tunnels, one inside the
// other. The entry tunnel runs in a userspace network stack and carries only
// the exit tunnel's UDP and the exit registration, so the entry gateway sees who
// the client is but not where it goes, and the exit sees where it goes but only
// the entry gateway's address.
//
//	app ──▶ inner device (kernel TUN or netstack, MTU 1340)
//	          │ WireGuard to the exit, UDP sent with wgbind through ──▶
//	        entry netstack (MTU 1420)
//	          │ WireGuard to the entry, UDP on a real socket ──▶ entry gateway
//
// MTUs: the entry tunnel's MTU is NymVPN's 1420 (a 1500-byte path minus
// 80 bytes of IPv6+UDP+WireGuard overhead); the inner tunnel pays the same
// 80 bytes again inside it, so 1340.
package fast

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
	"github.com/nymvpn/nymvpn/tun/netstack"
	"github.com/nymvpn/nymvpn/wgbind"
	"github.com/nymvpn/nymvpn/wguapi"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// MTUs of the two tunnels.
const (
	EntryMTU = 1420
	ExitMTU  = 1340
)

// KeepaliveInterval keeps NAT mappings and gateway peer entries alive.
const KeepaliveInterval = 25 * time.Second

// Stage is a step of Connect, reported for progress.
type Stage string

// The stages in order.
const (
	StageRegisterEntry Stage = "registering with the entry gateway"
	StageEntryTunnel   Stage = "starting the entry tunnel"
	StageRegisterExit  Stage = "registering with the exit gateway through the entry"
	StageExitTunnel    Stage = "starting the exit tunnel"
	StageHandshake     Stage = "waiting for the exit handshake"
)

// Config says how to connect.
type Config struct {
	Entry, Exit directory.Node
	// EntryKey and ExitKey are the client's WireGuard private keys for each
	// hop; zero keys are generated for this connection.
	EntryKey, ExitKey transport.Key
	// Ticket returns the ticket to pay a gateway in a role, or nil.
	Ticket func(ctx context.Context, role string, gw directory.Node) ([]byte, error)
	// Inner is the device the exit tunnel runs on (a kernel TUN, owned by
	// the caller); nil creates a userspace netstack returned as Tunnel.Net.
	Inner tun.Device
	// Dial opens the TCP connection to the entry gateway's registration
	// endpoint; nil uses net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// OuterBind carries the entry tunnel's UDP; nil uses a standard socket.
	OuterBind conn.Bind
	// FwMark, when not zero, marks the entry tunnel's UDP socket (Linux
	// SO_MARK, through the bind's SetMark), so that policy routing can keep
	// the tunnel's own packets out of the tunnel. The registration
	// connection is marked by Dial.
	FwMark uint32
	// AllowLoopback lets the stacks carry packets to loopback addresses, as
	// the local network on one machine needs.
	AllowLoopback bool
	Progress      func(Stage)
	Logger        *slog.Logger
}

// Tunnel is an established two-hop tunnel.
type Tunnel struct {
	Entry, Exit directory.Node
	EntryGrant  registration.Grant
	ExitGrant   registration.Grant
	// Net is the userspace stack on the inner tunnel when Config.Inner was nil.
	Net *netstack.Stack

	entryStack *netstack.Stack
	entryDev   *device.Device
	exitDev    *device.Device
	exitKey    transport.Key
}

// Connect registers with both gateways and brings up both tunnels. On error
// everything it started is stopped again.
func Connect(ctx context.Context, cfg Config) (t *Tunnel, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	progress := func(s Stage) {
		cfg.Logger.Debug("fast mode", "stage", string(s))
		if cfg.Progress != nil {
			cfg.Progress(s)
		}
	}
	if !cfg.Entry.Has(directory.RoleEntry) {
		return nil, fmt.Errorf("fast: %s is not an entry gateway", cfg.Entry.ID)
	}
	if !cfg.Exit.Has(directory.RoleExit) {
		return nil, fmt.Errorf("fast: %s is not an exit gateway", cfg.Exit.ID)
	}
	for _, k := range []*transport.Key{&cfg.EntryKey, &cfg.ExitKey} {
		if k.IsZero() {
			if *k, err = transport.GenerateKey(); err != nil {
				return nil, err
			}
		}
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	t = &Tunnel{Entry: cfg.Entry, Exit: cfg.Exit, exitKey: cfg.ExitKey}
	defer func() {
		if err != nil {
			t.Close()
			t = nil
		}
	}()

	// Hop 1: register with the entry over the real network.
	progress(StageRegisterEntry)
	entryGrant, entryPSK, err := register(ctx, cfg, cfg.Entry, registration.RoleEntry, cfg.EntryKey, func(ctx context.Context) (net.Conn, error) {
		return cfg.Dial(ctx, "tcp", cfg.Entry.RegistrationAddr)
	})
	if err != nil {
		return t, err
	}
	t.EntryGrant = *entryGrant

	progress(StageEntryTunnel)
	entryEP, err := endpoint(cfg.Entry.WireGuardAddr, entryGrant.Port)
	if err != nil {
		return t, err
	}
	t.entryStack, err = netstack.New(netstack.Config{
		Addresses: entryGrant.Addresses, MTU: mtuOr(entryGrant.MTU, EntryMTU),
		AllowLoopback: cfg.AllowLoopback, Logger: cfg.Logger,
	})
	if err != nil {
		return t, fmt.Errorf("fast: entry network stack: %w", err)
	}
	bind := cfg.OuterBind
	if bind == nil {
		bind = conn.NewStdNetBind()
	}
	t.entryDev, err = startDevice(t.entryStack, bind, cfg.EntryKey, entryGrant, entryPSK, entryEP, cfg.Logger.With("hop", "entry"))
	if err != nil {
		return t, fmt.Errorf("fast: entry tunnel: %w", err)
	}
	if cfg.FwMark != 0 {
		if err := t.entryDev.IpcSet(fmt.Sprintf("fwmark=%d\n", cfg.FwMark)); err != nil {
			return t, fmt.Errorf("fast: mark the entry tunnel's socket: %w", err)
		}
	}

	// Hop 2: register with the exit through the entry tunnel.
	progress(StageRegisterExit)
	exitGrant, exitPSK, err := register(ctx, cfg, cfg.Exit, registration.RoleExit, cfg.ExitKey, func(ctx context.Context) (net.Conn, error) {
		return t.entryStack.DialContext(ctx, "tcp", cfg.Exit.RegistrationAddr)
	})
	if err != nil {
		return t, err
	}
	t.ExitGrant = *exitGrant

	progress(StageExitTunnel)
	exitEP, err := endpoint(cfg.Exit.WireGuardAddr, exitGrant.Port)
	if err != nil {
		return t, err
	}
	inner := cfg.Inner
	if inner == nil {
		t.Net, err = netstack.New(netstack.Config{
			Addresses: exitGrant.Addresses, MTU: ExitMTU, AllowLoopback: cfg.AllowLoopback, Logger: cfg.Logger,
		})
		if err != nil {
			return t, fmt.Errorf("fast: network stack: %w", err)
		}
		inner = t.Net
	}
	listenAddr := netip.IPv4Unspecified()
	if exitEP.Addr().Is6() {
		listenAddr = netip.IPv6Unspecified()
	}
	innerBind := wgbind.New(func(port uint16) (net.PacketConn, error) {
		return t.entryStack.ListenUDP(netip.AddrPortFrom(listenAddr, port))
	})
	t.exitDev, err = startDevice(inner, innerBind, cfg.ExitKey, exitGrant, exitPSK, exitEP, cfg.Logger.With("hop", "exit"))
	if err != nil {
		return t, fmt.Errorf("fast: exit tunnel: %w", err)
	}

	progress(StageHandshake)
	if err := waitHandshake(ctx, t.exitDev); err != nil {
		return t, fmt.Errorf("fast: exit gateway %s did not complete the WireGuard handshake through the entry: %w", cfg.Exit.ID, err)
	}
	return t, nil
}

func mtuOr(m, def int) int {
	if m == 0 || m > def {
		return def
	}
	return m
}

func register(ctx context.Context, cfg Config, gw directory.Node, role string, key transport.Key, dial func(context.Context) (net.Conn, error)) (*registration.Grant, [32]byte, error) {
	var ticket []byte
	if cfg.Ticket != nil {
		var err error
		if ticket, err = cfg.Ticket(ctx, role, gw); err != nil {
			return nil, [32]byte{}, fmt.Errorf("fast: ticket for %s gateway %s: %w", role, gw.ID, err)
		}
	}
	c, err := dial(ctx)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("fast: connect to %s gateway %s at %s: %w", role, gw.ID, gw.RegistrationAddr, err)
	}
	res, err := registration.Register(ctx, c, registration.Gateway{
		NoiseKey: transport.Key(gw.NoiseKey), WireGuardKey: transport.Key(gw.WireGuardKey),
	}, registration.Params{Role: role, WireGuardKey: key, Ticket: ticket})
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("fast: register with %s gateway %s: %w", role, gw.ID, err)
	}
	if res.GatewayKey != transport.Key(gw.WireGuardKey) {
		return nil, [32]byte{}, fmt.Errorf("fast: %s gateway %s answered with a WireGuard key the directory does not list", role, gw.ID)
	}
	return &res.Grant, res.PresharedKey, nil
}

func endpoint(dirAddr string, port uint16) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(dirAddr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("fast: gateway WireGuard address %q: %w", dirAddr, err)
	}
	if port != 0 {
		ap = netip.AddrPortFrom(ap.Addr(), port)
	}
	return ap, nil
}

func startDevice(tdev tun.Device, bind conn.Bind, key transport.Key, g *registration.Grant, psk [32]byte, ep netip.AddrPort, log *slog.Logger) (*device.Device, error) {
	dev := device.NewDevice(tdev, bind, wguapi.Logger(log))
	conf := fmt.Sprintf("private_key=%s\npublic_key=%s\npreshared_key=%s\nendpoint=%s\npersistent_keepalive_interval=%d\nreplace_allowed_ips=true\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\n",
		hex.EncodeToString(key[:]), hex.EncodeToString(g.GatewayKey[:]), hex.EncodeToString(psk[:]), ep, int(KeepaliveInterval/time.Second))
	if err := dev.IpcSet(conf); err != nil {
		dev.Close()
		return nil, fmt.Errorf("configure WireGuard: %w", err)
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("WireGuard up: %w", err)
	}
	return dev, nil
}

// waitHandshake polls the device until its peer has completed a handshake.
func waitHandshake(ctx context.Context, dev *device.Device) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if hs, _ := lastHandshake(dev); !hs.IsZero() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func lastHandshake(dev *device.Device) (time.Time, error) {
	st, err := wguapi.Get(dev)
	if err != nil || len(st.Peers) == 0 {
		return time.Time{}, err
	}
	return st.Peers[0].LastHandshake, nil
}

// Stats of the two hops.
type Stats struct {
	EntryTx, EntryRx, ExitTx, ExitRx int64
	// LastHandshake is the exit hop's latest handshake, EntryHandshake the
	// entry hop's; a live tunnel renews both at least every two minutes.
	LastHandshake, EntryHandshake time.Time
}

// Stats reads the WireGuard counters of both hops.
func (t *Tunnel) Stats() Stats {
	var s Stats
	s.EntryTx, s.EntryRx = transfer(t.entryDev)
	s.ExitTx, s.ExitRx = transfer(t.exitDev)
	if t.exitDev != nil {
		s.LastHandshake, _ = lastHandshake(t.exitDev)
	}
	if t.entryDev != nil {
		s.EntryHandshake, _ = lastHandshake(t.entryDev)
	}
	return s
}

func transfer(dev *device.Device) (tx, rx int64) {
	if dev == nil {
		return 0, 0
	}
	st, err := wguapi.Get(dev)
	if err != nil {
		return 0, 0
	}
	return st.Totals()
}

// Addresses are the client's addresses inside the tunnel (from the exit).
func (t *Tunnel) Addresses() []netip.Addr { return t.ExitGrant.Addresses }

// DNSServers are the resolvers to use inside the tunnel: the exit gateway's
// own tunnel addresses.
func (t *Tunnel) DNSServers() []netip.Addr { return t.ExitGrant.GatewayAddresses }

// Close stops both tunnels; it is safe on a partly built Tunnel.
func (t *Tunnel) Close() error {
	var errs []error
	if t.exitDev != nil {
		t.exitDev.Close() // also closes the inner device
		t.exitDev = nil
	} else if t.Net != nil {
		errs = append(errs, t.Net.Close())
	}
	if t.entryDev != nil {
		t.entryDev.Close()
		t.entryDev = nil
	} else if t.entryStack != nil {
		errs = append(errs, t.entryStack.Close())
	}
	return errors.Join(errs...)
}
