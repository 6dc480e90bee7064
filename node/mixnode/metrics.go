package mixnode

import (
	"strconv"
	"sync/atomic"

	"github.com/nymvpn/nymvpn/node/metrics"
)

// DropReason says why a packet was dropped; each has a counter,
// nym_mix_packets_dropped_total{reason="…"}.
type DropReason int

// Drop reasons.
const (
	DropNone DropReason = iota
	// DropMalformed: a record or packet that does not parse: wrong size,
	// bad group element, bad routing command.
	DropMalformed
	// DropMAC: the header MAC does not match: a tampered header, or a
	// packet built for another key (a wrong key).
	DropMAC
	// DropReplay: the key's replay filter has seen the packet's tag.
	DropReplay
	// DropExpiredKey: the packet's epoch key is past its grace period.
	DropExpiredKey
	// DropUnknownKey: no key for the packet's epoch yet (more than one epoch
	// ahead, or a node that started after the sender fetched its keys).
	DropUnknownKey
	// DropPayload: the final hop found the payload altered (zero tag).
	DropPayload
	// DropNotRelay: a mix node was asked to be the final hop.
	DropNotRelay
	// DropUnknownHop: the next hop is not a node of the topology.
	DropUnknownHop
	// DropQueueFull: the processing queue was full.
	DropQueueFull
	// DropDelayFull: as many packets as allowed were being delayed.
	DropDelayFull
	// DropLinkFull: the queue to the next hop was full.
	DropLinkFull
	// DropLinkDown: the next hop could not be reached, or the write failed.
	DropLinkDown
	// DropNoHandler: a gateway, final hop for a recipient that is not a
	// connected client, has no handler for it (the exit's IP packet router).
	DropNoHandler
	// DropClientFull: a gateway's queue to a connected client was full.
	DropClientFull
	// DropBadFirstHop: a client asked its entry gateway to send to a node
	// that is not a mix node of the topology.
	DropBadFirstHop
	// DropClosed: the node was shutting down.
	DropClosed
	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropNone:        "none",
	DropMalformed:   "malformed",
	DropMAC:         "mac",
	DropReplay:      "replay",
	DropExpiredKey:  "expired_key",
	DropUnknownKey:  "unknown_key",
	DropPayload:     "payload_integrity",
	DropNotRelay:    "not_relay",
	DropUnknownHop:  "unknown_next_hop",
	DropQueueFull:   "queue_full",
	DropDelayFull:   "delay_full",
	DropLinkFull:    "link_queue_full",
	DropLinkDown:    "link_down",
	DropNoHandler:   "no_handler",
	DropClientFull:  "client_queue_full",
	DropBadFirstHop: "bad_first_hop",
	DropClosed:      "closed",
}

