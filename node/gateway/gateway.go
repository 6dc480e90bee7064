// Package gateway is the gateway role of nym-node: a WireGuard endpoint with an
// address pool, a registration service behind a Noise channel, and a packet
// router that decides, per client, where tunnel traffic may go.
//
// A client registers for a role. Traffic of an entry client may only reach the
// WireGuard and registration endpoints of exit gateways listed in the directory
// (the inner hop of fast mode); traffic of an exit client goes to the outside,
// subject to the exit policy. Without root the router is a userspace network
// stack that terminates each flow and re-originates it from the gateway's own
// sockets. As root on Linux the exit role can instead forward through a kernel
// TUN with nftables masquerade (ExitPolicy.Kernel); entry clients and the DNS
// relay stay on the userspace stack.
//
// With Config.Mixnet the gateway is also a Sphinx node (package mixnode): the
// final hop of mixnet routes. A packet whose recipient is a mixnet client
// connected to this gateway is delivered to it; any other goes to the
// ExitHandler (the exit's IP packet router), or is dropped and counted. An
// entry gateway accepts mixnet clients over Noise NK and forwards their
// packets to the mix node they name (see package mixnet for the protocol).
package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
	"github.com/nymvpn/nymvpn/tun/netstack"
	"github.com/nymvpn/nymvpn/wgbind"
	"github.com/nymvpn/nymvpn/wguapi"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// Defaults, NymVPN's where it has them.
var (
	DefaultPool4 = netip.MustParsePrefix("10.1.0.0/16")
	DefaultPool6 = netip.MustParsePrefix("fc01::/112")
)

const (
	// DefaultMTU is the MTU of the gateway's tunnel, NymVPN's outer MTU.
	DefaultMTU = 1420
	// DefaultPeerIdle removes a client this long after its last registration
	// or WireGuard handshake (clients keep alive every 25 s and rekey every 2 min).
	DefaultPeerIdle = 5 * time.Minute
)

// Config configures a gateway.
type Config struct {
	ID    string
	Roles []directory.Role // entry, exit, or both
	// NoiseKey is the private static key of the registration endpoint;
	// WireGuardKey the private WireGuard key. The directory publishes both
	// public keys.
	NoiseKey, WireGuardKey transport.Key
	// WireGuardListen (UDP) and RegistrationListen (TCP); port 0 picks one.
	WireGuardListen, RegistrationListen netip.AddrPort
	Pool4, Pool6                        netip.Prefix
	MTU                                 int
	// FreePass admits clients without a ticket: a development switch only.
	FreePass bool
	// Payment makes the gateway take zk-nym tickets (ignored with FreePass);
	// without it and without FreePass every registration is refused.
	Payment *PaymentConfig
	// Topology returns the gateway's current view of the directory; entry
	// traffic may only reach exits it lists. Required for the entry role.
	Topology func() *directory.Topology
	Exit     ExitPolicy
	PeerIdle time.Duration
	// Mixnet, if set, makes the gateway a Sphinx node: the final hop of
	// mixnet routes and, with the entry role, the ingress of mixnet clients.
	Mixnet *MixnetConfig
	Logger *slog.Logger
}

// ExitPolicy says where exit traffic may go.
type ExitPolicy struct {
	// OutboundAddr is the local address flows are re-originated from
	// (unset: the system chooses).
	OutboundAddr netip.Addr
	// AllowLoopback lets exit traffic reach this host's loopback addresses.
	// Only the local test network, where the "internet" is loopback, sets it.
	AllowLoopback bool
	// Deny lists destinations refused in addition to the built-in ones
	// (unspecified, multicast, link-local, the gateway's own pools).
	Deny []netip.Prefix
	// DNSUpstream answers DNS sent to the gateway's tunnel addresses.
	DNSUpstream netip.AddrPort
	// Kernel forwards exit clients' traffic through a kernel TUN with
	// nftables masquerade instead of re-originating it in userspace (Linux,
	// root or CAP_NET_ADMIN). The gateway creates the TUN (nymx0, nymx1, …)
	// with its tunnel addresses, turns on IPv4 and IPv6 forwarding and adds
	// one nftables table (inet nymvpn_exit_<tun>) that enforces the same
	// refusals as the userspace exit; Close undoes all of it. OutboundAddr,
	// if set, becomes the SNAT address of its family. Traffic to the
	// gateway's own tunnel addresses (DNS) and entry clients' traffic keep
	// going through the userspace stack.
	Kernel bool
}

