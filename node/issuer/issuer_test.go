package issuer

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
	"github.com/nymvpn/nymvpn/node/directory"
)

type testNet struct {
	dir      string
	issuers  []*Issuer
	servers  []*httptest.Server
	topo     *directory.Topology
	gwKeys   map[string]ed25519.PrivateKey
	gwNoise  map[string][32]byte
	account  ed25519.PrivateKey
	user     *credential.UserSecret
	stopped  map[int]bool
	identity []ed25519.PrivateKey
}

func logger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newTestNet(t *testing.T, tt, n int) *testNet {
	t.Helper()
	tn := &testNet{dir: t.TempDir(), gwKeys: map[string]ed25519.PrivateKey{}, gwNoise: map[string][32]byte{}, stopped: map[int]bool{}}
	dirs, err := Keygen(rand.Reader, tn.dir, tt, n)
	if err != nil {
		t.Fatal(err)
	}
	tn.topo = &directory.Topology{}
	for _, gw := range []string{"gw-a", "gw-b"} {
		pub, priv, _ := ed25519.GenerateKey(nil)
		var noise [32]byte
		rand.Read(noise[:])
		tn.gwKeys[gw], tn.gwNoise[gw] = priv, noise
		tn.topo.Nodes = append(tn.topo.Nodes, directory.Node{ID: gw, Roles: []directory.Role{directory.RoleEntry}, Country: "DE", IdentityKey: pub,
			NoiseKey: noise, WireGuardKey: noise, RegistrationAddr: "127.0.0.1:1", WireGuardAddr: "127.0.0.1:2"})
	}
	for k, d := range dirs {
		pub, priv, _ := ed25519.GenerateKey(nil)
		iss, err := New(Config{ID: filepath.Base(d), DataDir: d, Identity: priv, Topology: func() *directory.Topology { return tn.topo }, Logger: logger()})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(iss.Handler())
		t.Cleanup(func() { srv.Close(); iss.Close() })
		tn.issuers = append(tn.issuers, iss)
		tn.servers = append(tn.servers, srv)
		tn.identity = append(tn.identity, priv)
		tn.topo.Nodes = append(tn.topo.Nodes, directory.Node{ID: filepath.Base(d), Roles: []directory.Role{directory.RoleIssuer}, Country: "CH",
			IdentityKey: pub, IssuerURL: srv.URL})
		_ = k
	}
	_, tn.account, _ = ed25519.GenerateKey(nil)
	tn.user, _ = credential.NewUserSecret(rand.Reader)
	return tn
}

func (tn *testNet) grant(t *testing.T, tickets int64) {
	for _, iss := range tn.issuers {
		if _, err := iss.AddAllowance(tn.account.Public().(ed25519.PublicKey), tickets); err != nil {
			t.Fatal(err)
		}
	}
}

func (tn *testNet) book(t *testing.T, g *Group, count int, use ...int) *credential.Ticketbook {
	t.Helper()
	req, pend, err := credential.NewTicketbookRequest(rand.Reader, tn.user, credential.FastEntry, credential.ExpiryFor(time.Now()), count)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := req.MarshalBinary()
	var id RequestID
	rand.Read(id[:])
	var shares []*credential.SignatureShares
	for _, k := range use {
		ep := g.Issuers[k]
		part, _, err := Sign(context.Background(), nil, ep, tn.account, id, rb, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		sh, err := pend.Unblind(ep.Share, part)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, sh)
	}
	b, err := credential.Aggregate(rand.Reader, g.Key, shares)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeygenFilesAndDiscovery(t *testing.T) {
	tn := newTestNet(t, 2, 3)
	st, err := os.Stat(filepath.Join(tn.dir, "issuer-1", KeyFileName))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st.Mode(), err)
	}
	if st, _ := os.Stat(filepath.Join(tn.dir, "issuer-1")); st.Mode().Perm() != 0o700 {
		t.Fatalf("issuer dir mode %v", st.Mode().Perm())
	}
	g, err := Discover(context.Background(), nil, tn.topo)
	if err != nil {
		t.Fatal(err)
	}
	if g.Threshold != 2 || g.Size != 3 || len(g.Issuers) != 3 || !g.Key.Equal(tn.issuers[0].Key().Group) {
		t.Fatalf("group %d of %d with %d issuers", g.Threshold, g.Size, len(g.Issuers))
	}
	// One issuer down (n−t): still a quorum. Two down: none.
	tn.servers[0].Close()
	g, err = Discover(context.Background(), nil, tn.topo)
	if err != nil || len(g.Issuers) != 2 {
		t.Fatalf("with one issuer down: %v", err)
	}
	tn.servers[1].Close()
	if _, err := Discover(context.Background(), nil, tn.topo); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("with two issuers down: %v, want ErrNoQuorum", err)
	}
}

