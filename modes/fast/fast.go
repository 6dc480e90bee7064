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
	"sync"
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
	// Resume says that EntryKey and ExitKey were registered with these same
	// gateways before (an earlier attempt of the same session): each hop
	// registers first without a ticket, so that a gateway that still holds
	// the key's paid allowance (also one kept across its restart) admits
	// it with what is left. A hop the gateway answers payment_required
	// (nothing left, or a debt its last tunnel overdrew before its cut-off)
	// starts afresh with a new key and a ticket, as without Resume: a
	// ticket would go to the debt first. Tunnel.Keys reports the keys in use.
	Resume bool
	// Ticket returns the ticket to pay a gateway in a role, or nil. It is
	// called at Connect and again for every top-up.
	Ticket func(ctx context.Context, role string, gw directory.Node) ([]byte, error)
	// MeterInterval is how often the tunnel compares the bytes each hop
	// exchanged with the allowance the gateway granted (default 1 s): when
	// what is left falls below the grant's TopUpAt, or would not last the
	// time until the next check plus twice what a top-up takes at the rate
	// the hop moves bytes now, it registers again with the same key and a
	// new ticket, which extends the same peer (more than once if one ticket
	// does not cover that). Each hop is checked on its own.
	MeterInterval time.Duration
	// OnTopUp, if set, is called after each top-up, or failed attempt.
	OnTopUp func(role string, allowance int64, err error)
	// Inner is the device the exit tunnel runs on (a kernel TUN, owned by
	// the caller); nil creates a userspace netstack returned as Tunnel.Net.
	Inner tun.Device
	// Dial opens the TCP connection to the entry gateway's registration
	// endpoint; nil uses net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// OuterBind carries the entry tunnel's UDP; nil uses a standard socket.
	OuterBind conn.Bind
	// AllowEntry, when set, is called with the entry gateway's WireGuard
	// endpoint (as the registration granted it) before any packet goes
	// there, so that a kill switch can let it through.
	AllowEntry func(ctx context.Context, ep netip.AddrPort) error
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
	// EntryEndpoint is the entry gateway's WireGuard endpoint in use.
	EntryEndpoint netip.AddrPort
	EntryGrant    registration.Grant
	ExitGrant     registration.Grant
	// Net is the userspace stack on the inner tunnel when Config.Inner was nil.
	Net *netstack.Stack

	entryStack *netstack.Stack
	entryDev   *device.Device
	exitDev    *device.Device
	exitKey    transport.Key

	cfg    Config
	meter  sync.Mutex
	hops   [2]hopMeter // entry, exit
	stop   context.CancelFunc
	loopWG sync.WaitGroup
}

// hopMeter is the client's view of one hop's allowance: the grant, the
// device's byte count when it was made, and the top-ups so far. spent: the
// gateway answered a registration without a ticket with payment_required,
// so whatever the client counts, nothing is left there.
type hopMeter struct {
	grant    registration.Grant
	baseline int64
	topUps   int
	spent    bool
}

