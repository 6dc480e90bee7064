package viewmodel

import (
	"testing"

	"github.com/nymvpn/nymvpn/daemon/api"
)

func mixnetConnected() Model {
	m := connected()
	m.Status.State.Mode = api.ModeMixnet
	m.Status.Settings.Mode = api.ModeMixnet
	m.Status.Mixnet = &api.MixnetStats{Profile: api.ProfileMax, RealPackets: 312, CoverPackets: 3800, LoopCoverPackets: 410,
		ExitSURBs: 48, ExitRTTMs: 142.3, OverheadMs: 7.3}
	return m
}

func TestConnectedMixnet(t *testing.T) {
	m := mixnetConnected()
	v := Build(m, PageMain, now)
	for label, want := range map[string]string{
		"Mode":       "Mixnet · maximum privacy",
		"Packets":    "312 real / 4,210 cover (93% cover)",
		"Round trip": "142 ms to the exit",
		"Traffic":    "sent 1.5 kB · received 2.5 MB",
	} {
		if got := row(t, v, label); got != want {
			t.Errorf("row %s = %q, want %q", label, got, want)
		}
	}
	// The statistics follow the mode row, after everything fast mode shows.
	if n := len(v.Rows); v.Rows[n-3].Label != "Mode" || v.Rows[n-1].Label != "Round trip" {
		t.Errorf("rows %+v", v.Rows)
	}

	// A struggling path says so.
	m.Status.Mixnet.Retransmissions, m.Status.Mixnet.Lost = 1203, 2
	if got := row(t, Build(m, PageMain, now), "Round trip"); got != "142 ms to the exit · 1,203 resent, 2 lost" {
		t.Errorf("round trip with losses %q", got)
	}

	// Just connected: nothing measured, the profile from the tunnel.
	m.Status.Mixnet = &api.MixnetStats{Profile: api.ProfileFast}
	v = Build(m, PageMain, now)
	for label, want := range map[string]string{
		"Mode":       "Mixnet · fast profile",
		"Packets":    "0 real / 0 cover",
		"Round trip": "measuring…",
	} {
		if got := row(t, v, label); got != want {
			t.Errorf("just connected: row %s = %q, want %q", label, got, want)
		}
	}

	// A daemon without statistics (older, or before the first): the mode
	// and the settings' profile, no statistics rows.
	m.Status.Mixnet = nil
	v = Build(m, PageMain, now)
	if got := row(t, v, "Mode"); got != "Mixnet · maximum privacy" {
		t.Errorf("mode without statistics %q", got)
	}
	for _, r := range v.Rows {
		if r.Label == "Packets" || r.Label == "Round trip" {
			t.Errorf("statistics rows without statistics: %+v", v.Rows)
		}
	}
}

// TestFastModeHasNoMixnetRows: statistics left over in the model (a stream
// that has not cleared them yet) do not show in fast mode.
func TestFastModeHasNoMixnetRows(t *testing.T) {
	m := connected()
	m.Status.Mixnet = &api.MixnetStats{Profile: api.ProfileMax, RealPackets: 1}
	v := Build(m, PageMain, now)
	if got := row(t, v, "Mode"); got != "Fast" {
		t.Errorf("mode %q", got)
	}
	for _, r := range v.Rows {
		if r.Label == "Packets" || r.Label == "Round trip" {
			t.Errorf("mixnet rows in fast mode: %+v", v.Rows)
		}
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 12: "12", 999: "999", 1000: "1,000", 4210: "4,210", 12345678: "12,345,678"} {
		if got := Count(n); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
}
