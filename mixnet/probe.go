package mixnet

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/bits"
	"net"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/sphinx"
	"github.com/nymvpn/nymvpn/transport"
)

// RouteSet says which routes a probe tries.
type RouteSet string

// Route sets.
const (
	// RoutesAll tries every L1 × L2 × L3 combination: a dead route names
	// the failing mix, at |L1|·|L2|·|L3| routes.
	RoutesAll RouteSet = "all"
	// RoutesCover tries max(|L1|,|L2|,|L3|) routes, route i through the
	// i-th mix of each layer (wrapping), so every mix is crossed at least
	// once: cheap for a large network, but a dead route only says one of
	// its three mixes fails.
	RoutesCover RouteSet = "cover"
	// RoutesAuto is RoutesAll up to MaxAllRoutes routes, else RoutesCover.
	RoutesAuto RouteSet = "auto"
)

// Probe defaults.
const (
	MaxAllRoutes        = 64
	DefaultProbePackets = 10
	DefaultProbeTimeout = 10 * time.Second
)

// ProbeConfig configures Probe.
type ProbeConfig struct {
	// DirectoryURL (with ?key=) is fetched unless Topology is set.
	DirectoryURL string
	Topology     *directory.Topology
	// Gateway is the id of the entry gateway to probe through; "" takes the
	// first, by id, that takes mixnet clients.
	Gateway string
	// Packets per route (default DefaultProbePackets).
	Packets int
	Routes  RouteSet
	// MeanDelay is the mean of the exponential delay asked of each mix
	// (0: none, the network's own latency only). Delays are cut at 10 s,
	// the nodes' cap.
	MeanDelay time.Duration
	// Interval between two sends (default none: as fast as packets are
	// built, about 0.4 ms each).
	Interval time.Duration
	// Timeout is how long to wait for the last packets after the last send
	// (default DefaultProbeTimeout).
	Timeout time.Duration
	// Ticket, if set, pays the entry gateway before the probe connects: a
	// registration.RoleMixnet registration of the probe's recipient key with
	// a mixnet-entry ticket (PayEntry), repeated until the allowance covers
	// the probe's packets both ways. Without it the probe connects unpaid,
	// which only an entry that does not charge (--free-pass) admits; one that
	// does fails the probe with ErrPaymentRequired.
	Ticket TicketFunc
	// Dial opens TCP connections (default net.Dialer).
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger *slog.Logger
}

// maxProbeTickets bounds the tickets one probe spends at its entry gateway.
const maxProbeTickets = 16

// RouteReport is what a probe saw on one route.
type RouteReport struct {
	// Mixes are the ids of the layer 1, 2 and 3 mixes.
	Mixes    [directory.Layers]string `json:"mixes"`
	Sent     int                      `json:"sent"`
	Received int                      `json:"received"`
	// Loss is 1 - Received/Sent.
	Loss float64 `json:"loss"`
	// Median, P95 and Max round-trip latency of the received packets
	// (client → entry gateway → 3 mixes → entry gateway → client).
	Median time.Duration `json:"median_ns"`
	P95    time.Duration `json:"p95_ns"`
	Max    time.Duration `json:"max_ns"`
}

