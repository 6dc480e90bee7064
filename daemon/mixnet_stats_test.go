package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/tunnelstate"
	"github.com/nymvpn/nymvpn/modes/mixnet"
)

// fakeMixnetTunnel stands for a mixnet-mode tunnel: its statistics are a
// mixnet.Stats the test moves on as if traffic flowed, shown through the
// daemon's own mapping.
type fakeMixnetTunnel struct {
	mu sync.Mutex
	st mixnet.Stats
}

func (t *fakeMixnetTunnel) Info() tunnelstate.Info {
	return tunnelstate.Info{Mode: api.ModeMixnet, Entry: api.Gateway{ID: "entry-de-1", Country: "DE"},
		Exit: api.Gateway{ID: "exit-ch-1", Country: "CH"}, Interface: "nymvpntest0", MTU: mixnet.MTU,
		Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/32")}, DNS: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}
}

func (t *fakeMixnetTunnel) Traffic() api.Traffic {
	t.mu.Lock()
	defer t.mu.Unlock()
	return api.Traffic{TxBytes: int64(t.st.BytesOut), RxBytes: int64(t.st.BytesIn)}
}

func (t *fakeMixnetTunnel) MixnetStats() api.MixnetStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return mixnetStatsOf(t.st)
}

func (t *fakeMixnetTunnel) Check(time.Time) error { return nil }
func (t *fakeMixnetTunnel) Close() error          { return nil }

// flow counts n full-size IP packets sent and answered, with the cover
// and loops that went meanwhile.
func (t *fakeMixnetTunnel) flow(n uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.st.Real += n
	t.st.Acked += n
	t.st.Cover += 10 * n
	t.st.Loops += n
	t.st.IPOut += n
	t.st.IPIn += n
	t.st.BytesOut += 1500 * n
	t.st.BytesIn += 1500 * n
	t.st.SURBsSent += 3 * n
	t.st.SURBsUsed += n
	t.st.ExitSURBs = 64
	t.st.ExitRTT = 142_349 * time.Microsecond
	t.st.Overhead = 7_250 * time.Microsecond
}

// mixnetConnector builds the one fake tunnel, in mixnet mode only.
type mixnetConnector struct{ tun *fakeMixnetTunnel }

func (c *mixnetConnector) Connect(ctx context.Context, s api.Settings, _ tunnelstate.Progress, _ tunnelstate.Allow) (tunnelstate.Tunnel, error) {
	if s.Mode != api.ModeMixnet {
		return nil, tunnelstate.Permanent(api.CodeNotSupported, errors.New("this test connects in mixnet mode only"))
	}
	c.tun.mu.Lock()
	c.tun.st.Profile = s.PrivacyProfile
	c.tun.mu.Unlock()
	return c.tun, nil
}

// noSystem routes nothing: an in-process test may not touch the host.
type noSystem struct{}

func (noSystem) Up(context.Context, tunnelstate.Info) error { return nil }
func (noSystem) Down(context.Context) error                 { return nil }

// runFakeTunnelDaemon runs the daemon with conn for its tunnels and no
// system integration.
func runFakeTunnelDaemon(t *testing.T, conn tunnelstate.Connector) *http.Client {
	t.Helper()
	c, _ := startDaemon(t, Config{StateDir: t.TempDir(), DirectoryURL: unreachableDirectory(t), connector: conn, system: noSystem{}})
	return c
}

// waitStatus polls GET /v1/status until ok accepts it.
func waitStatus(t *testing.T, c *http.Client, what string, ok func(api.Status) bool) api.Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st api.Status
		call(t, c, "GET", "/v1/status", nil, &st)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: status %+v, mixnet %+v", what, st.State, st.Mixnet)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStatusCarriesMixnetStats: connected in mixnet mode, GET /v1/status
