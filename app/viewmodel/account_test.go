package viewmodel

import (
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
)

const (
	testID     = "q3Yt0m8cXzqfVv8sQd0m2c8Q1kq0cJ9o0m7VZ3v9r1A="
	testPhrase = "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title"
)

// withAccount is m with an account and its tickets.
func withAccount(m Model) Model {
	created := now.Add(-26 * time.Hour)
	exp := now.Add(6*24*time.Hour + 23*time.Hour)
	m.Account, m.AccountLoaded = api.Account{Exists: true, ID: testID, Created: &created}, true
	m.Status.Tickets = &api.Tickets{Account: true,
		Left:       map[string]int{api.TicketFastEntry: 49, api.TicketFastExit: 50, api.TicketMixnetEntry: 0, api.TicketMixnetExit: 0},
		NextExpiry: &exp, Refilling: []string{api.TicketMixnetExit}}
	return m
}

func noAccount(m Model) Model {
	m.Status.Tickets = &api.Tickets{Left: map[string]int{}}
	m.Account, m.AccountLoaded = api.Account{}, true
	return m
}

func TestAccountPage(t *testing.T) {
	m := withAccount(up(api.State{Kind: api.Disconnected}))
	v := Build(m, PageAccount, now)
	if v.Screen != ScreenAccount || v.Heading != "Account" || !v.CanGoBack || v.Screen.String() != "account" {
		t.Fatalf("screen %v %q back %v", v.Screen, v.Heading, v.CanGoBack)
	}
	// The tunnel's status and big button stay, as on the settings page.
	if v.Status.Headline != "Not connected" || v.Primary.Label != "Connect" {
		t.Errorf("status %+v, primary %+v", v.Status, v.Primary)
	}
	a := v.Account
	if !a.Exists || a.ID != testID || a.Note != "" || a.Problem != nil || a.Refill != nil {
		t.Errorf("account %+v", a)
	}
	want := []Row{{"Fast entry", "49"}, {"Fast exit", "50"}, {"Mixnet entry", "0"}, {"Mixnet exit", "0 · fetching more…"}}
	if len(a.Tickets) != len(want) {
		t.Fatalf("tickets %+v", a.Tickets)
	}
	for i := range want {
		if a.Tickets[i] != want[i] {
			t.Errorf("ticket row %d = %+v, want %+v", i, a.Tickets[i], want[i])
		}
	}
	if len(a.Rows) != 1 || a.Rows[0] != (Row{"Created", "30 Apr 2026, 10:00"}) {
		t.Errorf("rows %+v", a.Rows)
	}
	if len(a.Notes) != 1 || !strings.Contains(a.Notes[0], "expire on 8 May 2026, 11:00 (in 6 days and 23 hours)") {
		t.Errorf("notes %q", a.Notes)
	}
	if a.Forget.Label != "Forget account…" || !a.Forget.Enabled || a.Forget.Intent.Kind != IntentAskForget || a.Confirm != nil {
		t.Errorf("forget %+v, confirm %+v", a.Forget, a.Confirm)
	}
	if a.Create.Label != "" || a.Import.Label != "" || a.Phrase != "" {
		t.Errorf("create/import/phrase with an account: %+v", a)
	}
	// Tickets follow the stream.
	m.Status.Tickets.Left[api.TicketFastEntry] = 48
	if got := Build(m, PageAccount, now).Account.Tickets[0].Value; got != "48" {
		t.Errorf("after a ticket was spent: %q", got)
	}

	// Forget asks first; while it runs the question goes.
	m.ConfirmForget = true
	c := Build(m, PageAccount, now).Account.Confirm
	if c == nil || !strings.Contains(c.Question, "Forget account q3Yt0m8c…") || c.Yes.Intent.Kind != IntentForgetAccount ||
		!c.Yes.Enabled || c.No.Intent.Kind != IntentCancelForget {
		t.Errorf("confirm %+v", c)
	}
	m.Busy = Intent{Kind: IntentForgetAccount}
	a = Build(m, PageAccount, now).Account
	if a.Confirm != nil || a.Forget.Enabled || a.Forget.Label != "Forgetting…" || a.Forget.Color != Disabled {
		t.Errorf("while forgetting: %+v %+v", a.Forget, a.Confirm)
	}
	m.Busy, m.ConfirmForget = Intent{}, false

	// An account the stream knows of before its lookup came back.
	m.Account, m.AccountLoaded = api.Account{}, false
	a = Build(m, PageAccount, now).Account
	if !a.Exists || a.ID != "" || len(a.Rows) != 1 || a.Rows[0].Value != "Looking it up…" {
		t.Errorf("account not looked up yet: %+v", a)
	}

	// Refill failures in plain words.
	m = withAccount(m)
	m.Status.Tickets.RefillError, m.Status.Tickets.RefillErrorCode = "your tickets ran out: the issuers have no allowance left for account X", api.CodeNoAllowance
	if r := Build(m, PageAccount, now).Account.Refill; r == nil || r.Title != "The account's allowance is used up" || !strings.Contains(r.Fix, "Top up") {
		t.Errorf("no allowance: %+v", r)
	}
	m.Status.Tickets.RefillError, m.Status.Tickets.RefillErrorCode = "fetching tickets failed: the kill switch blocks the issuers now", api.CodeUnavailable
	if r := Build(m, PageAccount, now).Account.Refill; r == nil || r.Title != "Couldn't fetch new tickets" || r.Detail != "The kill switch blocks the issuers now." {
		t.Errorf("refill failed: %+v", r)
	}

	// No tickets at all, nothing going on: what happens next.
	m = withAccount(up(api.State{Kind: api.Disconnected}))
	m.Status.Tickets.Left = map[string]int{}
	m.Status.Tickets.NextExpiry, m.Status.Tickets.Refilling = nil, nil
	if a := Build(m, PageAccount, now).Account; len(a.Notes) != 1 || !strings.HasPrefix(a.Notes[0], "No tickets yet") {
		t.Errorf("no tickets: %q", a.Notes)
	}
}