func TestDiscoverRefusesForgedKey(t *testing.T) {
	tn := newTestNet(t, 2, 3)
	// The directory lists another identity for issuer 1: its signed key no
	// longer verifies and it is left out.
	pub, _, _ := ed25519.GenerateKey(nil)
	for i := range tn.topo.Nodes {
		if tn.topo.Nodes[i].ID == "issuer-1" {
			tn.topo.Nodes[i].IdentityKey = pub
		}
	}
	g, err := Discover(context.Background(), nil, tn.topo)
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range g.Issuers {
		if ep.ID == "issuer-1" {
			t.Fatal("issuer with a key not signed by its listed identity was used")
		}
	}
}

func TestSignLedgerAndIdempotence(t *testing.T) {
	tn := newTestNet(t, 2, 3)
	g, err := Discover(context.Background(), nil, tn.topo)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req, _, _ := credential.NewTicketbookRequest(rand.Reader, tn.user, credential.FastExit, credential.ExpiryFor(time.Now()), 5)
	rb, _ := req.MarshalBinary()
	var id RequestID
	rand.Read(id[:])
	// No account yet.
	_, _, err = Sign(ctx, nil, g.Issuers[0], tn.account, id, rb, time.Now())
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != CodeUnknownAcct {
		t.Fatalf("unknown account: %v", err)
	}
	tn.grant(t, 8)
	p1, left, err := Sign(ctx, nil, g.Issuers[0], tn.account, id, rb, time.Now())
	if err != nil || left != 3 {
		t.Fatalf("sign: %v, allowance %d want 3", err, left)
	}
	// The same request id again: the same answer, nothing charged.
	p2, left, err := Sign(ctx, nil, g.Issuers[0], tn.account, id, rb, time.Now())
	if err != nil || left != 3 {
		t.Fatalf("repeat: %v, allowance %d want 3", err, left)
	}
	a, _ := p1.MarshalBinary()
	b, _ := p2.MarshalBinary()
	if string(a) != string(b) {
		t.Fatal("a repeated request got another answer")
	}
	// The same id for another request: conflict.
	req2, _, _ := credential.NewTicketbookRequest(rand.Reader, tn.user, credential.FastExit, credential.ExpiryFor(time.Now()), 1)
	rb2, _ := req2.MarshalBinary()
	if _, _, err := Sign(ctx, nil, g.Issuers[0], tn.account, id, rb2, time.Now()); !errors.As(err, &ae) || ae.Code != CodeConflict {
		t.Fatalf("id reuse: %v", err)
	}
	// Not enough allowance left for 5 more.
	var id2 RequestID
	rand.Read(id2[:])
	if _, _, err := Sign(ctx, nil, g.Issuers[0], tn.account, id2, rb, time.Now()); !errors.As(err, &ae) || ae.Code != CodeNoAllowance {
		t.Fatalf("over allowance: %v", err)
	}
	// Signed by another key, or for another issuer: refused.
	_, other, _ := ed25519.GenerateKey(nil)
	sr := SignRequest{RequestID: id2, Account: tn.account.Public().(ed25519.PublicKey), Timestamp: time.Now().Unix(), Request: rb2}
	sr.Signature = ed25519.Sign(other, SignMessage(1, id2, sr.Timestamp, rb2))
	if _, _, e := tn.issuers[0].sign(&sr); e == nil || e.Code != CodeBadSignature {
		t.Fatalf("forged account signature: %+v", e)
	}
	sr.Signature = ed25519.Sign(tn.account, SignMessage(2, id2, sr.Timestamp, rb2))
	if _, _, e := tn.issuers[0].sign(&sr); e == nil || e.Code != CodeBadSignature {
		t.Fatalf("signature made for another issuer: %+v", e)
	}
	// A stale timestamp.
	old := time.Now().Add(-time.Hour)
	if _, _, err := Sign(ctx, nil, g.Issuers[0], tn.account, id2, rb2, old); !errors.As(err, &ae) || ae.Code != CodeStale {
		t.Fatalf("stale: %v", err)
	}
	// A rare expiry week is refused.
	req3, _, _ := credential.NewTicketbookRequest(rand.Reader, tn.user, credential.FastExit, credential.ExpiryFor(time.Now())+3, 1)
	rb3, _ := req3.MarshalBinary()
	if _, _, err := Sign(ctx, nil, g.Issuers[0], tn.account, id2, rb3, time.Now()); !errors.As(err, &ae) || ae.Code != CodeWrongExpiry {
		t.Fatalf("expiry: %v", err)
	}
	// The admin API wants the token.
	if _, err := GrantAllowance(ctx, nil, g.Issuers[0].URL, "wrong-token-wrong-token", tn.account.Public().(ed25519.PublicKey), 5); !errors.As(err, &ae) || ae.Code != CodeUnauthorized {
		t.Fatalf("admin without token: %v", err)
	}
	tok, _ := os.ReadFile(filepath.Join(tn.dir, "issuer-1", AdminTokenFileName))
	acct, err := GrantAllowance(ctx, nil, g.Issuers[0].URL, string(tok), tn.account.Public().(ed25519.PublicKey), 5)
	if err != nil || acct.Allowance != 8 {
		t.Fatalf("admin grant: %v %+v", err, acct)
	}
}

