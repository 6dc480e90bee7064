// Package api holds the wire types of nymvpnd's control API, shared by the
// daemon (daemon/control), its Go client (daemon/client), the CLI and the app.
//
// The API is HTTP/1.1 with JSON bodies over a Unix socket (a named pipe on
// Windows), on versioned paths:
//
//	GET   /v1/status            Status (with Mixnet's statistics while connected in mixnet mode)
//	GET   /v1/events            newline-delimited Event: the full Status first, then every change
//	POST  /v1/connect           ConnectRequest → State (202: accepted, watch events for progress)
//	POST  /v1/disconnect        → State (202)
//	GET   /v1/gateways?role=entry|exit&country=CC → []Gateway
//	GET   /v1/settings          Settings
//	PATCH /v1/settings          SettingsPatch → Settings
//	GET   /v1/account           Account (exists, id, created; never the phrase)
//	POST  /v1/account           → AccountCreated (201): the new account and its recovery phrase, this once
//	POST  /v1/account/import    ImportRequest → Account
//	DELETE /v1/account          → Account: forgets the account and its tickets (not while connected)
//	GET   /v1/tickets           Tickets: left per type, books, next expiry, refilling
//
// POST, PATCH and DELETE need the right to write (root, the nymvpn group or
// the operator); everyone may read. Account errors: no_account,
// account_exists, bad_phrase, tunnel_active; a connection that cannot pay
// ends in the Error state with no_account, no_allowance or ticket_refused.
//
// Every error is an ErrorBody with a stable Code and a human Message.
package api

import (
	"fmt"
	"net/netip"
	"time"
)

// StateKind names a state of the tunnel state machine.
type StateKind string

// The states of the tunnel, after Mullvad's state machine.
const (
	Disconnected  StateKind = "disconnected"
	Connecting    StateKind = "connecting"
	Connected     StateKind = "connected"
	Disconnecting StateKind = "disconnecting"
	Error         StateKind = "error"
	Offline       StateKind = "offline"
)

