package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/node/localnet"
)

// TestProbeAccount runs `nym-node probe` against a local network whose
// entry gateways take tickets: without an account it is refused with the
// gateway's payment_required and a hint about --account; with the demo
// account's phrase file (DIR/demo-wallet/account, as the README says) it
// pays and every packet comes back; --wallet-dir keeps the wallet (0700)
// for the next run, which needs no --account; a file that holds no phrase
// is refused without being echoed.
func TestProbeAccount(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a local network")
	}
	dir, bin := buildNymNode(t)
	cfg := localnet.DefaultConfig()
	cfg.Dir = filepath.Join(dir, "localnet")
	cfg.EpochLength = time.Hour
	cfg.MixnodesPerLayer = 1
	cfg.Logger = slog.New(slog.DiscardHandler)
	n, err := localnet.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	account := filepath.Join(n.WalletDir, "account")

	probe := func(args ...string) (string, int) {
		t.Helper()
		args = append([]string{"probe", "--directory", n.DirectoryURL, "--packets", "2", "--timeout", "30s"}, args...)
		out, err := exec.Command(bin, args...).CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &ee):
			return string(out), ee.ExitCode()
		}
		t.Fatalf("probe %v: %v\n%s", args, err, out)
		return "", 0
	}

	out, code := probe()
	if code != 2 || !strings.Contains(out, "payment_required") || !strings.Contains(out, "--account") {
		t.Fatalf("probe without an account: exit %d\n%s", code, out)
	}
	t.Logf("without an account:\n%s", out)

	out, code = probe("--account", account)
	if code != 0 || !strings.Contains(out, "paid with 1 mixnet-entry ticket") || !strings.Contains(out, " 2     2 ") {
		t.Fatalf("probe --account: exit %d\n%s", code, out)
	}
	t.Logf("with the demo account:\n%s", out)

	wdir := filepath.Join(dir, "probe-wallet")
	if out, code = probe("--account", account, "--wallet-dir", wdir); code != 0 {
		t.Fatalf("probe --wallet-dir: exit %d\n%s", code, out)
	}
	if st, err := os.Stat(wdir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("wallet directory: %v %v", st, err)
	}
	if st, err := os.Stat(filepath.Join(wdir, "account")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("wallet account file: %v %v", st, err)
	}
	books, _ := os.ReadDir(filepath.Join(wdir, "books"))
	if out, code = probe("--wallet-dir", wdir); code != 0 || !strings.Contains(out, "paid with 1 mixnet-entry ticket") {
		t.Fatalf("probe --wallet-dir without --account: exit %d\n%s", code, out)
	}
	if again, _ := os.ReadDir(filepath.Join(wdir, "books")); len(books) != 1 || len(again) != 1 {
		t.Errorf("books: %d after the first run, %d after the second; want the one book reused", len(books), len(again))
	}

	bad := filepath.Join(dir, "bad-phrase")
	if err := os.WriteFile(bad, []byte("zebra secretword apple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = probe("--account", bad)
	if code != 2 || !strings.Contains(out, "not hold a valid recovery phrase") || strings.Contains(out, "secretword") {
		t.Fatalf("probe with a bad phrase file: exit %d\n%s", code, out)
	}
}