func TestNoAccountPage(t *testing.T) {
	m := noAccount(up(api.State{Kind: api.Disconnected}))
	a := Build(m, PageAccount, now).Account
	if a.Exists || !strings.Contains(a.Note, "no account on this computer") || len(a.Tickets) != 0 {
		t.Errorf("no account: %+v", a)
	}
	if a.Create.Label != "Create account" || !a.Create.Enabled || a.Create.Intent.Kind != IntentCreateAccount ||
		a.Import.Label != "Import" || !a.Import.Enabled || a.Import.Intent != (Intent{Kind: IntentImportAccount}) ||
		a.ImportPlaceholder == "" || a.CreateHelp == "" || a.ImportHelp == "" || a.Forget.Label != "" {
		t.Errorf("actions %+v", a)
	}
	m.Busy = Intent{Kind: IntentCreateAccount}
	a = Build(m, PageAccount, now).Account
	if a.Create.Label != "Creating…" || a.Create.Enabled || a.Import.Enabled || a.Import.Color != Disabled {
		t.Errorf("while creating: %+v %+v", a.Create, a.Import)
	}
	m.Busy = Intent{Kind: IntentImportAccount}
	if a := Build(m, PageAccount, now).Account; a.Import.Label != "Importing…" {
		t.Errorf("while importing: %+v", a.Import)
	}

	// A reader sees the page with the read-only note and nothing enabled.
	m = noAccount(up(api.State{Kind: api.Disconnected}))
	m.Status.Caller.CanWrite = false
	v := Build(m, PageAccount, now)
	if v.Account.Create.Enabled || v.Account.Import.Enabled || len(v.Notices) == 0 || !strings.Contains(v.Notices[0], "You can watch the VPN but not change it.") {
		t.Errorf("reader: %+v, notices %q", v.Account, v.Notices)
	}
	m = withAccount(m)
	if a := Build(m, PageAccount, now).Account; a.Forget.Enabled {
		t.Error("a reader may forget the account")
	}

	// Before the first lookup, from a daemon that publishes no tickets.
	m = up(api.State{Kind: api.Disconnected})
	if a := Build(m, PageAccount, now).Account; a.Note != "Looking up the account…" || a.Create.Label != "" {
		t.Errorf("loading: %+v", a)
	}
	// A daemon that keeps no account.
	m.AccountError = FailureOf(Intent{}, &api.APIError{Status: 501, Code: api.CodeNotSupported, Message: "this daemon keeps no account"})
	if a := Build(m, PageAccount, now).Account; !strings.Contains(a.Note, "keeps no account") || a.Create.Label != "" || a.Exists {
		t.Errorf("unsupported: %+v", a)
	}
	// A lookup that failed otherwise: a wallet the daemon cannot open.
	m.AccountError = FailureOf(Intent{}, &api.APIError{Status: 503, Code: api.CodeUnavailable,
		Message: "the wallet in /var/lib/nymvpn/wallet cannot be opened: permission denied"})
	if a := Build(m, PageAccount, now).Account; a.Problem == nil || a.Problem.Title != "The VPN service can't open its wallet" ||
		!strings.Contains(a.Problem.Fix, "journalctl") || a.Create.Label != "" {
		t.Errorf("lookup failed: %+v", a)
	}
	// With tickets in the stream (no account, as the daemon then says) the
	// page offers to create one and shows the lookup's failure too.
	m.Status.Tickets = &api.Tickets{Left: map[string]int{}}
	if a := Build(m, PageAccount, now).Account; a.Problem == nil || a.Create.Label != "Create account" {
		t.Errorf("lookup failed, tickets known: %+v", a)
	}
}