// State is the tunnel's state. Fields beyond Kind are set only in the states
// whose comment names them.
type State struct {
	Kind StateKind `json:"state"`
	// Mode is the tunnel mode of Connecting, Connected, Disconnecting, Error.
	Mode string `json:"mode,omitempty"`
	// Stage and Attempt (from 1) describe Connecting.
	Stage   string `json:"stage,omitempty"`
	Attempt int    `json:"attempt,omitempty"`
	// Since is when Connected began.
	Since *time.Time `json:"since,omitempty"`
	// Entry and Exit are the gateways of Connected (and of Connecting once chosen).
	Entry *Gateway `json:"entry,omitempty"`
	Exit  *Gateway `json:"exit,omitempty"`
	// Addresses are the client's addresses inside the tunnel, DNS the
	// resolvers in use (Connected).
	Addresses []netip.Addr `json:"addresses,omitempty"`
	DNS       []netip.Addr `json:"dns,omitempty"`
	Interface string       `json:"interface,omitempty"`
	// Then is the state Disconnecting leads to (disconnected, connecting).
	Then StateKind `json:"then,omitempty"`
	// Reason (Error, Offline, and Connecting after a failed attempt) says
	// what went wrong in plain words; ErrorCode is stable for programs.
	Reason    string `json:"reason,omitempty"`
	ErrorCode string `json:"error_code,omitempty"`
	// Retrying is set in Connecting while the daemon waits to retry after a
	// failed attempt (Reason says why it failed); NextAttempt says when.
	// Error is only for failures retrying cannot fix.
	Retrying    bool       `json:"retrying,omitempty"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
}

// Gateway is a gateway as the API shows it.
type Gateway struct {
	ID      string   `json:"id"`
	Country string   `json:"country,omitempty"`
	Roles   []string `json:"roles,omitempty"` // "entry", "exit"
	// Endpoint is the gateway's WireGuard endpoint (host:port).
	Endpoint string `json:"endpoint,omitempty"`
}

// Traffic counts bytes through the tunnel since Connected.
type Traffic struct {
	TxBytes       int64      `json:"tx_bytes"`
	RxBytes       int64      `json:"rx_bytes"`
	LastHandshake *time.Time `json:"last_handshake,omitempty"`
}

// DaemonInfo describes the running daemon.
type DaemonInfo struct {
	Version string `json:"version"`
	PID     int    `json:"pid"`
}

// Caller is what the daemon knows of the client on the other end of the
// socket, so a client can tell a user what they may do.
type Caller struct {
	// UID is the caller's user id on Unix, -1 on Windows.
	UID      int  `json:"uid"`
	CanWrite bool `json:"can_write"`
	// SID is the caller's security identifier on Windows.
	SID string `json:"sid,omitempty"`
}

// Status is the daemon's full state as one document.
type Status struct {
	State    State      `json:"state"`
	Target   string     `json:"target"` // "connected" or "disconnected": what the user asked for
	Settings Settings   `json:"settings"`
	Traffic  *Traffic   `json:"traffic,omitempty"`
	Daemon   DaemonInfo `json:"daemon"`
	Caller   *Caller    `json:"caller,omitempty"`
	// Notices are things the user should know that are not errors of the
	// tunnel, e.g. that a corrupt settings file was moved aside.
	Notices []string `json:"notices,omitempty"`
	// Tickets is the wallet's content (nil from a daemon without one).
	Tickets *Tickets `json:"tickets,omitempty"`
	// Mixnet is the tunnel's mixnet statistics, while Connected in mixnet
	// mode (nil otherwise).
	Mixnet *MixnetStats `json:"mixnet,omitempty"`
}

// Event is one line of GET /v1/events. The first event carries Status; each
// later one carries what changed (State, Settings, Traffic, Target, Tickets
// or Mixnet). Seq counts up from 1 per stream. Status.Apply folds an event
// into a Status.
type Event struct {
	Seq      uint64    `json:"seq"`
	Status   *Status   `json:"status,omitempty"`
	State    *State    `json:"state,omitempty"`
	Settings *Settings `json:"settings,omitempty"`
	Traffic  *Traffic  `json:"traffic,omitempty"`
	// Target is set when what the user asked for changed.
	Target string `json:"target,omitempty"`
	// Tickets is set when the wallet's content changed.
	Tickets *Tickets `json:"tickets,omitempty"`
	// Mixnet is set when the mixnet statistics changed (at most about once
	// a second); an all-zero one means there are none any more (the
	// tunnel went down).
	Mixnet *MixnetStats `json:"mixnet,omitempty"`
}

// Modes.
const (
	ModeFast   = "fast"
	ModeMixnet = "mixnet"
)

// Privacy profiles of mixnet mode (package modes/mixnet has their numbers).
const (
	// ProfileMax is NymVPN's defaults: 15 ms mean delay per mix, a Poisson
	// stream of a packet every 20 ms (cover when idle), loop cover every
	// 200 ms.
	ProfileMax = "max"
	// ProfileFast: 1 ms mean per mix, packets sent as they come, loop
	// cover every second.
	ProfileFast = "fast"
)

// Settings are the user's persisted choices.
type Settings struct {
	// Mode is ModeFast or ModeMixnet.
	Mode string `json:"mode"`
	// PrivacyProfile is mixnet mode's trade of speed for privacy:
	// ProfileMax or ProfileFast (docs/architecture.md says what each
	// costs in anonymity).
	PrivacyProfile string `json:"privacy_profile"`
	// Entry and Exit choose gateways: "auto", a two-letter country code, or
	// a gateway id.
	Entry string `json:"entry"`
	Exit  string `json:"exit"`
	// DNS servers to use inside the tunnel; empty uses the exit gateway's
	// resolver.
	DNS []netip.Addr `json:"dns,omitempty"`
	// IPv6 carries IPv6 through the tunnel; when off, IPv6 is blackholed
	// while connected.
	IPv6 bool `json:"ipv6"`
	// AutoConnect connects when the daemon starts.
	AutoConnect bool `json:"auto_connect"`
	// KillSwitch blocks all traffic outside the tunnel in every state but
	// a user's Disconnected: while connecting, reconnecting, in Error and
	// Offline.
	KillSwitch bool `json:"kill_switch"`
	// Lockdown blocks all traffic outside the tunnel even when the user
	// disconnected.
	Lockdown bool `json:"lockdown"`
	// AllowLAN lets traffic to and from private and link-local networks
	// through while blocking (DNS excepted).
	AllowLAN bool `json:"allow_lan"`
	// DirectoryURL is the network directory with its pinned key (?key=).
	DirectoryURL string `json:"directory_url"`
}

// DefaultSettings are the settings of a fresh install.
func DefaultSettings() Settings {
	return Settings{Mode: ModeFast, PrivacyProfile: ProfileMax, Entry: "auto", Exit: "auto", IPv6: true, KillSwitch: true}
}

// SettingsPatch changes the settings whose fields are set.
type SettingsPatch struct {
	Mode           *string       `json:"mode,omitempty"`
	PrivacyProfile *string       `json:"privacy_profile,omitempty"`
	Entry          *string       `json:"entry,omitempty"`
	Exit           *string       `json:"exit,omitempty"`
	DNS            *[]netip.Addr `json:"dns,omitempty"`
	IPv6           *bool         `json:"ipv6,omitempty"`
	AutoConnect    *bool         `json:"auto_connect,omitempty"`
	KillSwitch     *bool         `json:"kill_switch,omitempty"`
	Lockdown       *bool         `json:"lockdown,omitempty"`
	AllowLAN       *bool         `json:"allow_lan,omitempty"`
	DirectoryURL   *string       `json:"directory_url,omitempty"`
}

// ConnectRequest asks the daemon to connect. Set fields are saved to the
// settings first, so the choice sticks for later connects and reconnects.
type ConnectRequest struct {
	Mode           string `json:"mode,omitempty"`
	PrivacyProfile string `json:"privacy_profile,omitempty"`
	Entry          string `json:"entry,omitempty"`
	Exit           string `json:"exit,omitempty"`
}

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Error ErrorInfo `json:"error"`
}

// ErrorInfo is an error with a stable code.
type ErrorInfo struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Stable error codes.
const (
	CodeBadRequest       = "bad_request"        // malformed JSON, unknown fields, bad query
	CodeInvalidSetting   = "invalid_setting"    // a setting's value is not allowed
	CodeForbidden        = "forbidden"          // the caller may only read
	CodeOriginRefused    = "origin_refused"     // a browser sent the request
	CodeNotFound         = "not_found"          // no such path
	CodeMethodNotAllowed = "method_not_allowed" // wrong method for the path
	CodeUnavailable      = "unavailable"        // e.g. the directory cannot be reached
	CodeNoDirectory      = "no_directory"       // no directory URL is configured
	CodeNotSupported     = "not_supported"      // e.g. a mode this build cannot run yet
	CodeInternal         = "internal"
)

// APIError is an error returned by the daemon, as the client sees it.
type APIError struct {
	Status  int // HTTP status
	Code    string
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}
