package node

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nymvpn/nymvpn/transport"
)

// Keys are a node's long-term keys, kept in its data directory.
type Keys struct {
	Identity  ed25519.PrivateKey
	Noise     transport.Key
	WireGuard transport.Key
}

// LoadKeys reads the node's keys from dir, creating any that are missing.
// The directory is made 0700 and each key file 0600; a key file readable by
// others is refused rather than used.
func LoadKeys(dir string) (*Keys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data directory: %w", err)
	}
	var k Keys
	seed, err := loadOrCreate(filepath.Join(dir, "identity.key"), ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	k.Identity = ed25519.NewKeyFromSeed(seed)
	for name, dst := range map[string]*transport.Key{"noise.key": &k.Noise, "wireguard.key": &k.WireGuard} {
		b, err := loadOrCreate(filepath.Join(dir, name), 32)
		if err != nil {
			return nil, err
		}
		copy(dst[:], b)
	}
	return &k, nil
}

func loadOrCreate(path string, size int) ([]byte, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		b := make([]byte, size)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("node: create key %s: %w", path, err)
		}
		_, werr := f.WriteString(base64.StdEncoding.EncodeToString(b) + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(path)
			return nil, fmt.Errorf("node: write key %s: %w", path, werr)
		}
		return b, nil
	case err != nil:
		return nil, fmt.Errorf("node: key %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("node: key %s has mode %v; it must be readable by its owner only (chmod 600)", path, st.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("node: read key %s: %w", path, err)
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(b) != size {
		return nil, fmt.Errorf("node: key %s is not %d bytes of base64; move it aside to create a new key", path, size)
	}
	return b, nil
}
