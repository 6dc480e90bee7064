package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadKeysCreatesPrivateFilesAndReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	k1, err := LoadKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %v, want 0700", st.Mode().Perm())
	}
	for _, f := range []string{"identity.key", "noise.key", "wireguard.key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", f, st.Mode().Perm(), err)
		}
	}
	k2, err := LoadKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Identity.Equal(k2.Identity) || k1.Noise != k2.Noise || k1.WireGuard != k2.WireGuard {
		t.Fatal("keys changed on reload")
	}
}

func TestLoadKeysRefusesExposedOrCorruptKeys(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadKeys(dir); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "noise.key")
	os.Chmod(p, 0o644)
	if _, err := LoadKeys(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key: %v", err)
	}
	os.Chmod(p, 0o600)
	os.WriteFile(p, []byte("not base64!"), 0o600)
	if _, err := LoadKeys(dir); err == nil || !strings.Contains(err.Error(), "move it aside") {
		t.Fatalf("corrupt key: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "not base64!" {
		t.Fatal("corrupt key file was overwritten")
	}
}
