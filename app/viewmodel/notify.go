package viewmodel

import (
	"github.com/nymvpn/nymvpn/assets"
	"github.com/nymvpn/nymvpn/daemon/api"
)

// Note is a desktop notification.
type Note struct {
	Title, Body string
	// Urgent marks errors.
	Urgent bool
	// Icon is the tray icon of the state it announces (assets.TrayNames).
	Icon string
}

// Notification returns the notification a change from prev to next calls
// for, if any: connected, disconnected, an error state, a failed call, or the
// daemon going away. Nothing is announced until the daemon's first status
// arrived, so starting the app is quiet.
func Notification(prev, next Model) (Note, bool) {
	if next.Failure != nil && next.Failure != prev.Failure {
		e := ExplainFailure(next.Failure, next.OS)
		return Note{Title: e.Title, Body: join(e.Detail, e.Fix), Urgent: true, Icon: assets.TrayError}, true
	}
	if prev.Link != LinkUp {
		return Note{}, false
	}
	if next.Link == LinkDown {
		e := explainLink(next.Problem, next.LinkError, next.Socket, next.OS)
		return Note{Title: e.Title, Body: join(e.Detail, e.Fix), Urgent: true, Icon: assets.TrayNoDaemon}, true
	}
	if next.Link != LinkUp {
		return Note{}, false
	}
	was, is := prev.Status.State, next.Status.State
	switch {
	case is.Kind == api.Connected && was.Kind != api.Connected:
		body := "Your traffic goes through the VPN."
		if r := route(is); r != "" {
			body = "Your traffic goes through " + r + "."
		}
		return Note{Title: "Connected", Body: body, Icon: assets.TrayConnected}, true
	case is.Kind == api.Disconnected && was.Kind != api.Disconnected:
		return Note{Title: "Disconnected", Body: "Your traffic no longer goes through the VPN.", Icon: assets.TrayDisconnected}, true
	case is.Kind == api.Error && (was.Kind != api.Error || was.Reason != is.Reason):
		e := ExplainState(is, next.OS)
		return Note{Title: e.Title, Body: join(e.Detail, e.Fix), Urgent: true, Icon: assets.TrayError}, true
	}
	return Note{}, false
}

func join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + " " + b
}
