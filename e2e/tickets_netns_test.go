package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/credential/wallet"
	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/internal/netnstest"
)

// paidTicketBytes is what one ticket buys on the paid test network: small,
// so that a download of a few megabytes outlives several tickets.
const paidTicketBytes = 2_000_000

// issuerSet is three issuers (2 of 3) in the entry namespace, on the entry
// host's client-side address, which the client reaches directly and the
// exit through the entry host.
type issuerSet struct {
	keys string   // the dealer's output: issuer-<i>/ data directories
	urls []string // their URLs
}

// paidNetwork is the option of a network whose gateways take tickets
// (--free-pass off) of paidTicketBytes each, paid to the issuers of s.
func (s *issuerSet) paidNetwork() netOption { return s.paidNetworkOf(paidTicketBytes) }

// paidNetworkOf is paidNetwork with tickets of ticketBytes.
func (s *issuerSet) paidNetworkOf(ticketBytes int) netOption {
	gwArgs := []string{"--free-pass=false", "--ticket-bandwidth", strconv.Itoa(ticketBytes)}
	return netOption{
		linked: func(t testing.TB, n *testNet) {
			// The exit gateway reports spent tickets to the issuers.
			n.exit.Route(t, netip.PrefixFrom(entryAddrC.Masked().Addr(), entryAddrC.Bits()), entryAddrX.Addr())
		},
		entryArgs: gwArgs,
		exitArgs:  gwArgs,
		ready: func(t testing.TB, n *testNet) {
			s.keys = filepath.Join(t.TempDir(), "issuers")
			if out, err := exec.Command(filepath.Join(n.bin, "nym-node"), "issuer-keygen", "--t", "2", "--n", "3", "--out", s.keys).CombinedOutput(); err != nil {
				t.Fatalf("issuer-keygen: %v\n%s", err, out)
			}
			var procs []*netnstest.Process
			for i := 1; i <= 3; i++ {
				id := fmt.Sprintf("issuer-%d", i)
				p := n.entry.Start(t, id, filepath.Join(n.bin, "nym-node"), "--role", "issuer", "--id", id, "--country", "CH",
					"--data-dir", filepath.Join(s.keys, id), "--directory", n.urlFrom(entryAddrC),
					"--listen", fmt.Sprintf("%s:%d", entryAddrC.Addr(), 8090+i))
				s.urls = append(s.urls, p.WaitFor(t, regexp.MustCompile(`issuer: (\S+)`), readyTimeout)[1])
				procs = append(procs, p)
			}
			for i := range procs {
				waitListed(t, n.client, fmt.Sprintf("issuer-%d", i+1), procs...)
			}
			// The gateways look for the issuers every 5 s until they
			// find them, then verify tickets with their key.
			for _, gw := range []*netnstest.Process{n.entryGW, n.exitGW} {
				gw.WaitFor(t, regexp.MustCompile(`msg="issuers' key aggregated"`), readyTimeout)
			}
		},
	}
}

// grant gives the account (base64 id) tickets at every issuer through its
// admin API, as an operator would.
func (s *issuerSet) grant(t testing.TB, ns *netnstest.Namespace, bin, id string, tickets int) {
	t.Helper()
	for i, u := range s.urls {
		ns.MustRun(t, filepath.Join(bin, "nym-node"), "issuer-grant", "--issuer", u,
			"--token-file", filepath.Join(s.keys, fmt.Sprintf("issuer-%d", i+1), "admin.token"),
			"--account", id, "--tickets", strconv.Itoa(tickets))
	}
}

