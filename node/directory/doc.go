// Package directory is the nymvpn network directory: the one place where
// clients learn which nodes exist, what they do and how to reach them.
//
// The directory serves over HTTP a topology document (GET /v1/topology): every
// node's id, roles, country, addresses and public keys, and the current epoch.
// The document is signed with the directory's ed25519 key. Clients pin that key
// — the directory URL carries it, http://host:port/?key=<base64url> — and
// [VerifyTopology] refuses unsigned, badly signed, stale or malformed documents
// with the sentinel errors [ErrUnsigned], [ErrBadSignature], [ErrStale] and
// [ErrMalformed].
//
// Nodes announce themselves (POST /v1/nodes) with a [Descriptor]: their [Node]
// record and a timestamp, signed by the node's own identity key. A node that is
// not re-announced within [ServerConfig].DescriptorTTL is dropped. The local
// network registers nodes in process with [Server.Add] instead.
//
// # Wire formats
//
// A signed topology document is a JSON object
//
//	{"topology": <topology JSON, embedded verbatim>, "key": "<signer public key, std base64>", "signature": "<std base64>"}
//
// The signature is ed25519 over [TopologyDomain] followed by the exact bytes of
// the "topology" value as they appear in the document. The "key" field is not
// trusted; it only lets a verifier say "signed by X, but you pinned Y".
// A signed descriptor has the same shape with "descriptor" in place of
// "topology" and [DescriptorDomain] as the prefix; it is verified with the
// identity key inside the descriptor, and the directory decides separately
// whether that identity may announce.
//
// # Epochs
//
// Epoch n covers [Genesis + n·EpochLength, Genesis + (n+1)·EpochLength), where
// Genesis is the fixed instant 2024-01-01T00:00:00Z ([GenesisUnix]); see
// [EpochAt]; the epoch length is the server's (short in tests and the local
// network). Mix layers and Sphinx keys are per epoch: nodes announce their
// Sphinx keys ([Node].SphinxKeys, the next epoch's ahead of time), the served
// topology lists each node's keys for the current and the next epoch only, and
// the directory assigns the mix nodes that have a key for the current epoch to
// layers 1..3 ([AssignLayers]: deterministic, balanced, reshuffled per epoch),
// overwriting whatever layer a node announced.
//
// # Limits
//
// Documents are bounded by [MaxDocumentSize], descriptors by
// [MaxDescriptorSize], the registry by [MaxNodes] nodes and, in total encoded
// size, by what fits into one document, so a peer cannot grow the directory's
// memory without bound.
package directory
