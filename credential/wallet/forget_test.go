package wallet_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/credential/wallet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/issuer"
)

// gatedIssuers runs 3 issuers (2 of 3) whose signing waits until gate is
// closed.
func gatedIssuers(t *testing.T, gate <-chan struct{}) (*directory.Topology, []*issuer.Issuer) {
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
		h := iss.Handler()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/sign" {
				<-gate
			}
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(func() { srv.Close(); iss.Close() })
		topo.Nodes = append(topo.Nodes, directory.Node{ID: "issuer-" + string(rune('1'+i)), Roles: []directory.Role{directory.RoleIssuer},
			Country: "CH", IdentityKey: pub, IssuerURL: srv.URL})
		out = append(out, iss)
	}
	return topo, out
}

// TestForgetDuringRefill: a book that arrives for an account forgotten
// meanwhile is not kept, and a refill asked for after the account came back
// does not take that fetch's result for its own.
func TestForgetDuringRefill(t *testing.T) {
	gate := make(chan struct{})
	topo, iss := gatedIssuers(t, gate)
	dir := filepath.Join(t.TempDir(), "wallet")
	w, err := wallet.Open(wallet.Config{Dir: dir, BookSize: 5, Keep: []credential.TicketType{},
		Topology: func(context.Context) (*directory.Topology, error) { return topo, nil }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	phrase, err := w.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range iss {
		i.AddAllowance(w.Account().ID(), 100)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := make(chan error, 1)
	go func() { first <- w.Refill(ctx, credential.FastExit) }()
	for !slices.Contains(w.Fetching(), credential.FastExit) {
		if ctx.Err() != nil {
			t.Fatal("the refill did not start")
		}
		time.Sleep(time.Millisecond)
	}
	if err := w.ForgetAccount(); err != nil {
		t.Fatal(err)
	}
	if err := w.ImportAccount(phrase); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() { second <- w.Refill(ctx, credential.FastExit) }()
	close(gate)
	if err := <-first; !errors.Is(err, wallet.ErrNoAccount) {
		t.Fatalf("the forgotten account's refill: %v", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("the refill after the import: %v", err)
	}
	if c := w.Counts()[credential.FastExit]; c != 5 {
		t.Fatalf("fast-exit tickets %d, want one book of 5", c)
	}
	if books, _ := filepath.Glob(filepath.Join(dir, "books", "*.book")); len(books) != 1 {
		t.Fatalf("books on disk %v, want one", books)
	}
	if err := w.LastRefillError(); err != nil {
		t.Fatalf("last refill error %v", err)
	}
	if f := w.Fetching(); len(f) != 0 {
		t.Fatalf("still fetching %v", f)
	}
}
