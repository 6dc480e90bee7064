package directory

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Role is a function a node performs in the network.
type Role string

// The roles a node may have. A gateway is a node with RoleEntry and/or RoleExit.
const (
	RoleEntry   Role = "entry"
	RoleExit    Role = "exit"
	RoleMixnode Role = "mixnode"
	RoleIssuer  Role = "issuer"
)

// Roles lists every role this version knows, in a stable order.
var Roles = []Role{RoleEntry, RoleExit, RoleMixnode, RoleIssuer}

// Known reports whether r is one of [Roles].
func (r Role) Known() bool { return slices.Contains(Roles, r) }

// Limits on a single node record.
const (
	MaxIDLength   = 64   // bytes in Node.ID
	MaxAddrLength = 261  // bytes in a host:port address (253-byte name + ":" + port, or a bracketed IPv6)
	MaxURLLength  = 1024 // bytes in Node.IssuerURL
	MaxSphinxKeys = 8    // entries in Node.SphinxKeys
	MaxLayer      = 3    // highest mix layer
)

// Key32 is a 32-byte public key (X25519 for Noise and WireGuard, Sphinx).
// In JSON and in String it is standard padded base64.
type Key32 [32]byte

// String returns k as standard padded base64.
func (k Key32) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// IsZero reports whether k is all zeros, i.e. absent.
func (k Key32) IsZero() bool { return k == Key32{} }

// ParseKey32 parses a 32-byte key written in base64: standard or URL alphabet,
// padded or not.
func ParseKey32(s string) (Key32, error) {
	var k Key32
	b, err := decodeBase64(s)
	if err != nil {
		return k, fmt.Errorf("parse key %q: not base64: %w", truncate(s, 64), err)
	}
	if len(b) != len(k) {
		return k, fmt.Errorf("parse key %q: %d bytes, want %d", truncate(s, 64), len(b), len(k))
	}
	copy(k[:], b)
	return k, nil
}

