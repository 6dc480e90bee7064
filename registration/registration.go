// Package registration is the short request a client makes to a gateway before it
// can send WireGuard traffic: "here is my WireGuard key (and a ticket); give me
// your key, my addresses and a port". It runs over a transport.Conn (Noise NK,
// the gateway authenticated by the key the directory publishes), one request per
// connection:
//
//	client → gateway   Noise handshake (NK)
//	client → gateway   Request  (JSON, one transport message)
//	gateway → client   Response (JSON, one transport message)
//
// The request proves possession of the WireGuard private key with a MAC keyed by
// X25519(client WireGuard key, gateway WireGuard key) over the Noise handshake
// hash, so it cannot be replayed on another channel. It also carries an ML-KEM-768
// encapsulation key; the gateway's ciphertext in the response yields a shared
// secret from which both derive the WireGuard preshared key, so traffic recorded
// today stays safe against a future quantum computer.
package registration

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/mlkem"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/nymvpn/nymvpn/transport"
	"golang.org/x/crypto/curve25519"
)

// Version is the protocol version this package speaks.
const Version = 1

// Prologue binds the Noise channel to this protocol.
var Prologue = []byte("nymvpn registration v1")

// MaxMessage bounds a request or response; a larger one is malformed.
const MaxMessage = 16 << 10

// Roles a client can register for.
const (
	RoleEntry = "entry"
	RoleExit  = "exit"
)

// Error codes, stable for programs; Message is for people.
const (
	CodeMalformed       = "malformed"
	CodeVersion         = "unsupported_version"
	CodeBadProof        = "bad_proof"
	CodeRoleNotServed   = "role_not_served"
	CodePoolExhausted   = "pool_exhausted"
	CodePaymentRequired = "payment_required"
	CodeInternal        = "internal"

	// Ticket refusals: the request carried a ticket the gateway does not take.
	CodeTicketInvalid      = "ticket_invalid"       // malformed, forged or not signed by the issuers
	CodeTicketSpent        = "ticket_spent"         // serial seen before (a double spend)
	CodeTicketWrongGateway = "ticket_wrong_gateway" // bound to another gateway's key
	CodeTicketStale        = "ticket_stale"         // timestamp too far from the gateway's clock
	CodeTicketReplayed     = "ticket_replayed"      // payment info (timestamp, nonce) used before
	CodeTicketExpired      = "ticket_expired"       // expiry week passed
	CodeTicketWrongType    = "ticket_wrong_type"    // e.g. an exit ticket at the entry
	// CodePaymentUnavailable: the gateway cannot check tickets right now (it has
	// not got the issuers' key yet); retry later.
	CodePaymentUnavailable = "payment_unavailable"
)

// RoleMixnet pays for mixnet ingress at an entry gateway: WireGuardKey is then
// the client's mixnet recipient key (X25519), the ticket a mixnet-entry ticket,
// and the grant carries only the allowance (no addresses, no port). The mixnet
// client connects with the same key afterwards, and tops up the same way.
const RoleMixnet = "mixnet"

// RoleMixnetExit names what a mixnet-exit ticket pays for: the exit
// gateway's IP packet router in mixnet mode. It is not a registration role
// (the ticket rides in the mixnet session's Open and Ticket items, package
// mixnet/ipr, and a registration naming it is refused as malformed); the
// wallet and the gateway's ticket checks use it to pick the ticket type.
const RoleMixnetExit = "mixnet-exit"

// IsTicketRefusal reports whether code is one of the ticket refusals: a new
// ticket may succeed where this one failed (except for payment_unavailable,
// where the same one may succeed later).
func IsTicketRefusal(code string) bool {
	switch code {
	case CodeTicketInvalid, CodeTicketSpent, CodeTicketWrongGateway, CodeTicketStale,
		CodeTicketReplayed, CodeTicketExpired, CodeTicketWrongType:
		return true
	}
	return false
}

// Error is a refusal from the gateway.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return "gateway refused registration: " + e.Code + ": " + e.Message }

// Errorf builds a refusal.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Request is the client's message.
type Request struct {
	Version      int           `json:"v"`
	Role         string        `json:"role"`
	WireGuardKey transport.Key `json:"wg_key"`
	KEMKey       []byte        `json:"kem_key"`
	Proof        []byte        `json:"proof"`
	Ticket       []byte        `json:"ticket,omitempty"`
}

// Response is the gateway's answer: a grant or an error.
type Response struct {
	Error *Error `json:"error,omitempty"`
	*Grant
	KEMCiphertext []byte `json:"kem_ct,omitempty"`
}

