// Package viewmodel decides what nymvpn-app shows: it turns what the app
// knows (the daemon's status from its event stream, the gateway list, the call
// in flight and the last call's failure) into a View — labels, colours, which
// buttons are enabled and what they do — for the window and the tray, and
// into desktop notifications on changes. It is pure: no drawing, no I/O, no
// clock of its own, so every screen's content is unit-tested without a GPU.
package viewmodel

import (
	"errors"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/client"
)

// Link is the state of the app's connection to the daemon.
type Link int

const (
	// LinkStarting: no answer from the daemon yet.
	LinkStarting Link = iota
	// LinkUp: the event stream is open and Model.Status is current.
	LinkUp
	// LinkDown: the daemon cannot be reached; Model.Problem says why.
	LinkDown
)

// Problem is why the daemon cannot be reached.
type Problem int

const (
	ProblemNone Problem = iota
	// ProblemNotRunning: no daemon listens on the socket.
	ProblemNotRunning
	// ProblemPermission: this user may not open the socket.
	ProblemPermission
	// ProblemUntrusted: the socket belongs to someone other than root or
	// this user, so the app will not talk to it.
	ProblemUntrusted
	// ProblemOther: anything else (the message says what).
	ProblemOther
)

// Classify tells why a call to the daemon failed to reach it.
func Classify(err error) Problem {
	switch {
	case err == nil:
		return ProblemNone
	case errors.Is(err, client.ErrDaemonNotRunning):
		return ProblemNotRunning
	case errors.Is(err, client.ErrPermission):
		return ProblemPermission
	case errors.Is(err, client.ErrUntrustedSocket):
		return ProblemUntrusted
	}
	return ProblemOther
}

// IntentKind names something the user asked for, in the window or the tray.
type IntentKind string

const (
	IntentConnect    IntentKind = "connect"
	IntentDisconnect IntentKind = "disconnect"
	// IntentMode, IntentEntry and IntentExit choose the mode, the entry and
	// the exit (Intent.Value: a mode, "auto", a country code or a gateway id).
	IntentMode  IntentKind = "mode"
	IntentEntry IntentKind = "entry"
	IntentExit  IntentKind = "exit"
	// IntentSetting changes the setting Intent.Key to Intent.Value (see
	// Settings).
	IntentSetting IntentKind = "setting"
	// IntentRetry tries to reach the daemon now.
	IntentRetry IntentKind = "retry"
	// IntentDismiss hides the last call's failure.
	IntentDismiss IntentKind = "dismiss"
	// IntentShowWindow and IntentQuit come from the tray.
	IntentShowWindow IntentKind = "show"
	IntentQuit       IntentKind = "quit"

	// IntentCreateAccount creates an account; its recovery phrase then
	// waits in Model.NewPhrase until IntentPhraseDone.
	IntentCreateAccount IntentKind = "create_account"
	// IntentImportAccount restores the account of the recovery phrase in
	// Intent.Secret.
	IntentImportAccount IntentKind = "import_account"
	// IntentAskForget asks to confirm forgetting the account;
	// IntentCancelForget takes the question back; IntentForgetAccount
	// forgets it.
	IntentAskForget     IntentKind = "ask_forget"
	IntentCancelForget  IntentKind = "cancel_forget"
	IntentForgetAccount IntentKind = "forget_account"
	// IntentPhraseDone: the user wrote the new recovery phrase down; the app
	// lets go of it.
	IntentPhraseDone IntentKind = "phrase_done"
)

// Intent is something the user asked for.
type Intent struct {
	Kind  IntentKind
	Key   string
	Value string
	// Secret is the recovery phrase of IntentImportAccount. The controller
	// takes it out of the intent before the intent is logged or kept (in
	// Model.Busy, Failure.Intent): it is never logged or kept in the model.
	Secret string
}

// Failure is a call to the daemon that failed.
type Failure struct {
	// Intent is what the user asked for.
	Intent Intent
	// Code is the daemon's error code (api.Code*), or "" when the daemon
	// was not reached; Message its message, or the error's text.
	Code    string
	Message string
	// Problem classifies a failure to reach the daemon.
	Problem Problem
}

// FailureOf describes err, returned by the call made for in.
func FailureOf(in Intent, err error) *Failure {
	f := &Failure{Intent: in, Message: err.Error()}
	var ae *api.APIError
	if errors.As(err, &ae) {
		f.Code, f.Message = ae.Code, ae.Message
		return f
	}
	f.Problem = Classify(err)
	return f
}

// Rate is the tunnel's throughput, in bytes per second.
type Rate struct {
	Tx, Rx float64
}

// Model is everything the app knows. The app's controller owns it; the
// window and the tray only read copies.
type Model struct {
	// OS is the operating system the fixes are written for (runtime.GOOS).
	OS string
	// Socket is the daemon's socket (or pipe) path.
	Socket string

	Link Link
	// Problem and LinkError say why the daemon cannot be reached (LinkDown).
	Problem   Problem
	LinkError string
	// NextRetry is when the app tries the daemon again (LinkDown).
	NextRetry time.Time

	// Status is the daemon's status as its event stream tells it (LinkUp;
	// kept while down so the tray can say what it was).
	Status api.Status
	// Rate is the throughput measured from the last traffic events.
	Rate Rate

	// Entries and Exits are the network's gateways by role; GatewaysLoaded
	// is set once a list arrived, GatewaysError when the last fetch failed.
	Entries, Exits []api.Gateway
	GatewaysLoaded bool
	GatewaysError  *Failure

	// Busy is the call in flight (Kind "" when none).
	Busy Intent
	// Failure is the last call's failure, until the next call or a dismiss.
	Failure *Failure

	// Account is the daemon's account (GET /v1/account: the event stream
	// carries only whether there is one, in Status.Tickets); AccountLoaded
	// is set once it arrived, AccountError when the last lookup failed
	// (api.CodeNotSupported: a daemon that keeps no account).
	Account       api.Account
	AccountLoaded bool
	AccountError  *Failure
	// NewPhrase is the recovery phrase of the account just created, kept
	// only until the user says it is written down (IntentPhraseDone).
	NewPhrase string
	// ConfirmForget is set while the app asks whether to forget the
	// account.
	ConfirmForget bool
}

// Connected reports whether the daemon is reachable and the tunnel up.
func (m *Model) Connected() bool {
	return m.Link == LinkUp && m.Status.State.Kind == api.Connected
}

// CanWrite reports whether the daemon lets this user change things.
func (m *Model) CanWrite() bool {
	return m.Status.Caller == nil || m.Status.Caller.CanWrite
}

// AccountExists reports whether the daemon has an account: what its event
// stream says (Status.Tickets), else the last lookup.
func (m *Model) AccountExists() bool {
	if t := m.Status.Tickets; t != nil {
		return t.Account
	}
	return m.AccountLoaded && m.Account.Exists
}

// Active reports whether the tunnel is up or on its way up (a choice then
// takes effect by reconnecting).
func (m *Model) Active() bool {
	k := m.Status.State.Kind
	return m.Link == LinkUp && (k == api.Connected || k == api.Connecting)
}
