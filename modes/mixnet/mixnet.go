// Package mixnet is the mixnet-mode client: it carries IP packets through
// entry gateway → mix layer 1 → layer 2 → layer 3 → exit gateway in Sphinx
// packets, and the exit's answers back through single-use reply blocks.
//
//	app ──▶ inner device (kernel TUN or netstack, MTU 1500)
//	          │ IP packets bundled into messages (package ipr)
//	        sender: Poisson stream (real packet if queued, else cover) + loop cover
//	          │ Sphinx packets, each with a SURB-ACK, over Noise NK
//	        entry gateway ─▶ L1 ─▶ L2 ─▶ L3 ─▶ exit gateway: IP packet router
//	          ◀── acks, loops and SURB replies come back through the entry gateway
//
// Every packet's route and delays are drawn afresh: one mix per layer at
// random, an exponential delay with the profile's mean at each mix. Each
// forward fragment carries a SURB-ACK (a ready ack packet back to this
// client); a fragment whose ack does not return within 1.5 × the delays of
// its packet and its ack + RetransmitBase (NymVPN's 1.5 s) is sent again
// over a new route. Replies travel in SURBs the client hands the exit along
// with its traffic: the exit sees L1 as a SURB's first hop, never the
// client's gateway. The client keeps Profile.SURBs of them at the exit,
// counting what the exit reports in every reply, and sends more at once when
// the exit asks.
//
// Health: the loop packets (cover and the loop-cover stream) prove the
// mixnet path client → mixes → entry gateway → client, a Ping to the exit
// every HealthInterval the whole path. The tunnel repairs itself: a lost
// entry connection is dialled again (with a fresh directory), after which
// the exit drops the SURBs made for the old connection; an exit that stops
// answering (it restarted) gets the session opened again, asking for the
// same addresses.
package mixnet

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	mix "github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/mixnet/ipr"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/sphinx"
	"github.com/nymvpn/nymvpn/transport"
	"github.com/nymvpn/nymvpn/tun/netstack"
	"golang.zx2c4.com/wireguard/tun"
)

// MTU is the inner device's MTU: a 1500-byte IP packet with its item header
// fits one forward fragment (ipr.ForwardData, 1599 bytes), with room for a
// TCP ACK bundled beside it, so no IP packet is ever cut into fragments.
const MTU = 1500

// Defaults.
const (
	// RetransmitBase is added to 1.5 × a fragment's delays to make its
	// retransmission timeout (NymVPN's figure).
	RetransmitBase = 1500 * time.Millisecond
	// DefaultMaxRetransmits is how often a fragment is sent again before it
	// counts as lost.
	DefaultMaxRetransmits = 10
	// HealthInterval is how often the tunnel pings the exit (and, without
	// other loop traffic, itself).
	HealthInterval = time.Second
	// HealthWindow is how long without an answer makes a path unhealthy
	// (NymVPN judges its checks every 5 s).
	HealthWindow = 5 * time.Second
	// DeadAfter is how long the tunnel may stay unhealthy, repairing itself,
	// before Check reports it dead.
	DeadAfter = time.Minute
	// openSURBs go with the first Open, in one multi-fragment message.
	openSURBs = 16
)

// Stage is a step of Connect, reported for progress.
type Stage string

// The stages in order.
const (
	StagePayEntry Stage = "paying the entry gateway for mixnet access"
	StageEntry    Stage = "connecting to the entry gateway"
	StageOpen     Stage = "opening a session at the exit gateway through the mixnet"
)

