package directory

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Domain-separation prefixes: what is signed is the prefix followed by the
// raw JSON bytes, so a topology signature can never pass for a descriptor
// signature or anything else signed with the same key.
const (
	TopologyDomain   = "nymvpn/directory/topology/v1\x00"
	DescriptorDomain = "nymvpn/directory/descriptor/v1\x00"
)

// Size and count limits.
const (
	MaxDocumentSize   = 8 << 20  // bytes in a signed topology document
	MaxDescriptorSize = 64 << 10 // bytes in a signed descriptor
	MaxNodes          = 10000    // nodes in a topology
	// MaxClockSkew is how far in the future a document's issue time or a
	// descriptor's timestamp may be, and how old a descriptor may be.
	MaxClockSkew = 5 * time.Minute
)

// Sentinel errors of VerifyTopology, VerifyDescriptor and Client.Fetch; test
// with errors.Is. The wrapping error says what exactly was wrong.
var (
	// ErrUnsigned: the document carries no signature.
	ErrUnsigned = errors.New("directory: document is not signed")
	// ErrBadSignature: the signature is not valid for the expected key.
	ErrBadSignature = errors.New("directory: bad signature")
	// ErrKeyMismatch accompanies ErrBadSignature when the document says it
	// was signed by a key other than the pinned one.
	ErrKeyMismatch = errors.New("directory: signed by a different key than the pinned one")
	// ErrStale: the document has expired or is not valid yet.
	ErrStale = errors.New("directory: stale document")
	// ErrMalformed: the bytes are not a well-formed document.
	ErrMalformed = errors.New("directory: malformed document")
	// ErrUnreachable: the directory could not be reached (Client.Fetch).
	ErrUnreachable = errors.New("directory: unreachable")
)

// SignTopology validates t, sorts its nodes by id and returns the signed
// document. t is not modified.
func SignTopology(t *Topology, key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign topology: private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	c := t.clone()
	c.sortNodes()
	c.EpochStart, c.Issued, c.Expires = c.EpochStart.UTC(), c.Issued.UTC(), c.Expires.UTC()
	if err := c.validate(false); err != nil {
		return nil, fmt.Errorf("sign topology: %w", err)
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("sign topology: %w", err)
	}
	doc := seal("topology", raw, TopologyDomain, key)
	if len(doc) > MaxDocumentSize {
		return nil, fmt.Errorf("sign topology: document of %d bytes exceeds the limit of %d", len(doc), MaxDocumentSize)
	}
	return doc, nil
}

// seal builds {"<field>":raw,"key":…,"signature":…}. It writes the raw bytes
// verbatim (json.Marshal would re-compact a json.RawMessage), so the signed
// bytes are exactly the bytes on the wire.
func seal(field string, raw []byte, domain string, key ed25519.PrivateKey) []byte {
	sig := ed25519.Sign(key, signedBytes(domain, raw))
	pub := key.Public().(ed25519.PublicKey)
	var b bytes.Buffer
	b.Grow(len(raw) + 200)
	b.WriteString(`{"`)
	b.WriteString(field)
	b.WriteString(`":`)
	b.Write(raw)
	b.WriteString(`,"key":"`)
	b.WriteString(base64.StdEncoding.EncodeToString(pub))
	b.WriteString(`","signature":"`)
	b.WriteString(base64.StdEncoding.EncodeToString(sig))
	b.WriteString(`"}`)
	return b.Bytes()
}

func signedBytes(domain string, raw []byte) []byte {
	m := make([]byte, 0, len(domain)+len(raw))
	return append(append(m, domain...), raw...)
}

// envelope is a signed document: exactly one of Topology and Descriptor is
// set, depending on the kind.
type envelope struct {
	Topology   json.RawMessage `json:"topology"`
	Descriptor json.RawMessage `json:"descriptor"`
	Key        string          `json:"key"`
	Signature  string          `json:"signature"`
}

// sealed is a parsed, not yet verified, signed document.
type sealed struct {
	kind    string
	raw     []byte // the signed JSON object, verbatim
	sig     []byte
	claimed string // the unauthenticated "key" field
}