// TestNewPhrase: a new account's phrase is shown on the account page,
// wherever the user was, with no way back until it is written down.
func TestNewPhrase(t *testing.T) {
	m := withAccount(up(api.State{Kind: api.Disconnected}))
	m.NewPhrase = testPhrase
	for _, page := range []Page{PageMain, PageSettings, PageAccount} {
		v := Build(m, page, now)
		a := v.Account
		if v.Screen != ScreenAccount || v.CanGoBack || a.Phrase != testPhrase || a.PhraseTitle != "Write down your recovery phrase" ||
			!strings.Contains(a.PhraseWarning, "only time it is shown") || !strings.Contains(a.PhraseWarning, "24 words") ||
			a.PhraseDone.Intent.Kind != IntentPhraseDone || !a.PhraseDone.Enabled {
			t.Errorf("page %v: screen %v, back %v, %+v", page, v.Screen, v.CanGoBack, a)
		}
		// Nothing else the app shows carries it.
		if strings.Contains(v.Title, "legal") || strings.Contains(v.Tray.Tooltip, "legal") || strings.Contains(v.Status.Detail, "legal") {
			t.Errorf("the phrase leaks: %q %q", v.Title, v.Tray.Tooltip)
		}
	}
	m.NewPhrase = ""
	if v := Build(m, PageMain, now); v.Screen != ScreenMain || v.Account.Phrase != "" {
		t.Errorf("after it was written down: %v %+v", v.Screen, v.Account)
	}
}

