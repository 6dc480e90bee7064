package daemon

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/credential/wallet"
	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/tunnelstate"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/issuer"
	"github.com/nymvpn/nymvpn/registration"
)

// issuerNet is a directory listing three issuers (2 of 3), on loopback.
type issuerNet struct {
	dirURL  string
	topo    func() *directory.Topology
	issuers []*issuer.Issuer
	urls    []string
}

func startIssuers(t *testing.T) *issuerNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the daemon's sockets carry a fwmark (SO_MARK), which needs root; CI runs as root")
	}
	_, dkey, _ := ed25519.GenerateKey(nil)
	dir, err := directory.NewServer(directory.ServerConfig{Key: dkey})
	if err != nil {
		t.Fatal(err)
	}
	dsrv := httptest.NewServer(dir.Handler())
	t.Cleanup(dsrv.Close)
	n := &issuerNet{dirURL: dir.URL(dsrv.URL), topo: dir.Topology}
	dirs, err := issuer.Keygen(rand.Reader, t.TempDir(), 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range dirs {
		pub, priv, _ := ed25519.GenerateKey(nil)
		iss, err := issuer.New(issuer.Config{ID: fmt.Sprintf("issuer-%d", i+1), DataDir: d, Identity: priv, Topology: dir.Topology,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(iss.Handler())
		t.Cleanup(func() { srv.Close(); iss.Close() })
		if err := dir.Add(directory.Node{ID: fmt.Sprintf("issuer-%d", i+1), Roles: []directory.Role{directory.RoleIssuer},
			Country: "CH", IdentityKey: pub, IssuerURL: srv.URL}); err != nil {
			t.Fatal(err)
		}
		n.issuers = append(n.issuers, iss)
		n.urls = append(n.urls, srv.URL)
	}
	return n
}

func (n *issuerNet) grant(t *testing.T, id ed25519.PublicKey, tickets int64) {
	t.Helper()
	for _, iss := range n.issuers {
		if _, err := iss.AddAllowance(id, tickets); err != nil {
			t.Fatal(err)
		}
	}
}

// lockedBuffer is a log sink safe for the daemon's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runDaemonWith is runDaemon with a directory and a log.
func runDaemonWith(t *testing.T, stateDir, dirURL string, logs io.Writer) (c *http.Client, stop func()) {
	t.Helper()
	return startDaemon(t, Config{StateDir: stateDir, DirectoryURL: dirURL,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
}

// waitTickets polls GET /v1/tickets until ok accepts the answer.
func waitTickets(t *testing.T, c *http.Client, what string, ok func(api.Tickets) bool) api.Tickets {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var tk api.Tickets
		code := call(t, c, "GET", "/v1/tickets", nil, &tk)
		if code == 200 && ok(tk) {
			return tk
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: tickets %d %+v", what, code, tk)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestAccountLifecycle drives the daemon's account API against three
// issuers: create (the phrase comes back once and is logged nowhere), no
// allowance (reported with its code), forget, import with allowance (books
// fetched in the background), idempotent import, refusals with stable codes,
// persistence across a restart, and no forgetting while a tunnel is wanted.
func TestAccountLifecycle(t *testing.T) {
	n := startIssuers(t)
	state := t.TempDir()
	var logs lockedBuffer
	c, stop := runDaemonWith(t, state, n.dirURL, &logs)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})

	var a api.Account
	if code := call(t, c, "GET", "/v1/account", nil, &a); code != 200 || a.Exists {
		t.Fatalf("account before any: %d %+v", code, a)
	}
	var e api.ErrorBody
	if code := call(t, c, "GET", "/v1/tickets", nil, &e); code != 409 || e.Error.Code != api.CodeNoAccount {
		t.Fatalf("tickets without an account: %d %+v", code, e)
	}
	var st api.Status
	call(t, c, "GET", "/v1/status", nil, &st)
	if st.Tickets == nil || st.Tickets.Account || st.Tickets.Left[api.TicketFastEntry] != 0 {
		t.Fatalf("status tickets without an account: %+v", st.Tickets)
	}

	// Create: the phrase is answered once.
	var created api.AccountCreated
	if code := call(t, c, "POST", "/v1/account", struct{}{}, &created); code != 201 {
		t.Fatalf("create: %d %+v", code, created)
	}
	acct, err := wallet.AccountFromPhrase(created.Phrase)
	if err != nil || len(strings.Fields(created.Phrase)) != 24 {
		t.Fatalf("created phrase: %v", err)
	}
	id := base64.StdEncoding.EncodeToString(acct.ID())
	if !created.Account.Exists || created.Account.ID != id || created.Account.Created == nil ||
		time.Since(*created.Account.Created) > time.Minute {
		t.Fatalf("created account %+v, want id %s", created.Account, id)
	}
	if code := call(t, c, "POST", "/v1/account", struct{}{}, &e); code != 409 || e.Error.Code != api.CodeAccountExists {
		t.Fatalf("second create: %d %+v", code, e)
	}
	wdir := filepath.Join(state, "wallet")
	if m := fileMode(t, wdir); m != 0o700 {
		t.Errorf("wallet directory mode %v", m)
	}
	if m := fileMode(t, filepath.Join(wdir, "account")); m != 0o600 {
		t.Errorf("account file mode %v", m)
	}
	// The issuers do not know the account: the daemon says so.
	tk := waitTickets(t, c, "no allowance reported", func(tk api.Tickets) bool { return tk.RefillErrorCode != "" })
	if tk.RefillErrorCode != api.CodeNoAllowance || !strings.Contains(tk.RefillError, id) || !tk.Account {
		t.Fatalf("tickets of an account without allowance: %+v", tk)
	}

	// Forget, then import the phrase after the issuers gave it tickets.
	if code := call(t, c, "DELETE", "/v1/account", nil, &a); code != 200 || a.Exists {
		t.Fatalf("forget: %d %+v", code, a)
	}
	if code := call(t, c, "DELETE", "/v1/account", nil, &e); code != 409 || e.Error.Code != api.CodeNoAccount {
		t.Fatalf("second forget: %d %+v", code, e)
	}
	if _, err := os.Stat(filepath.Join(wdir, "account")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("account file after forget: %v", err)
	}
	n.grant(t, acct.ID(), 1000)
	// Word 4 misspelt (by position: its text may also stand inside an
	// earlier word).
	words := strings.Fields(created.Phrase)
	words[3] = "zzzzz"
	bad := strings.Join(words, " ")
	if code := call(t, c, "POST", "/v1/account/import", api.ImportRequest{Phrase: bad}, &e); code != 400 || e.Error.Code != api.CodeBadPhrase ||
		!strings.Contains(e.Error.Message, "word 4") {
		t.Fatalf("import of a misspelt phrase: %d %+v", code, e)
	}
	if want := describeBadPhrase(bad); e.Error.Message != want || strings.Contains(want, "zzzzz") {
		t.Errorf("refusal %q, want %q (without the misspelt word)", e.Error.Message, want)
	}
	if code := call(t, c, "POST", "/v1/account/import", api.ImportRequest{Phrase: "  " + strings.ToUpper(created.Phrase) + "\n"}, &a); code != 200 ||
		!a.Exists || a.ID != id {
		t.Fatalf("import: %d %+v", code, a)
	}
	tk = waitTickets(t, c, "books fetched after import", func(tk api.Tickets) bool {
		return tk.Left[api.TicketFastEntry] == wallet.DefaultBookSize && tk.Left[api.TicketFastExit] == wallet.DefaultBookSize
	})
	if len(tk.Books) != 2 || tk.NextExpiry == nil || !tk.NextExpiry.After(time.Now().Add(6*24*time.Hour)) || tk.RefillError != "" {
		t.Fatalf("tickets after import: %+v", tk)
	}
	books, _ := filepath.Glob(filepath.Join(wdir, "books", "*.book"))
	if len(books) != 2 {
		t.Fatalf("books on disk: %v", books)
	}
	for _, b := range books {
		if m := fileMode(t, b); m != 0o600 {
			t.Errorf("%s mode %v", b, m)
		}
	}
	// The Hub published them.
	deadline := time.Now().Add(30 * time.Second)
	for call(t, c, "GET", "/v1/status", nil, &st); st.Tickets == nil || st.Tickets.Left[api.TicketFastExit] != wallet.DefaultBookSize; call(t, c, "GET", "/v1/status", nil, &st) {
		if time.Now().After(deadline) {
			t.Fatalf("status tickets %+v", st.Tickets)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Importing the same account again changes nothing; another one is refused.
	if code := call(t, c, "POST", "/v1/account/import", api.ImportRequest{Phrase: created.Phrase}, &a); code != 200 || a.ID != id {
		t.Fatalf("import again: %d %+v", code, a)
	}
	other, _ := wallet.NewPhrase()
	if code := call(t, c, "POST", "/v1/account/import", api.ImportRequest{Phrase: other}, &e); code != 409 || e.Error.Code != api.CodeAccountExists {
		t.Fatalf("import of another account: %d %+v", code, e)
	}

	// A restart keeps the account and its tickets.
	stop()
	c, _ = runDaemonWith(t, state, n.dirURL, &logs)
	if code := call(t, c, "GET", "/v1/account", nil, &a); code != 200 || a.ID != id {
		t.Fatalf("account after restart: %d %+v", code, a)
	}
	waitTickets(t, c, "tickets after restart", func(tk api.Tickets) bool { return tk.Left[api.TicketFastEntry] == wallet.DefaultBookSize })

	// While the daemon tries to connect, the account stays.
	dead := unreachableDirectory(t)
	call(t, c, "PATCH", "/v1/settings", api.SettingsPatch{DirectoryURL: &dead}, nil)
	if code := call(t, c, "POST", "/v1/connect", api.ConnectRequest{}, nil); code != http.StatusAccepted {
		t.Fatalf("connect: %d", code)
	}
	if code := call(t, c, "DELETE", "/v1/account", nil, &e); code != 409 || e.Error.Code != api.CodeTunnelActive {
		t.Fatalf("forget while connecting: %d %+v", code, e)
	}
	call(t, c, "POST", "/v1/disconnect", struct{}{}, nil)
	deadline = time.Now().Add(30 * time.Second)
	for call(t, c, "GET", "/v1/status", nil, &st); st.State.Kind != api.Disconnected; call(t, c, "GET", "/v1/status", nil, &st) {
		if time.Now().After(deadline) {
			t.Fatalf("not disconnected: %+v", st.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := call(t, c, "DELETE", "/v1/account", nil, &a); code != 200 {
		t.Fatalf("forget: %d", code)
	}
	if books, _ := filepath.Glob(filepath.Join(wdir, "books", "*")); len(books) != 0 {
		t.Fatalf("books left after forget: %v", books)
	}

	// The phrase, or any of its words, never reached the log.
	log := logs.String()
	if leaked := phraseParts(strings.ToLower(log), created.Phrase); len(leaked) > 0 {
		t.Fatalf("the log holds parts of the phrase: %q", leaked)
	}
	for _, want := range []string{"account created", "account imported", "account forgotten", id} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
}

// TestPayFetchesMissingBooks: an attempt without an account pays nothing;
// with one, it lets the issuers through the kill switch and fetches a book
// of each type it has none of, or ends for good when the issuers give the
// account nothing.
func TestPayFetchesMissingBooks(t *testing.T) {
	n := startIssuers(t)
	a := openAccounts(t.TempDir(), 0, func() string { return n.dirURL }, slog.New(slog.DiscardHandler))
	if a.openErr != nil {
		t.Fatal(a.openErr)
	}
	ctx := context.Background()
	var allowed []tunnelstate.Endpoint
	allow := func(_ context.Context, eps ...tunnelstate.Endpoint) error {
		allowed = append(allowed, eps...)
		return nil
	}
	stages := 0
	progress := func() { stages++ }

	p, err := a.pay(ctx, n.topo(), progress, allow)
	if err != nil || p.ticket != nil || len(allowed) != 0 || stages != 0 {
		t.Fatalf("without an account: %v, ticket %v, allowed %v", err, p.ticket != nil, allowed)
	}
	if _, err := a.w.CreateAccount(); err != nil {
		t.Fatal(err)
	}
	_, err = a.pay(ctx, n.topo(), progress, allow)
	var perm *tunnelstate.PermanentError
	if !errors.As(err, &perm) || perm.Code != api.CodeNoAllowance || !strings.Contains(err.Error(), "ran out") {
		t.Fatalf("without allowance: %v", err)
	}
	var want []tunnelstate.Endpoint
	for _, u := range n.urls {
		ep, err := urlEndpoint(u)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, ep)
	}
	if stages != 1 || !slices.Equal(allowed, want) {
		t.Fatalf("allowed %v after %d stages, want the issuers %v", allowed, stages, want)
	}
	n.grant(t, a.w.Account().ID(), 200)
	allowed = nil
	p, err = a.pay(ctx, n.topo(), progress, allow)
	if err != nil || p.ticket == nil || !slices.Equal(allowed, want) {
		t.Fatalf("with allowance: %v, allowed %v", err, allowed)
	}
	if c := a.w.Counts(); c[credential.FastEntry] != wallet.DefaultBookSize || c[credential.FastExit] != wallet.DefaultBookSize {
		t.Fatalf("counts %v", c)
	}
	// Books in stock: nothing to fetch, nothing let through.
	allowed = nil
	if p, err = a.pay(ctx, n.topo(), progress, allow); err != nil || p.ticket == nil || len(allowed) != 0 {
		t.Fatalf("with books: %v, allowed %v", err, allowed)
	}
	gw := directory.Node{ID: "gw", NoiseKey: directory.Key32{7}}
	if tk, err := p.ticket(ctx, registration.RoleExit, gw); err != nil || len(tk) == 0 {
		t.Fatalf("ticket: %v", err)
	}
	if c := a.w.Counts()[credential.FastExit]; c != wallet.DefaultBookSize-1 {
		t.Fatalf("fast-exit left %d after a spend", c)
	}
}

func TestPaymentClassify(t *testing.T) {
	withAccount := &payment{ticket: func(context.Context, string, directory.Node) ([]byte, error) { return nil, nil }}
	without := &payment{}
	wrap := func(code string) error {
		return fmt.Errorf("fast: register with entry gateway gw: %w", registration.Errorf(code, "refused"))
	}
	for _, c := range []struct {
		name string
		p    *payment
		err  error
		code string // "" retries
		msg  string
	}{
		{"payment required without an account", without, wrap(registration.CodePaymentRequired), api.CodeNoAccount, "nymvpn account create"},
		{"payment required with an account", withAccount, wrap(registration.CodePaymentRequired), api.CodeUnavailable, "wants payment"},
		{"spent", withAccount, wrap(registration.CodeTicketSpent), api.CodeTicketRefused, "refused a ticket"},
		{"stale", withAccount, wrap(registration.CodeTicketStale), api.CodeTicketRefused, "clock"},
		{"wrong type", withAccount, wrap(registration.CodeTicketWrongType), api.CodeTicketRefused, "ticket_wrong_type"},
		{"no account", withAccount, fmt.Errorf("fast: ticket: %w", wallet.ErrNoAccount), api.CodeNoAccount, "nymvpn account import"},
		{"no allowance", withAccount, fmt.Errorf("fast: ticket: %w", &issuer.APIError{Code: issuer.CodeNoAllowance, Message: "none left"}), api.CodeNoAllowance, "ran out"},
		{"payment unavailable", withAccount, wrap(registration.CodePaymentUnavailable), "", ""},
		{"pool exhausted", withAccount, wrap(registration.CodePoolExhausted), "", ""},
		{"network", withAccount, errors.New("connection refused"), "", ""},
	} {
		got := c.p.classify(c.err)
		if c.code == "" {
			if got != nil {
				t.Errorf("%s: %v, want a retry", c.name, got)
			}
			continue
		}
		var perm *tunnelstate.PermanentError
		if !errors.As(got, &perm) || perm.Code != c.code || !strings.Contains(got.Error(), c.msg) {
			t.Errorf("%s: %v, want permanent %s with %q", c.name, got, c.code, c.msg)
		}
	}
}

func TestDescribeBadPhrase(t *testing.T) {
	phrase, _ := wallet.NewPhrase()
	words := strings.Fields(phrase)
	for _, c := range []struct{ in, want string }{
		{"one two three", "it has 3 words"},
		{strings.Join(append(slices.Clone(words[:23]), "qqqq"), " "), "word 24 is not in the BIP39"},
		{strings.Join(append(slices.Clone(words[1:]), words[0]), " "), "checksum"},
	} {
		got := describeBadPhrase(c.in)
		if !strings.Contains(got, c.want) {
			t.Errorf("%q: %q, want %q", c.in, got, c.want)
		}
		if leaked := phraseParts(got, c.in); len(leaked) > 0 || strings.Contains(got, "qqqq") {
			t.Errorf("the description repeats the phrase: %q", got)
		}
	}
}

// phraseParts returns the pairs of consecutive words of phrase that s
// holds: a phrase (or a piece of one) that leaked, while single words may
// be ordinary English.
func phraseParts(s, phrase string) []string {
	w := strings.Fields(phrase)
	var out []string
	for i := 0; i+1 < len(w); i++ {
		if p := w[i] + " " + w[i+1]; strings.Contains(s, p) {
			out = append(out, p)
		}
	}
	return out
}

func TestURLEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8090":      "127.0.0.1:8090",
		"https://[2001:db8::1]/v1":   "[2001:db8::1]:443",
		"http://192.0.2.7/issuer":    "192.0.2.7:80",
		"http://issuer.example:8090": "",
	} {
		ep, err := urlEndpoint(in)
		if want == "" {
			if err == nil {
				t.Errorf("%s: %v, want an error", in, ep)
			}
			continue
		}
		if err != nil || ep.Proto != "tcp" || ep.Addr.String() != want {
			t.Errorf("%s: %v %v, want tcp %s", in, ep, err, want)
		}
	}
}

// TestWalletDialFollowsKillSwitch: around the tunnel the wallet dials only
// where the kill switch lets it, and fails at once elsewhere.
func TestWalletDialFollowsKillSwitch(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("marked sockets (SO_MARK) need root; CI runs as root")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	n := &walletNet{mark: 51820}
	fw := (&accounts{net: n}).watch(&recordingFirewall{})
	dial := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := n.dial(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("before any rules: %v", err)
	}
	ctx := context.Background()
	fw.Protect(ctx, tunnelstate.Protection{Block: true})
	start := time.Now()
	if err := dial(); !errors.Is(err, errBlocked) || time.Since(start) > time.Second {
		t.Fatalf("blocked: %v after %v", err, time.Since(start))
	}
	ep, _ := urlEndpoint("http://" + addr)
	fw.Protect(ctx, tunnelstate.Protection{Block: true, Endpoints: []tunnelstate.Endpoint{{Proto: "udp", Addr: ep.Addr}}})
	if err := dial(); !errors.Is(err, errBlocked) {
		t.Fatalf("only UDP allowed: %v", err)
	}
	fw.Protect(ctx, tunnelstate.Protection{Block: true, Endpoints: []tunnelstate.Endpoint{ep}})
	if err := dial(); err != nil {
		t.Fatalf("allowed: %v", err)
	}
	fw.Protect(ctx, tunnelstate.Protection{Block: true})
	n.viaTunnel.Store(true)
	if err := dial(); err != nil {
		t.Fatalf("through the tunnel: %v", err)
	}
	if (&accounts{net: n}).watch(nil) != nil {
		t.Fatal("no firewall became one")
	}
}
