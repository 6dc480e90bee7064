package api

// MixnetStats are a mixnet-mode tunnel's live statistics (Status.Mixnet,
// Event.Mixnet), counted since the tunnel came up; a new tunnel (a
// reconnect) starts again from zero. Durations are medians of the recent
// round trips (the last 512 of each kind) in milliseconds, 0 until the
// first one is measured. The daemon refreshes them about once a second
// while they change.
type MixnetStats struct {
	// Profile is the privacy profile the tunnel runs (ProfileMax,
	// ProfileFast).
	Profile string `json:"profile"`

	// RealPackets are the Sphinx packets that carried data to the exit:
	// IP packets, SURBs, pings and their retransmissions.
	RealPackets uint64 `json:"real_packets"`
	// CoverPackets are the main stream's cover packets, sent in a Poisson
	// slot with nothing real to send (ProfileMax only); they loop back to
	// the client.
	CoverPackets uint64 `json:"cover_packets"`
	// LoopCoverPackets are the loop-cover stream's packets, sent to the
	// client itself through the mixes at their own Poisson rate.
	LoopCoverPackets uint64 `json:"loop_cover_packets"`
	// Retransmissions are real packets sent again because their ack did
	// not come back in time (counted in RealPackets too).
	Retransmissions uint64 `json:"retransmissions"`
	// Acked fragments reached the exit (its ack came back); Lost ones were
	// given up after the last retransmission.
	Acked uint64 `json:"acked"`
	Lost  uint64 `json:"lost"`

	// SURBsSent are the reply blocks sent to the exit, SURBsUsed those its
	// replies came back through; ExitSURBs is how many the exit said it
	// holds in its last reply.
	SURBsSent uint64 `json:"surbs_sent"`
	SURBsUsed uint64 `json:"surbs_used"`
	ExitSURBs int    `json:"exit_surbs"`

	// IPPacketsOut and BytesOut are the IP packets (and their bytes) sent
	// to the exit, IPPacketsIn and BytesIn those received from it;
	// IPPacketsDropped did not fit the send queue.
	IPPacketsOut     uint64 `json:"ip_packets_out"`
	IPPacketsIn      uint64 `json:"ip_packets_in"`
	BytesOut         uint64 `json:"bytes_out"`
	BytesIn          uint64 `json:"bytes_in"`
	IPPacketsDropped uint64 `json:"ip_packets_dropped"`

	// LoopRTTMs is the round trip of loop packets (client → mixes → the
	// client's entry gateway → client), AckRTTMs that of a fragment to the
	// exit and its ack back, ExitRTTMs that of a ping to the exit's IP
	// packet router and its answer (including the wait for a send slot).
	LoopRTTMs float64 `json:"loop_rtt_ms"`
	AckRTTMs  float64 `json:"ack_rtt_ms"`
	ExitRTTMs float64 `json:"exit_rtt_ms"`
	// OverheadMs is ExitRTTMs less the wait for a send slot and the delays
	// the client asked of the mixes both ways: what the path costs besides
	// the configured delays (docs/benchmarks.md).
	OverheadMs float64 `json:"overhead_ms"`

	// Reconnects to the entry gateway and Reopens of the session at the
	// exit: how often the tunnel repaired itself.
	Reconnects uint64 `json:"reconnects"`
	Reopens    uint64 `json:"reopens"`
}

// Cover is every packet sent that carried nothing: the main stream's cover
// and the loop cover.
func (m MixnetStats) Cover() uint64 { return m.CoverPackets + m.LoopCoverPackets }

// CoverPercent is Cover's share of every packet sent, in percent; ok is
// false before any was sent.
func (m MixnetStats) CoverPercent() (percent float64, ok bool) {
	total := m.RealPackets + m.Cover()
	if total == 0 {
		return 0, false
	}
	return 100 * float64(m.Cover()) / float64(total), true
}