// TestAccountFailures: the account's error codes in plain words, on calls
// and in the Error state.
func TestAccountFailures(t *testing.T) {
	for _, tc := range []struct {
		in           Intent
		code, msg    string
		title        string
		detail, fix  string
		open         Page
		avoidInWords string
	}{
		{Intent{Kind: IntentImportAccount}, api.CodeBadPhrase, "not a recovery phrase: it has 5 words; want the 24 words `nymvpn account create` showed, in order",
			"That isn't a recovery phrase", "It has 5 words; a recovery phrase has 24.", "24 words you wrote down", PageMain, "nymvpn account"},
		{Intent{Kind: IntentImportAccount}, api.CodeBadPhrase, "not a recovery phrase: word 3 is not in the BIP39 English word list; want …",
			"That isn't a recovery phrase", "Word 3 isn't one of the words", "in order", PageMain, "BIP39"},
		{Intent{Kind: IntentImportAccount}, api.CodeBadPhrase, "not a recovery phrase: its checksum does not match (a word is wrong or out of order); want …",
			"That isn't a recovery phrase", "one is wrong or out of order", "in order", PageMain, "checksum"},
		{Intent{Kind: IntentImportAccount}, api.CodeBadPhrase, "no recovery phrase given",
			"That isn't a recovery phrase", "No words were entered.", "in order", PageMain, ""},
		{Intent{Kind: IntentImportAccount}, api.CodeAccountExists, "another account is set up (X); to replace it, run `nymvpn account forget` first",
			"An account is already set up", "one account at a time", "forget this one first", PageMain, "nymvpn account"},
		{Intent{Kind: IntentCreateAccount}, api.CodeAccountExists, "an account is already set up",
			"An account is already set up", "", "forget this one first", PageMain, ""},
		{Intent{Kind: IntentForgetAccount}, api.CodeTunnelActive, "the tunnel is paid with this account's tickets: disconnect first (`nymvpn disconnect`)",
			"Disconnect first", "can't be forgotten while connected", "Disconnect, then forget the account.", PageMain, "nymvpn disconnect"},
		{Intent{Kind: IntentForgetAccount}, api.CodeNoAccount, "there is no account",
			"There is no account to forget", "no account", "", PageMain, ""},
		{Intent{Kind: IntentConnect}, api.CodeNoAccount, "there is no account: run `nymvpn account create` or `nymvpn account import`",
			"No account to pay with", "no account on this computer", "Create or import an account on the Account page", PageAccount, "nymvpn account"},
		{Intent{Kind: IntentConnect}, api.CodeNoAllowance, "your tickets ran out",
			"Your tickets ran out", "no allowance left", "Top up the account", PageAccount, ""},
		{Intent{Kind: IntentConnect}, api.CodeTicketRefused, "the gateway refused a ticket: spent",
			"A gateway refused a ticket", "The gateway refused a ticket: spent.", "Try again", PageMain, ""},
		{Intent{Kind: IntentCreateAccount}, api.CodeNotSupported, "this daemon keeps no account",
			"This version of the VPN service keeps no account", "take no tickets", "Update the VPN service", PageMain, ""},
		{Intent{Kind: IntentCreateAccount}, api.CodeForbidden, "you may only read",
			"You may not change the VPN", "the account", "usermod -aG nymvpn", PageMain, ""},
		{Intent{Kind: IntentCreateAccount}, api.CodeUnavailable, "the wallet in /x cannot be opened: permission denied",
			"The VPN service can't open its wallet", "permission denied", "journalctl", PageMain, ""},
		{Intent{Kind: IntentConnect}, api.CodeUnavailable, "the directory cannot be reached",
			"The network can't be reached", "directory", "internet connection", PageMain, ""},
		{Intent{Kind: IntentForgetAccount}, api.CodeInternal, "boom",
			"The VPN service failed to forget the account", "", "journalctl", PageMain, ""},
	} {
		e := ExplainFailure(FailureOf(tc.in, &api.APIError{Code: tc.code, Message: tc.msg}), "linux")
		if e.Title != tc.title || !strings.Contains(e.Detail, tc.detail) || !strings.Contains(e.Fix, tc.fix) || e.Open != tc.open {
			t.Errorf("%s on %s: %+v, want %q, detail with %q, fix with %q, open %v", tc.code, tc.in.Kind, e, tc.title, tc.detail, tc.fix, tc.open)
		}
		if tc.avoidInWords != "" && strings.Contains(e.Title+e.Detail+e.Fix, tc.avoidInWords) {
			t.Errorf("%s: %+v repeats %q", tc.code, e, tc.avoidInWords)
		}
	}

	// The Error state: the main screen's card says what to do and leads to
	// the account page.
	for _, tc := range []struct {
		code, reason string
		title, fix   string
		open         Page
	}{
		{api.CodeNoAccount, "this network's gateways take tickets and there is no account: run `nymvpn account create` or `nymvpn account import` (payment required)",
			"No account to pay with", "Create or import an account on the Account page", PageAccount},
		{api.CodeNoAllowance, "your tickets ran out: the issuers have no allowance left for account X; top the account up",
			"Your tickets ran out", "Top up the account", PageAccount},
		{api.CodeTicketRefused, "the gateway refused a ticket as stale: is this computer's clock right? (stale)",
			"A gateway refused a ticket", "date and time", PageMain},
		{api.CodeTicketRefused, "the gateway refused a ticket: double spend",
			"A gateway refused a ticket", "another ticket", PageMain},
	} {
		m := up(api.State{Kind: api.Error, Mode: api.ModeFast, ErrorCode: tc.code, Reason: tc.reason})
		v := Build(m, PageMain, now)
		if v.Status.Headline != tc.title || v.Problem == nil || !strings.Contains(v.Problem.Fix, tc.fix) || v.Problem.Open != tc.open {
			t.Errorf("%s: headline %q, problem %+v", tc.code, v.Status.Headline, v.Problem)
		}
		if strings.Contains(v.Status.Detail+v.Problem.Fix, "nymvpn account") {
			t.Errorf("%s: a command for the CLI in the app: %q", tc.code, v.Status.Detail)
		}
		if n, ok := Notification(up(api.State{Kind: api.Connecting}), m); !ok || n.Title != tc.title {
			t.Errorf("%s: notification %+v", tc.code, n)
		}
	}
}

func TestUntil(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Minute: "now", 20 * time.Second: "now", 90 * time.Second: "in 2 minutes", time.Minute: "in 1 minute",
		time.Hour: "in 1 hour", 5*time.Hour + 3*time.Minute: "in 5 hours and 3 minutes",
		24 * time.Hour: "in 1 day", 7*24*time.Hour + time.Hour: "in 7 days and 1 hour",
	} {
		if got := until(d); got != want {
			t.Errorf("until(%v) = %q, want %q", d, got, want)
		}
	}
}