// Grant is what a successful registration gives the client.
type Grant struct {
	GatewayKey transport.Key `json:"gateway_key"`
	Port       uint16        `json:"port"`
	// Addresses are the client's tunnel addresses, one IPv4 and one IPv6.
	Addresses []netip.Addr `json:"addresses"`
	// GatewayAddresses are the gateway's own tunnel addresses; an exit
	// answers DNS on them.
	GatewayAddresses []netip.Addr `json:"gateway_addresses"`
	// MTU is the largest inner packet the gateway's path takes.
	MTU int `json:"mtu"`
	// Bandwidth is the allowance left, in bytes, after this registration:
	// what earlier tickets left plus what this one buys. 0 means not metered
	// (a gateway with --free-pass).
	Bandwidth int64 `json:"bandwidth,omitempty"`
	// TopUpAt asks for the next ticket: when the client's count of the bytes
	// it exchanged with the gateway since this grant reaches Bandwidth −
	// TopUpAt, it registers again with the same key and a new ticket, which
	// extends the same peer. A peer that runs out is cut off.
	TopUpAt int64 `json:"top_up_at,omitempty"`
}

// PaymentOnly reports whether g only grants an allowance (RoleMixnet).
func (g *Grant) PaymentOnly() bool { return g.Port == 0 && len(g.Addresses) == 0 }

// Validate checks a decoded request's fields, not its proof.
func (r *Request) Validate() error {
	if r.Version != Version {
		return Errorf(CodeVersion, "gateway speaks version %d, request is version %d", Version, r.Version)
	}
	if r.Role != RoleEntry && r.Role != RoleExit && r.Role != RoleMixnet {
		return Errorf(CodeMalformed, "role %q is not %q, %q or %q", r.Role, RoleEntry, RoleExit, RoleMixnet)
	}
	if r.WireGuardKey.IsZero() {
		return Errorf(CodeMalformed, "missing WireGuard key")
	}
	if len(r.KEMKey) != mlkem.EncapsulationKeySize768 {
		return Errorf(CodeMalformed, "ML-KEM-768 key is %d bytes, want %d", len(r.KEMKey), mlkem.EncapsulationKeySize768)
	}
	if len(r.Proof) != sha256.Size {
		return Errorf(CodeMalformed, "proof is %d bytes, want %d", len(r.Proof), sha256.Size)
	}
	return nil
}

// Validate checks a grant's fields.
func (g *Grant) Validate() error {
	var problems []string
	if g.GatewayKey.IsZero() {
		problems = append(problems, "no gateway key")
	}
	if g.Bandwidth < 0 || g.TopUpAt < 0 {
		problems = append(problems, "negative allowance")
	}
	if g.PaymentOnly() {
		if g.Bandwidth == 0 {
			problems = append(problems, "neither addresses nor an allowance")
		}
		if len(problems) > 0 {
			return fmt.Errorf("registration: invalid grant: %s", strings.Join(problems, ", "))
		}
		return nil
	}
	if g.Port == 0 {
		problems = append(problems, "no port")
	}
	if len(g.Addresses) == 0 {
		problems = append(problems, "no addresses")
	}
	for _, a := range g.Addresses {
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
			problems = append(problems, fmt.Sprintf("bad address %v", a))
		}
	}
	if g.MTU != 0 && (g.MTU < 1280 || g.MTU > 65535) {
		problems = append(problems, fmt.Sprintf("MTU %d out of range", g.MTU))
	}
	if len(problems) > 0 {
		return fmt.Errorf("registration: invalid grant: %s", strings.Join(problems, ", "))
	}
	return nil
}

// proofKey is the MAC key both sides derive from the WireGuard keys.
func proofKey(private, peerPublic transport.Key) ([]byte, error) {
	shared, err := curve25519.X25519(private[:], peerPublic[:])
	if err != nil {
		return nil, fmt.Errorf("registration: WireGuard key agreement: %w", err)
	}
	return shared, nil
}

// proof is HMAC-SHA256(key, label || channel hash || role || client WG key).
func proof(key []byte, channel []byte, role string, clientKey transport.Key) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("nymvpn registration proof v1\x00"))
	m.Write(channel)
	m.Write([]byte(role))
	m.Write([]byte{0})
	m.Write(clientKey[:])
	return m.Sum(nil)
}

// presharedKey derives the WireGuard preshared key from the ML-KEM shared
// secret, bound to the channel.
func presharedKey(kemShared, channel []byte) ([32]byte, error) {
	var psk [32]byte
	k, err := hkdf.Key(sha256.New, kemShared, channel, "nymvpn wireguard psk v1", 32)
	if err != nil {
		return psk, fmt.Errorf("registration: derive preshared key: %w", err)
	}
	copy(psk[:], k)
	return psk, nil
}

// ErrMalformed marks a message that does not decode.
var ErrMalformed = errors.New("registration: malformed message")