// Gateway is a running gateway.
type Gateway struct {
	cfg    Config
	log    *slog.Logger
	dev    *device.Device
	stack  *netstack.Stack
	kexit  *kernelExit  // kernel exit mode only
	split  *splitDevice // kernel exit mode only
	peers  *peerTable
	reg    *registration.Server
	regLn  net.Listener
	wgPort uint16
	stats  counters
	mix    *mixSide  // nil without the mixnet
	pay    *payments // nil with FreePass or without PaymentConfig
	// allowances keeps paid allowances across restarts (with pay).
	allowances *allowanceStore

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

type counters struct {
	entryFlows, exitFlows, refused atomic.Int64
	// tickets accepted and refused, peers cut off for running out, spends
	// reported to issuers.
	tickets, ticketsRefused, cutOff, reported atomic.Int64
}

// Stats is a snapshot of a gateway's counters.
type Stats struct {
	Peers                       int
	Registered, Refused, Failed int64
	EntryFlows, ExitFlows       int64 // flows forwarded for each role
	PolicyRefused               int64 // flows refused by the entry or exit policy
	Stack                       netstack.Stats
	// Kernel exit mode: packets of exit clients handed to the kernel TUN
	// (KernelOut) and read back from it (KernelIn); packets from either
	// device that could not be passed to WireGuard (ReadDropped).
	KernelOut, KernelIn, ReadDropped int64
	// Tickets: accepted, refused, serials on record, spends not yet taken by
	// every issuer, spends reported, peers cut off for running out of
	// allowance.
	TicketsAccepted, TicketsRefused, SerialsStored int64
	ReportsPending, Reported, CutOff               int64
}

// New starts a gateway: it opens both listeners and the WireGuard device.
func New(cfg Config) (*Gateway, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Roles) == 0 {
		return nil, errors.New("gateway: no role: want entry, exit or both")
	}
	for _, r := range cfg.Roles {
		if r != directory.RoleEntry && r != directory.RoleExit {
			return nil, fmt.Errorf("gateway: role %q is not a gateway role", r)
		}
	}
	if slices.Contains(cfg.Roles, directory.RoleEntry) && cfg.Topology == nil {
		return nil, errors.New("gateway: the entry role needs the directory's topology")
	}
	if cfg.NoiseKey.IsZero() || cfg.WireGuardKey.IsZero() {
		return nil, errors.New("gateway: Noise and WireGuard keys required")
	}
	if !cfg.Pool4.IsValid() {
		cfg.Pool4 = DefaultPool4
	}
	if !cfg.Pool6.IsValid() {
		cfg.Pool6 = DefaultPool6
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.PeerIdle == 0 {
		cfg.PeerIdle = DefaultPeerIdle
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger.With("gateway", cfg.ID)}

	var err error
	if !cfg.FreePass && cfg.Payment != nil {
		if g.pay, err = openPayments(*cfg.Payment, cfg.NoiseKey.Public(), g.log); err != nil {
			return nil, err
		}
	}
	closePay := func() {
		if g.pay != nil {
			g.pay.close()
		}
	}
	g.peers, err = newPeerTable(nil, cfg.Pool4, cfg.Pool6, time.Now)
	if err != nil {
		closePay()
		return nil, err
	}
	if g.pay != nil {
		g.peers.grace = DefaultTopUpGrace
		if g.allowances, err = openAllowanceStore(g.pay.db, g.pay.cfg.Now); err != nil {
			closePay()
			return nil, err
		}
	}
	g.stack, err = netstack.New(netstack.Config{
		Addresses:     []netip.Addr{g.peers.gw4, g.peers.gw6},
		MTU:           cfg.MTU,
		AllowLoopback: cfg.Exit.AllowLoopback || cfg.allowsLoopbackExits(),
		Forward:       &router{g: g, direct: &netstack.DirectForwarder{LocalAddr: cfg.Exit.OutboundAddr}},
		Logger:        g.log,
	})
	if err != nil {
		closePay()
		return nil, fmt.Errorf("gateway: network stack: %w", err)
	}
	var dev tun.Device = g.stack
	if cfg.Exit.Kernel {
		if dev, err = g.startKernelExit(); err != nil {
			g.stack.Close()
			closePay()
			return nil, err
		}
	}
	g.dev = device.NewDevice(dev, wgbind.UDP(cfg.WireGuardListen.Addr()), wguapi.Logger(g.log))
	g.peers.dev = g.dev
	// fail stops what New started so far: the device closes the stack and,
	// in kernel mode, the TUN; the kernel exit undoes its host changes.
	fail := func(err error) (*Gateway, error) {
		g.dev.Close()
		closePay()
		if g.kexit != nil {
			if cerr := g.kexit.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		return nil, err
	}
	if err := g.dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=%d\n", hex.EncodeToString(cfg.WireGuardKey[:]), cfg.WireGuardListen.Port())); err != nil {
		return fail(fmt.Errorf("gateway: configure WireGuard on %v: %w", cfg.WireGuardListen, err))
	}
	if err := g.dev.Up(); err != nil {
		return fail(fmt.Errorf("gateway: WireGuard up on %v: %w", cfg.WireGuardListen, err))
	}
	g.wgPort, err = listenPort(g.dev)
	if err != nil {
		return fail(err)
	}
	g.regLn, err = net.Listen("tcp", cfg.RegistrationListen.String())
	if err != nil {
		return fail(fmt.Errorf("gateway: registration listener: %w", err))
	}
	g.reg = &registration.Server{NoiseKey: cfg.NoiseKey, WireGuardKey: cfg.WireGuardKey, Registrar: g, Logger: g.log}

	if cfg.Mixnet != nil {
		if err := g.startMixnet(); err != nil {
			g.regLn.Close()
			return fail(err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.wg.Add(2)
	go func() {
		defer g.wg.Done()
		if err := g.reg.Serve(g.regLn); err != nil {
			g.log.Error("registration service stopped", "err", err)
		}
	}()
	go func() {
		defer g.wg.Done()
		g.peers.expireLoop(ctx, cfg.PeerIdle, min(cfg.PeerIdle/4, 30*time.Second),
			func(err error) { g.log.Warn("expiring idle peers", "err", err) },
			func(n int) { g.log.Info("removed idle peers", "count", n) })
	}()
	if g.pay != nil {
		g.wg.Add(2)
		go func() {
			defer g.wg.Done()
			g.meterLoop(ctx)
		}()
		go func() {
			defer g.wg.Done()
			g.pruneLoop(ctx)
		}()
		if g.pay.cfg.Reporting != nil {
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				g.reportLoop(ctx)
			}()
		}
	}
	if slices.Contains(cfg.Roles, directory.RoleExit) && cfg.Exit.DNSUpstream.IsValid() {
		if err := g.serveDNS(ctx); err != nil {
			g.Close()
			return nil, fmt.Errorf("gateway: DNS relay: %w", err)
		}
	}
	g.log.Info("gateway up", "roles", cfg.Roles, "wireguard", g.WireGuardAddr(), "registration", g.RegistrationAddr(), "free_pass", cfg.FreePass, "tickets", g.pay != nil, "exit_mode", cfg.Exit.mode(),
		"mixnet", g.mix != nil)
	return g, nil
}

// mode names the exit path, for logs.
func (p ExitPolicy) mode() string {
	if p.Kernel {
		return "kernel"
	}
	return "userspace"
}

// startKernelExit sets up the kernel exit and returns the device WireGuard
// runs on: the userspace stack and the kernel TUN behind a splitDevice.
func (g *Gateway) startKernelExit() (tun.Device, error) {
	cfg := &g.cfg
	switch {
	case !slices.Contains(cfg.Roles, directory.RoleExit):
		return nil, errors.New("gateway: the kernel exit mode needs the exit role")
	case cfg.Exit.AllowLoopback:
		return nil, errors.New("gateway: the kernel exit cannot reach loopback (the kernel does not forward to it); use the userspace exit for a loopback network")
	}
	k, err := startKernelExit(kernelExitConfig{
		Pool4: g.peers.pool4, Pool6: g.peers.pool6, Gateway4: g.peers.gw4, Gateway6: g.peers.gw6,
		MTU: cfg.MTU, Deny: cfg.Exit.Deny, Outbound: cfg.Exit.OutboundAddr, Logger: g.log,
	})
	if err != nil {
		return nil, err
	}
	g.split, err = newSplitDevice(g.stack, k.dev, g.toKernel, g.log)
	if err != nil {
		k.Close()
		return nil, err
	}
	g.kexit = k
	return g.split, nil
}

// toKernel decides, for a packet WireGuard decrypted, whether it takes the
// kernel exit: packets of exit clients to anything but the gateway's own
// tunnel addresses. WireGuard has already checked the source against the
// sending peer's allowed IPs.
func (g *Gateway) toKernel(pkt []byte) bool {
	src, dst, ok := netstack.PacketAddrs(pkt)
	if !ok || dst == g.peers.gw4 || dst == g.peers.gw6 {
		return false
	}
	p, ok := g.peers.lookup(src)
	return ok && p.role == registration.RoleExit
}

// allowsLoopbackExits reports whether exits may sit on loopback, as in the
// local network: the entry then forwards to loopback endpoints.
func (c *Config) allowsLoopbackExits() bool {
	return c.WireGuardListen.Addr().IsLoopback()
}

func listenPort(dev *device.Device) (uint16, error) {
	st, err := wguapi.Get(dev)
	if err != nil {
		return 0, fmt.Errorf("gateway: %w", err)
	}
	if st.ListenPort == 0 {
		return 0, errors.New("gateway: WireGuard device reports no listen port")
	}
	return st.ListenPort, nil
}

// WireGuardAddr is the UDP address clients send WireGuard to.
func (g *Gateway) WireGuardAddr() netip.AddrPort {
	return netip.AddrPortFrom(g.cfg.WireGuardListen.Addr(), g.wgPort)
}

// RegistrationAddr is the TCP address of the registration service.
func (g *Gateway) RegistrationAddr() netip.AddrPort {
	return netip.MustParseAddrPort(g.regLn.Addr().String())
}

// TunnelAddrs are the gateway's own addresses inside its tunnel.
func (g *Gateway) TunnelAddrs() []netip.Addr { return []netip.Addr{g.peers.gw4, g.peers.gw6} }

// Node returns the gateway's directory entry (without identity key and
// country, which belong to the operator's configuration). With the mixnet it
// lists the Sphinx keys held now: call it again after MixnetConfig.OnKeys.
func (g *Gateway) Node() directory.Node {
	var noise, wg directory.Key32
	noise = directory.Key32(g.cfg.NoiseKey.Public())
	wg = directory.Key32(g.cfg.WireGuardKey.Public())
	n := directory.Node{
		ID: g.cfg.ID, Roles: slices.Clone(g.cfg.Roles), NoiseKey: noise, WireGuardKey: wg,
		RegistrationAddr: g.RegistrationAddr().String(), WireGuardAddr: g.WireGuardAddr().String(),
	}
	if g.mix != nil {
		n.MixAddr = g.mix.node.Addr().String()
		if a := g.MixClientAddr(); a.IsValid() {
			n.MixClientAddr = a.String()
		}
		n.SphinxKeys = g.mix.node.SphinxKeys()
	}
	return n
}

// Stats returns a snapshot of the counters.
func (g *Gateway) Stats() Stats {
	rs := g.reg.Stats()
	st := Stats{
		Peers:         g.peers.count(),
		Registered:    rs.Accepted.Load(),
		Refused:       rs.Refused.Load(),
		Failed:        rs.Failed.Load(),
		EntryFlows:    g.stats.entryFlows.Load(),
		ExitFlows:     g.stats.exitFlows.Load(),
		PolicyRefused: g.stats.refused.Load(),
		Stack:         g.stack.Stats(),
	}
	if g.split != nil {
		st.KernelOut, st.KernelIn, st.ReadDropped = g.split.stats()
	}
	st.TicketsAccepted, st.TicketsRefused = g.stats.tickets.Load(), g.stats.ticketsRefused.Load()
	st.Reported, st.CutOff = g.stats.reported.Load(), g.stats.cutOff.Load()
	if g.pay != nil {
		st.SerialsStored = int64(g.pay.spentCount())
		st.ReportsPending = int64(g.pendingReports())
	}
	return st
}

// Close stops the gateway and waits for its goroutines.
func (g *Gateway) Close() error {
	if !g.closed.CompareAndSwap(false, true) {
		return nil
	}
	g.cancel()
	g.regLn.Close()
	var mixErr error
	if g.mix != nil {
		mixErr = g.mix.close()
	}
	if g.pay != nil {
		// Charge the traffic since the last meter round, to be written
		// below.
		if _, err := g.peers.meter(); err != nil {
			g.log.Warn("metering peers at close", "err", err)
		}
	}
	g.dev.Close() // closes the stack (and the kernel TUN) too
	g.wg.Wait()
	if g.pay != nil {
		if err := g.flushAllowances(); err != nil {
			g.log.Warn("writing allowances at close", "err", err)
		}
		if err := g.pay.close(); err != nil {
			g.log.Warn("closing the ticket database", "err", err)
		}
	}
	if mixErr != nil {
		g.log.Warn("closing the mixnet side", "err", mixErr)
	}
	if g.kexit != nil {
		if err := g.kexit.Close(); err != nil {
			return fmt.Errorf("gateway: undo the kernel exit: %w", err)
		}
	}
	return nil
}

// Register admits a client: the registrar the registration server calls.
// Without FreePass a registration pays with a ticket of the role's type; a
// registration of a known key with a ticket tops up the same peer (same
// addresses, allowance extended), one without a ticket is admitted only while
// the peer has allowance left. A key is known while the gateway holds it in
// memory, or, after a restart or once its peer expired, by the allowance its
// database kept for the key and role.
func (g *Gateway) Register(ctx context.Context, p registration.Peer) (*registration.Grant, error) {
	if p.Role == registration.RoleMixnet {
		return g.registerMixnet(p)
	}
	if !slices.Contains(g.cfg.Roles, directory.Role(p.Role)) {
		return nil, registration.Errorf(registration.CodeRoleNotServed, "gateway %s does not serve the %s role", g.cfg.ID, p.Role)
	}
	var bought int64
	var stored allowanceRecord // what the database kept, for a key not in memory
	if !g.cfg.FreePass {
		if g.pay == nil {
			return nil, g.noTickets()
		}
		role, left, metered, ok := g.peers.allowanceOf(p.WireGuardKey)
		if !ok || !metered || role != p.Role {
			stored, _ = g.storedAllowance(p.WireGuardKey, p.Role)
			left = stored.Left
		}
		if len(p.Ticket) == 0 {
			if left <= 0 {
				return nil, registration.Errorf(registration.CodePaymentRequired, "gateway %s requires a %v ticket", g.cfg.ID, ticketType(p.Role))
			}
		} else {
			if !g.peers.hasRoom(p.WireGuardKey) {
				return nil, registration.Errorf(registration.CodePoolExhausted, "this gateway has no free addresses; try another gateway (your ticket was not spent)")
			}
			var err error
			if bought, err = g.pay.redeem(p.Ticket, p.Role); err != nil {
				g.stats.ticketsRefused.Add(1)
				return nil, err
			}
			g.stats.tickets.Add(1)
		}
	}
	if role, _, metered, ok := g.peers.allowanceOf(p.WireGuardKey); ok && metered && role != p.Role {
		// A key that changes role keeps nothing of the other role's allowance.
		g.peers.resetAllowance(p.WireGuardKey)
	}
	pe, err := g.peers.register(p)
	if err != nil {
		return nil, err
	}
	grant := &registration.Grant{
		GatewayKey:       g.cfg.WireGuardKey.Public(),
		Port:             g.wgPort,
		Addresses:        []netip.Addr{pe.v4, pe.v6},
		GatewayAddresses: g.TunnelAddrs(),
		MTU:              g.cfg.MTU,
	}
	if g.pay != nil && !g.cfg.FreePass {
		typ := ticketType(p.Role)
		// At least a byte, since a grant has no negative allowance and a
		// client reads 0 as "not metered": a peer whose debt exceeds the
		// ticket (one meter interval of fast traffic on small tickets),
		// or one admitted without a ticket on an allowance a meter round
		// has spent since, then pays again at once (or learns it cannot).
		grant.Bandwidth = max(g.peers.creditFrom(p.WireGuardKey, p.Role, bought, g.pay.topUpAt(typ), stored.Left), 1)
		grant.TopUpAt = g.pay.topUpAt(typ)
		if bought > 0 {
			// On disk before the client holds the grant.
			if err := g.flushAllowances(); err != nil {
				g.log.Warn("writing the allowance bought (retried with the next flush)", "err", err)
			}
		}
	}
	g.log.Info("registered", "role", p.Role, "addr4", pe.v4, "addr6", pe.v6, "paid", bought > 0, "allowance", grant.Bandwidth)
	return grant, nil
}

// meterLoop counts peers' traffic against their allowances until ctx ends.
// Every AllowanceFlushInterval it writes the allowances that changed.
func (g *Gateway) meterLoop(ctx context.Context) {
	t := time.NewTicker(g.pay.cfg.MeterInterval)
	defer t.Stop()
	lastFlush := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cut, err := g.peers.meter()
		if time.Since(lastFlush) >= AllowanceFlushInterval {
			lastFlush = time.Now()
			if err := g.flushAllowances(); err != nil {
				g.log.Warn("writing allowances", "err", err)
			}
		}
		if err != nil {
			g.log.Warn("metering peers", "err", err)
		}
		for range cut {
			g.stats.cutOff.Add(1)
		}
		if len(cut) > 0 {
			g.log.Info("cut off peers whose allowance ran out without a top-up", "count", len(cut))
		}
	}
}

// pruneLoop forgets expired serials and old payment info every hour.
func (g *Gateway) pruneLoop(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := g.pay.prune(); err != nil {
			g.log.Warn("pruning the ticket database", "err", err)
		} else if n > 0 {
			g.log.Debug("pruned the ticket database", "records", n)
		}
		if n, err := g.allowances.prune(); err != nil {
			g.log.Warn("pruning stored allowances", "err", err)
		} else if n > 0 {
			g.log.Debug("pruned allowances idle for a week", "records", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Client describes one registered client, for operators and tests.
type Client struct {
	Role      string
	Addresses []netip.Addr
	// Remote is where the client's registration came from: the client itself
	// at an entry, the entry gateway at an exit reached through it.
	Remote     netip.AddrPort
	Registered time.Time
}

// Clients lists the registered clients.
func (g *Gateway) Clients() []Client {
	g.peers.mu.Lock()
	defer g.peers.mu.Unlock()
	out := make([]Client, 0, len(g.peers.byKey))
	for _, p := range g.peers.byKey {
		out = append(out, Client{Role: p.role, Addresses: []netip.Addr{p.v4, p.v6}, Remote: p.remote, Registered: p.registered})
	}
	return out
}
