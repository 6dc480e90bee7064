package directory

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// Descriptor is what a node announces about itself: its Node record and the
// time of signing, signed by Node.IdentityKey (see SignDescriptor).
type Descriptor struct {
	Node      Node      `json:"node"`
	Timestamp time.Time `json:"timestamp"`
}

// SignDescriptor returns n's descriptor timestamped now and signed with the
// node's identity key. If n.IdentityKey is empty it is taken from key;
// otherwise it must match key. n is not modified.
func SignDescriptor(n *Node, key ed25519.PrivateKey, now time.Time) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign descriptor: private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	d := Descriptor{Node: n.clone(), Timestamp: now.UTC()}
	pub := key.Public().(ed25519.PublicKey)
	if len(d.Node.IdentityKey) == 0 {
		d.Node.IdentityKey = pub
	} else if !bytes.Equal(d.Node.IdentityKey, pub) {
		return nil, fmt.Errorf("sign descriptor for %q: private key belongs to %s, node's identity key is %s",
			n.ID, base64.StdEncoding.EncodeToString(pub), base64.StdEncoding.EncodeToString(d.Node.IdentityKey))
	}
	if err := d.Node.Validate(); err != nil {
		return nil, fmt.Errorf("sign descriptor: %w", err)
	}
	raw, err := json.Marshal(&d)
	if err != nil {
		return nil, fmt.Errorf("sign descriptor for %q: %w", n.ID, err)
	}
	doc := seal("descriptor", raw, DescriptorDomain, key)
	if len(doc) > MaxDescriptorSize {
		return nil, fmt.Errorf("sign descriptor for %q: %d bytes exceeds the limit of %d", n.ID, len(doc), MaxDescriptorSize)
	}
	return doc, nil
}

// VerifyDescriptor checks that b is a descriptor signed by the identity key of
// the node it describes, that the node is valid and that the timestamp is
// within MaxClockSkew of now, and returns the node. Whether that identity may
// announce is for the caller to decide. Errors wrap ErrUnsigned,
// ErrBadSignature, ErrStale or ErrMalformed.
func VerifyDescriptor(b []byte, now time.Time) (*Node, error) {
	d, err := verifyDescriptor(b, now)
	if err != nil {
		return nil, err
	}
	return &d.Node, nil
}

func verifyDescriptor(b []byte, now time.Time) (*Descriptor, error) {
	if len(b) > MaxDescriptorSize {
		return nil, fmt.Errorf("%w: descriptor of %d bytes exceeds the limit of %d", ErrMalformed, len(b), MaxDescriptorSize)
	}
	sd, err := unseal(b, "descriptor")
	if err != nil {
		return nil, err
	}
	var d Descriptor
	if err := json.Unmarshal(sd.raw, &d); err != nil {
		return nil, fmt.Errorf("%w: descriptor: %w", ErrMalformed, err)
	}
	if len(d.Node.IdentityKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: descriptor: identity key is %d bytes, want %d", ErrMalformed, len(d.Node.IdentityKey), ed25519.PublicKeySize)
	}
	// Verify before looking further at the contents.
	if err := sd.verify(DescriptorDomain, d.Node.IdentityKey); err != nil {
		return nil, fmt.Errorf("descriptor of %q: %w", truncate(d.Node.ID, MaxIDLength), err)
	}
	if err := d.Node.Validate(); err != nil {
		return nil, fmt.Errorf("%w: descriptor: %w", ErrMalformed, err)
	}
	if d.Timestamp.IsZero() {
		return nil, fmt.Errorf("%w: descriptor of %q has no timestamp", ErrMalformed, d.Node.ID)
	}
	if age := now.Sub(d.Timestamp); age > MaxClockSkew || age < -MaxClockSkew {
		when := "old"
		if age < 0 {
			when, age = "in the future", -age
		}
		return nil, fmt.Errorf("%w: descriptor of %q signed at %s is %s %s (allowed ±%s, local time %s); check the node's and the directory's clocks",
			ErrStale, d.Node.ID, d.Timestamp.UTC().Format(time.RFC3339), age.Round(time.Second), when, MaxClockSkew, now.UTC().Format(time.RFC3339))
	}
	return &d, nil
}