// Allowance is what is left of a hop's paid allowance, as the client counts.
type Allowance struct {
	// Metered is false when the gateway does not meter (free pass).
	Metered bool
	// Granted is the allowance of the last grant; Used the bytes exchanged
	// since; Left = Granted − Used; TopUpAt the level at which the tunnel
	// pays again.
	Granted, Used, Left, TopUpAt int64
	TopUps                       int
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
	t = &Tunnel{Entry: cfg.Entry, Exit: cfg.Exit, exitKey: cfg.ExitKey, cfg: cfg}
	defer func() {
		if err != nil {
			t.Close()
			t = nil
		}
	}()

	// Hop 1: register with the entry over the real network.
	progress(StageRegisterEntry)
	entryGrant, entryPSK, err := admit(ctx, cfg, cfg.Entry, registration.RoleEntry, &cfg.EntryKey, func(ctx context.Context) (net.Conn, error) {
		return cfg.Dial(ctx, "tcp", cfg.Entry.RegistrationAddr)
	})
	if err != nil {
		return t, err
	}
	t.cfg.EntryKey = cfg.EntryKey // admit may have made a new one
	t.EntryGrant = *entryGrant

	progress(StageEntryTunnel)
	entryEP, err := endpoint(cfg.Entry.WireGuardAddr, entryGrant.Port)
	if err != nil {
		return t, err
	}
	if cfg.AllowEntry != nil {
		if err := cfg.AllowEntry(ctx, entryEP); err != nil {
			return t, fmt.Errorf("fast: %w", err)
		}
	}
	t.EntryEndpoint = entryEP
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
	// The mark is part of the configuration set before the device comes
	// up: the first handshake must already carry it, or a kill switch that
	// lets only marked packets out drops it (and WireGuard retries only
	// after 5 s).
	t.entryDev, err = startDevice(t.entryStack, bind, cfg.EntryKey, entryGrant, entryPSK, entryEP, cfg.FwMark, cfg.Logger.With("hop", "entry"))
	if err != nil {
		return t, fmt.Errorf("fast: entry tunnel: %w", err)
	}

	// Hop 2: register with the exit through the entry tunnel.
	progress(StageRegisterExit)
	exitGrant, exitPSK, err := admit(ctx, cfg, cfg.Exit, registration.RoleExit, &cfg.ExitKey, func(ctx context.Context) (net.Conn, error) {
		return t.entryStack.DialContext(ctx, "tcp", cfg.Exit.RegistrationAddr)
	})
	if err != nil {
		return t, err
	}
	t.ExitGrant = *exitGrant
	t.cfg.ExitKey, t.exitKey = cfg.ExitKey, cfg.ExitKey

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
	t.exitDev, err = startDevice(inner, innerBind, cfg.ExitKey, exitGrant, exitPSK, exitEP, 0, cfg.Logger.With("hop", "exit"))
	if err != nil {
		return t, fmt.Errorf("fast: exit tunnel: %w", err)
	}

	progress(StageHandshake)
	if err := waitHandshake(ctx, t.exitDev); err != nil {
		return t, fmt.Errorf("fast: exit gateway %s did not complete the WireGuard handshake through the entry: %w", cfg.Exit.ID, err)
	}
	t.hops[0].grant, t.hops[1].grant = *entryGrant, *exitGrant
	if (entryGrant.Bandwidth > 0 || exitGrant.Bandwidth > 0) && cfg.Ticket != nil {
		lctx, cancel := context.WithCancel(context.Background())
		t.stop = cancel
		every := cfg.MeterInterval
		if every <= 0 {
			every = time.Second
		}
		for hop := range t.hops {
			t.loopWG.Add(1)
			go func() {
				defer t.loopWG.Done()
				t.meterLoop(lctx, hop, every)
			}()
		}
	}
	return t, nil
}

// meterLoop tops up one metered hop (0 entry, 1 exit) before its
// allowance runs out, checking every interval.
func (t *Tunnel) meterLoop(ctx context.Context, hop int, every time.Duration) {
	p := &hopPayer{
		role:    []string{registration.RoleEntry, registration.RoleExit}[hop],
		pace:    hopPacer{every: every, took: initialTopUpTime},
		now:     time.Now,
		state:   func() (Allowance, int64) { return t.hopState(hop) },
		topUp:   func(ctx context.Context) (int64, error) { return t.topUp(ctx, hop) },
		log:     t.cfg.Logger,
		onTopUp: t.cfg.OnTopUp,
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.check(ctx)
	}
}

// initialTopUpTime is what a top-up is assumed to take before one was
// timed: a registration (TCP, Noise, ML-KEM, the ticket's checks and the
// gateway's database commit), through the entry tunnel for the exit hop.
const initialTopUpTime = 500 * time.Millisecond

// maxTopUpsPerCheck bounds the tickets one check spends on a hop.
const maxTopUpsPerCheck = 8

