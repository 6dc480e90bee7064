package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// maxPhraseInput bounds what account import reads from stdin.
const maxPhraseInput = 4096

const accountUsage = "create [--json] | import | forget [--yes] | show [--json]"

func (r *runner) account(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("account needs a subcommand: %s", accountUsage)
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "create":
		return r.accountCreate(ctx, rest)
	case "import":
		return r.accountImport(ctx, rest)
	case "forget":
		return r.accountForget(ctx, rest)
	case "show":
		return r.accountShow(ctx, rest)
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(r.stderr, "usage: nymvpn account %s\n", accountUsage)
		return nil
	default:
		return usagef("account: unknown subcommand %q; want %s", sub, accountUsage)
	}
}

func (r *runner) accountCreate(ctx context.Context, args []string) error {
	fs := r.newFlags("account create")
	asJSON := fs.Bool("json", false, "print the account and its recovery phrase as JSON")
	pos, err := r.parseFlags(fs, "[--json]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("account create takes no arguments, got %q", pos[0])
	}
	rctx, cancel := request(ctx)
	defer cancel()
	created, err := r.c.CreateAccount(rctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(r.stdout, created)
	}
	fmt.Fprintf(r.stdout, "Account created: %s\n\n", created.Account.ID)
	fmt.Fprintln(r.stdout, "Recovery phrase — write it down and keep it secret. It is shown only this once, and it is")
	fmt.Fprintln(r.stdout, "the only way to restore this account and its tickets (nymvpn account import):")
	fmt.Fprintln(r.stdout)
	words := strings.Fields(created.Phrase)
	for i := 0; i < len(words); i += 6 {
		var line []string
		for j := i; j < min(i+6, len(words)); j++ {
			line = append(line, fmt.Sprintf("%2d. %-9s", j+1, words[j]))
		}
		fmt.Fprintln(r.stdout, "  "+strings.TrimRight(strings.Join(line, " "), " "))
	}
	fmt.Fprintln(r.stdout)
	fmt.Fprintln(r.stdout, "  "+created.Phrase)
	fmt.Fprintln(r.stdout)
	fmt.Fprintf(r.stdout, "The account needs an allowance at the issuers before it can pay for connections.\n")
	return nil
}

func (r *runner) accountImport(ctx context.Context, args []string) error {
	fs := r.newFlags("account import")
	pos, err := r.parseFlags(fs, "(the recovery phrase is read from stdin or asked for)", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		// Not even a hint of the words in the message: they are secret.
		return usagef("account import takes no arguments: the recovery phrase is read from stdin or asked for, " +
			"so that it lands neither in the shell's history nor in the process list")
	}
	phrase, err := r.readPhrase(ctx)
	if err != nil {
		return err
	}
	if strings.TrimSpace(phrase) == "" {
		return &exitError{msg: "no recovery phrase given", code: ExitFailure}
	}
	rctx, cancel := request(ctx)
	defer cancel()
	a, err := r.c.ImportAccount(rctx, phrase)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "Account imported: %s\n", a.ID)
	return nil
}

// readPhrase reads the recovery phrase: from a terminal one line, asked for
// on stderr with echo off; from anything else (a pipe, a file) everything
// up to maxPhraseInput bytes.
func (r *runner) readPhrase(ctx context.Context) (string, error) {
	f, isFile := r.stdin.(*os.File)
	if !isFile || !isTerminal(f) {
		b, err := io.ReadAll(io.LimitReader(r.stdin, maxPhraseInput+1))
		if err != nil {
			return "", fmt.Errorf("reading the recovery phrase from stdin: %w", err)
		}
		if len(b) > maxPhraseInput {
			return "", &exitError{msg: fmt.Sprintf("stdin holds more than %d bytes: that is not a recovery phrase", maxPhraseInput), code: ExitFailure}
		}
		return string(b), nil
	}
	fmt.Fprint(r.stderr, "Recovery phrase (the words are not shown as you type): ")
	restore, err := noEcho(f)
	if err != nil {
		restore = func() {}
		fmt.Fprint(r.stderr, "\n(warning: cannot hide the input: the words will show) ")
	}
	defer fmt.Fprintln(r.stderr)
	type line struct {
		s   string
		err error
	}
	got := make(chan line, 1)
	go func() {
		s, err := bufio.NewReaderSize(io.LimitReader(f, maxPhraseInput), maxPhraseInput).ReadString('\n')
		if errors.Is(err, io.EOF) && s != "" {
			err = nil
		}
		got <- line{s, err}
	}()
	select {
	case l := <-got:
		restore()
		if l.err != nil {
			return "", fmt.Errorf("reading the recovery phrase: %w", l.err)
		}
		return l.s, nil
	case <-ctx.Done():
		restore()
		return "", ctx.Err()
	}
}

