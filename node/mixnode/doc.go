// Package mixnode is the Sphinx engine of nym-node: the mix node role, and
// the Sphinx side of gateways (which set Config.Final to receive the
// packets for which they are the last hop).
//
// # Pipeline
//
//	inbound Noise IK channels ─▶ processing queue ─▶ workers (Unwrap)
//	    ─▶ delay (min-heap, one timer) ─▶ link per next hop ─▶ Noise IK
//	                                   └▶ Config.Final (gateways)
//
// A node accepts TCP connections on its mix address; each must complete a
// Noise IK handshake (prologue mixnet.NodePrologue) whose initiator key the
// directory lists for a mix node or gateway. Messages carry Packet records
// (epoch ‖ Sphinx packet, see package mixnet). GOMAXPROCS workers take
// packets from the processing queue and, for each: look up the Sphinx key of
// the packet's epoch (unknown or expired: dropped), then sphinx.Node.Unwrap,
// whose order of work is one DH, the header MAC, only then the replay
// filter, then decryption — so a packet that fails its MAC costs one DH and
// never touches the replay filter. The delay the header asks for is capped
// (Limits.MaxDelay, 10 s by default as in NymVPN; capped packets are
// counted) and served by a min-heap with one timer. Relayed packets go to
// the next hop's link: one Noise IK channel per next hop (its Sphinx id is
// its Noise key; the address comes from the directory), reused for every
// packet, queued packets batched into one transport message (up to 32 KiB),
// reconnected with back-off (50 ms doubling to 5 s) after a failed dial or
// write.
//
// # Back-pressure and bounded memory
//
// Every queue is bounded and full queues drop and count (drop-and-count);
// nothing blocks on a slow peer except a socket write, which has a 10 s
// deadline after which the link reconnects. A mixnet is lossy by design
// (clients retransmit); blocking would let one slow or hostile peer stall
// every other. Drops are counted per reason (DropReason) in
// nym_mix_packets_dropped_total. The bounds, with their defaults:
//
//	inbound connections  512       (each ≤ 80 KiB of buffers)      refused beyond, counted
//	processing queue     4096      packets, ≤ 1024 per connection  queue_full
//	delayed packets      16384     packets                          delay_full
//	per next hop         1024      packets, one link per node of the topology   link_queue_full
//	replay filters       fixed size per key, ≤ 2 + ⌈grace/epoch⌉ keys
//
// A packet buffer is 2413 bytes, so with defaults the queues hold at most
// about 50 MiB plus 2.4 MiB per next hop in use. A next hop that cannot be
// reached has its queue dropped (link_down) rather than kept for a late burst.
//
// # Keys and epochs
//
// A node holds a Sphinx key for the current epoch and one for the next,
// which it publishes ahead (Config.OnKeys tells the owner to re-announce);
// after its epoch ends a key is still accepted for Config.KeyGrace (default
// one epoch, NymVPN's "kept one epoch after"), then deleted with its replay
// filter. Packets for a deleted key are dropped as expired_key; for an epoch
// more than one ahead as unknown_key. Keys live in memory only: a restarted
// node makes new keys, so a key never outlives its replay filter (no replay
// window after a restart) and a deleted key is gone for good; packets in
// flight under the old keys are lost.
//
// # Replay filter
//
// One Bloom filter per key (see bloom): m = n·ln(1/p)/ln²2 bits and
// k = ⌈log2(1/p)⌉ hashes for n = Limits.ReplayCapacity packets at
// p = ReplayFalsePositiveRate = 1e-5, i.e. 3 bytes and 17 hashes per packet:
// 12 MiB (12 563 328 bytes) per key at the default n = 2^22 (size n as peak packets/s × (epoch +
// grace)). Past n the false-positive rate rises; the estimate is exported
// (nym_mix_replay_filter_false_positive_rate{epoch}).
//
// # Metrics
//
// Families returns Prometheus metrics (node/metrics): packets received,
// processed, forwarded, delivered and dropped by reason, capped delays,
// refused connections by reason, open connections and links, queued and
// delayed packets, the epoch, keys held and each replay filter's fill.
package mixnode
