package wallet_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/credential/wallet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/issuer"
	"github.com/nymvpn/nymvpn/registration"
)

// issuers runs 3 issuers (2 of 3) and returns a topology listing them.
func issuers(t testing.TB) (*directory.Topology, []*issuer.Issuer) {
	t.Helper()
	dirs, err := issuer.Keygen(rand.Reader, t.TempDir(), 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	topo := &directory.Topology{}
	var out []*issuer.Issuer
	for i, d := range dirs {
		pub, priv, _ := ed25519.GenerateKey(nil)
		iss, err := issuer.New(issuer.Config{DataDir: d, Identity: priv, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(iss.Handler())
		t.Cleanup(func() { srv.Close(); iss.Close() })
		topo.Nodes = append(topo.Nodes, directory.Node{ID: "issuer-" + string(rune('1'+i)), Roles: []directory.Role{directory.RoleIssuer},
			Country: "CH", IdentityKey: pub, IssuerURL: srv.URL})
		out = append(out, iss)
	}
	return topo, out
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestWalletLifecycle(t *testing.T) {
	topo, iss := issuers(t)
	dir := filepath.Join(t.TempDir(), "wallet")
	cfg := wallet.Config{Dir: dir, BookSize: 10, RefillBelow: 3, Keep: []credential.TicketType{},
		Topology: func(context.Context) (*directory.Topology, error) { return topo, nil }, Logger: slog.New(slog.DiscardHandler)}
	w, err := wallet.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	gw := directory.Node{ID: "gw", NoiseKey: directory.Key32{1}}
	if _, err := w.Ticket(ctx, registration.RoleEntry, gw); !errors.Is(err, wallet.ErrNoAccount) {
		t.Fatalf("ticket without an account: %v", err)
	}
	phrase, err := w.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	id := w.Account().ID()
	if _, err := w.Ticket(ctx, registration.RoleEntry, gw); !wallet.NoAllowance(err) {
		t.Fatalf("ticket of an account the issuers do not know: %v", err)
	}
	for _, i := range iss {
		i.AddAllowance(id, 100)
	}
	tk, err := w.Ticket(ctx, registration.RoleEntry, gw)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := credential.ParseSpend(tk)
	if err != nil || sp.Type != credential.FastEntry || sp.PayInfo.GatewayKey != [32]byte(gw.NoiseKey) {
		t.Fatalf("ticket: %v %+v", err, sp)
	}
	if c := w.Counts(); c[credential.FastEntry] != 9 || c[credential.FastExit] != 0 {
		t.Fatalf("counts %v", c)
	}
	for _, p := range []string{dir, filepath.Join(dir, "books"), filepath.Join(dir, "pending")} {
		if m := mode(t, p); m != 0o700 {
			t.Errorf("%s mode %v, want 0700", p, m)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "books", "*"))
	files = append(files, filepath.Join(dir, "account"))
	for _, f := range files {
		if m := mode(t, f); m != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, m)
		}
	}
	// A restart keeps the account and the spent mark.
	w2, err := wallet.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !w2.Account().ID().Equal(id) || w2.Counts()[credential.FastEntry] != 9 {
		t.Fatalf("after reopening: %v tickets", w2.Counts())
	}
	// Refill below the threshold, in the background loop.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w2.Run(rctx)
	for range 7 {
		if _, err := w2.Ticket(ctx, registration.RoleEntry, gw); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for w2.Counts()[credential.FastEntry] < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("no refill: %v", w2.Counts())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	// Forget, then import the phrase: the same account, no books.
	if err := w2.ForgetAccount(); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "books", "*")); len(left) != 0 || w2.Account() != nil {
		t.Fatalf("forget left %v", left)
	}
	if err := w2.ImportAccount(phrase); err != nil {
		t.Fatal(err)
	}
	if !w2.Account().ID().Equal(id) {
		t.Fatal("imported phrase gives another account")
	}
	if err := w2.ImportAccount("not a phrase"); !errors.Is(err, wallet.ErrBadPhrase) {
		t.Fatalf("bad phrase: %v", err)
	}
}
