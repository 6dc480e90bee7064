package control

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
)

const testPhrase = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon " +
	"abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art"

// accountFake is a fakeBackend with an account.
type accountFake struct {
	*fakeBackend
	amu     sync.Mutex
	account *api.Account
	imports []string
}

func (b *accountFake) Account(ctx context.Context) (api.Account, error) {
	if err := b.record(ctx); err != nil {
		return api.Account{}, err
	}
	b.amu.Lock()
	defer b.amu.Unlock()
	if b.account == nil {
		return api.Account{}, nil
	}
	return *b.account, nil
}

func (b *accountFake) CreateAccount(ctx context.Context) (api.AccountCreated, error) {
	if err := b.record(ctx); err != nil {
		return api.AccountCreated{}, err
	}
	b.amu.Lock()
	defer b.amu.Unlock()
	if b.account != nil {
		return api.AccountCreated{}, &api.APIError{Code: api.CodeAccountExists, Message: "an account is already set up"}
	}
	now := time.Now().UTC()
	b.account = &api.Account{Exists: true, ID: "bmV3", Created: &now}
	return api.AccountCreated{Account: *b.account, Phrase: testPhrase}, nil
}

func (b *accountFake) ImportAccount(ctx context.Context, phrase string) (api.Account, error) {
	if err := b.record(ctx); err != nil {
		return api.Account{}, err
	}
	b.amu.Lock()
	defer b.amu.Unlock()
	b.imports = append(b.imports, phrase)
	if len(strings.Fields(phrase)) != 24 {
		return api.Account{}, &api.APIError{Code: api.CodeBadPhrase, Message: "that is not a recovery phrase"}
	}
	now := time.Now().UTC()
	b.account = &api.Account{Exists: true, ID: "aW1wb3J0ZWQ=", Created: &now}
	return *b.account, nil
}

func (b *accountFake) ForgetAccount(ctx context.Context) (api.Account, error) {
	if err := b.record(ctx); err != nil {
		return api.Account{}, err
	}
	b.amu.Lock()
	defer b.amu.Unlock()
	if b.account == nil {
		return api.Account{}, &api.APIError{Code: api.CodeNoAccount, Message: "there is no account"}
	}
	b.account = nil
	return api.Account{}, nil
}

func (b *accountFake) Tickets(ctx context.Context) (api.Tickets, error) {
	if err := b.record(ctx); err != nil {
		return api.Tickets{}, err
	}
	b.amu.Lock()
	defer b.amu.Unlock()
	if b.account == nil {
		return api.Tickets{}, &api.APIError{Code: api.CodeNoAccount, Message: "there is no account"}
	}
	return api.Tickets{Account: true, Left: map[string]int{api.TicketFastEntry: 49, api.TicketFastExit: 50}}, nil
}