func (r DropReason) String() string {
	if r >= 0 && r < numDropReasons {
		return dropNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Source says where a packet came from.
type Source int

// Packet sources.
const (
	FromNode   Source = iota // another node, over an IK channel
	FromClient               // a client of this (entry) gateway
	numSources
)

var sourceNames = [numSources]string{"node", "client"}

// ConnRefusal says why an inbound connection was refused.
type ConnRefusal int

// Refusal reasons.
const (
	RefusedLimit     ConnRefusal = iota // too many connections
	RefusedHandshake                    // Noise handshake failed or timed out
	RefusedPeer                         // initiator's key not in the directory
	numRefusals
)

var refusalNames = [numRefusals]string{"limit", "handshake", "unknown_peer"}

// Metrics are a node's counters. All methods are safe for concurrent use.
type Metrics struct {
	received    [numSources]atomic.Uint64
	processed   atomic.Uint64
	forwarded   atomic.Uint64
	delivered   atomic.Uint64
	delayCapped atomic.Uint64
	dropped     [numDropReasons]atomic.Uint64
	refused     [numRefusals]atomic.Uint64
	conns       atomic.Int64 // inbound node connections open
	links       atomic.Int64 // outbound links open
	delayed     atomic.Int64 // packets waiting out their delay
	queued      atomic.Int64 // packets in the processing queue
}

// Drop counts a dropped packet.
func (m *Metrics) Drop(r DropReason) {
	if r > DropNone && r < numDropReasons {
		m.dropped[r].Add(1)
	}
}

// Dropped returns the count for one reason.
func (m *Metrics) Dropped(r DropReason) uint64 {
	if r > DropNone && r < numDropReasons {
		return m.dropped[r].Load()
	}
	return 0
}

// DroppedTotal is the sum over every reason.
func (m *Metrics) DroppedTotal() uint64 {
	var n uint64
	for i := range m.dropped {
		n += m.dropped[i].Load()
	}
	return n
}

// Received counts a packet received from src.
func (m *Metrics) Received(src Source) { m.received[src].Add(1) }

// ReceivedFrom returns the count for src.
func (m *Metrics) ReceivedFrom(src Source) uint64 { return m.received[src].Load() }

// Processed is the number of packets that passed Unwrap.
func (m *Metrics) Processed() uint64 { return m.processed.Load() }

// Forwarded is the number of packets written to a next hop.
func (m *Metrics) Forwarded() uint64 { return m.forwarded.Load() }

// Delivered is the number of final-hop packets handed to the gateway.
func (m *Metrics) Delivered() uint64 { return m.delivered.Load() }

// Refused returns the count of inbound connections refused for r.
func (m *Metrics) Refused(r ConnRefusal) uint64 { return m.refused[r].Load() }

// Delayed is the number of packets waiting out their delay now.
func (m *Metrics) Delayed() int64 { return m.delayed.Load() }

// Conns is the number of inbound node connections open now.
func (m *Metrics) Conns() int64 { return m.conns.Load() }

// families describes the counters for the exposition.
func (m *Metrics) families() []metrics.Family {
	recv := metrics.Family{Name: "nym_mix_packets_received_total", Help: "Sphinx packets received, by source.", Type: metrics.Counter}
	for s := range numSources {
		recv.Samples = append(recv.Samples, metrics.Sample{Labels: []metrics.Label{{Name: "source", Value: sourceNames[s]}}, Value: float64(m.received[s].Load())})
	}
	drop := metrics.Family{Name: "nym_mix_packets_dropped_total", Help: "Sphinx packets dropped, by reason.", Type: metrics.Counter}
	for r := DropNone + 1; r < numDropReasons; r++ {
		drop.Samples = append(drop.Samples, metrics.Sample{Labels: []metrics.Label{{Name: "reason", Value: dropNames[r]}}, Value: float64(m.dropped[r].Load())})
	}
	ref := metrics.Family{Name: "nym_mix_connections_refused_total", Help: "Inbound node connections refused, by reason.", Type: metrics.Counter}
	for r := range numRefusals {
		ref.Samples = append(ref.Samples, metrics.Sample{Labels: []metrics.Label{{Name: "reason", Value: refusalNames[r]}}, Value: float64(m.refused[r].Load())})
	}
	return []metrics.Family{
		recv, drop, ref,
		metrics.One("nym_mix_packets_processed_total", "Sphinx packets that passed the MAC and replay checks and were unwrapped.", metrics.Counter, float64(m.processed.Load())),
		metrics.One("nym_mix_packets_forwarded_total", "Sphinx packets written to their next hop.", metrics.Counter, float64(m.forwarded.Load())),
		metrics.One("nym_mix_packets_delivered_total", "Sphinx packets for which this node was the final hop, handed on.", metrics.Counter, float64(m.delivered.Load())),
		metrics.One("nym_mix_delay_capped_total", "Packets whose encoded delay exceeded the cap and was cut to it.", metrics.Counter, float64(m.delayCapped.Load())),
		metrics.One("nym_mix_connections_in", "Inbound node connections open.", metrics.Gauge, float64(m.conns.Load())),
		metrics.One("nym_mix_links_out", "Outbound links to next hops open.", metrics.Gauge, float64(m.links.Load())),
		metrics.One("nym_mix_delayed_packets", "Packets waiting out their delay.", metrics.Gauge, float64(m.delayed.Load())),
		metrics.One("nym_mix_queued_packets", "Packets waiting for a worker.", metrics.Gauge, float64(m.queued.Load())),
	}
}
