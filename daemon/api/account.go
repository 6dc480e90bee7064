package api

import "time"

// Account is the daemon's account, as GET /v1/account shows it. The
// recovery phrase is never part of it.
type Account struct {
	// Exists is false until an account is created or imported.
	Exists bool `json:"exists"`
	// ID is the account's public key (standard base64): what the issuers
	// keep its allowance under (nym-node issuer-grant --account ID).
	ID string `json:"id,omitempty"`
	// Created is when the account was created or imported on this machine.
	Created *time.Time `json:"created,omitempty"`
}

// AccountCreated is the answer of POST /v1/account: the new account and its
// recovery phrase. The daemon returns the phrase this once and never logs
// or publishes it: it is the only way to restore the account elsewhere.
type AccountCreated struct {
	Account Account `json:"account"`
	Phrase  string  `json:"phrase"`
}

// ImportRequest is the body of POST /v1/account/import.
type ImportRequest struct {
	// Phrase is the 24-word recovery phrase (case and spacing do not matter).
	Phrase string `json:"phrase"`
}

// Ticket types, as the API names them.
const (
	TicketFastEntry   = "fast-entry"
	TicketFastExit    = "fast-exit"
	TicketMixnetEntry = "mixnet-entry"
	TicketMixnetExit  = "mixnet-exit"
)

// TicketTypes are the ticket types in their order.
var TicketTypes = []string{TicketFastEntry, TicketFastExit, TicketMixnetEntry, TicketMixnetExit}

// Tickets is what the daemon's wallet holds (GET /v1/tickets, and
// Status.Tickets).
type Tickets struct {
	// Account is false when there is no account; the rest is then empty.
	Account bool `json:"account"`
	// Left counts the unspent, unexpired tickets per type (TicketTypes).
	Left map[string]int `json:"left"`
	// Books are the stored ticketbooks, soonest expiry first.
	Books []Ticketbook `json:"books,omitempty"`
	// NextExpiry is when the first book expires.
	NextExpiry *time.Time `json:"next_expiry,omitempty"`
	// Refilling lists the types whose new book is being fetched now.
	Refilling []string `json:"refilling,omitempty"`
	// RefillError says why the last fetch of a book failed (cleared by the
	// next success); RefillErrorCode is CodeNoAllowance when the issuers
	// have no allowance left for the account, else CodeUnavailable.
	RefillError     string `json:"refill_error,omitempty"`
	RefillErrorCode string `json:"refill_error_code,omitempty"`
}

// Ticketbook is one stored book.
type Ticketbook struct {
	Type      string    `json:"type"`
	Expires   time.Time `json:"expires"`
	Total     int       `json:"total"`
	Remaining int       `json:"remaining"`
}

// Error codes of the account and tickets (HTTP answers, and ErrorCode of
// the Error state).
const (
	CodeNoAccount     = "no_account"     // no account: create or import one
	CodeAccountExists = "account_exists" // another account is stored: forget it first
	CodeBadPhrase     = "bad_phrase"     // not a valid recovery phrase
	CodeNoAllowance   = "no_allowance"   // the issuers have no allowance left for the account
	CodeTicketRefused = "ticket_refused" // a gateway refused a ticket (invalid, spent, stale, ...)
	CodeTunnelActive  = "tunnel_active"  // not while connected or connecting: disconnect first
)
