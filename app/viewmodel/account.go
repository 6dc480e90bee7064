package viewmodel

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// AccountView is the account page: whether there is an account, its tickets
// left (live from the daemon's event stream), and what the user can do —
// create or import an account when there is none, forget it when there is.
type AccountView struct {
	// Note stands in for the account while it cannot be shown: being looked
	// up, or a daemon that keeps no account.
	Note string
	// Problem is why the account cannot be looked up.
	Problem *Explanation

	// Exists is set when there is an account; ID is its id (shown
	// selectable, to copy), Rows its other facts.
	Exists bool
	ID     string
	Rows   []Row

	// Tickets are the tickets left per type (api.TicketTypes); Notes what
	// the wallet is doing (fetching more, when the first ones expire);
	// Refill the last refill's failure in plain words.
	Tickets []Row
	Notes   []string
	Refill  *Explanation

	// Phrase is the recovery phrase of the account just created, shown
	// until the user says it is written down (PhraseDone); PhraseTitle and
	// PhraseWarning say why it matters.
	Phrase                     string
	PhraseTitle, PhraseWarning string
	PhraseDone                 Button

	// Create and Import are offered when there is no account. Import's
	// intent lacks the phrase: the window adds what the user typed.
	Create, Import         Button
	CreateHelp, ImportHelp string
	// ImportPlaceholder is shown in the empty (masked) phrase field.
	ImportPlaceholder string

	// Forget is offered when there is an account; it asks first
	// (Confirm).
	Forget     Button
	ForgetHelp string
	Confirm    *Confirm
}

// Confirm is a question before something that cannot be undone.
type Confirm struct {
	Question, Detail string
	Yes, No          Button
}

// TicketLabels name the ticket types for people.
var TicketLabels = map[string]string{
	api.TicketFastEntry:   "Fast entry",
	api.TicketFastExit:    "Fast exit",
	api.TicketMixnetEntry: "Mixnet entry",
	api.TicketMixnetExit:  "Mixnet exit",
}

