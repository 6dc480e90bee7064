package cli

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// connectMixnet puts the fake daemon in mixnet mode, connected, with
// statistics, as nymvpnd publishes them.
func (d *daemon) connectMixnet(m api.MixnetStats) {
	set := d.hub.Status().Settings
	set.Mode, set.PrivacyProfile = api.ModeMixnet, m.Profile
	d.hub.SetSettings(set)
	d.hub.SetTarget("connected")
	since := time.Now()
	d.hub.SetState(api.State{Kind: api.Connected, Mode: api.ModeMixnet, Since: &since, Interface: "nymvpn0",
		Entry:     &api.Gateway{ID: "entry-de-1", Country: "DE", Endpoint: "192.0.2.1:9001"},
		Exit:      &api.Gateway{ID: "exit-ch-1", Country: "CH", Endpoint: "192.0.2.2:9000"},
		Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fc00::2")},
		DNS:       []netip.Addr{netip.MustParseAddr("10.0.0.1")}})
	d.hub.SetTraffic(&api.Traffic{TxBytes: int64(m.BytesOut), RxBytes: int64(m.BytesIn)})
	d.hub.SetMixnet(&m)
}

var busyMixnet = api.MixnetStats{Profile: api.ProfileMax, RealPackets: 312, CoverPackets: 3800, LoopCoverPackets: 410,
	Retransmissions: 3, Acked: 309, SURBsSent: 960, SURBsUsed: 410, ExitSURBs: 48, IPPacketsOut: 290, IPPacketsIn: 400,
	BytesOut: 41_000, BytesIn: 520_000, LoopRTTMs: 96.2, AckRTTMs: 101.5, ExitRTTMs: 142.3, OverheadMs: 7.3, Reopens: 1}

func TestStatusMixnet(t *testing.T) {
	d := startDaemon(t, nil)
	d.connectMixnet(busyMixnet)
	code, out, errOut := d.run(t, "status")
	wantCode(t, code, out, errOut, ExitOK)
	inOrder(t, out, "State:", "Connected (mixnet mode, max privacy profile)", "Traffic:", "sent 41.0 kB, received 520.0 kB",
		"Mixnet:", "max privacy profile; repaired itself: 1 reopened session",
		"Packets:", "312 real, 4,210 cover (93% cover)",
		"Resent:", "3 retransmitted, 0 lost",
		"Exit RTT:", "142 ms (7.3 ms above the mix delays)",
		"Exit SURBs:", "48 held for replies", "Daemon:")

	code, out, errOut = d.run(t, "status", "--json")
	wantCode(t, code, out, errOut, ExitOK)
	var got api.Status
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if got.Mixnet == nil || *got.Mixnet != busyMixnet {
		t.Fatalf("status --json mixnet %+v, want %+v", got.Mixnet, busyMixnet)
	}
	for _, k := range []string{`"mixnet": {`, `"exit_rtt_ms": 142.3`, `"cover_packets": 3800`, `"exit_surbs": 48`} {
		if !strings.Contains(out, k) {
			t.Errorf("status --json lacks %s:\n%s", k, out)
		}
	}

	// Just connected: nothing measured yet.
	d.hub.SetMixnet(&api.MixnetStats{Profile: api.ProfileFast})
	_, out, _ = d.run(t, "status")
	inOrder(t, out, "Mixnet:", "fast privacy profile\n", "Packets:", "0 real, 0 cover\n", "Exit RTT:", "not measured yet")

	// Down: no block.
	d.hub.SetMixnet(nil)
	d.hub.SetState(api.State{Kind: api.Disconnected})
	_, out, _ = d.run(t, "status")
	if strings.Contains(out, "Mixnet:") || strings.Contains(out, "Packets:") {
		t.Errorf("mixnet block while disconnected:\n%s", out)
	}
}

// TestStatusFastHasNoMixnetBlock: fast mode prints what it always did.
func TestStatusFastHasNoMixnetBlock(t *testing.T) {
	d := startDaemon(t, nil)
	d.run(t, "connect", "--wait")
	_, out, _ := d.run(t, "status")
	for _, k := range []string{"Mixnet:", "Packets:", "Exit RTT:", "SURBs"} {
		if strings.Contains(out, k) {
			t.Errorf("fast mode's status shows %q:\n%s", k, out)
		}
	}
	_, out, _ = d.run(t, "status", "--json")
	if strings.Contains(out, `"mixnet"`) {
		t.Errorf("fast mode's status --json has mixnet statistics:\n%s", out)
	}
}

// TestWatchMixnet: watch prints each new set of statistics on a line, and
// no traffic line when only the last exit answer moved.
func TestWatchMixnet(t *testing.T) {
	d := startDaemon(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int)
	go func() { done <- Main(ctx, []string{"watch", "--socket", d.path}, &stdout, &stderr) }()
	waitFor(t, func() bool { return d.hub.Subscribers() == 1 })
	first := api.MixnetStats{Profile: api.ProfileMax, CoverPackets: 40, LoopCoverPackets: 5, ExitSURBs: 12}
	d.connectMixnet(first)
	waitFor(t, func() bool { return strings.Contains(stdout.String(), "mixnet: 0 real") })
	pong := time.Now()
	d.hub.SetTraffic(&api.Traffic{LastHandshake: &pong}) // the bytes did not move
	d.hub.SetMixnet(&busyMixnet)
	waitFor(t, func() bool { return strings.Contains(stdout.String(), "mixnet: 312 real") })
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("watch exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	inOrder(t, out, "Connected: entry entry-de-1 (DE)",
		"mixnet: 0 real, 45 cover (100% cover); 0 retransmitted, 0 lost; exit RTT not measured yet; 12 SURBs at the exit\n",
		"mixnet: 312 real, 4,210 cover (93% cover); 3 retransmitted, 0 lost; exit RTT 142 ms (7.3 ms above the mix delays); 48 SURBs at the exit; 1 reopened session\n")
	if strings.Contains(out, "traffic:") {
		t.Errorf("traffic lines without bytes moving:\n%s", out)
	}
}

func TestMixnetFormats(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 4210: "4,210", 1234567: "1,234,567", 100000: "100,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
	for ms, want := range map[float64]string{142.3: "142 ms", 7.26: "7.3 ms", 0.4: "0.4 ms", -0.3: "-0.3 ms", 10: "10 ms", 1503.6: "1504 ms"} {
		if got := milliseconds(ms); got != want {
			t.Errorf("milliseconds(%v) = %q, want %q", ms, got, want)
		}
	}
	if got := packetsLine(api.MixnetStats{RealPackets: 1, CoverPackets: 1}); got != "1 real, 1 cover (50% cover)" {
		t.Errorf("packets %q", got)
	}
	if got := repairs(api.MixnetStats{Reconnects: 2, Reopens: 1}); got != "2 reconnects, 1 reopened session" {
		t.Errorf("repairs %q", got)
	}
}