// hopPacer decides when a hop pays again. The gateway's top_up_at is a
// number of bytes (a quarter ticket), but what the client needs is time:
// the check that notices the level (up to one interval late) and the
// registration that brings the new ticket (a round trip, a proof, the
// gateway's commit) must both fit before the allowance runs out. A flow
// that spends the margin faster than that reaches zero first, and the
// gateway cuts it off. So the pacer measures the hop's rate and pays once
// what is left would not last the next interval plus twice the time the
// last top-up took.
type hopPacer struct {
	every time.Duration
	// took is how long a top-up takes: the last one timed, or half the
	// previous estimate if that is more (slow top-ups are remembered a
	// while).
	took time.Duration
	// rate is the bytes per second the hop moves: the last interval's, or
	// half the previous rate if that is more (a pause in a download does not
	// forget its rate at once).
	rate      float64
	lastAt    time.Time
	lastTotal int64
}

// observe takes the hop's byte count (both directions, all time) at now.
func (p *hopPacer) observe(now time.Time, total int64) {
	if !p.lastAt.IsZero() {
		if dt := now.Sub(p.lastAt).Seconds(); dt > 0 {
			moved := total - p.lastTotal
			if moved < 0 {
				moved = 0
			}
			p.rate = max(float64(moved)/dt, p.rate/2)
		}
	}
	p.lastAt, p.lastTotal = now, total
}

// lead is how long before the allowance runs out a top-up must start.
func (p *hopPacer) lead() time.Duration { return p.every + 2*p.took }

// due reports whether the hop must pay now.
func (p *hopPacer) due(a Allowance) bool {
	if !a.Metered {
		return false
	}
	return a.Left < a.TopUpAt || float64(a.Left) < p.rate*p.lead().Seconds()
}

// timed records how long a successful top-up took.
func (p *hopPacer) timed(d time.Duration) { p.took = max(d, p.took/2) }

// hopPayer is one hop's metering loop, with its clock, counters and
// top-up as functions (tests drive it with simulated ones).
type hopPayer struct {
	role    string
	pace    hopPacer
	now     func() time.Time
	state   func() (a Allowance, total int64)
	topUp   func(ctx context.Context) (int64, error)
	log     *slog.Logger
	onTopUp func(role string, allowance int64, err error)

	retryAt time.Time
	backoff time.Duration
}

// check is one round: it measures the hop's rate and pays as often as what
// is left needs, unless a failed top-up is waiting for its retry.
func (p *hopPayer) check(ctx context.Context) {
	a, total := p.state()
	p.pace.observe(p.now(), total)
	for range maxTopUpsPerCheck {
		if !p.pace.due(a) || p.now().Before(p.retryAt) {
			return
		}
		start := p.now()
		left, err := p.topUp(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			p.backoff = min(max(2*p.backoff, time.Second), 30*time.Second)
			p.retryAt = p.now().Add(p.backoff)
			p.log.Warn("fast: top-up failed", "role", p.role, "left", a.Left, "err", err, "retry_in", p.backoff)
		} else {
			p.pace.timed(p.now().Sub(start))
			p.backoff, p.retryAt = 0, time.Time{}
			p.log.Info("fast: topped up", "role", p.role, "allowance", left)
		}
		if p.onTopUp != nil {
			p.onTopUp(p.role, left, err)
		}
		if err != nil {
			return
		}
		a, _ = p.state()
	}
}

// Allowances returns the entry and exit hops' allowances as the client counts.
func (t *Tunnel) Allowances() (entry, exit Allowance) { return t.allowance(0), t.allowance(1) }

func (t *Tunnel) allowance(hop int) Allowance {
	a, _ := t.hopState(hop)
	return a
}

// hopState is a hop's allowance and its device's byte count.
func (t *Tunnel) hopState(hop int) (Allowance, int64) {
	dev := t.entryDev
	if hop == 1 {
		dev = t.exitDev
	}
	tx, rx := transfer(dev)
	t.meter.Lock()
	defer t.meter.Unlock()
	h := &t.hops[hop]
	if h.grant.Bandwidth == 0 && !h.spent {
		return Allowance{TopUps: h.topUps}, tx + rx
	}
	a := Allowance{Metered: true, Granted: h.grant.Bandwidth, Used: tx + rx - h.baseline, TopUpAt: h.grant.TopUpAt, TopUps: h.topUps}
	if a.TopUpAt == 0 {
		a.TopUpAt = a.Granted / 4
	}
	a.Left = a.Granted - a.Used
	if h.spent {
		a.Left = min(a.Left, 0)
	}
	return a, tx + rx
}

