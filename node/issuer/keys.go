package issuer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nymvpn/nymvpn/credential"
)

// KeyFileName is the file, in an issuer's data directory, that holds its key share.
const KeyFileName = "issuer-key.json"

// GroupKeyFileName is the public file Keygen writes next to the issuers'
// directories: the group's verification key, for gateways that pin it.
const GroupKeyFileName = "group.key"

// keyFile is the JSON of KeyFileName.
type keyFile struct {
	Index     uint32 `json:"index"`
	Threshold int    `json:"threshold"`
	Issuers   int    `json:"issuers"`
	SecretKey []byte `json:"secret_key"`
	Share     []byte `json:"verification_key"`
	GroupKey  []byte `json:"group_key"`
}

// Key is one issuer's key material.
type Key struct {
	Secret    *credential.IssuerSecretKey
	Share     *credential.IssuerVerificationKey
	Group     *credential.VerificationKey
	Threshold int
	Issuers   int
}

// Keygen is the trusted dealer: it makes a threshold key of t of n issuers and
// writes, for issuer i, outDir/issuer-<i>/issuer-key.json (0600, in a 0700
// directory: the issuer's data directory), and outDir/group.key, the group's
// public verification key. The dealer sees the whole signing key; it keeps
// nothing once the files are written. A distributed key generation replaces it
// later without changing the files' shape.
func Keygen(rng io.Reader, outDir string, t, n int) ([]string, error) {
	vk, sks, ivks, err := credential.GenerateThresholdKeys(rng, t, n)
	if err != nil {
		return nil, fmt.Errorf("issuer keygen: %w", err)
	}
	group, _ := vk.MarshalBinary()
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("issuer keygen: %w", err)
	}
	var dirs []string
	for i := range sks {
		dir := filepath.Join(outDir, fmt.Sprintf("issuer-%d", sks[i].Index()))
		if err := WriteKey(dir, sks[i], ivks[i], vk, t, n); err != nil {
			return nil, err
		}
		dirs = append(dirs, dir)
	}
	if err := os.WriteFile(filepath.Join(outDir, GroupKeyFileName), group, 0o644); err != nil {
		return nil, fmt.Errorf("issuer keygen: %w", err)
	}
	return dirs, nil
}

// WriteKey writes one issuer's key file into dir (created 0700), refusing to
// overwrite an existing one.
func WriteKey(dir string, sk *credential.IssuerSecretKey, share *credential.IssuerVerificationKey, group *credential.VerificationKey, t, n int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("issuer key: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("issuer key: %w", err)
	}
	kf := keyFile{Index: sk.Index(), Threshold: t, Issuers: n}
	var err error
	if kf.SecretKey, err = sk.MarshalBinary(); err != nil {
		return fmt.Errorf("issuer key: %w", err)
	}
	kf.Share, _ = share.MarshalBinary()
	kf.GroupKey, _ = group.MarshalBinary()
	b, _ := json.MarshalIndent(&kf, "", "  ")
	path := filepath.Join(dir, KeyFileName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("issuer key: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	if err := f.Sync(); werr == nil {
		werr = err
	}
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		os.Remove(path)
		return fmt.Errorf("issuer key %s: %w", path, werr)
	}
	return nil
}

// LoadKey reads dir/issuer-key.json: the file must be readable by its owner
// only, and the share must be the one the secret key derives.
func LoadKey(dir string) (*Key, error) {
	path := filepath.Join(dir, KeyFileName)
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("issuer: no key in %s: make the keys with `nym-node issuer-keygen --t T --n N --out DIR` and use DIR/issuer-<i> as the data directory", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("issuer: key %s has mode %v; it must be readable by its owner only (chmod 600)", path, st.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	var kf keyFile
	if err := json.Unmarshal(raw, &kf); err != nil {
		return nil, fmt.Errorf("issuer: key %s: %w", path, err)
	}
	k := &Key{Secret: new(credential.IssuerSecretKey), Share: new(credential.IssuerVerificationKey), Group: new(credential.VerificationKey),
		Threshold: kf.Threshold, Issuers: kf.Issuers}
	if err := k.Secret.UnmarshalBinary(kf.SecretKey); err != nil {
		return nil, fmt.Errorf("issuer: key %s: secret key: %w", path, err)
	}
	if err := k.Share.UnmarshalBinary(kf.Share); err != nil {
		return nil, fmt.Errorf("issuer: key %s: verification key: %w", path, err)
	}
	if err := k.Group.UnmarshalBinary(kf.GroupKey); err != nil {
		return nil, fmt.Errorf("issuer: key %s: group key: %w", path, err)
	}
	derived, err := k.Secret.VerificationKey()
	if err != nil {
		return nil, fmt.Errorf("issuer: key %s: %w", path, err)
	}
	if derived.Index != k.Share.Index || !derived.Key.Equal(k.Share.Key) {
		return nil, fmt.Errorf("issuer: key %s: the verification key is not the secret key's", path)
	}
	if k.Threshold < 1 || k.Issuers < k.Threshold || k.Share.Index < 1 || int(k.Share.Index) > k.Issuers {
		return nil, fmt.Errorf("issuer: key %s: index %d, threshold %d of %d: inconsistent", path, k.Share.Index, k.Threshold, k.Issuers)
	}
	return k, nil
}
