package daemon

import (
	"math"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/tunnelstate"
	"github.com/nymvpn/nymvpn/modes/mixnet"
)

// The state machine publishes the statistics of tunnels that have them.
var _ tunnelstate.MixnetStatser = (*mixnetTunnel)(nil)

// MixnetStats are the tunnel's statistics as the control API shows them.
func (m *mixnetTunnel) MixnetStats() api.MixnetStats { return mixnetStatsOf(m.t.Stats()) }

// mixnetStatsOf maps the tunnel's counters to the API's: what a user or a
// program watching the tunnel needs, not every diagnostic counter.
func mixnetStatsOf(st mixnet.Stats) api.MixnetStats {
	return api.MixnetStats{
		Profile:     st.Profile,
		RealPackets: st.Real, CoverPackets: st.Cover, LoopCoverPackets: st.Loops,
		Retransmissions: st.Retransmissions, Acked: st.Acked, Lost: st.Lost,
		SURBsSent: st.SURBsSent, SURBsUsed: st.SURBsUsed, ExitSURBs: st.ExitSURBs,
		IPPacketsOut: st.IPOut, IPPacketsIn: st.IPIn, BytesOut: st.BytesOut, BytesIn: st.BytesIn,
		IPPacketsDropped: st.IPDropped,
		LoopRTTMs:        millis(st.LoopRTT), AckRTTMs: millis(st.AckRTT), ExitRTTMs: millis(st.ExitRTT),
		OverheadMs: millis(st.Overhead),
		Reconnects: st.Reconnects, Reopens: st.Reopens,
	}
}

// millis is d in milliseconds to 0.1 ms: finer is noise at these delays,
// and rounding lets an idle tunnel's unchanged medians compare equal.
func millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(100*time.Microsecond)) / 10
}