// Two spends of one ticket at two gateways, reported to the issuers: the second
// report is identified as a double spend and names the account.
func TestDoubleSpendAcrossGatewaysIdentified(t *testing.T) {
	tn := newTestNet(t, 2, 3)
	g, err := Discover(context.Background(), nil, tn.topo)
	if err != nil {
		t.Fatal(err)
	}
	tn.grant(t, 10)
	book := tn.book(t, g, 2, 0, 2)
	ctx := context.Background()
	spendAt := func(gw string) []byte {
		pay, _ := credential.NewPayInfo(rand.Reader, tn.gwNoise[gw], time.Now())
		b := book
		// Spend ticket 0 again from a restored copy of the book.
		enc, _ := b.MarshalBinary()
		var c credential.Ticketbook
		c.UnmarshalBinary(enc)
		cp := &c
		if cp.Used(0) {
			enc[4+credential.VerificationKeySize+credential.ScalarSize+2] &^= 1
			cp.UnmarshalBinary(enc)
		}
		sp, err := cp.Spend(rand.Reader, 0, pay)
		if err != nil {
			t.Fatal(err)
		}
		return sp
	}
	a, b := spendAt("gw-a"), spendAt("gw-b")
	url := g.Issuers[2].URL // an issuer that signed the book knows the account
	r, err := Report(ctx, nil, url, "gw-a", tn.gwKeys["gw-a"], [][]byte{a}, time.Now())
	if err != nil || r.Accepted != 1 {
		t.Fatalf("first report: %v %+v", err, r)
	}
	// Retried report: a duplicate, not a double spend.
	r, err = Report(ctx, nil, url, "gw-a", tn.gwKeys["gw-a"], [][]byte{a}, time.Now())
	if err != nil || r.Duplicates != 1 || r.DoubleSpends != 0 {
		t.Fatalf("retried report: %v %+v", err, r)
	}
	// gw-a cannot report a spend bound to gw-b, nor sign as gw-b.
	r, err = Report(ctx, nil, url, "gw-a", tn.gwKeys["gw-a"], [][]byte{b}, time.Now())
	if err != nil || r.Invalid != 1 {
		t.Fatalf("spend of another gateway: %v %+v", err, r)
	}
	var ae *APIError
	if _, err := Report(ctx, nil, url, "gw-b", tn.gwKeys["gw-a"], [][]byte{b}, time.Now()); !errors.As(err, &ae) || ae.Code != CodeBadSignature {
		t.Fatalf("report signed by another gateway: %v", err)
	}
	r, err = Report(ctx, nil, url, "gw-b", tn.gwKeys["gw-b"], [][]byte{b}, time.Now())
	if err != nil || r.DoubleSpends != 1 {
		t.Fatalf("double spend report: %v %+v", err, r)
	}
	ds, err := DoubleSpendsAt(ctx, nil, url)
	if err != nil || len(ds) != 1 {
		t.Fatalf("double spends: %v %d", err, len(ds))
	}
	pk := tn.user.PublicKey()
	if string(ds[0].PublicKey) != string(pk[:]) || !ed25519.PublicKey(ds[0].Account).Equal(tn.account.Public()) {
		t.Fatal("double spend names the wrong spender")
	}
	if ds[0].Gateways != [2]string{"gw-a", "gw-b"} {
		t.Fatalf("gateways %v", ds[0].Gateways)
	}
	// Persisted: a restarted issuer still lists it.
	iss := tn.issuers[2]
	iss.Close()
	d := filepath.Join(tn.dir, "issuer-3")
	iss2, err := New(Config{DataDir: d, Identity: tn.identity[2], Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer iss2.Close()
	if ds, _ := iss2.DoubleSpends(); len(ds) != 1 {
		t.Fatal("double spend forgotten across a restart")
	}
}