// MarshalText encodes k as standard padded base64.
func (k Key32) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText decodes k with [ParseKey32]; the empty string is the zero key.
func (k *Key32) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*k = Key32{}
		return nil
	}
	p, err := ParseKey32(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// decodeBase64 accepts the standard and URL alphabets, padded or not.
func decodeBase64(s string) ([]byte, error) {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if !strings.HasSuffix(s, "=") {
		enc = enc.WithPadding(base64.NoPadding)
	}
	return enc.Strict().DecodeString(s)
}

// SphinxKey is a node's Sphinx public key for one epoch.
type SphinxKey struct {
	Epoch     uint64 `json:"epoch"`
	PublicKey Key32  `json:"public_key"`
}

// Node is one node of the network as listed in the topology.
type Node struct {
	// ID is an operator-chosen unique name such as "gw-de-1": 1 to
	// MaxIDLength bytes of [a-z0-9-], starting with a letter or digit.
	ID    string `json:"id"`
	Roles []Role `json:"roles"`
	// Country is an ISO 3166-1 alpha-2 code in upper case, e.g. "DE".
	Country string `json:"country"`
	// IdentityKey signs the node's descriptor.
	IdentityKey ed25519.PublicKey `json:"identity_key"`
	// NoiseKey is the X25519 static key of the node's Noise endpoints
	// (required for gateways).
	NoiseKey Key32 `json:"noise_key"`
	// WireGuardKey is the gateway's WireGuard public key (required for gateways).
	WireGuardKey Key32 `json:"wireguard_key,omitzero"`
	// RegistrationAddr is host:port, TCP, of the Noise registration endpoint
	// (required for gateways).
	RegistrationAddr string `json:"registration_addr,omitempty"`
	// WireGuardAddr is host:port, UDP, of the WireGuard endpoint (required for
	// gateways).
	WireGuardAddr string `json:"wireguard_addr,omitempty"`
	// MixAddr is host:port, TCP, for Sphinx traffic between nodes (mix
	// nodes, gateways): Noise IK, each side authenticated by its NoiseKey.
	MixAddr string `json:"mix_addr,omitempty"`
	// MixClientAddr is host:port, TCP, where an entry gateway accepts
	// mixnet clients: Noise NK with the gateway's NoiseKey.
	MixClientAddr string `json:"mix_client_addr,omitempty"`
	// Layer is the mix layer 1..3 for this epoch, assigned by the directory;
	// 0 means none.
	Layer int `json:"layer,omitempty"`
	// SphinxKeys are the node's Sphinx public keys, one per epoch.
	SphinxKeys []SphinxKey `json:"sphinx_keys,omitempty"`
	// IssuerURL is the base URL of a credential issuer.
	IssuerURL string `json:"issuer_url,omitempty"`
}

// SphinxKey returns n's Sphinx public key for epoch.
func (n *Node) SphinxKey(epoch uint64) (Key32, bool) {
	for _, k := range n.SphinxKeys {
		if k.Epoch == epoch {
			return k.PublicKey, true
		}
	}
	return Key32{}, false
}

// Has reports whether n has role r.
func (n *Node) Has(r Role) bool { return slices.Contains(n.Roles, r) }

// IsGateway reports whether n is an entry or exit gateway.
func (n *Node) IsGateway() bool { return n.Has(RoleEntry) || n.Has(RoleExit) }

// Validate checks n: id, roles, country, that addresses parse as host:port,
// and that the keys and addresses its roles need are present.
func (n *Node) Validate() error { return n.validate(false) }

// validate is Validate; with allowUnknownRoles, roles this version does not
// know are accepted (a newer directory may list them) but still checked for
// shape.
func (n *Node) validate(allowUnknownRoles bool) error {
	if err := ValidateID(n.ID); err != nil {
		return err
	}
	errf := func(format string, args ...any) error {
		return fmt.Errorf("node %q: "+format, append([]any{n.ID}, args...)...)
	}
	if len(n.Roles) == 0 {
		return errf("no roles")
	}
	if len(n.Roles) > 2*len(Roles) {
		return errf("%d roles, at most %d", len(n.Roles), 2*len(Roles))
	}
	for i, r := range n.Roles {
		if !r.Known() {
			if !allowUnknownRoles {
				return errf("unknown role %q (known: %v)", truncate(string(r), 32), Roles)
			}
			if len(r) == 0 || len(r) > 32 {
				return errf("role name of %d bytes", len(r))
			}
		}
		if slices.Contains(n.Roles[:i], r) {
			return errf("role %q listed twice", r)
		}
	}
	if !validCountry(n.Country) {
		return errf("country %q is not an upper-case ISO 3166-1 alpha-2 code such as \"DE\"", truncate(n.Country, 16))
	}
	if len(n.IdentityKey) != ed25519.PublicKeySize {
		return errf("identity key is %d bytes, want %d", len(n.IdentityKey), ed25519.PublicKeySize)
	}
	for _, a := range []struct{ name, v string }{
		{"registration_addr", n.RegistrationAddr},
		{"wireguard_addr", n.WireGuardAddr},
		{"mix_addr", n.MixAddr},
		{"mix_client_addr", n.MixClientAddr},
	} {
		if a.v == "" {
			continue
		}
		if err := validateAddr(a.v); err != nil {
			return errf("%s: %w", a.name, err)
		}
	}
	if n.IsGateway() {
		switch {
		case n.NoiseKey.IsZero():
			return errf("gateway without noise_key")
		case n.WireGuardKey.IsZero():
			return errf("gateway without wireguard_key")
		case n.RegistrationAddr == "":
			return errf("gateway without registration_addr")
		case n.WireGuardAddr == "":
			return errf("gateway without wireguard_addr")
		}
	}
	if n.Has(RoleMixnode) {
		switch {
		case n.NoiseKey.IsZero():
			return errf("mix node without noise_key")
		case n.MixAddr == "":
			return errf("mix node without mix_addr")
		}
	}
	if n.MixClientAddr != "" && n.MixAddr == "" {
		return errf("mix_client_addr without mix_addr: a gateway that takes mixnet clients is a Sphinx hop too")
	}
	if n.Layer < 0 || n.Layer > MaxLayer {
		return errf("layer %d out of range 0..%d", n.Layer, MaxLayer)
	}
	if len(n.SphinxKeys) > MaxSphinxKeys {
		return errf("%d sphinx keys, at most %d", len(n.SphinxKeys), MaxSphinxKeys)
	}
	for i, k := range n.SphinxKeys {
		if k.PublicKey.IsZero() {
			return errf("sphinx key for epoch %d is zero", k.Epoch)
		}
		for _, o := range n.SphinxKeys[:i] {
			if o.Epoch == k.Epoch {
				return errf("two sphinx keys for epoch %d", k.Epoch)
			}
		}
	}
	if n.IssuerURL != "" {
		if err := validateHTTPURL(n.IssuerURL); err != nil {
			return errf("issuer_url: %w", err)
		}
	}
	return nil
}

// ValidateID checks a node id: 1 to MaxIDLength bytes of [a-z0-9-], starting
// with a letter or digit.
func ValidateID(id string) error {
	if id == "" {
		return errors.New("node id is empty")
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("node id %q…: %d bytes, at most %d", id[:16], len(id), MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0:
		default:
			return fmt.Errorf("node id %q: only a-z, 0-9 and '-' allowed, starting with a letter or digit", truncate(id, MaxIDLength))
		}
	}
	return nil
}

func validCountry(c string) bool {
	return len(c) == 2 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z'
}

func validateAddr(a string) error {
	if len(a) > MaxAddrLength {
		return fmt.Errorf("address of %d bytes, at most %d", len(a), MaxAddrLength)
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("address %q is not host:port: %w", a, err)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host", a)
	}
	if strings.ContainsAny(host, " /\\?#@\t\r\n") {
		return fmt.Errorf("address %q: bad host", a)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return fmt.Errorf("address %q: port must be 1..65535", a)
	}
	return nil
}

func validateHTTPURL(s string) error {
	if len(s) > MaxURLLength {
		return fmt.Errorf("URL of %d bytes, at most %d", len(s), MaxURLLength)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("bad URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("URL %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return fmt.Errorf("URL %q has no host", s)
	}
	return nil
}

// clone returns a deep copy of n.
func (n Node) clone() Node {
	n.Roles = slices.Clone(n.Roles)
	n.IdentityKey = slices.Clone(n.IdentityKey)
	n.SphinxKeys = slices.Clone(n.SphinxKeys)
	return n
}

// encodedSize is the size of n in a topology document.
func (n *Node) encodedSize() int {
	b, err := json.Marshal(n)
	if err != nil {
		return MaxDocumentSize
	}
	return len(b) + 1
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
