package localnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/metrics"
	"github.com/nymvpn/nymvpn/node/mixnode"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/sphinx"
	"github.com/nymvpn/nymvpn/transport"
)

func startNet(t testing.TB) *Network {
	t.Helper()
	cfg := DefaultConfig()
	cfg.EpochLength = time.Hour // no rotation during a test
	cfg.Logger = slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	n, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// replier is a test exit handler: it reads a SURB from each forward packet
// and answers through it, as the exit's IP packet router will.
type replier struct {
	gw   *mixnode.Node
	g    *sphinx.Geometry
	got  chan []byte
	errs chan error
}

func (r *replier) Deliver(d *mixnode.Delivery) {
	msg := bytes.Clone(d.Payload)
	r.got <- msg
	n := mixnet.SURBLength(r.g)
	if len(msg) < n {
		r.errs <- errors.New("forward payload without a SURB")
		return
	}
	s, err := mixnet.ParseSURB(r.g, msg[len(msg)-n:])
	if err != nil {
		r.errs <- err
		return
	}
	pkt, err := r.g.NewPacketFromSURB(s.SURB, append([]byte("reply to "), msg[:len(msg)-n]...))
	if err != nil {
		r.errs <- err
		return
	}
	if !r.gw.Forward(s.SURB.FirstHop, s.Epoch, pkt) {
		r.errs <- errors.New("reply not forwarded")
	}
}

func scrape(t testing.TB, h interface{ Families() []metrics.Family }) map[string]float64 {
	t.Helper()
	srv := httptest.NewServer(metrics.Handler(h.Families))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, err := metrics.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A packet crosses every hop: client → entry gateway → L1 → L2 → L3 → exit
// gateway, whose handler answers with the SURB the packet carried: L1 → L2
// → L3 → entry gateway → client, which decrypts the reply. Forward and
// reply use different mixes, so all six process a packet.
func TestMixnetRoundTrip(t *testing.T) {
	n := startNet(t)
	topo := n.Directory.Topology()
	epoch := topo.Epoch
	layers, err := mixnet.Mixes(topo, epoch)
	if err != nil {
		t.Fatal(err)
	}
	for l := range layers {
		if len(layers[l]) != 2 {
			t.Fatalf("layer %d has %d mixes, want 2", l+1, len(layers[l]))
		}
	}
	entry, _ := topo.Node("entry-de-1")
	exit, _ := topo.Node("exit-ch-1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The entry takes tickets: pay for the client's key, then connect with it.
	key, _ := transport.GenerateKey()
	grant, err := mixnet.PayEntry(ctx, *entry, key, n.Ticket, nil)
	if err != nil {
		t.Fatal(err)
	}
	if grant.Bandwidth <= 0 || grant.Bandwidth >= 1<<62 {
		t.Fatalf("grant %+v: want a metered allowance", grant)
	}
	client, err := mixnet.Dial(ctx, mixnet.ClientConfig{Gateway: *entry, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	g := sphinx.RegularGeometry()
	var keys mixnet.KeyCache
	surbHops, err := keys.Hops([]directory.Node{layers[0][1], layers[1][1], layers[2][1], *entry}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	surbID := sphinx.SURBID{0x5e}
	surb, surbKeys, err := g.NewSURB(rand.Reader, surbHops, &sphinx.Destination{Recipient: client.Recipient(), SURBID: surbID})
	if err != nil {
		t.Fatal(err)
	}
	fwdHops, err := keys.Hops([]directory.Node{layers[0][0], layers[1][0], layers[2][0], *exit}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		fwdHops[i].Delay = time.Duration(i+1) * time.Millisecond
	}
	request := []byte("GET / over the mixnet")
	payload := append(slices.Clone(request), (&mixnet.SURB{Epoch: epoch, SURB: surb}).Bytes()...)
	pkt, err := g.NewPacket(rand.Reader, fwdHops, &sphinx.Destination{Recipient: sphinx.Recipient{0xee}}, payload)
	if err != nil {
		t.Fatal(err)
	}
	exitGW := n.Gateways["exit-ch-1"]
	rep := &replier{gw: exitGW.Mixnode(), g: g, got: make(chan []byte, 4), errs: make(chan error, 4)}
	exitGW.SetExitHandler(rep)
	if err := client.Send(fwdHops[0].ID, epoch, pkt); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-rep.got:
		if !bytes.Equal(got, payload) {
			t.Fatalf("exit got %q…", got[:min(len(got), 40)])
		}
	case <-ctx.Done():
		t.Fatal("the exit gateway never got the packet")
	}
	var d mixnet.Delivery
	select {
	case err := <-rep.errs:
		t.Fatal(err)
	case d = <-client.Deliveries():
	case <-ctx.Done():
		t.Fatal("no reply")
	}
	if !d.Reply || d.SURBID != surbID {
		t.Fatalf("delivery %+v", d)
	}
	reply, err := g.DecryptReply(surbKeys, d.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if want := "reply to " + string(request); string(reply) != want {
		t.Fatalf("reply %q, want %q", reply, want)
	}
	for _, id := range n.MixnodeIDs {
		if p := n.Mixnodes[id].Metrics().Processed(); p != 1 {
			t.Errorf("%s processed %d packets, want 1", id, p)
		}
	}
	em := scrape(t, n.Gateways["entry-de-1"])
	if em["nym_gateway_mixnet_client_packets_total"] != 1 || em[`nym_gateway_mixnet_deliveries_total{to="client"}`] != 1 ||
		em[`nym_mix_packets_received_total{source="client"}`] != 1 || em["nym_gateway_mixnet_clients"] != 1 {
		t.Errorf("entry gateway metrics: %v", em)
	}
	xm := scrape(t, exitGW)
	if xm[`nym_gateway_mixnet_deliveries_total{to="exit"}`] != 1 || xm["nym_mix_packets_forwarded_total"] != 1 {
		t.Errorf("exit gateway metrics: %v", xm)
	}

	// Without an exit handler, a packet for no connected client is dropped
	// and counted; so is a packet a client aims at a node that is no mix.
	exitGW.SetExitHandler(nil)
	pkt, err = g.NewPacket(rand.Reader, fwdHops, &sphinx.Destination{}, []byte("nobody"))
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Send(fwdHops[0].ID, epoch, pkt); err != nil {
		t.Fatal(err)
	}
	if err := client.Send(mixnet.NodeID(exit), epoch, pkt); err != nil {
		t.Fatal(err)
	}
	exitMix := exitGW.Mixnode().Metrics()
	entryMix := n.Gateways["entry-de-1"].Mixnode().Metrics()
	waitFor(t, "no_handler and bad_first_hop drops", func() bool {
		return exitMix.Dropped(mixnode.DropNoHandler) == 1 && entryMix.Dropped(mixnode.DropBadFirstHop) == 1
	})
}

// A hello with a proof for another key is refused with an Error record.
func TestMixnetBadHello(t *testing.T) {
	n := startNet(t)
	entry, _ := n.Directory.Topology().Node("entry-ch-1")
	raw, err := net.Dial("tcp", entry.MixClientAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := transport.Client(ctx, raw, transport.Config{Pattern: transport.NK, Prologue: []byte(mixnet.ClientPrologue), RemoteStatic: transport.Key(entry.NoiseKey)})
	if err != nil {
		t.Fatal(err)
	}
	mine, _ := transport.GenerateKey()
	theirs, _ := transport.GenerateKey()
	proof, err := mixnet.HelloProof(mine, transport.Key(entry.NoiseKey), c.HandshakeHash())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(mixnet.AppendHello(nil, mixnet.Recipient(theirs), proof)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	msg, err := c.ReadMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	if k, body, _, err := mixnet.NextRecord(msg); err != nil || k != mixnet.KindError || !bytes.Contains(body, []byte("proof")) {
		t.Fatalf("answer %v %q %v", k, body, err)
	}
	if got := scrape(t, n.Gateways["entry-ch-1"])[`nym_gateway_mixnet_clients_refused_total{reason="hello"}`]; got != 1 {
		t.Errorf("refused(hello) = %v", got)
	}
}

// The probe sends loop packets over all 8 routes of the local network and
// gets every one back.
func TestProbeLocalnet(t *testing.T) {
	n := startNet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := mixnet.Probe(ctx, mixnet.ProbeConfig{DirectoryURL: n.DirectoryURL, Packets: 5, MeanDelay: time.Millisecond, Timeout: time.Minute, Ticket: n.Ticket})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.WriteText(&out)
	t.Log("\n" + out.String())
	if rep.Tickets != 1 || !bytes.Contains(out.Bytes(), []byte("paid with 1 mixnet-entry ticket")) {
		t.Errorf("the probe spent %d tickets at the entry, want 1", rep.Tickets)
	}
	if len(rep.Routes) != 8 {
		t.Fatalf("%d routes, want 2×2×2", len(rep.Routes))
	}
	if dead := rep.Dead(); len(dead) > 0 || rep.Received != rep.Sent || rep.Sent != 40 || rep.Corrupt != 0 || rep.Duplicates != 0 {
		t.Errorf("probe: sent %d, received %d, dead %v, corrupt %d, dup %d", rep.Sent, rep.Received, dead, rep.Corrupt, rep.Duplicates)
	}
	seen := map[string]bool{}
	for _, r := range rep.Routes {
		for _, id := range r.Mixes {
			seen[id] = true
		}
		if r.Received > 0 && (r.Median <= 0 || r.P95 < r.Median) {
			t.Errorf("route %v: median %v, p95 %v", r.Mixes, r.Median, r.P95)
		}
	}
	if len(seen) != 6 {
		t.Errorf("probe crossed %d mixes, want 6", len(seen))
	}
	// A mix that is down: its routes lose everything and are reported dead.
	victim := rep.Routes[0].Mixes[1]
	n.Mixnodes[victim].Close()
	// (The probe waits its whole timeout, since dead routes never finish;
	// the live routes' packets need far less, even on a loaded machine.)
	rep, err = mixnet.Probe(ctx, mixnet.ProbeConfig{DirectoryURL: n.DirectoryURL, Packets: 2, Timeout: 10 * time.Second, Ticket: n.Ticket})
	if err != nil {
		t.Fatal(err)
	}
	dead := rep.Dead()
	if len(dead) != 4 {
		t.Fatalf("%d dead routes with %s down, want 4", len(dead), victim)
	}
	for _, r := range dead {
		if r.Mixes[1] != victim {
			t.Errorf("route %v reported dead", r.Mixes)
		}
	}
}

// The entries take tickets for mixnet ingress: a client or probe that did
// not pay is refused at the hello, and the probe says the gateway wants
// payment (its payment_required); a key that paid is admitted.
func TestMixnetIngressPaid(t *testing.T) {
	n := startNet(t)
	entry, _ := n.Directory.Topology().Node("entry-de-1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := mixnet.Dial(ctx, mixnet.ClientConfig{Gateway: *entry})
	if !errors.Is(err, mixnet.ErrRefused) || !strings.Contains(err.Error(), "payment required") {
		t.Fatalf("an unpaid client: %v", err)
	}
	_, err = mixnet.Probe(ctx, mixnet.ProbeConfig{DirectoryURL: n.DirectoryURL, Gateway: entry.ID, Packets: 1})
	var re *registration.Error
	if !errors.Is(err, mixnet.ErrPaymentRequired) || !errors.As(err, &re) || re.Code != registration.CodePaymentRequired ||
		!strings.Contains(err.Error(), "no ticket source") {
		t.Fatalf("a probe without tickets: %v", err)
	}
	t.Logf("refused: %v", err)
	if got := scrape(t, n.Gateways[entry.ID])[`nym_gateway_mixnet_clients_refused_total{reason="unpaid"}`]; got != 2 {
		t.Errorf("refused(unpaid) = %v, want 2", got)
	}
	// A ticket that does not verify buys nothing.
	key, _ := transport.GenerateKey()
	_, err = mixnet.PayEntry(ctx, *entry, key, func(context.Context, string, directory.Node) ([]byte, error) { return []byte("not a ticket"), nil }, nil)
	if !errors.As(err, &re) || re.Code != registration.CodeTicketInvalid {
		t.Fatalf("paying with a forged ticket: %v", err)
	}
	if _, err := mixnet.Dial(ctx, mixnet.ClientConfig{Gateway: *entry, Key: key}); !errors.Is(err, mixnet.ErrRefused) {
		t.Fatalf("a client whose ticket was refused: %v", err)
	}
	// Paid: admitted.
	if _, err := mixnet.PayEntry(ctx, *entry, key, n.Ticket, nil); err != nil {
		t.Fatal(err)
	}
	c, err := mixnet.Dial(ctx, mixnet.ClientConfig{Gateway: *entry, Key: key})
	if err != nil {
		t.Fatalf("a client that paid: %v", err)
	}
	c.Close()
	// A free network (FreePass) admits the unpaid probe.
	cfg := DefaultConfig()
	cfg.EpochLength = time.Hour
	cfg.FreePass = true
	cfg.MixnodesPerLayer = 1
	cfg.Logger = slog.New(slog.DiscardHandler)
	free, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer free.Close()
	rep, err := mixnet.Probe(ctx, mixnet.ProbeConfig{DirectoryURL: free.DirectoryURL, Packets: 2, Timeout: 30 * time.Second})
	if err != nil || rep.Received != rep.Sent || rep.Tickets != 0 {
		t.Fatalf("an unpaid probe on a free network: %v %+v", err, rep)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Keys rotate under live traffic: with 4 s epochs, probes keep getting every
// packet back across two epoch boundaries (the directory publishes the next
// keys ahead; packets built with the previous epoch's keys are accepted
// during the grace period), and no node drops a packet for its key.
func TestProbeAcrossRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for three 4-second epochs")
	}
	cfg := DefaultConfig()
	cfg.EpochLength = 4 * time.Second
	cfg.Logger = slog.New(slog.DiscardHandler)
	n, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first, _ := directory.EpochAt(time.Now(), cfg.EpochLength)
	epochs := map[uint64]bool{}
	for {
		e, _ := directory.EpochAt(time.Now(), cfg.EpochLength)
		if e >= first+2 && len(epochs) >= 3 {
			break
		}
		rep, err := mixnet.Probe(ctx, mixnet.ProbeConfig{DirectoryURL: n.DirectoryURL, Packets: 2, Interval: 20 * time.Millisecond, Timeout: time.Minute, Ticket: n.Ticket})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Received != rep.Sent || len(rep.Routes) != 8 {
			t.Fatalf("epoch %d: received %d of %d over %d routes", rep.Epoch, rep.Received, rep.Sent, len(rep.Routes))
		}
		epochs[rep.Epoch] = true
	}
	for _, id := range n.MixnodeIDs {
		m := n.Mixnodes[id].Metrics()
		if m.Dropped(mixnode.DropExpiredKey)+m.Dropped(mixnode.DropUnknownKey)+m.Dropped(mixnode.DropMAC) != 0 {
			t.Errorf("%s dropped packets for their keys: expired %d, unknown %d, mac %d", id,
				m.Dropped(mixnode.DropExpiredKey), m.Dropped(mixnode.DropUnknownKey), m.Dropped(mixnode.DropMAC))
		}
		if keys := n.Mixnodes[id].SphinxKeys(); len(keys) != 2 || keys[0].Epoch < first+2 {
			t.Errorf("%s publishes %+v after two rotations", id, keys)
		}
	}
}