// and the event stream carry the tunnel's statistics, refreshed as traffic
// flows, and lose them when the tunnel goes down.
func TestStatusCarriesMixnetStats(t *testing.T) {
	tun := &fakeMixnetTunnel{}
	c := runFakeTunnelDaemon(t, &mixnetConnector{tun: tun})

	// The event stream, read from the start: the full status, then changes.
	req, _ := http.NewRequest("GET", "http://nymvpnd/v1/events", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan api.Event, 256)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var e api.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				events <- e
			}
		}
	}()

	var st api.State
	if code := call(t, c, "POST", "/v1/connect", api.ConnectRequest{Mode: api.ModeMixnet, PrivacyProfile: api.ProfileMax}, &st); code != http.StatusAccepted {
		t.Fatalf("connect: %d %+v", code, st)
	}
	s := waitStatus(t, c, "connected with mixnet statistics", func(s api.Status) bool {
		return s.State.Kind == api.Connected && s.Mixnet != nil
	})
	if m := s.Mixnet; m.Profile != api.ProfileMax || m.RealPackets != 0 || m.ExitRTTMs != 0 {
		t.Fatalf("mixnet statistics before any traffic: %+v", m)
	}

	tun.flow(5)
	s = waitStatus(t, c, "statistics of the first packets", func(s api.Status) bool {
		return s.Mixnet != nil && s.Mixnet.RealPackets == 5
	})
	want := api.MixnetStats{Profile: api.ProfileMax, RealPackets: 5, CoverPackets: 50, LoopCoverPackets: 5, Acked: 5,
		SURBsSent: 15, SURBsUsed: 5, ExitSURBs: 64, IPPacketsOut: 5, IPPacketsIn: 5, BytesOut: 7500, BytesIn: 7500,
		ExitRTTMs: 142.3, OverheadMs: 7.3}
	if *s.Mixnet != want {
		t.Fatalf("mixnet statistics\n got %+v\nwant %+v", *s.Mixnet, want)
	}
	tun.flow(7)
	waitStatus(t, c, "statistics as traffic flows", func(s api.Status) bool {
		return s.Mixnet != nil && s.Mixnet.RealPackets == 12 && s.Mixnet.CoverPackets == 120
	})

	// The stream told the same story: statistics in events of their own,
	// each different from the one before (repeats are dropped).
	var (
		cur         api.Status
		seen        []uint64
		last        *api.MixnetStats
		streamDone  = time.After(30 * time.Second)
		sawMixnetEv bool
	)
	for cur.Mixnet == nil || cur.Mixnet.RealPackets != 12 {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("the event stream ended")
			}
			cur.Apply(e)
			if e.Mixnet != nil {
				sawMixnetEv = true
				if e.State != nil || e.Traffic != nil {
					t.Errorf("a mixnet event carries more: %+v", e)
				}
				if last != nil && *last == *e.Mixnet {
					t.Errorf("an unchanged mixnet event: %+v", *e.Mixnet)
				}
				m := *e.Mixnet
				last = &m
				seen = append(seen, m.RealPackets)
			}
		case <-streamDone:
			t.Fatalf("the stream never showed 12 real packets; it showed %v", seen)
		}
	}
	if !sawMixnetEv || cur.State.Kind != api.Connected {
		t.Fatalf("stream: state %s, mixnet events %v", cur.State.Kind, seen)
	}

	// Down: the statistics go with the tunnel.
	call(t, c, "POST", "/v1/disconnect", struct{}{}, &st)
	waitStatus(t, c, "disconnected without statistics", func(s api.Status) bool {
		return s.State.Kind == api.Disconnected && s.Mixnet == nil
	})
}

func TestMixnetStatsOf(t *testing.T) {
	got := mixnetStatsOf(mixnet.Stats{Profile: "fast", Real: 1, Retransmissions: 2, Cover: 3, Loops: 4, LoopsBack: 99,
		Acked: 5, Lost: 6, Messages: 99, Replies: 99, SURBsSent: 7, SURBsUsed: 8, SURBsExpired: 99, NeedSURBs: 99,
		ExitSURBs: 9, IPOut: 10, IPIn: 11, BytesOut: 12, BytesIn: 13, IPDropped: 14, Pongs: 99, Reconnects: 15, Reopens: 16,
		LoopRTT: 1500 * time.Microsecond, AckRTT: 20 * time.Millisecond, ExitRTT: 142_449 * time.Microsecond,
		Overhead: -50 * time.Microsecond, SendWait: time.Hour, MixDelays: time.Hour})
	want := api.MixnetStats{Profile: "fast", RealPackets: 1, Retransmissions: 2, CoverPackets: 3, LoopCoverPackets: 4,
		Acked: 5, Lost: 6, SURBsSent: 7, SURBsUsed: 8, ExitSURBs: 9, IPPacketsOut: 10, IPPacketsIn: 11, BytesOut: 12,
		BytesIn: 13, IPPacketsDropped: 14, Reconnects: 15, Reopens: 16,
		LoopRTTMs: 1.5, AckRTTMs: 20, ExitRTTMs: 142.4, OverheadMs: -0.1}
	if got != want {
		t.Fatalf("mapping\n got %+v\nwant %+v", got, want)
	}
	b, _ := json.Marshal(got)
	var fields map[string]any
	json.Unmarshal(b, &fields)
	for _, k := range []string{"profile", "real_packets", "cover_packets", "loop_cover_packets", "retransmissions", "acked", "lost",
		"surbs_sent", "surbs_used", "exit_surbs", "ip_packets_out", "ip_packets_in", "bytes_out", "bytes_in", "ip_packets_dropped",
		"loop_rtt_ms", "ack_rtt_ms", "exit_rtt_ms", "overhead_ms", "reconnects", "reopens"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	if len(fields) != 21 {
		t.Errorf("JSON has %d fields, want 21: %s", len(fields), b)
	}
}
