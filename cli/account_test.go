package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
)

const testPhrase = "legal winner thank year wave sausage worth useful legal winner thank year " +
	"wave sausage worth useful legal winner thank year wave sausage worth title"

// fakeAccount is the fake daemon's account (guarded by backend.mu).
type fakeAccount struct {
	phrase  string // "" without an account
	imports []string
}

var created = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func (b *backend) accountLocked() api.Account {
	if b.acct.phrase == "" {
		return api.Account{}
	}
	return api.Account{Exists: true, ID: "QUNDT1VOVA==", Created: &created}
}

func (b *backend) Account(context.Context) (api.Account, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.accountLocked(), nil
}

func (b *backend) CreateAccount(context.Context) (api.AccountCreated, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.acct.phrase != "" {
		return api.AccountCreated{}, &api.APIError{Code: api.CodeAccountExists, Message: "an account is already set up (QUNDT1VOVA==); to replace it, run `nymvpn account forget` first"}
	}
	b.acct.phrase = testPhrase
	return api.AccountCreated{Account: b.accountLocked(), Phrase: testPhrase}, nil
}

func (b *backend) ImportAccount(_ context.Context, phrase string) (api.Account, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.acct.imports = append(b.acct.imports, phrase)
	if len(strings.Fields(phrase)) != 24 {
		return api.Account{}, &api.APIError{Code: api.CodeBadPhrase, Message: "not a recovery phrase: it has 2 words"}
	}
	b.acct.phrase = phrase
	return b.accountLocked(), nil
}

func (b *backend) ForgetAccount(context.Context) (api.Account, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.acct.phrase == "" {
		return api.Account{}, &api.APIError{Code: api.CodeNoAccount, Message: "there is no account: run `nymvpn account create` or `nymvpn account import`"}
	}
	b.acct.phrase = ""
	return api.Account{}, nil
}

func (b *backend) Tickets(context.Context) (api.Tickets, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.acct.phrase == "" {
		return api.Tickets{}, &api.APIError{Code: api.CodeNoAccount, Message: "there is no account: run `nymvpn account create` or `nymvpn account import`"}
	}
	exp := time.Now().Add(50 * time.Hour)
	return api.Tickets{Account: true,
		Left:       map[string]int{api.TicketFastEntry: 49, api.TicketFastExit: 50, api.TicketMixnetEntry: 0, api.TicketMixnetExit: 0},
		Books:      []api.Ticketbook{{Type: api.TicketFastEntry, Expires: exp, Total: 50, Remaining: 49}, {Type: api.TicketFastExit, Expires: exp, Total: 50, Remaining: 50}},
		NextExpiry: &exp, Refilling: []string{api.TicketFastEntry},
		RefillError: "your tickets ran out: the issuers have no allowance left", RefillErrorCode: api.CodeNoAllowance}, nil
}

