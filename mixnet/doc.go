// Package mixnet holds what clients and nodes of the nymvpn mixnet share
// beyond the Sphinx packet format: the wire protocol on the Noise channels,
// how directory nodes become Sphinx hops, SURBs tagged with their epoch, the
// client's connection to its entry gateway, and the probe that sends loop
// packets over every mix.
//
// # Channels
//
// Node to node: Noise IK over TCP (package transport), prologue
// NodePrologue. The initiator knows the responder's Noise key from the
// directory; the responder accepts only initiators whose static key the
// directory lists for a mix node or gateway. One channel per (sender, next
// hop), reused for every packet, one direction only.
//
// Client to entry gateway: Noise NK, prologue ClientPrologue. The client
// then sends a Hello record with its recipient id — its X25519 public key —
// and a proof that it holds the private key, bound to the channel (see
// HelloProof); the gateway answers Welcome, or Error and hangs up.
//
// # Records
//
// Every transport message carries one or more records, kind (1) | length (2,
// big-endian) | body; see the Kind constants for the bodies. A Sphinx packet
// always travels with the epoch of the keys it was built for, so a hop picks
// its key without trying several: Packet records between nodes, Send
// records from a client to its gateway (with the first hop, a mix node), and
// SURBs carry the epoch with them (SURB).
//
// # Node ids and routes
//
// A node's Sphinx id (the next-hop address in routing commands) is its Noise
// static key, NodeID. A route is mix layer 1, 2, 3 and a gateway as the
// final hop: the exit gateway for forward traffic, or the client's own entry
// gateway for loop packets and SURB replies, where the recipient id in the
// final routing command tells the gateway which connected client gets it.
// Forward payloads are visible to the final hop; end-to-end encryption of a
// client's messages is the job of the mixnet client above this package.
package mixnet
