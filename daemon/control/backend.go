package control

import (
	"context"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// Backend is what the server asks the daemon to do. The server has already
// checked the caller's right to write, decoded the request strictly and
// normalized its choices (settings.NormalizeMode, settings.NormalizeChoice);
// ctx is the request's context (cancelled when the client goes away;
// PeerCredFromContext says who asked).
//
// Methods return quickly: Connect and Disconnect start the change and
// return the state it led to (the server answers 202 Accepted); progress is
// published through the Hub, which the Backend keeps up to date (state,
// target, settings, traffic). The server never changes the Hub itself.
//
// Errors: an *api.APIError (its Status may be 0: the server derives it from
// the Code) or a *settings.FieldError (400 invalid_setting) reaches the
// caller as is, so its message must be fit for a user and free of secrets.
// Any other error is logged and answered 500 internal with a generic message.
type Backend interface {
	// Connect saves the set fields of req to the settings (publishing them)
	// and brings the tunnel up with the settings, or reconnects if it is up
	// with other choices. It returns the state it led to, typically
	// Connecting (or Connected if nothing had to change).
	Connect(ctx context.Context, req api.ConnectRequest) (api.State, error)
	// Disconnect brings the tunnel down and returns the state it led to,
	// typically Disconnecting or Disconnected.
	Disconnect(ctx context.Context) (api.State, error)
	// Gateways lists the directory's gateways; role is "", "entry" or
	// "exit", country "" or an upper-case two-letter code.
	Gateways(ctx context.Context, role, country string) ([]api.Gateway, error)
	// UpdateSettings applies p (settings.Apply), saves the result
	// (settings.Save), publishes it (Hub.SetSettings) and returns it.
	UpdateSettings(ctx context.Context, p api.SettingsPatch) (api.Settings, error)
}