// importAccount makes a new account, has the issuers grant it tickets, and
// imports its phrase into the daemon with `nymvpn account import` from
// stdin; it returns the phrase and the account's id.
func (s *issuerSet) importAccount(t testing.TB, d *daemonNet, tickets int) (phrase, id string) {
	t.Helper()
	phrase, err := wallet.NewPhrase()
	if err != nil {
		t.Fatal(err)
	}
	acct, err := wallet.AccountFromPhrase(phrase)
	if err != nil {
		t.Fatal(err)
	}
	id = base64.StdEncoding.EncodeToString(acct.ID())
	s.grant(t, d.entry, d.bin, id, tickets)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := d.client.Command(ctx, d.cli, "--socket", d.socket, "account", "import")
	cmd.Stdin = strings.NewReader(phrase + "\n")
	if b, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(b)) != "Account imported: "+id {
		t.Fatalf("account import: %v\n%s", err, b)
	}
	return phrase, id
}

// TestDaemonPaysWithTickets runs nymvpnd against gateways that take tickets
// (no --free-pass) and three issuers: without an account the connection
// ends in the Error state with no_account and says what to do; `nymvpn
// account import` reads the phrase of an account the issuers gave tickets
// to from stdin; `nymvpn connect --wait`, with the kill switch on, fetches a
// book of each type through it and pays both gateways; the connection then
// outlives several tickets (top-ups) during a download; `nymvpn tickets`
// and the status show what is left; the phrase never reaches the log.
func TestDaemonPaysWithTickets(t *testing.T) {
	netnstest.RequireRoot(t)
	requireTUN(t)
	if testing.Short() {
		t.Skip("builds the binaries and a network of namespaces; skipped in -short")
	}
	var iss issuerSet
	d := newDaemonNet(t, iss.paidNetwork())
	must := d.mustNymvpn(t)
	daemon := d.startDaemon(t, "nymvpnd")

	// No account: the entry gateway wants a ticket.
	out, err := d.nymvpn("connect", "--wait", "--timeout", "1m")
	if err == nil || !strings.Contains(out, "nymvpn account import") {
		t.Fatalf("connect without an account: %v\n%s", err, out)
	}
	if st := status(t, must); st.State.Kind != api.Error || st.State.ErrorCode != api.CodeNoAccount {
		t.Fatalf("state without an account: %+v", st.State)
	}

	// An account with an allowance at the issuers, imported from stdin.
	phrase, _ := iss.importAccount(t, d, 200)

	// Connect with the kill switch on: the daemon lets the issuers through,
	// fetches a book of each type, then pays both gateways.
	start := time.Now()
	out = must("connect", "--wait", "--timeout", "2m")
	t.Logf("connect --wait took %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	if !strings.Contains(out, "fetching tickets from the issuers") || !strings.Contains(out, "Connected") {
		t.Errorf("connect output:\n%s", out)
	}
	checkThroughTunnel(t, d.client)
	tk := tickets(t, must)
	if !tk.Account || tk.Left[api.TicketFastEntry] != wallet.DefaultBookSize-1 || tk.Left[api.TicketFastExit] != wallet.DefaultBookSize-1 || len(tk.Books) != 2 {
		t.Fatalf("tickets after connecting: %+v", tk)
	}
	for _, gw := range []*netnstest.Process{d.entryGW, d.exitGW} {
		gw.WaitFor(t, regexp.MustCompile(`msg=registered .*paid=true`), readyTimeout)
	}

	// A download worth two tickets: both hops top up on the way. The rate
	// makes it last many of the daemon's 250 ms checks: unthrottled, these
	// 4 MB can pass within one, before any check, and the tickets are then
	// paid after the download (the gateways' grace carries the debt), not
	// on the way (real tickets are 250 times larger).
	const size = 2 * paidTicketBytes
	got := d.client.MustRun(t, "curl", "-sS", "--max-time", "120", "--limit-rate", "200K", "-o", "/dev/null",
		"-w", "%{size_download}", fmt.Sprintf("http://%s/bytes/%d", inetAddr.Addr(), size))
	if strings.TrimSpace(got) != strconv.Itoa(size) {
		t.Fatalf("download through the paid tunnel got %s bytes, want %d", got, size)
	}
	tk = tickets(t, must)
	t.Logf("tickets after %d bytes: %v", size, tk.Left)
	for _, typ := range []string{api.TicketFastEntry, api.TicketFastExit} {
		if n := tk.Left[typ]; n > wallet.DefaultBookSize-2 || n < wallet.DefaultBookSize-10 {
			t.Errorf("%s tickets left %d: want a top-up or a few (from %d)", typ, n, wallet.DefaultBookSize-1)
		}
	}
	if st := status(t, must); st.State.Kind != api.Connected {
		t.Fatalf("state after the download: %+v", st.State)
	}
	netnstest.Poll(t, readyTimeout, "the status shows the tickets left", func() error {
		st := status(t, must)
		if st.Tickets == nil || st.Tickets.Left[api.TicketFastExit] != tk.Left[api.TicketFastExit] {
			return fmt.Errorf("status tickets %+v", st.Tickets)
		}
		return nil
	})
	out = must("tickets")
	for _, want := range []string{"fast-entry", "fast-exit", "Books: 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("nymvpn tickets lacks %q:\n%s", want, out)
		}
	}
	must("disconnect", "--wait")

	// The recovery phrase never reached the daemon's log.
	log := strings.ToLower(daemon.Output())
	words := strings.Fields(phrase)
	for i := 0; i+1 < len(words); i++ {
		if strings.Contains(log, words[i]+" "+words[i+1]) {
			t.Fatalf("the daemon's log holds part of the recovery phrase")
		}
	}
}