// Config says how to connect.
type Config struct {
	// Topology is the directory's current view; Refresh, if set, fetches a
	// fresh one (every quarter epoch, and after the entry connection fails).
	Topology *directory.Topology
	Refresh  func(ctx context.Context) (*directory.Topology, error)
	// Entry and Exit are the gateways: the entry takes mixnet clients
	// (mix_client_addr), the exit is a Sphinx hop (mix_addr) with an IP
	// packet router.
	Entry, Exit directory.Node
	// Key is the client's X25519 recipient key; zero generates one.
	Key transport.Key
	// Profile is the privacy profile (default DefaultProfile).
	Profile Profile
	// Inner is the device whose IP packets the tunnel carries (a kernel
	// TUN, owned by the caller); nil creates a userspace netstack returned
	// as Tunnel.Net.
	Inner tun.Device
	// Ticket returns a ticket to pay a gateway in a role: registration.RoleMixnet
	// at the entry, registration.RoleMixnetExit at the exit (every Open
	// carries one, and the exit's NeedTicket gets one). Without it the entry
	// must admit mixnet clients and the exit serve sessions for free.
	Ticket func(ctx context.Context, role string, gw directory.Node) ([]byte, error)
	// Dial opens TCP connections to the entry gateway (registration and
	// mixnet); nil uses net.Dialer. The daemon's marks its sockets.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Reach, if set, is called before the tunnel dials its entry gateway
	// at addresses the directory moved it to (a restarted gateway on a new
	// port): the daemon lets them through its kill switch, which would
	// otherwise block the repair until the state machine gives up.
	Reach func(ctx context.Context, entry directory.Node) error
	// AllowLoopback lets the netstack carry loopback addresses (the local
	// network on one machine).
	AllowLoopback bool
	// RetransmitBase and MaxRetransmits tune retransmission (defaults
	// RetransmitBase and DefaultMaxRetransmits).
	RetransmitBase time.Duration
	MaxRetransmits int
	// HealthInterval (default HealthInterval) paces the exit pings.
	HealthInterval time.Duration
	Progress       func(Stage)
	Logger         *slog.Logger
}

// Tunnel is an established mixnet tunnel.
type Tunnel struct {
	Entry, Exit directory.Node
	// Net is the userspace stack when Config.Inner was nil.
	Net *netstack.Stack

	cfg     Config
	profile Profile
	key     transport.Key
	me      sphinx.Recipient
	tag     ipr.Tag
	geo     *sphinx.Geometry
	ackGeo  *sphinx.Geometry
	inner   tun.Device
	log     *slog.Logger

	routes routes
	fac    *factory
	conn   atomic.Pointer[mix.Client]
	meter  meter
	// reached is the entry's addresses last let through (Config.Reach).
	reachMu sync.Mutex
	reached string
	welcome chan ipr.Welcome
	failed  chan error

	mu sync.Mutex // guards st
	st state

	// order releases the exit's IP packets in message order.
	orderMu    sync.Mutex
	order      ipr.Reorderer[[][]byte]
	orderTimer *time.Timer
	innerPtr   atomic.Pointer[tunDevice]

	wake    chan struct{}
	payWake chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	stats     counters
	closeOnce sync.Once
}

