package client

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/control"
)

// accountBackend is backend with an account.
type accountBackend struct {
	*backend
	phrase string // the stored account's, "" without one
}

func (b *accountBackend) Account(context.Context) (api.Account, error) {
	if b.phrase == "" {
		return api.Account{}, nil
	}
	return api.Account{Exists: true, ID: "aWQ="}, nil
}

func (b *accountBackend) CreateAccount(context.Context) (api.AccountCreated, error) {
	if b.phrase != "" {
		return api.AccountCreated{}, &api.APIError{Code: api.CodeAccountExists, Message: "an account is already set up"}
	}
	b.phrase = "new phrase"
	return api.AccountCreated{Account: api.Account{Exists: true, ID: "aWQ="}, Phrase: b.phrase}, nil
}

func (b *accountBackend) ImportAccount(_ context.Context, phrase string) (api.Account, error) {
	b.phrase = phrase
	return api.Account{Exists: true, ID: "aWQ="}, nil
}

func (b *accountBackend) ForgetAccount(context.Context) (api.Account, error) {
	b.phrase = ""
	return api.Account{}, nil
}

func (b *accountBackend) Tickets(context.Context) (api.Tickets, error) {
	if b.phrase == "" {
		return api.Tickets{}, &api.APIError{Code: api.CodeNoAccount, Message: "no account"}
	}
	return api.Tickets{Account: true, Left: map[string]int{api.TicketFastExit: 7}}, nil
}

type allowAll struct{}

func (allowAll) AuthorizeWrite(control.PeerCred) error { return nil }

func TestAccountRoundTrips(t *testing.T) {
	path := filepath.Join(shortDir(t), "nymvpnd.sock")
	hub := control.NewHub(api.Status{State: api.State{Kind: api.Disconnected}, Settings: api.DefaultSettings()})
	ab := &accountBackend{backend: &backend{hub: hub}}
	srv, err := control.New(control.Config{Backend: ab, Hub: hub, Authorizer: allowAll{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := control.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	c := New(path)
	defer c.Close()
	if a, err := c.Account(ctx(t)); err != nil || a.Exists {
		t.Fatalf("account: %+v %v", a, err)
	}
	var ae *api.APIError
	if _, err := c.Tickets(ctx(t)); !errors.As(err, &ae) || ae.Code != api.CodeNoAccount || ae.Status != 409 {
		t.Fatalf("tickets without an account: %v", err)
	}
	created, err := c.CreateAccount(ctx(t))
	if err != nil || created.Phrase != "new phrase" || !created.Account.Exists {
		t.Fatalf("create: %+v %v", created, err)
	}
	if _, err := c.CreateAccount(ctx(t)); !errors.As(err, &ae) || ae.Code != api.CodeAccountExists {
		t.Fatalf("second create: %v", err)
	}
	if a, err := c.ForgetAccount(ctx(t)); err != nil || a.Exists || ab.phrase != "" {
		t.Fatalf("forget: %+v %v", a, err)
	}
	if a, err := c.ImportAccount(ctx(t), "imported words"); err != nil || !a.Exists || ab.phrase != "imported words" {
		t.Fatalf("import: %+v %v (backend has %q)", a, err, ab.phrase)
	}
	if tk, err := c.Tickets(ctx(t)); err != nil || tk.Left[api.TicketFastExit] != 7 {
		t.Fatalf("tickets: %+v %v", tk, err)
	}
}
