package client

import (
	"context"
	"net/http"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// Account describes the daemon's account (Exists is false when there is
// none).
func (c *Client) Account(ctx context.Context) (api.Account, error) {
	var a api.Account
	err := c.do(ctx, http.MethodGet, "/v1/account", nil, &a)
	return a, err
}

// CreateAccount makes a new account and returns it with its recovery
// phrase, which the daemon gives out this once.
func (c *Client) CreateAccount(ctx context.Context) (api.AccountCreated, error) {
	var a api.AccountCreated
	err := c.do(ctx, http.MethodPost, "/v1/account", struct{}{}, &a)
	return a, err
}

// ImportAccount restores the account of a recovery phrase.
func (c *Client) ImportAccount(ctx context.Context, phrase string) (api.Account, error) {
	var a api.Account
	err := c.do(ctx, http.MethodPost, "/v1/account/import", api.ImportRequest{Phrase: phrase}, &a)
	return a, err
}

// ForgetAccount deletes the account and its tickets from the daemon.
func (c *Client) ForgetAccount(ctx context.Context) (api.Account, error) {
	var a api.Account
	err := c.do(ctx, http.MethodDelete, "/v1/account", nil, &a)
	return a, err
}

// Tickets describes the tickets the daemon holds.
func (c *Client) Tickets(ctx context.Context) (api.Tickets, error) {
	var t api.Tickets
	err := c.do(ctx, http.MethodGet, "/v1/tickets", nil, &t)
	return t, err
}