// ProbeReport is the result of Probe.
type ProbeReport struct {
	Gateway string `json:"gateway"`
	Epoch   uint64 `json:"epoch"`
	// Tickets is the number of mixnet-entry tickets spent at the gateway
	// (0: it did not charge, or the probe had no ticket source).
	Tickets  int           `json:"tickets,omitempty"`
	Routes   []RouteReport `json:"routes"`
	Sent     int           `json:"sent"`
	Received int           `json:"received"`
	// Corrupt counts deliveries that were not a packet of this probe intact;
	// Duplicates those received twice. Both should be 0.
	Corrupt    int           `json:"corrupt"`
	Duplicates int           `json:"duplicates"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	// Median and P95 over every received packet.
	Median time.Duration `json:"median_ns"`
	P95    time.Duration `json:"p95_ns"`
}

// Dead returns the routes that lost every packet.
func (r *ProbeReport) Dead() []RouteReport {
	var out []RouteReport
	for _, rt := range r.Routes {
		if rt.Sent > 0 && rt.Received == 0 {
			out = append(out, rt)
		}
	}
	return out
}

// WriteText writes the report as a table.
func (r *ProbeReport) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	paid := ""
	if r.Tickets > 0 {
		paid = fmt.Sprintf(", paid with %d mixnet-entry ticket(s)", r.Tickets)
	}
	fmt.Fprintf(tw, "probe through entry gateway %s, epoch %d, %d routes, %v%s\n", r.Gateway, r.Epoch, len(r.Routes), r.Elapsed.Round(time.Millisecond), paid)
	fmt.Fprintln(tw, "L1\tL2\tL3\tsent\trecv\tloss\tmedian\tp95\t")
	for _, rt := range r.Routes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%.1f%%\t%v\t%v\t\n", rt.Mixes[0], rt.Mixes[1], rt.Mixes[2],
			rt.Sent, rt.Received, 100*rt.Loss, roundLatency(rt.Median), roundLatency(rt.P95))
	}
	fmt.Fprintf(tw, "total\t\t\t%d\t%d\t%.1f%%\t%v\t%v\t\n", r.Sent, r.Received, 100*loss(r.Sent, r.Received), roundLatency(r.Median), roundLatency(r.P95))
	if r.Corrupt > 0 || r.Duplicates > 0 {
		fmt.Fprintf(tw, "corrupt %d, duplicates %d\n", r.Corrupt, r.Duplicates)
	}
	return tw.Flush()
}

func roundLatency(d time.Duration) time.Duration {
	if d >= 10*time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}

func loss(sent, recv int) float64 {
	if sent == 0 {
		return 0
	}
	return 1 - float64(recv)/float64(sent)
}

const probeLabel = "nymvpn probe v1\x00"

// Probe connects to an entry gateway as a client and sends loop packets
// over every mix: each packet's route is L1 → L2 → L3 → that same gateway,
// with the client as recipient, so it comes back. It reports sent, received,
// loss and latency per route. With cfg.Ticket it first pays the gateway for
// the probe's recipient key (PayEntry). It fails only if it cannot probe at
// all (directory, gateway, payment, no route); dead routes are in the
// report (Dead).
func Probe(ctx context.Context, cfg ProbeConfig) (*ProbeReport, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Packets <= 0 {
		cfg.Packets = DefaultProbePackets
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultProbeTimeout
	}
	topo := cfg.Topology
	if topo == nil {
		if cfg.DirectoryURL == "" {
			return nil, errors.New("mixnet: probe: no directory URL")
		}
		var err error
		topo, err = (&directory.Client{URL: cfg.DirectoryURL}).Fetch(ctx)
		if err != nil {
			return nil, fmt.Errorf("mixnet: probe: %w", err)
		}
	}
	epoch := RouteEpoch(topo, time.Now())
	layers, err := Mixes(topo, epoch)
	if err != nil {
		return nil, fmt.Errorf("mixnet: probe: %w", err)
	}
	gw, err := probeGateway(topo, cfg.Gateway, epoch)
	if err != nil {
		return nil, err
	}
	routes := probeRoutes(&layers, cfg.Routes)
	var keys KeyCache
	hops := make([][]sphinx.Hop, len(routes))
	for i, r := range routes {
		if hops[i], err = keys.Hops(append(slices.Clone(r), *gw), epoch); err != nil {
			return nil, fmt.Errorf("mixnet: probe: %w", err)
		}
	}
	rng, err := NewRand(rand.Reader)
	if err != nil {
		return nil, err
	}
	total := len(routes) * cfg.Packets
	key, err := transport.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("mixnet: probe: %w", err)
	}
	rep := &ProbeReport{Gateway: gw.ID, Epoch: epoch, Routes: make([]RouteReport, len(routes))}
	if cfg.Ticket != nil {
		if rep.Tickets, err = payProbe(ctx, &cfg, *gw, key, probeAllowance(total)); err != nil {
			return nil, fmt.Errorf("mixnet: probe: %w", err)
		}
	}
	client, err := Dial(ctx, ClientConfig{Gateway: *gw, Key: key, Queue: total + 64, Dial: cfg.Dial, Logger: cfg.Logger})
	if err != nil {
		if cfg.Ticket == nil && errors.Is(err, ErrRefused) {
			// Refused: ask the gateway whether for want of payment.
			if perr := paymentRequired(ctx, *gw, key, cfg.Dial); perr != nil {
				return nil, fmt.Errorf("mixnet: probe: no ticket source to pay entry gateway %s: %w", gw.ID, perr)
			}
		}
		return nil, fmt.Errorf("mixnet: probe: %w", err)
	}
	defer client.Close()

	for i, r := range routes {
		for l := range r {
			rep.Routes[i].Mixes[l] = r[l].ID
		}
	}
	run := rng.Uint64()
	st := &probeState{run: run, sent: map[uint64]time.Time{}, got: map[uint64]bool{}, lat: make([][]time.Duration, len(routes))}
	allIn := make(chan struct{})
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for d := range client.Deliveries() {
			if st.receive(&d, time.Now(), len(routes)) == total {
				close(allIn)
				return
			}
		}
	}()

	g := sphinx.RegularGeometry()
	start := time.Now()
	var sendErr error
send:
	for seq := range cfg.Packets {
		for i := range routes {
			route := slices.Clone(hops[i])
			for h := 0; h < directory.Layers; h++ {
				route[h].Delay = ExpDelay(rng, cfg.MeanDelay, 10*time.Second)
			}
			id := uint64(i)<<32 | uint64(seq)
			dest := &sphinx.Destination{Recipient: client.Recipient(), SURBID: Uint64ID(run, id)}
			pkt, err := g.NewPacket(rand.Reader, route, dest, probeMessage(run, id))
			if err != nil {
				return nil, fmt.Errorf("mixnet: probe: build packet: %w", err)
			}
			st.markSent(id, time.Now())
			if err := client.Send(route[0].ID, epoch, pkt); err != nil {
				sendErr = err
				break send
			}
			rep.Routes[i].Sent++
			if cfg.Interval > 0 {
				select {
				case <-time.After(cfg.Interval):
				case <-ctx.Done():
					break send
				}
			}
		}
	}
	timer := time.NewTimer(cfg.Timeout)
	select {
	case <-allIn:
	case <-recvDone:
	case <-timer.C:
	case <-ctx.Done():
	}
	timer.Stop()
	client.Close()
	<-recvDone
	rep.Elapsed = time.Since(start)
	if sendErr != nil {
		cfg.Logger.Warn("probe: sending stopped early", "err", sendErr)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var all []time.Duration
	for i := range rep.Routes {
		rt := &rep.Routes[i]
		lat := st.lat[i]
		rt.Received = len(lat)
		rt.Loss = loss(rt.Sent, rt.Received)
		rt.Median, rt.P95, rt.Max = percentiles(lat)
		rep.Sent += rt.Sent
		rep.Received += rt.Received
		all = append(all, lat...)
	}
	rep.Median, rep.P95, _ = percentiles(all)
	rep.Corrupt, rep.Duplicates = st.corrupt, st.dups
	if rep.Sent == 0 && sendErr != nil {
		return nil, fmt.Errorf("mixnet: probe: %w", sendErr)
	}
	return rep, nil
}

// probeAllowance is what a number of loop packets cost at the entry
// gateway, with room to spare: each is charged going in (a Send record) and
// coming back (a Deliver record), each record smaller than a packet and
// its header.
func probeAllowance(packets int) int64 {
	return int64(packets) * 2 * int64(sphinx.RegularGeometry().PacketLength+256)
}

// payProbe pays gw for the probe's key until the allowance covers need
// bytes (at most maxProbeTickets tickets) and returns the tickets spent.
func payProbe(ctx context.Context, cfg *ProbeConfig, gw directory.Node, key transport.Key, need int64) (int, error) {
	for n := 1; ; n++ {
		grant, err := PayEntry(ctx, gw, key, cfg.Ticket, cfg.Dial)
		if err != nil {
			return n - 1, err
		}
		if grant.Bandwidth >= need {
			cfg.Logger.Debug("probe: paid the entry gateway", "gateway", gw.ID, "tickets", n, "allowance", grant.Bandwidth, "need", need)
			return n, nil
		}
		if n == maxProbeTickets {
			cfg.Logger.Warn("probe: the allowance bought does not cover every packet; the gateway may cut the probe off",
				"gateway", gw.ID, "tickets", n, "allowance", grant.Bandwidth, "need", need)
			return n, nil
		}
	}
}

type probeState struct {
	mu            sync.Mutex
	run           uint64
	sent          map[uint64]time.Time
	got           map[uint64]bool
	lat           [][]time.Duration
	received      int
	corrupt, dups int
}

func (s *probeState) markSent(id uint64, t time.Time) {
	s.mu.Lock()
	s.sent[id] = t
	s.mu.Unlock()
}

// receive records a delivery and returns how many packets have come back.
func (s *probeState) receive(d *Delivery, now time.Time, routes int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	run := binary.BigEndian.Uint64(d.SURBID[:8])
	id := binary.BigEndian.Uint64(d.SURBID[8:])
	sentAt, ok := s.sent[id]
	if d.Reply || run != s.run || !ok || !bytes.Equal(d.Payload, probeMessage(run, id)) || int(id>>32) >= routes {
		s.corrupt++
		return s.received
	}
	if s.got[id] {
		s.dups++
		return s.received
	}
	s.got[id] = true
	s.received++
	s.lat[id>>32] = append(s.lat[id>>32], now.Sub(sentAt))
	return s.received
}

func probeMessage(run, id uint64) []byte {
	b := make([]byte, 0, len(probeLabel)+16)
	b = append(b, probeLabel...)
	b = binary.BigEndian.AppendUint64(b, run)
	return binary.BigEndian.AppendUint64(b, id)
}

// percentiles returns the median, 95th percentile (nearest rank) and max.
func percentiles(d []time.Duration) (median, p95, longest time.Duration) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[min(max0(i), len(s)-1)]
	}
	return rank(0.5), rank(0.95), s[len(s)-1]
}

func max0(i int) int {
	if i < 0 {
		return 0
	}
	return i
}

func probeGateway(t *directory.Topology, id string, epoch uint64) (*directory.Node, error) {
	var cands []directory.Node
	for _, n := range t.WithRole(directory.RoleEntry) {
		if n.MixClientAddr == "" || n.MixAddr == "" {
			continue
		}
		if _, ok := n.SphinxKey(epoch); !ok {
			continue
		}
		if id == "" || n.ID == id {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		if id != "" {
			return nil, fmt.Errorf("mixnet: probe: %w: no entry gateway %q taking mixnet clients with a key for epoch %d", ErrNoRoute, id, epoch)
		}
		return nil, fmt.Errorf("mixnet: probe: %w: no entry gateway takes mixnet clients", ErrNoRoute)
	}
	slices.SortFunc(cands, func(a, b directory.Node) int { return cmp.Compare(a.ID, b.ID) })
	return &cands[0], nil
}

// probeRoutes lists the mixes of each route to try.
func probeRoutes(layers *[directory.Layers][]directory.Node, set RouteSet) [][]directory.Node {
	all := 1
	most := 0
	for _, l := range layers {
		hi, lo := bits.Mul64(uint64(all), uint64(len(l)))
		if hi != 0 || lo > math.MaxInt32 {
			all = math.MaxInt32
		} else {
			all = int(lo)
		}
		most = max(most, len(l))
	}
	if set == RoutesAll || (set != RoutesCover && all <= MaxAllRoutes) {
		var out [][]directory.Node
		for _, a := range layers[0] {
			for _, b := range layers[1] {
				for _, c := range layers[2] {
					out = append(out, []directory.Node{a, b, c})
				}
			}
		}
		return out
	}
	out := make([][]directory.Node, most)
	for i := range out {
		for l := range layers {
			out[i] = append(out[i], layers[l][i%len(layers[l])])
		}
	}
	return out
}