// Connect pays and connects to the entry gateway, opens a session at the
// exit through the mixnet and starts carrying the inner device's packets.
// On error everything it started is stopped.
func Connect(ctx context.Context, cfg Config) (t *Tunnel, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Profile.Name == "" {
		cfg.Profile = DefaultProfile
	}
	if err := cfg.Profile.Validate(); err != nil {
		return nil, err
	}
	if cfg.Topology == nil {
		return nil, errors.New("mixnet: no topology")
	}
	if cfg.Entry.MixClientAddr == "" || cfg.Entry.MixAddr == "" {
		return nil, fmt.Errorf("mixnet: entry gateway %s takes no mixnet clients", cfg.Entry.ID)
	}
	if cfg.Exit.MixAddr == "" || !cfg.Exit.Has(directory.RoleExit) {
		return nil, fmt.Errorf("mixnet: %s is not an exit gateway on the mixnet", cfg.Exit.ID)
	}
	if cfg.Key.IsZero() {
		if cfg.Key, err = transport.GenerateKey(); err != nil {
			return nil, err
		}
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: mix.DialTimeout}
		cfg.Dial = d.DialContext
	}
	if cfg.RetransmitBase <= 0 {
		cfg.RetransmitBase = RetransmitBase
	}
	if cfg.MaxRetransmits <= 0 {
		cfg.MaxRetransmits = DefaultMaxRetransmits
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = HealthInterval
	}
	progress := func(s Stage) {
		cfg.Logger.Debug("mixnet mode", "stage", string(s))
		if cfg.Progress != nil {
			cfg.Progress(s)
		}
	}
	t = &Tunnel{
		Entry: cfg.Entry, Exit: cfg.Exit, cfg: cfg, profile: cfg.Profile, key: cfg.Key, me: mix.Recipient(cfg.Key),
		geo: sphinx.RegularGeometry(), ackGeo: sphinx.AckGeometry(), log: cfg.Logger.With("mode", "mixnet"),
		welcome: make(chan ipr.Welcome, 1), failed: make(chan error, 1), wake: make(chan struct{}, 1),
		payWake: make(chan struct{}, 1),
	}
	if _, err := rand.Read(t.tag[:]); err != nil {
		return nil, fmt.Errorf("mixnet: session tag: %w", err)
	}
	t.st.init(cfg.Profile)
	t.order.Hold = cfg.Profile.Hold()
	t.fac = newFactory(t)
	t.ctx, t.cancel = context.WithCancel(context.Background())
	if err := t.routes.set(cfg.Topology, cfg.Entry.ID, cfg.Exit.ID); err != nil {
		t.cancel()
		return nil, err
	}
	defer func() {
		if err != nil {
			t.Close()
			t = nil
		}
	}()

	if cfg.Ticket != nil {
		progress(StagePayEntry)
		if err := t.meter.pay(ctx, t); err != nil {
			return t, err
		}
	}
	progress(StageEntry)
	c, err := t.dial(ctx)
	if err != nil {
		return t, err
	}
	t.conn.Store(c)
	t.wg.Add(1)
	go t.entryLoop(c)

	progress(StageOpen)
	var ticket []byte
	if cfg.Ticket != nil {
		if ticket, err = t.exitTicket(ctx); err != nil {
			return t, err
		}
		t.wg.Add(1)
		go t.payLoop()
	}
	t.mu.Lock()
	t.pushOpen(false, ticket)
	t.st.openTicket, t.st.openTicketAt = ticket, time.Now()
	t.mu.Unlock()
	t.wg.Add(3)
	go t.fac.run()
	go t.sendLoop()
	go t.loopCoverLoop()
	var w ipr.Welcome
	select {
	case w = <-t.welcome:
	case err := <-t.failed:
		return t, err
	case <-ctx.Done():
		return t, fmt.Errorf("mixnet: no answer from exit gateway %s through the mixnet: %w", cfg.Exit.ID, context.Cause(ctx))
	}
	t.mu.Lock()
	t.st.welcome = w
	t.mu.Unlock()
	if cfg.Inner == nil {
		t.Net, err = netstack.New(netstack.Config{
			Addresses: []netip.Addr{w.IPv4, w.IPv6}, MTU: t.MTU(), AllowLoopback: cfg.AllowLoopback, Logger: cfg.Logger,
		})
		if err != nil {
			return t, fmt.Errorf("mixnet: network stack: %w", err)
		}
		t.inner = t.Net
	} else {
		t.inner = cfg.Inner
	}
	t.innerPtr.Store(&tunDevice{t.inner})
	t.wg.Add(2)
	go t.readInner()
	go t.healthLoop()
	if cfg.Ticket != nil && t.meter.metered() {
		t.wg.Add(1)
		go t.meterLoop()
	}
	t.log.Info("mixnet tunnel up", "entry", cfg.Entry.ID, "exit", cfg.Exit.ID, "profile", cfg.Profile.Name,
		"addr4", w.IPv4, "addr6", w.IPv6)
	return t, nil
}