// accountView builds the account page of m at now.
func accountView(m Model, now time.Time) AccountView {
	var a AccountView
	idle := m.Busy.Kind == ""
	enabled := m.CanWrite() && idle
	t := m.Status.Tickets
	if t == nil {
		// A daemon without a wallet publishes no tickets: go by the lookup.
		switch {
		case m.AccountError != nil && m.AccountError.Code == api.CodeNotSupported:
			a.Note = "This version of the VPN service keeps no account: it connects only to networks whose gateways take no tickets. Update it to pay with tickets."
			return a
		case m.AccountError != nil:
			e := ExplainFailure(m.AccountError, m.OS)
			a.Problem = &e
			return a
		case !m.AccountLoaded:
			a.Note = "Looking up the account…"
			return a
		}
	} else if m.AccountError != nil && m.AccountError.Code != api.CodeNotSupported {
		e := ExplainFailure(m.AccountError, m.OS)
		a.Problem = &e
	}

	if m.NewPhrase != "" {
		a.Phrase = m.NewPhrase
		a.PhraseTitle = "Write down your recovery phrase"
		a.PhraseWarning = "This is the only time it is shown. It is the only way to restore this account and its tickets, " +
			"on another computer or after forgetting it here. Write the " + fmt.Sprint(len(strings.Fields(m.NewPhrase))) +
			" words down in order and keep them secret: anyone who has them can use your tickets."
		a.PhraseDone = Button{Label: "I have written it down", Intent: Intent{Kind: IntentPhraseDone}, Enabled: true, Color: Blue}
	}

	a.Exists = m.AccountExists()
	if !a.Exists {
		a.Note = "There is no account on this computer. The VPN pays the gateways of networks that ask for it with tickets, " +
			"which an account gets from the network's issuers."
		a.Create = Button{Label: "Create account", Intent: Intent{Kind: IntentCreateAccount}, Enabled: enabled, Color: Green}
		if m.Busy.Kind == IntentCreateAccount {
			a.Create.Label = "Creating…"
		}
		a.CreateHelp = "A new account, with a recovery phrase to write down. It needs an allowance at the issuers before it can pay for connections."
		a.Import = Button{Label: "Import", Intent: Intent{Kind: IntentImportAccount}, Enabled: enabled, Color: Blue}
		if m.Busy.Kind == IntentImportAccount {
			a.Import.Label = "Importing…"
		}
		a.ImportHelp = "Restore an account from its recovery phrase: the 24 words shown when it was created."
		a.ImportPlaceholder = "recovery phrase (24 words)"
		for _, b := range []*Button{&a.Create, &a.Import} {
			if !b.Enabled {
				b.Color = Disabled
			}
		}
		return a
	}

	if m.AccountLoaded && m.Account.Exists {
		a.ID = m.Account.ID
		if c := m.Account.Created; c != nil {
			a.Rows = append(a.Rows, Row{"Created", c.In(now.Location()).Format("2 Jan 2006, 15:04")})
		}
	} else {
		a.Rows = append(a.Rows, Row{"Account", "Looking it up…"})
	}

	if t != nil {
		for _, typ := range api.TicketTypes {
			v := fmt.Sprint(t.Left[typ])
			if slices.Contains(t.Refilling, typ) {
				v += " · fetching more…"
			}
			a.Tickets = append(a.Tickets, Row{TicketLabels[typ], v})
		}
		if t.NextExpiry != nil {
			a.Notes = append(a.Notes, "Some of these tickets expire on "+t.NextExpiry.In(now.Location()).Format("2 Jan 2006, 15:04")+
				" ("+until(t.NextExpiry.Sub(now))+"); the VPN fetches new ones as it needs them.")
		}
		total := 0
		for _, n := range t.Left {
			total += n
		}
		if total == 0 && len(t.Refilling) == 0 && t.RefillError == "" {
			a.Notes = append(a.Notes, "No tickets yet: the VPN fetches them when it connects, as long as the account has an allowance at the issuers.")
		}
		switch {
		case t.RefillErrorCode == api.CodeNoAllowance:
			a.Refill = &Explanation{Title: "The account's allowance is used up",
				Detail: "The issuers have no more tickets to give this account.",
				Fix:    "Top up the account (its id is above); the VPN then fetches tickets by itself."}
		case t.RefillError != "":
			a.Refill = &Explanation{Title: "Couldn't fetch new tickets",
				Detail: sentence(strings.TrimPrefix(t.RefillError, "fetching tickets failed: ")),
				Fix:    "The VPN tries again by itself, and when it connects."}
		}
	}

	a.Forget = Button{Label: "Forget account…", Intent: Intent{Kind: IntentAskForget}, Enabled: enabled, Color: Red}
	if m.Busy.Kind == IntentForgetAccount {
		a.Forget.Label = "Forgetting…"
	}
	a.ForgetHelp = "Deletes the account and its tickets from this computer; only its recovery phrase brings them back."
	if m.ConfirmForget && m.Busy.Kind != IntentForgetAccount {
		which := "this account"
		if a.ID != "" {
			which = "account " + short(a.ID)
		}
		a.Confirm = &Confirm{
			Question: "Forget " + which + " and delete its tickets from this computer?",
			Detail:   "Only its recovery phrase can bring them back. Without it, the account and its tickets are lost.",
			Yes:      Button{Label: "Forget", Intent: Intent{Kind: IntentForgetAccount}, Enabled: enabled, Color: Red},
			No:       Button{Label: "Cancel", Intent: Intent{Kind: IntentCancelForget}, Enabled: true, Color: Grey},
		}
		if !a.Confirm.Yes.Enabled {
			a.Confirm.Yes.Color = Disabled
		}
	}
	if !a.Forget.Enabled {
		a.Forget.Color = Disabled
	}
	return a
}

// until is a time ahead in days and hours, or hours and minutes: "in 6 days
// and 23 hours", "in 5 hours and 3 minutes", "now".
func until(d time.Duration) string {
	d = d.Round(time.Minute)
	if d <= 0 {
		return "now"
	}
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprint(n, " ", unit, "s")
	}
	pair := func(a int64, au string, b int64, bu string) string {
		if b == 0 {
			return "in " + plural(a, au)
		}
		return "in " + plural(a, au) + " and " + plural(b, bu)
	}
	switch {
	case d >= 24*time.Hour:
		return pair(int64(d/(24*time.Hour)), "day", int64(d%(24*time.Hour)/time.Hour), "hour")
	case d >= time.Hour:
		return pair(int64(d/time.Hour), "hour", int64(d%time.Hour/time.Minute), "minute")
	}
	return "in " + plural(int64(d/time.Minute), "minute")
}

// short abbreviates an account id to its first 8 characters.
func short(id string) string {
	if len(id) <= 10 {
		return id
	}
	return id[:8] + "…"
}