// TopUp pays a hop again now (0 entry, 1 exit): a new ticket, the same key;
// the gateway extends the same peer and both sides switch to the new
// preshared key. It returns the new allowance.
func (t *Tunnel) TopUp(ctx context.Context, role string) (int64, error) {
	hop := 0
	if role == registration.RoleExit {
		hop = 1
	}
	return t.topUp(ctx, hop)
}

// topUp pays a hop again. When no ticket can be had, it registers without
// one instead, which tells the client what the gateway counts: the grant is
// what is left there (the client's count starts again from it), and
// payment_required means the hop is spent and cut off. It still returns
// the ticket's error.
func (t *Tunnel) topUp(ctx context.Context, hop int) (int64, error) {
	cfg := t.cfg
	gw, role, key, dev := cfg.Entry, registration.RoleEntry, cfg.EntryKey, t.entryDev
	dial := func(ctx context.Context) (net.Conn, error) { return cfg.Dial(ctx, "tcp", cfg.Entry.RegistrationAddr) }
	if hop == 1 {
		gw, role, key, dev = cfg.Exit, registration.RoleExit, cfg.ExitKey, t.exitDev
		dial = func(ctx context.Context) (net.Conn, error) {
			return t.entryStack.DialContext(ctx, "tcp", cfg.Exit.RegistrationAddr)
		}
	}
	// The new grant is what the gateway has left when it credits the
	// ticket, so the bytes moved from then on are counted against it. The
	// client reads its counters before it asks (once it holds the ticket):
	// what moves while the request travels is counted twice, by the gateway
	// before the grant and by the client after, never not at all. Reading
	// them once the grant is back would leave those bytes out, and the
	// client would believe it has more than the gateway lets it use.
	var baseline int64
	dialAndCount := func(ctx context.Context) (net.Conn, error) {
		tx, rx := transfer(dev)
		baseline = tx + rx
		return dial(ctx)
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ticket, ticketErr := getTicket(tctx, cfg, role, gw)
	cancel()
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	grant, psk, err := register(rctx, gw, role, key, ticket, dialAndCount)
	if ticketErr != nil {
		var rerr *registration.Error
		if errors.As(err, &rerr) && rerr.Code == registration.CodePaymentRequired {
			t.meter.Lock()
			t.hops[hop].spent = true
			t.meter.Unlock()
		}
		if err != nil {
			return 0, ticketErr
		}
	} else if err != nil {
		return 0, err
	}
	if err := dev.IpcSet(fmt.Sprintf("public_key=%s\nupdate_only=true\npreshared_key=%s\n", hex.EncodeToString(grant.GatewayKey[:]), hex.EncodeToString(psk[:]))); err != nil {
		return 0, fmt.Errorf("fast: new preshared key for the %s hop: %w", role, err)
	}
	t.meter.Lock()
	h := &t.hops[hop]
	h.grant, h.baseline, h.spent = *grant, baseline, false
	if ticketErr == nil {
		h.topUps++
	}
	t.meter.Unlock()
	if ticketErr != nil {
		return grant.Bandwidth, ticketErr
	}
	return grant.Bandwidth, nil
}

func mtuOr(m, def int) int {
	if m == 0 || m > def {
		return def
	}
	return m
}

// getTicket is the ticket to pay gw in role, or nil without Config.Ticket.
func getTicket(ctx context.Context, cfg Config, role string, gw directory.Node) ([]byte, error) {
	if cfg.Ticket == nil {
		return nil, nil
	}
	ticket, err := cfg.Ticket(ctx, role, gw)
	if err != nil {
		return nil, fmt.Errorf("fast: ticket for %s gateway %s: %w", role, gw.ID, err)
	}
	return ticket, nil
}

// admit registers *key with gw in role for Connect: with a ticket, or with
// Config.Resume first without one. When the gateway has nothing left for
// the key (payment_required) it makes a new key in *key and pays for that.
// A grant below the gateway's top-up level (a resumed key's last bytes) is
// paid again before the tunnel carries anything, as the hop would at once.
func admit(ctx context.Context, cfg Config, gw directory.Node, role string, key *transport.Key, dial func(context.Context) (net.Conn, error)) (*registration.Grant, [32]byte, error) {
	var grant *registration.Grant
	var psk [32]byte
	if cfg.Resume {
		g, p, err := register(ctx, gw, role, *key, nil, dial)
		var rerr *registration.Error
		switch {
		case err == nil:
			cfg.Logger.Info("fast: resumed the key's allowance without a ticket", "role", role, "gateway", gw.ID, "allowance", g.Bandwidth)
			grant, psk = g, p
		case errors.As(err, &rerr) && rerr.Code == registration.CodePaymentRequired && cfg.Ticket != nil:
			cfg.Logger.Info("fast: nothing left for the key: a new key pays", "role", role, "gateway", gw.ID)
			if *key, err = transport.GenerateKey(); err != nil {
				return nil, [32]byte{}, fmt.Errorf("fast: new %s key: %w", role, err)
			}
		default:
			return nil, [32]byte{}, err
		}
	}
	for paid := 0; grant == nil || (cfg.Ticket != nil && grant.Bandwidth > 0 && grant.Bandwidth < grant.TopUpAt); paid++ {
		if paid == maxTopUpsPerCheck {
			return nil, [32]byte{}, fmt.Errorf("fast: %s gateway %s grants %d bytes after %d tickets, below its top-up level %d", role, gw.ID, grant.Bandwidth, paid, grant.TopUpAt)
		}
		ticket, err := getTicket(ctx, cfg, role, gw)
		if err != nil {
			return nil, [32]byte{}, err
		}
		if grant, psk, err = register(ctx, gw, role, *key, ticket, dial); err != nil {
			return nil, [32]byte{}, err
		}
	}
	return grant, psk, nil
}

// register registers key with gw in role, paying with ticket (nil: none).
func register(ctx context.Context, gw directory.Node, role string, key transport.Key, ticket []byte, dial func(context.Context) (net.Conn, error)) (*registration.Grant, [32]byte, error) {
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

func startDevice(tdev tun.Device, bind conn.Bind, key transport.Key, g *registration.Grant, psk [32]byte, ep netip.AddrPort, mark uint32, log *slog.Logger) (*device.Device, error) {
	dev := device.NewDevice(tdev, bind, wguapi.Logger(log))
	conf := fmt.Sprintf("private_key=%s\n", hex.EncodeToString(key[:]))
	if mark != 0 {
		conf += fmt.Sprintf("fwmark=%d\n", mark)
	}
	conf += fmt.Sprintf("public_key=%s\npreshared_key=%s\nendpoint=%s\npersistent_keepalive_interval=%d\nreplace_allowed_ips=true\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\n",
		hex.EncodeToString(g.GatewayKey[:]), hex.EncodeToString(psk[:]), ep, int(KeepaliveInterval/time.Second))
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

// Keys returns the WireGuard private keys of the entry and exit hops: the
// configured ones, or those Connect made. A caller may keep them (in memory
// only) for a later Connect with Config.Resume to the same gateways.
func (t *Tunnel) Keys() (entry, exit transport.Key) { return t.cfg.EntryKey, t.cfg.ExitKey }

// Addresses are the client's addresses inside the tunnel (from the exit).
func (t *Tunnel) Addresses() []netip.Addr { return t.ExitGrant.Addresses }

// DNSServers are the resolvers to use inside the tunnel: the exit gateway's
// own tunnel addresses.
func (t *Tunnel) DNSServers() []netip.Addr { return t.ExitGrant.GatewayAddresses }

// Close stops both tunnels; it is safe on a partly built Tunnel.
func (t *Tunnel) Close() error {
	if t.stop != nil {
		t.stop()
		t.loopWG.Wait()
		t.stop = nil
	}
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