// unseal parses a signed document of the given kind ("topology" or
// "descriptor") without verifying it.
func unseal(doc []byte, kind string) (*sealed, error) {
	var env envelope
	if err := json.Unmarshal(doc, &env); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object with a %q field: %w", ErrMalformed, kind, err)
	}
	raw := env.Topology
	if kind == "descriptor" {
		raw = env.Descriptor
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		if env.Signature == "" && looksBare(doc, kind) {
			return nil, fmt.Errorf("%w: got a bare %s without the signed envelope {\"%s\": …, \"signature\": …}", ErrUnsigned, kind, kind)
		}
		return nil, fmt.Errorf("%w: no %q object", ErrMalformed, kind)
	}
	if env.Signature == "" {
		return nil, fmt.Errorf("%w: %s has no signature", ErrUnsigned, kind)
	}
	sig, err := decodeBase64(env.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature field is not %d bytes of base64", ErrBadSignature, ed25519.SignatureSize)
	}
	return &sealed{kind: kind, raw: raw, sig: sig, claimed: env.Key}, nil
}

// verify checks the signature with key over domain ‖ raw.
func (s *sealed) verify(domain string, key ed25519.PublicKey) error {
	if ed25519.Verify(key, signedBytes(domain, s.raw), s.sig) {
		return nil
	}
	claimed, err := decodeBase64(s.claimed)
	if s.claimed != "" && err == nil && !bytes.Equal(claimed, key) {
		return fmt.Errorf("%w: %w: %s signed by %s, expected key is %s",
			ErrBadSignature, ErrKeyMismatch, s.kind, truncate(s.claimed, 64), base64.StdEncoding.EncodeToString(key))
	}
	return fmt.Errorf("%w: %s signature does not verify with key %s", ErrBadSignature, s.kind, base64.StdEncoding.EncodeToString(key))
}

// looksBare reports whether doc is an unsigned bare object of the kind.
func looksBare(doc []byte, kind string) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(doc, &probe) != nil {
		return false
	}
	if kind == "topology" {
		_, a := probe["nodes"]
		_, b := probe["epoch"]
		return a || b
	}
	_, a := probe["node"]
	_, b := probe["timestamp"]
	return a || b
}

// VerifyTopology checks that doc is a topology document signed by the pinned
// key and valid at now, and returns the topology. Errors wrap ErrUnsigned,
// ErrBadSignature (with ErrKeyMismatch when the document names another
// signer), ErrStale or ErrMalformed.
func VerifyTopology(doc []byte, key ed25519.PublicKey, now time.Time) (*Topology, error) {
	if len(key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("verify topology: pinned key is %d bytes, want %d", len(key), ed25519.PublicKeySize)
	}
	if len(doc) > MaxDocumentSize {
		return nil, fmt.Errorf("%w: document of %d bytes exceeds the limit of %d", ErrMalformed, len(doc), MaxDocumentSize)
	}
	sd, err := unseal(doc, "topology")
	if err != nil {
		return nil, err
	}
	if err := sd.verify(TopologyDomain, key); err != nil {
		if errors.Is(err, ErrKeyMismatch) {
			err = fmt.Errorf("%w (is the key in the directory URL right?)", err)
		}
		return nil, err
	}
	var t Topology
	if err := json.Unmarshal(sd.raw, &t); err != nil {
		return nil, fmt.Errorf("%w: topology: %w", ErrMalformed, err)
	}
	if err := t.validate(true); err != nil {
		return nil, fmt.Errorf("%w: topology: %w", ErrMalformed, err)
	}
	if now.After(t.Expires) {
		return nil, fmt.Errorf("%w: topology expired at %s, %s ago (local time %s); check this machine's clock and that the directory is running",
			ErrStale, t.Expires.UTC().Format(time.RFC3339), now.Sub(t.Expires).Round(time.Second), now.UTC().Format(time.RFC3339))
	}
	if t.Issued.After(now.Add(MaxClockSkew)) {
		return nil, fmt.Errorf("%w: topology issued at %s, %s in the future (local time %s); check this machine's clock",
			ErrStale, t.Issued.UTC().Format(time.RFC3339), t.Issued.Sub(now).Round(time.Second), now.UTC().Format(time.RFC3339))
	}
	return &t, nil
}
