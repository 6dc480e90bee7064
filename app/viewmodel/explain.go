package viewmodel

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// Explanation is a failure in plain words: what happened and what to do.
type Explanation struct {
	Title  string
	Detail string
	Fix    string
	// Open is the page where the user can fix it (PageMain: none).
	Open Page
}

// joinGroup says how a user gets the right to change the VPN.
func joinGroup(os string) string {
	if os == "windows" {
		return "Ask an administrator to run the app's service with you as its operator, or run the app as an administrator."
	}
	return "Ask your administrator to add you to the nymvpn group (sudo usermod -aG nymvpn $USER), then log out and back in."
}

// serviceLog says where the daemon's log is.
func serviceLog(os string) string {
	switch os {
	case "windows":
		return "the Windows Event Viewer (Application log, source nymvpnd)"
	case "darwin":
		return "/var/log/nymvpnd.log"
	}
	return "journalctl -u nymvpnd"
}

// ExplainFailure puts a failed call in plain words.
func ExplainFailure(f *Failure, os string) Explanation {
	if f.Code == "" {
		e := explainLink(f.Problem, f.Message, "", os)
		return Explanation{Title: e.Title, Detail: e.Detail, Fix: e.Fix}
	}
	what := map[IntentKind]string{
		IntentConnect: "connect", IntentDisconnect: "disconnect", IntentMode: "change the mode",
		IntentEntry: "change the entry", IntentExit: "change the exit", IntentSetting: "change the setting",
		IntentCreateAccount: "create the account", IntentImportAccount: "import the account", IntentForgetAccount: "forget the account",
	}[f.Intent.Kind]
	if what == "" {
		what = "do that"
	}
	if e, ok := explainAccountFailure(f, os); ok {
		return e
	}
	switch f.Code {
	case api.CodeNotSupported:
		if f.Intent.Kind == IntentMode && f.Intent.Value == api.ModeMixnet || strings.Contains(f.Message, "mixnet") {
			return Explanation{Title: "Mixnet mode isn't available yet",
				Detail: "This version of the VPN service can only connect in Fast mode.",
				Fix:    "Switch to Fast mode and connect again."}
		}
		return Explanation{Title: "Not available in this version", Detail: sentence(f.Message),
			Fix: "Update the VPN service, or choose something else."}
	case api.CodeForbidden:
		return Explanation{Title: "You may not change the VPN",
			Detail: "You can see the VPN's state, but only the administrator and members of the nymvpn group may connect, disconnect, change settings or the account.",
			Fix:    joinGroup(os)}
	case api.CodeNoDirectory:
		return Explanation{Title: "No network is set up",
			Detail: "The VPN service doesn't know which network to use.",
			Fix:    "Enter the network directory under Settings, or run: nymvpn settings set directory URL"}
	case api.CodeUnavailable:
		return Explanation{Title: "The network can't be reached",
			Detail: sentence(f.Message),
			Fix:    "Check your internet connection and try again."}
	case api.CodeInvalidSetting, api.CodeBadRequest:
		return Explanation{Title: "That choice was refused", Detail: sentence(f.Message),
			Fix: "Correct it and try again."}
	case api.CodeInternal:
		return Explanation{Title: "The VPN service failed to " + what,
			Detail: "Something went wrong inside the VPN service.",
			Fix:    "Try again. If it keeps happening, its log says more: " + serviceLog(os) + "."}
	}
	return Explanation{Title: "Couldn't " + what, Detail: sentence(f.Message), Fix: "Try again."}
}

// ExplainState puts the daemon's Error state in plain words.
func ExplainState(st api.State, os string) Explanation {
	e := Explanation{Title: "The VPN couldn't connect", Detail: sentence(st.Reason)}
	switch st.ErrorCode {
	case api.CodeNotSupported:
		e.Title, e.Fix = "This mode isn't available yet", "Switch to Fast mode and press Try again."
		if st.Mode == api.ModeMixnet || strings.Contains(st.Reason, "mixnet") {
			e.Detail = "This version of the VPN service can only connect in Fast mode."
		}
	case api.CodeNoDirectory:
		e.Title, e.Fix = "No network is set up", "Enter the network directory under Settings, then press Try again."
		e.Detail = "The VPN service doesn't know which network to use."
	case api.CodeUnavailable:
		e.Fix = "The gateway refused this connection. Choose other countries, or press Try again later."
	case api.CodeInternal:
		e.Fix = "Press Try again. If it keeps failing, the service's log says more: " + serviceLog(os) + "."
	case api.CodeNoAccount:
		e.Title = "No account to pay with"
		e.Detail = "This network's gateways take tickets, and there is no account on this computer to get them with."
		e.Fix, e.Open = "Create or import an account on the Account page, then press Try again.", PageAccount
	case api.CodeNoAllowance:
		e.Title = "Your tickets ran out"
		e.Detail = "The issuers have no allowance left for your account, so the VPN can't get new tickets."
		e.Fix, e.Open = "Top up the account (the Account page shows its id), then press Try again.", PageAccount
	case api.CodeTicketRefused:
		e.Title = "A gateway refused a ticket"
		if strings.Contains(st.Reason, "stale") {
			e.Detail = "The gateway took the ticket for an old one: this computer's clock may be wrong."
			e.Fix = "Check this computer's date and time, then press Try again."
		} else {
			e.Fix = "Press Try again: the VPN pays with another ticket. If it keeps happening, choose other countries."
		}
	default:
		e.Fix = "Press Try again, or choose other countries."
	}
	return e
}

