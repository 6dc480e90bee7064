package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestForegroundAndCleanShutdown runs the binary: it writes the manifest
// (4 gateways, 3 layers of 2 mix nodes, 3 issuers, the demo account), stays up, and exits 0 on SIGTERM.
func TestForegroundAndCleanShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "nym-localnet")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--dir", dir)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(60 * time.Second)
	for ready := false; !ready; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("nym-localnet exited before ready")
			}
			ready = strings.HasPrefix(l, "ready in")
		case <-deadline:
			t.Fatal("nym-localnet not ready within 60 s")
		}
	}
	var m struct {
		DirectoryURL string `json:"directory_url"`
		Nodes        []any  `json:"nodes"`
		Issuers      []string
		DemoAccount  struct {
			WalletDir string `json:"wallet_dir"`
			Phrase    string `json:"recovery_phrase"`
		} `json:"demo_account"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "localnet.json"))
	if err != nil || json.Unmarshal(b, &m) != nil || !strings.Contains(m.DirectoryURL, "?key=") || len(m.Nodes) != 13 ||
		len(m.Issuers) != 3 || len(strings.Fields(m.DemoAccount.Phrase)) != 24 {
		t.Fatalf("manifest %s: %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(m.DemoAccount.WalletDir, "account")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("demo account file: %v", err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("nym-localnet did not stop within 30 s of SIGTERM")
	}
}
