// Package sphinx implements the Sphinx packet format of the nymvpn mixnet:
// clients build packets and single-use reply blocks (SURBs), mix nodes and
// gateways each remove one layer. The package is a pure engine: it carries
// per-hop delays and replay tags but applies no delay and keeps no replay
// filter; all randomness comes from an injected io.Reader.
//
// # Geometry
//
// A Geometry derives every size from two numbers: the number of hop slots in
// the header (NrHops, the longest route a header can carry) and the plaintext
// size. NymVPN routes have four Sphinx hops (mix L1, L2, L3, exit gateway); like
// NymVPN the header has room for five, so a route may use 1 to 5 hops. With
// the layout below the figures match NymVPN's byte for byte:
//
//	                     regular  ack (SURB-ACK)
//	hop slots (NrHops)         5        5
//	per-hop routing info      60       60   44 routing command + 16 MAC
//	routing info (beta)      300      300
//	header                   348      348   32 alpha + beta + 16 gamma
//	plaintext               2048       21
//	payload overhead          17       17   16 zero tag + 1 padding marker
//	payload                 2065       38
//	packet                  2413      386
//	SURB                     412      412   header + first hop + 32-byte key
//
// # Packet layout
//
//	packet  = alpha (32) | beta (NrHops*60) | gamma (16) | payload
//	alpha   = group element, Montgomery u-coordinate (X25519 encoding)
//	gamma   = HMAC-SHA256(mac key, alpha | beta) truncated to 16 bytes
//	payload = LIONESS layers over: 16 zero bytes | message | 0x01 | zero padding
//
// Decrypted beta is a sequence of 60-byte slots, one per hop:
//
//	offset size
//	 0      1   command: 0x01 relay, 0x02 deliver (final hop)
//	 1      1   flags: 0x01 = payload is a SURB reply (deliver only)
//	 2      2   reserved, zero
//	 4      8   delay at this hop, microseconds, big-endian
//	12     32   relay: next hop node id; deliver: recipient id
//	44     16   relay: gamma for the next hop; deliver: SURB id
//
// Unused slots of a short route are filled with random bytes, so no hop (not
// even the last) learns the route length from the header.
//
// # Cryptography
//
// Group: Curve25519 in Montgomery form, X25519 encoding. A node's private key
// is an X25519 private key; its public key is the usual X25519 public key.
// Per hop, HKDF-SHA256 (secret = the 32-byte DH output, no salt, info
// "nymvpn sphinx v1 hop keys") expands 288 bytes: AES-128-CTR key and IV (header
// stream), HMAC-SHA256 key (header MAC), a 128-byte LIONESS key (payload), 64
// bytes reduced modulo the group order to the blinding factor b, and the
// 32-byte replay tag. LIONESS is built from ChaCha20 (zero nonce, key = L xor
// K1 or K3) and keyed BLAKE2b-256 (K2, K4) over a 32-byte left half; forward
// processing decrypts one layer per hop.
//
// Blinding and small-order points: a node replaces alpha with [8*b]alpha,
// with b reduced modulo the group order and 8*b used as an integer, so the
// cofactor is cleared at every hop and a torsion component added to alpha by
// anyone never travels further. A DH result of all zeros (alpha of small
// order) is rejected with ErrInvalidPacket, and alpha is covered by the
// header MAC, so it cannot be altered without ErrInvalidMAC. The client
// keeps the product x*8*b0*8*b1*... modulo the group order and computes
// alpha_i = acc_i*G (fixed base) and s_i = acc_i*pk_i (one Montgomery ladder
// with an unclamped scalar), so building a header costs 2 scalar
// multiplications per hop, not O(hops^2). ParsePublicKey rejects keys that
// are non-canonical, of small order, on the twist or outside the prime-order
// subgroup; validate directory keys with it once.
//
// # Processing
//
// Node.Unwrap works in place on the packet buffer: one DH, the header MAC
// check (ErrInvalidMAC), the replay tag (offered to an optional ReplayFilter,
// ErrReplay), then header decryption, one LIONESS layer and, unless this is
// the final hop, the blinding of alpha. A relay returns the next hop, the delay
// and the processed packet; the final hop checks the zero tag
// (ErrPayloadIntegrity), strips the padding and returns the message with the
// recipient and SURB id. A SURB reply reaches its final hop still encrypted;
// the SURB's creator removes the remaining layers with Geometry.DecryptReply.
// A SURB is single-use: a second packet from the same SURB has the same
// replay tag at every hop and is dropped by the first hop's replay filter.
//
// # Test vectors
//
// testdata/vectors.json holds deterministic vectors (keys, route, the exact
// randomness consumed, packet bytes, per-hop outputs). Regenerate them and the
// fuzz seed corpora with
//
//	go test ./sphinx -run 'TestVectors|TestFuzzSeeds' -update
package sphinx