// Addresses are the client's addresses inside the tunnel (from the exit).
func (t *Tunnel) Addresses() []netip.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.st.welcome
	if !w.IPv4.IsValid() {
		return nil
	}
	return []netip.Addr{w.IPv4, w.IPv6}
}

// DNSServers are the exit's IP packet router addresses, which relay DNS.
func (t *Tunnel) DNSServers() []netip.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.st.welcome
	if !w.Router4.IsValid() {
		return nil
	}
	return []netip.Addr{w.Router4, w.Router6}
}

// MTU is the inner device's MTU: MTU, or less if the exit says so.
func (t *Tunnel) MTU() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := int(t.st.welcome.MTU); m >= 1280 && m < MTU {
		return m
	}
	return MTU
}

// Profile is the tunnel's privacy profile.
func (t *Tunnel) Profile() Profile { return t.profile }

// Close stops the tunnel: it tells the exit to free the session (one
// packet, not acknowledged), stops every goroutine and closes the netstack,
// or the inner device the caller gave.
func (t *Tunnel) Close() error {
	var err error
	t.closeOnce.Do(func() {
		t.sendClose()
		t.cancel()
		if c := t.conn.Load(); c != nil {
			c.Close()
		}
		if t.inner != nil {
			err = t.inner.Close()
		}
		t.wg.Wait()
		t.orderMu.Lock()
		if t.orderTimer != nil {
			t.orderTimer.Stop()
		}
		t.orderMu.Unlock()
		if t.inner == nil && t.cfg.Inner != nil {
			// Connect failed before the device was taken over.
			err = t.cfg.Inner.Close()
		}
	})
	return err
}

// sendClose sends a Close to the exit if the session is open.
func (t *Tunnel) sendClose() {
	t.mu.Lock()
	open := t.st.welcome.IPv4.IsValid()
	id := t.st.nextMsg
	t.st.nextMsg++
	t.mu.Unlock()
	if !open || t.conn.Load() == nil {
		return
	}
	fr := &fragment{msgID: id, count: 1, data: ipr.AppendItem(nil, ipr.KindClose), hidx: -1}
	t.transmit(newRand(), fr)
}

// dial connects to the entry gateway with the client's key.
func (t *Tunnel) dial(ctx context.Context) (*mix.Client, error) {
	entry := t.routes.entryNode()
	if err := t.reach(ctx, entry); err != nil {
		return nil, err
	}
	// mix.Dial's errors name the gateway and say "mixnet:" already.
	return mix.Dial(ctx, mix.ClientConfig{Gateway: entry, Key: t.key, Dial: t.cfg.Dial, Logger: t.log})
}

// reach calls Config.Reach when the entry's addresses differ from those
// last reached (the first dial's are the caller's to allow).
func (t *Tunnel) reach(ctx context.Context, entry directory.Node) error {
	addrs := entry.MixClientAddr + " " + entry.RegistrationAddr
	t.reachMu.Lock()
	defer t.reachMu.Unlock()
	if t.reached == "" || t.reached == addrs || t.cfg.Reach == nil {
		t.reached = addrs
		return nil
	}
	if err := t.cfg.Reach(ctx, entry); err != nil {
		return fmt.Errorf("mixnet: let the entry gateway's new addresses (%s) through: %w", addrs, err)
	}
	t.log.Info("the entry gateway moved", "gateway", entry.ID, "mix_client", entry.MixClientAddr, "registration", entry.RegistrationAddr)
	t.reached = addrs
	return nil
}

// tunDevice boxes the inner device for an atomic pointer.
type tunDevice struct{ tun.Device }

// innerDev is the inner device once Connect has set it up, or nil.
func (t *Tunnel) innerDev() tun.Device {
	if d := t.innerPtr.Load(); d != nil {
		return d.Device
	}
	return nil
}

// signal wakes the sender.
func (t *Tunnel) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}