// explainLink puts a failure to reach the daemon in plain words.
func explainLink(p Problem, msg, socket, os string) Explanation {
	at := ""
	if socket != "" {
		at = fmt.Sprintf(" (%s)", socket)
	}
	switch p {
	case ProblemNotRunning:
		fix := "Start it: sudo systemctl start nymvpnd — or, if it isn't installed yet: sudo nymvpnd install --directory URL, then sudo nymvpnd start."
		switch os {
		case "windows":
			fix = "Start the nymvpnd service (Services, or in an administrator's terminal: nymvpnd start)."
		case "darwin":
			fix = "Start it: sudo nymvpnd start — or, if it isn't installed yet: sudo nymvpnd install --directory URL, then sudo nymvpnd start."
		}
		return Explanation{Title: "The VPN service isn't running",
			Detail: "The app needs nymvpnd, the VPN service, and can't find it" + at + ".", Fix: fix}
	case ProblemPermission:
		return Explanation{Title: "You may not use the VPN service",
			Detail: "Your user isn't allowed to open the VPN service's socket" + at + ".",
			Fix:    joinGroup(os)}
	case ProblemUntrusted:
		return Explanation{Title: "The VPN service's socket isn't trusted",
			Detail: "The socket" + at + " belongs to someone other than the administrator or you, so the app won't use it.",
			Fix:    "Remove it and restart the service: sudo systemctl restart nymvpnd"}
	}
	return Explanation{Title: "Can't reach the VPN service", Detail: sentence(msg),
		Fix: "Check that nymvpnd is running: its log says more: " + serviceLog(os) + "."}
}

// sentence capitalises s and ends it with a full stop.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") && !strings.HasSuffix(s, "?") && !strings.HasSuffix(s, "!") {
		s += "."
	}
	return s
}

// explainAccountFailure puts a failure of the account's calls (and of the
// account's lookup, whose intent is empty), and the account's error codes,
// in plain words.
func explainAccountFailure(f *Failure, os string) (Explanation, bool) {
	account := f.Intent.Kind == IntentCreateAccount || f.Intent.Kind == IntentImportAccount || f.Intent.Kind == IntentForgetAccount
	switch f.Code {
	case api.CodeUnavailable:
		if account || strings.Contains(f.Message, "wallet") {
			return Explanation{Title: "The VPN service can't open its wallet",
				Detail: "The wallet keeps the account and its tickets. " + sentence(f.Message),
				Fix:    "The service's log says more: " + serviceLog(os) + "."}, true
		}
	case api.CodeNotSupported:
		if account {
			return Explanation{Title: "This version of the VPN service keeps no account",
				Detail: "It connects only to networks whose gateways take no tickets.",
				Fix:    "Update the VPN service to pay with tickets."}, true
		}
	case api.CodeNoAccount:
		if f.Intent.Kind == IntentForgetAccount {
			return Explanation{Title: "There is no account to forget",
				Detail: "This computer has no account (any more)."}, true
		}
		return Explanation{Title: "No account to pay with",
			Detail: "This network's gateways take tickets, and there is no account on this computer to get them with.",
			Fix:    "Create or import an account on the Account page.", Open: PageAccount}, true
	case api.CodeAccountExists:
		return Explanation{Title: "An account is already set up",
			Detail: "This computer keeps one account at a time.",
			Fix:    "To use another one, forget this one first (Forget account): its tickets are lost unless you kept its recovery phrase."}, true
	case api.CodeBadPhrase:
		return Explanation{Title: "That isn't a recovery phrase", Detail: badPhrase(f.Message),
			Fix: "Enter the 24 words you wrote down when the account was created, in order, separated by spaces."}, true
	case api.CodeTunnelActive:
		return Explanation{Title: "Disconnect first",
			Detail: "The VPN pays for the connection with this account's tickets, so the account can't be forgotten while connected or connecting.",
			Fix:    "Disconnect, then forget the account."}, true
	case api.CodeNoAllowance:
		return Explanation{Title: "Your tickets ran out",
			Detail: "The issuers have no allowance left for your account, so the VPN can't get new tickets.",
			Fix:    "Top up the account (the Account page shows its id), then try again.", Open: PageAccount}, true
	case api.CodeTicketRefused:
		return Explanation{Title: "A gateway refused a ticket", Detail: sentence(f.Message),
			Fix: "Try again: the VPN pays with another ticket. If it keeps happening, check this computer's clock or choose other countries."}, true
	}
	return Explanation{}, false
}

var (
	wordCountRe = regexp.MustCompile(`it has (\d+) words?`)
	wordRe      = regexp.MustCompile(`word (\d+) is not in`)
)

// badPhrase says what is wrong with a recovery phrase, from the daemon's
// bad_phrase message (which never repeats the phrase's words).
func badPhrase(msg string) string {
	switch {
	case strings.Contains(msg, "no recovery phrase"):
		return "No words were entered."
	case wordCountRe.MatchString(msg):
		n := wordCountRe.FindStringSubmatch(msg)[1]
		if n == "1" {
			return "It has 1 word; a recovery phrase has 24."
		}
		return "It has " + n + " words; a recovery phrase has 24."
	case wordRe.MatchString(msg):
		return "Word " + wordRe.FindStringSubmatch(msg)[1] + " isn't one of the words recovery phrases are made of: check its spelling."
	case strings.Contains(msg, "checksum"):
		return "The words don't fit together: one is wrong or out of order."
	}
	return sentence(msg)
}