func tickets(t testing.TB, run func(...string) string) api.Tickets {
	t.Helper()
	var tk api.Tickets
	out := run("tickets", "--json")
	if err := json.Unmarshal([]byte(out), &tk); err != nil {
		t.Fatalf("tickets --json: %v\n%s", err, out)
	}
	return tk
}

// runOutTicketBytes is what one ticket buys on the network where the
// tickets run out: one book of each type (50 tickets) lasts 12.8 MB.
const runOutTicketBytes = 256 << 10

// TestDaemonTicketsRunOut runs a connection until its tickets run out. The
// issuers give the account exactly one book of each type; a download
// spends them in top-ups, the issuers refuse the next book, and the daemon
// ends in the Error state with no_allowance and a message that says what to
// do, through the API and the CLI; the kill switch keeps blocking meanwhile
// (a capture on the client's only link, which has a default route out, sees
// nothing but the gateway, the directory and the issuers), and nothing
// crashes. Once the account is granted more, connecting works again.
func TestDaemonTicketsRunOut(t *testing.T) {
	netnstest.RequireRoot(t)
	requireTUN(t)
	if testing.Short() {
		t.Skip("builds the binaries and a network of namespaces; skipped in -short")
	}
	var iss issuerSet
	d := newDaemonNet(t, iss.paidNetworkOf(runOutTicketBytes))
	d.client.DefaultRoute(t, entryAddrC.Addr()) // a leak would get out
	link := strings.Fields(d.client.MustRun(t, "ip", "-o", "-4", "addr", "show", "to", clientAddr.Addr().String()))[1]
	must := d.mustNymvpn(t)
	daemon := d.startDaemon(t, "nymvpnd")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nymvpnd:\n%s", daemon.Output())
		}
	})

	_, id := iss.importAccount(t, d, 2*wallet.DefaultBookSize) // one book of each type, no more
	must("connect", "--wait", "--timeout", "2m")
	checkThroughTunnel(t, d.client)

	// Spend the books: downloads larger than 50 tickets buy, until a type
	// has no ticket left (each stops when the tunnel does: curl gives up on
	// a stalled transfer).
	allowed := []string{"tcp/" + entryAddrC.Addr().String() + ":" + directoryPort, "tcp/" + entryAddrC.Addr().String() + ":51821",
		"udp/" + entryAddrC.Addr().String() + ":51822"}
	for _, u := range iss.urls {
		allowed = append(allowed, "tcp/"+strings.TrimPrefix(u, "http://"))
	}
	c := startCapture(t, d, link, "run-out")
	const size = 2 * wallet.DefaultBookSize * runOutTicketBytes
	for i := 1; ; i++ {
		if i > 10 {
			t.Fatalf("%d downloads of %d bytes did not use up %d tickets of %d bytes", i-1, size, wallet.DefaultBookSize, runOutTicketBytes)
		}
		out, err := d.client.Run("curl", "-sS", "--max-time", "120", "--limit-rate", "2M", "--speed-limit", "10000", "--speed-time", "10",
			"-o", "/dev/null", "-w", "%{size_download}", fmt.Sprintf("http://%s/bytes/%d", inetAddr.Addr(), size))
		tk := tickets(t, must)
		t.Logf("download %d: %v, %s bytes; tickets left %v", i, err, out, tk.Left)
		if tk.Left[api.TicketFastEntry] == 0 || tk.Left[api.TicketFastExit] == 0 {
			break
		}
		// A tunnel that stopped (reconnecting) comes back first.
		var st api.State
		netnstest.Poll(t, readyTimeout, "connected or error", func() error {
			st = status(t, must).State
			if st.Kind != api.Connected && st.Kind != api.Error {
				return fmt.Errorf("state %s (%s: %s)", st.Kind, st.Stage, st.Reason)
			}
			return nil
		})
		if st.Kind == api.Error {
			break
		}
	}

	// The user sees why: the status (API), the CLI's status and connect.
	st := waitState(t, d, api.Error, nil)
	if st.ErrorCode != api.CodeNoAllowance || !strings.Contains(st.Reason, "your tickets ran out") || !strings.Contains(st.Reason, id) {
		t.Fatalf("state after the tickets ran out: %+v, want error %s saying the tickets ran out for account %s", st, api.CodeNoAllowance, id)
	}
	out := must("status")
	for _, want := range []string{"Error: your tickets ran out", "Error code:", api.CodeNoAllowance, "issuer-grant"} {
		if !strings.Contains(out, want) {
			t.Errorf("nymvpn status lacks %q:\n%s", want, out)
		}
	}
	tk := tickets(t, must)
	if tk.RefillErrorCode != api.CodeNoAllowance || (tk.Left[api.TicketFastEntry] != 0 && tk.Left[api.TicketFastExit] != 0) {
		t.Errorf("tickets after they ran out: %+v", tk)
	}
	// The kill switch holds in the error state.
	probe(t, d.client)
	if l := c.leaks(t, allowed...); len(l) > 0 {
		t.Errorf("leaks while the tickets ran out and after:\n%s", strings.Join(l, "\n"))
	}
	// Connecting again fails the same way, and says so.
	if out, err := d.nymvpn("connect", "--wait", "--timeout", "1m"); err == nil || !strings.Contains(out, "your tickets ran out") {
		t.Errorf("connect without allowance: %v\n%s", err, out)
	}
	for _, p := range []*netnstest.Process{daemon, d.entryGW, d.exitGW} {
		select {
		case <-p.Exited():
			t.Fatalf("%s exited:\n%s", p.Name, p.Output())
		default:
		}
	}

	// More allowance: connecting works again.
	iss.grant(t, d.entry, d.bin, id, 2*wallet.DefaultBookSize)
	must("connect", "--wait", "--timeout", "2m")
	checkThroughTunnel(t, d.client)
	// The connection may have spent a type's last ticket; the wallet then
	// refills it in the background.
	netnstest.Poll(t, readyTimeout, "tickets of both types after the grant", func() error {
		if tk := tickets(t, must); tk.Left[api.TicketFastEntry] == 0 || tk.Left[api.TicketFastExit] == 0 {
			return fmt.Errorf("tickets left %v", tk.Left)
		}
		return nil
	})
	must("disconnect", "--wait")
}
