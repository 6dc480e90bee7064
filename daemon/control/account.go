package control

import (
	"context"
	"maps"
	"net/http"
	"reflect"
	"slices"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// AccountBackend is what the server asks of a Backend that holds an account
// and its tickets (the daemon's wallet). A Backend that does not implement
// it answers the account routes with 501 not_supported.
//
// The recovery phrase passes through CreateAccount's answer and
// ImportAccount's argument only: neither the server nor the Backend may log
// or publish it, and errors must not contain it.
type AccountBackend interface {
	// Account describes the account (Exists false when there is none).
	Account(ctx context.Context) (api.Account, error)
	// CreateAccount makes a new account and returns it with its recovery
	// phrase; account_exists if one is stored.
	CreateAccount(ctx context.Context) (api.AccountCreated, error)
	// ImportAccount restores the account of a recovery phrase: bad_phrase
	// if it is not one, account_exists if another account is stored.
	ImportAccount(ctx context.Context, phrase string) (api.Account, error)
	// ForgetAccount deletes the account and its tickets: no_account if
	// there is none, tunnel_active while connected or connecting.
	ForgetAccount(ctx context.Context) (api.Account, error)
	// Tickets describes the wallet's tickets; no_account without an
	// account.
	Tickets(ctx context.Context) (api.Tickets, error)
}

// accountRoutes are the routes of the account and tickets.
func (s *Server) accountRoutes() map[string]map[string]route {
	return map[string]map[string]route{
		"/v1/account": {
			http.MethodGet:    {handle: s.getAccount},
			http.MethodPost:   {write: true, handle: s.postAccount},
			http.MethodDelete: {write: true, handle: s.deleteAccount},
		},
		"/v1/account/import": {http.MethodPost: {write: true, handle: s.postAccountImport}},
		"/v1/tickets":        {http.MethodGet: {handle: s.getTickets}},
	}
}

// accounts returns the Backend's AccountBackend, or answers 501.
func (s *Server) accounts(w http.ResponseWriter, r *http.Request) (AccountBackend, bool) {
	ab, ok := s.backend.(AccountBackend)
	if !ok {
		s.fail(w, r, &api.APIError{Code: api.CodeNotSupported, Message: "this daemon keeps no account"})
	}
	return ab, ok
}

func (s *Server) getAccount(w http.ResponseWriter, r *http.Request, _ PeerCred) {
	ab, ok := s.accounts(w, r)
	if !ok {
		return
	}
	a, err := ab.Account(r.Context())
	s.answer(w, r, http.StatusOK, a, err)
}

func (s *Server) postAccount(w http.ResponseWriter, r *http.Request, cred PeerCred) {
	ab, ok := s.accounts(w, r)
	if !ok {
		return
	}
	var req struct{}
	if err := s.decode(w, r, &req, true); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("control: create account", credAttrs(cred)...)
	created, err := ab.CreateAccount(r.Context())
	s.answer(w, r, http.StatusCreated, created, err)
}

func (s *Server) postAccountImport(w http.ResponseWriter, r *http.Request, cred PeerCred) {
	ab, ok := s.accounts(w, r)
	if !ok {
		return
	}
	var req api.ImportRequest
	if err := s.decode(w, r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Phrase == "" {
		s.fail(w, r, &api.APIError{Code: api.CodeBadPhrase, Message: "no recovery phrase given"})
		return
	}
	s.log.Info("control: import account", credAttrs(cred)...)
	a, err := ab.ImportAccount(r.Context(), req.Phrase)
	s.answer(w, r, http.StatusOK, a, err)
}

func (s *Server) deleteAccount(w http.ResponseWriter, r *http.Request, cred PeerCred) {
	ab, ok := s.accounts(w, r)
	if !ok {
		return
	}
	var req struct{}
	if err := s.decode(w, r, &req, true); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("control: forget account", credAttrs(cred)...)
	a, err := ab.ForgetAccount(r.Context())
	s.answer(w, r, http.StatusOK, a, err)
}

func (s *Server) getTickets(w http.ResponseWriter, r *http.Request, _ PeerCred) {
	ab, ok := s.accounts(w, r)
	if !ok {
		return
	}
	t, err := ab.Tickets(r.Context())
	s.answer(w, r, http.StatusOK, t, err)
}

// accountStatus is the HTTP status of the account's error codes.
func accountStatus(code string) (int, bool) {
	switch code {
	case api.CodeNoAccount, api.CodeAccountExists, api.CodeTunnelActive:
		return http.StatusConflict, true
	case api.CodeBadPhrase:
		return http.StatusBadRequest, true
	case api.CodeNoAllowance:
		return http.StatusPaymentRequired, true
	case api.CodeTicketRefused:
		return http.StatusBadGateway, true
	}
	return 0, false
}

// SetTickets publishes the wallet's content.
func (h *Hub) SetTickets(t api.Tickets) {
	c := cloneTickets(&t)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.st.Tickets != nil && reflect.DeepEqual(*h.st.Tickets, *c) {
		return
	}
	h.st.Tickets = c
	h.publish(api.Event{Tickets: cloneTickets(c)})
}

func cloneTickets(t *api.Tickets) *api.Tickets {
	if t == nil {
		return nil
	}
	c := *t
	c.Left = maps.Clone(t.Left)
	c.Books = slices.Clone(t.Books)
	c.Refilling = slices.Clone(t.Refilling)
	if t.NextExpiry != nil {
		e := *t.NextExpiry
		c.NextExpiry = &e
	}
	return &c
}

// answer replies with v and status, or with err when there is one.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.reply(w, r, status, v)
}