// runIn runs the CLI with stdin.
func (d *daemon) runIn(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr syncBuffer
	code := mainWithInput(ctx, append([]string{"--socket", d.path}, args...), strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestAccountCreateShowForget(t *testing.T) {
	d := startDaemon(t, nil)
	code, out, errOut := d.run(t, "account", "show")
	wantCode(t, code, out, errOut, ExitOK)
	if !strings.Contains(out, "No account: run `nymvpn account create`") {
		t.Errorf("show without an account:\n%s", out)
	}
	code, out, errOut = d.run(t, "tickets")
	wantCode(t, code, out, errOut, ExitFailure)
	if !strings.Contains(errOut, "there is no account: run `nymvpn account create` or `nymvpn account import`") {
		t.Errorf("tickets without an account:\n%s", errOut)
	}

	code, out, errOut = d.run(t, "account", "create")
	wantCode(t, code, out, errOut, ExitOK)
	t.Logf("account create:\n%s", out)
	inOrder(t, out, "Account created: QUNDT1VOVA==", "shown only this once", " 1. legal", " 6. sausage", "\n", " 7. worth", "24. title", testPhrase)
	code, out, errOut = d.run(t, "account", "create")
	wantCode(t, code, out, errOut, ExitFailure)
	if !strings.Contains(errOut, "nymvpn account forget") {
		t.Errorf("second create:\n%s", errOut)
	}

	code, out, errOut = d.run(t, "account", "show")
	wantCode(t, code, out, errOut, ExitOK)
	inOrder(t, out, "Account:", "QUNDT1VOVA==", "Created:", "Tickets left:", "fast-entry 49, fast-exit 50, mixnet-entry 0, mixnet-exit 0")
	code, out, errOut = d.run(t, "account", "show", "--json")
	wantCode(t, code, out, errOut, ExitOK)
	var a api.Account
	if err := json.Unmarshal([]byte(out), &a); err != nil || !a.Exists || a.ID != "QUNDT1VOVA==" || !a.Created.Equal(created) {
		t.Fatalf("show --json: %v %+v\n%s", err, a, out)
	}

	// Forget needs a confirmation; stdin is no terminal here.
	code, out, errOut = d.run(t, "account", "forget")
	wantCode(t, code, out, errOut, ExitUsage)
	if !strings.Contains(errOut, "--yes") {
		t.Errorf("forget without --yes:\n%s", errOut)
	}
	code, out, errOut = d.run(t, "account", "forget", "--yes")
	wantCode(t, code, out, errOut, ExitOK)
	code, out, errOut = d.run(t, "account", "forget", "--yes")
	wantCode(t, code, out, errOut, ExitFailure)
	if !strings.Contains(errOut, "no account") {
		t.Errorf("second forget:\n%s", errOut)
	}
	code, out, errOut = d.run(t, "account", "create", "--json")
	wantCode(t, code, out, errOut, ExitOK)
	var c api.AccountCreated
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.Phrase != testPhrase || c.Account.ID == "" {
		t.Fatalf("create --json: %v %+v", err, c)
	}
	for _, args := range [][]string{{"account"}, {"account", "delete"}, {"account", "show", "x"}} {
		code, out, errOut = d.run(t, args...)
		wantCode(t, code, out, errOut, ExitUsage)
	}
}

func TestAccountImport(t *testing.T) {
	d := startDaemon(t, nil)
	// The phrase on the command line is refused without repeating it.
	code, out, errOut := d.run(t, append([]string{"account", "import"}, strings.Fields(testPhrase)...)...)
	wantCode(t, code, out, errOut, ExitUsage)
	if strings.Contains(errOut+out, "legal") || !strings.Contains(errOut, "stdin") {
		t.Errorf("phrase in argv:\nstdout %s\nstderr %s", out, errOut)
	}
	code, out, errOut = d.runIn(t, "   \n", "account", "import")
	wantCode(t, code, out, errOut, ExitFailure)
	if !strings.Contains(errOut, "no recovery phrase") {
		t.Errorf("empty stdin:\n%s", errOut)
	}
	code, out, errOut = d.runIn(t, "legal winner\n", "account", "import")
	wantCode(t, code, out, errOut, ExitFailure)
	if !strings.Contains(errOut, "not a recovery phrase") {
		t.Errorf("bad phrase:\n%s", errOut)
	}
	code, out, errOut = d.runIn(t, strings.Repeat("x", maxPhraseInput+1), "account", "import")
	wantCode(t, code, out, errOut, ExitFailure)
	// From a pipe, across lines: the daemon normalises the spacing.
	piped := strings.ReplaceAll(testPhrase, "year ", "year\n") + "\n"
	code, out, errOut = d.runIn(t, piped, "account", "import")
	wantCode(t, code, out, errOut, ExitOK)
	if out != "Account imported: QUNDT1VOVA==\n" {
		t.Errorf("import:\n%s", out)
	}
	if strings.Contains(out+errOut, "legal") {
		t.Errorf("the phrase was echoed:\n%s%s", out, errOut)
	}
	d.b.mu.Lock()
	imports := d.b.acct.imports
	d.b.mu.Unlock()
	if len(imports) != 2 || imports[1] != piped {
		t.Fatalf("daemon got %q", imports)
	}
}

func TestTickets(t *testing.T) {
	d := startDaemon(t, nil)
	d.run(t, "account", "create")
	code, out, errOut := d.run(t, "tickets")
	wantCode(t, code, out, errOut, ExitOK)
	t.Logf("tickets:\n%s", out)
	inOrder(t, out, "TYPE", "LEFT", "fast-entry", "49", "fast-exit", "50", "mixnet-entry", "0", "mixnet-exit", "0",
		"Books: 2; the first expires", "(in 2d 2h)", "Fetching a new book: fast-entry", "Last fetch failed: your tickets ran out")
	code, out, errOut = d.run(t, "tickets", "--json")
	wantCode(t, code, out, errOut, ExitOK)
	var tk api.Tickets
	if err := json.Unmarshal([]byte(out), &tk); err != nil || tk.Left[api.TicketFastExit] != 50 || len(tk.Books) != 2 || tk.RefillErrorCode != api.CodeNoAllowance {
		t.Fatalf("tickets --json: %v %+v", err, tk)
	}
}

func TestAccountReadOnly(t *testing.T) {
	d := startDaemon(t, denyAll{})
	for _, args := range [][]string{{"account", "create"}, {"account", "forget", "--yes"}} {
		code, out, errOut := d.run(t, args...)
		wantCode(t, code, out, errOut, ExitForbidden)
	}
	code, out, errOut := d.runIn(t, testPhrase, "account", "import")
	wantCode(t, code, out, errOut, ExitForbidden)
	code, out, errOut = d.run(t, "account", "show")
	wantCode(t, code, out, errOut, ExitOK)
}

func TestStatusShowsTickets(t *testing.T) {
	d := startDaemon(t, nil)
	d.hub.SetTickets(api.Tickets{Account: true, Left: map[string]int{api.TicketFastEntry: 12, api.TicketFastExit: 13}})
	code, out, errOut := d.run(t, "status")
	wantCode(t, code, out, errOut, ExitOK)
	if !strings.Contains(out, "Tickets:") || !strings.Contains(out, "fast-entry 12, fast-exit 13, mixnet-entry 0, mixnet-exit 0") {
		t.Errorf("status:\n%s", out)
	}
	d.hub.SetTickets(api.Tickets{})
	_, out, _ = d.run(t, "status")
	if !strings.Contains(out, "no account") {
		t.Errorf("status without an account:\n%s", out)
	}
}