// startAccountServer serves an accountFake; the server's log goes to logs.
func startAccountServer(t *testing.T, authz Authorizer, logs *bytes.Buffer) (*testServer, *accountFake) {
	t.Helper()
	ts := &testServer{path: filepath.Join(socketDir(t), "nymvpnd.sock"), served: make(chan error, 1)}
	ts.hub = NewHub(initialStatus())
	ts.backend = &fakeBackend{hub: ts.hub}
	fake := &accountFake{fakeBackend: ts.backend}
	if authz == nil {
		authz = allowAll{}
	}
	srv, err := New(Config{Backend: fake, Hub: ts.hub, Authorizer: authz,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ts.srv = srv
	ln, err := Listen(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	go func() { ts.served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-ts.served
	})
	return ts, fake
}

type allowAll struct{}

func (allowAll) AuthorizeWrite(PeerCred) error { return nil }

type denyAll struct{}

func (denyAll) AuthorizeWrite(PeerCred) error {
	return errors.New("you may only read: join the nymvpn group")
}

func TestAccountRoutes(t *testing.T) {
	var logs bytes.Buffer
	ts, fake := startAccountServer(t, nil, &logs)
	if a := decodeBody[api.Account](t, ts.do(t, "GET", "/v1/account", ""), 200); a.Exists {
		t.Fatalf("account before any: %+v", a)
	}
	wantError(t, ts.do(t, "GET", "/v1/tickets", ""), http.StatusConflict, api.CodeNoAccount)
	wantError(t, ts.do(t, "DELETE", "/v1/account", ""), http.StatusConflict, api.CodeNoAccount)

	created := decodeBody[api.AccountCreated](t, ts.do(t, "POST", "/v1/account", ""), http.StatusCreated)
	if created.Phrase != testPhrase || !created.Account.Exists || created.Account.ID == "" {
		t.Fatalf("created %+v", created)
	}
	if r := ts.do(t, "POST", "/v1/account", "{}"); r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", r.header.Get("Cache-Control"))
	} else {
		wantError(t, r, http.StatusConflict, api.CodeAccountExists)
	}
	wantError(t, ts.do(t, "POST", "/v1/account", `{"phrase":"x"}`), 400, api.CodeBadRequest, "unknown field")
	tk := decodeBody[api.Tickets](t, ts.do(t, "GET", "/v1/tickets", ""), 200)
	if !tk.Account || tk.Left[api.TicketFastEntry] != 49 {
		t.Fatalf("tickets %+v", tk)
	}
	decodeBody[api.Account](t, ts.do(t, "DELETE", "/v1/account", ""), 200)

	// Import: the phrase in the body, strictly decoded.
	wantError(t, ts.do(t, "POST", "/v1/account/import", ""), 400, api.CodeBadRequest, "empty")
	wantError(t, ts.do(t, "POST", "/v1/account/import", `{}`), 400, api.CodeBadPhrase)
	wantError(t, ts.do(t, "POST", "/v1/account/import", `{"phrase":"one two"}`), 400, api.CodeBadPhrase)
	wantError(t, ts.do(t, "POST", "/v1/account/import", `{"phrase":"`+testPhrase+`","x":1}`), 400, api.CodeBadRequest)
	wantError(t, ts.do(t, "GET", "/v1/account/import", ""), 405, api.CodeMethodNotAllowed)
	a := decodeBody[api.Account](t, ts.do(t, "POST", "/v1/account/import", `{"phrase":"`+testPhrase+`"}`), 200)
	if !a.Exists || a.ID != "aW1wb3J0ZWQ=" {
		t.Fatalf("imported %+v", a)
	}
	fake.amu.Lock()
	if n := len(fake.imports); n != 2 || fake.imports[1] != testPhrase {
		t.Errorf("backend imports %q", fake.imports)
	}
	fake.amu.Unlock()

	// Neither the phrase nor a word of it reaches the log.
	if strings.Contains(logs.String(), "abandon") {
		t.Fatalf("the recovery phrase reached the log:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "control: import account") || !strings.Contains(logs.String(), "control: create account") {
		t.Errorf("account changes are not logged:\n%s", logs.String())
	}
}

func TestAccountWritesNeedTheRight(t *testing.T) {
	var logs bytes.Buffer
	ts, fake := startAccountServer(t, denyAll{}, &logs)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/account", ""},
		{"POST", "/v1/account/import", `{"phrase":"` + testPhrase + `"}`},
		{"DELETE", "/v1/account", ""},
	} {
		wantError(t, ts.do(t, c.method, c.path, c.body), 403, api.CodeForbidden, "nymvpn group")
	}
	fake.amu.Lock()
	if fake.account != nil || len(fake.imports) != 0 {
		t.Fatalf("a refused write reached the backend: %+v %q", fake.account, fake.imports)
	}
	fake.amu.Unlock()
	// Reading is for everyone.
	decodeBody[api.Account](t, ts.do(t, "GET", "/v1/account", ""), 200)
	wantError(t, ts.do(t, "GET", "/v1/tickets", ""), http.StatusConflict, api.CodeNoAccount)
}

func TestAccountRoutesWithoutAccountBackend(t *testing.T) {
	ts := startServer(t, Config{})
	wantError(t, ts.do(t, "GET", "/v1/account", ""), http.StatusNotImplemented, api.CodeNotSupported)
	wantError(t, ts.do(t, "GET", "/v1/tickets", ""), http.StatusNotImplemented, api.CodeNotSupported)
	wantError(t, ts.do(t, "POST", "/v1/account", ""), http.StatusNotImplemented, api.CodeNotSupported)
}

func TestHubTickets(t *testing.T) {
	h := NewHub(initialStatus())
	_, events, cancel := h.Subscribe(8)
	defer cancel()
	left := map[string]int{api.TicketFastEntry: 50}
	h.SetTickets(api.Tickets{Account: true, Left: left})
	left[api.TicketFastEntry] = 1 // the Hub keeps its own copy
	h.SetTickets(api.Tickets{Account: true, Left: map[string]int{api.TicketFastEntry: 50}})
	h.SetTickets(api.Tickets{Account: true, Left: map[string]int{api.TicketFastEntry: 49}})
	var got []int
	for range 2 {
		select {
		case e := <-events:
			if e.Tickets == nil {
				t.Fatalf("event without tickets: %+v", e)
			}
			got = append(got, e.Tickets.Left[api.TicketFastEntry])
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
	}
	select {
	case e := <-events:
		t.Fatalf("unexpected event %+v", e)
	default:
	}
	if got[0] != 50 || got[1] != 49 {
		t.Fatalf("published %v, want [50 49]", got)
	}
	if st := h.Status(); st.Tickets == nil || st.Tickets.Left[api.TicketFastEntry] != 49 {
		t.Fatalf("status tickets %+v", st.Tickets)
	}
}