func (r *runner) accountForget(ctx context.Context, args []string) error {
	fs := r.newFlags("account forget")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	pos, err := r.parseFlags(fs, "[--yes]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("account forget takes no arguments, got %q", pos[0])
	}
	if !*yes {
		rctx, cancel := request(ctx)
		a, err := r.c.Account(rctx)
		cancel()
		if err != nil {
			return err
		}
		if !a.Exists {
			return &exitError{msg: "there is no account to forget", code: ExitFailure}
		}
		f, isFile := r.stdin.(*os.File)
		if !isFile || !isTerminal(f) {
			return usagef("account forget deletes account %s and its tickets from this computer: confirm with --yes", a.ID)
		}
		fmt.Fprintf(r.stderr, "Forget account %s and delete its tickets from this computer?\n", a.ID)
		fmt.Fprint(r.stderr, "Only its recovery phrase can bring them back. Type yes to go on: ")
		answer, _ := bufio.NewReader(io.LimitReader(f, 64)).ReadString('\n')
		if strings.TrimSpace(strings.ToLower(answer)) != "yes" {
			return &exitError{msg: "not forgotten", code: ExitFailure}
		}
	}
	rctx, cancel := request(ctx)
	defer cancel()
	if _, err := r.c.ForgetAccount(rctx); err != nil {
		return err
	}
	fmt.Fprintln(r.stdout, "Account forgotten; its tickets are deleted.")
	return nil
}

func (r *runner) accountShow(ctx context.Context, args []string) error {
	fs := r.newFlags("account show")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := r.parseFlags(fs, "[--json]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("account show takes no arguments, got %q", pos[0])
	}
	rctx, cancel := request(ctx)
	defer cancel()
	a, err := r.c.Account(rctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(r.stdout, a)
	}
	if !a.Exists {
		fmt.Fprintln(r.stdout, "No account: run `nymvpn account create` or `nymvpn account import`.")
		return nil
	}
	tw := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Account:\t%s\n", a.ID)
	if a.Created != nil {
		fmt.Fprintf(tw, "Created:\t%s\n", a.Created.Local().Format("2006-01-02 15:04:05"))
	}
	if t, err := r.c.Tickets(rctx); err == nil {
		fmt.Fprintf(tw, "Tickets left:\t%s\n", ticketsLine(t))
	}
	return tw.Flush()
}

// ticketsLine is "fast-entry 49, fast-exit 50, ...".
func ticketsLine(t api.Tickets) string {
	var parts []string
	for _, typ := range api.TicketTypes {
		parts = append(parts, fmt.Sprintf("%s %d", typ, t.Left[typ]))
	}
	return strings.Join(parts, ", ")
}

func (r *runner) tickets(ctx context.Context, args []string) error {
	fs := r.newFlags("tickets")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := r.parseFlags(fs, "[--json]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("tickets takes no arguments, got %q", pos[0])
	}
	rctx, cancel := request(ctx)
	defer cancel()
	t, err := r.c.Tickets(rctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(r.stdout, t)
	}
	printTickets(r.stdout, t, time.Now())
	return nil
}

// printTickets writes t for a person.
func printTickets(w io.Writer, t api.Tickets, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tLEFT")
	for _, typ := range api.TicketTypes {
		fmt.Fprintf(tw, "%s\t%d\n", typ, t.Left[typ])
	}
	tw.Flush()
	switch n := len(t.Books); {
	case n == 0:
		fmt.Fprintln(w, "Books: none")
	case t.NextExpiry != nil:
		fmt.Fprintf(w, "Books: %d; the first expires %s (in %s)\n", n, t.NextExpiry.Local().Format("2006-01-02 15:04"), untilText(t.NextExpiry.Sub(now)))
	default:
		fmt.Fprintf(w, "Books: %d\n", n)
	}
	if len(t.Refilling) > 0 {
		fmt.Fprintf(w, "Fetching a new book: %s\n", strings.Join(t.Refilling, ", "))
	}
	if t.RefillError != "" {
		fmt.Fprintf(w, "Last fetch failed: %s\n", t.RefillError)
	}
}

// untilText is a time ahead in days and hours, or hours and minutes.
func untilText(d time.Duration) string {
	d = max(d, 0).Round(time.Minute)
	if d >= 24*time.Hour {
		return fmt.Sprintf("%dd %dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
	}
	return d.String()
}
