package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/app/viewmodel"
	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/control"
	"github.com/nymvpn/nymvpn/daemon/settings"
)

// backend is a fake control.Backend: it walks through the daemon's connect
// stages in the background, pausing before the fourth one while hold is
// set, and refuses mixnet mode as the daemon of this version does.
type backend struct {
	hub *control.Hub

	mu       sync.Mutex
	hold     chan struct{} // closed to let a held connect go on
	release  func()        // of the last holdConnects
	connects []api.ConnectRequest
	wg       sync.WaitGroup

	// account is the wallet's account (nil: none), phrases every phrase
	// handed out or taken, so tests can look for them in logs.
	account *api.Account
	phrases []string
}

// fakePhrase is the one recovery phrase the fake backend creates and
// imports (a valid BIP39 phrase).
const fakePhrase = "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title"

// fakeAccountID is its account's id.
const fakeAccountID = "q3Yt0m8cXzqfVv8sQd0m2c8Q1kq0cJ9o0m7VZ3v9r1A="

// noTickets is the wallet without an account.
func noTickets() api.Tickets {
	return api.Tickets{Left: map[string]int{api.TicketFastEntry: 0, api.TicketFastExit: 0, api.TicketMixnetEntry: 0, api.TicketMixnetExit: 0}}
}

// Account, CreateAccount, ImportAccount, ForgetAccount and Tickets make the
// fake backend a control.AccountBackend, as the daemon's wallet: a new
// account gets a book of 50 fast-entry and fast-exit tickets at once and
// is fetching mixnet ones.
func (b *backend) Account(context.Context) (api.Account, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.account == nil {
		return api.Account{}, nil
	}
	return *b.account, nil
}

func (b *backend) CreateAccount(context.Context) (api.AccountCreated, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.account != nil {
		return api.AccountCreated{}, &api.APIError{Code: api.CodeAccountExists,
			Message: "an account is already set up (" + b.account.ID + "); to replace it, run `nymvpn account forget` first"}
	}
	b.setAccountLocked()
	b.phrases = append(b.phrases, fakePhrase)
	return api.AccountCreated{Account: *b.account, Phrase: fakePhrase}, nil
}

func (b *backend) ImportAccount(_ context.Context, phrase string) (api.Account, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.phrases = append(b.phrases, phrase)
	if strings.Join(strings.Fields(strings.ToLower(phrase)), " ") != fakePhrase {
		// As the daemon's: what is wrong, never the words.
		return api.Account{}, &api.APIError{Code: api.CodeBadPhrase,
			Message: fmt.Sprintf("not a recovery phrase: it has %d words; want the 24 words `nymvpn account create` showed, in order", len(strings.Fields(phrase)))}
	}
	if b.account != nil {
		return *b.account, nil
	}
	b.setAccountLocked()
	return *b.account, nil
}

func (b *backend) setAccountLocked() {
	created := time.Now().UTC().Truncate(time.Second)
	b.account = &api.Account{Exists: true, ID: fakeAccountID, Created: &created}
	exp := created.Add(7 * 24 * time.Hour)
	b.hub.SetTickets(api.Tickets{Account: true,
		Left:       map[string]int{api.TicketFastEntry: 50, api.TicketFastExit: 50, api.TicketMixnetEntry: 0, api.TicketMixnetExit: 0},
		NextExpiry: &exp, Refilling: []string{api.TicketMixnetEntry, api.TicketMixnetExit},
		Books: []api.Ticketbook{{Type: api.TicketFastEntry, Expires: exp, Total: 50, Remaining: 50},
			{Type: api.TicketFastExit, Expires: exp, Total: 50, Remaining: 50}}})
}

func (b *backend) ForgetAccount(context.Context) (api.Account, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.account == nil {
		return api.Account{}, &api.APIError{Code: api.CodeNoAccount, Message: "there is no account: run `nymvpn account create` or `nymvpn account import`"}
	}
	switch b.hub.Status().State.Kind {
	case api.Connecting, api.Connected, api.Disconnecting:
		return api.Account{}, &api.APIError{Code: api.CodeTunnelActive,
			Message: "the tunnel is paid with this account's tickets: disconnect first (`nymvpn disconnect`)"}
	}
	b.account = nil
	b.hub.SetTickets(noTickets())
	return api.Account{}, nil
}

func (b *backend) Tickets(context.Context) (api.Tickets, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.account == nil {
		return api.Tickets{}, &api.APIError{Code: api.CodeNoAccount, Message: "there is no account"}
	}
	return *b.hub.Status().Tickets, nil
}

// spend spends n fast-entry tickets, as a connection paying its way.
func (b *backend) spend(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := *b.hub.Status().Tickets
	t.Left[api.TicketFastEntry] -= n
	b.hub.SetTickets(t)
}

var _ control.AccountBackend = (*backend)(nil)

func (b *backend) Connect(_ context.Context, req api.ConnectRequest) (api.State, error) {
	var p api.SettingsPatch
	if req.Mode != "" {
		p.Mode = &req.Mode
	}
	if req.Entry != "" {
		p.Entry = &req.Entry
	}
	if req.Exit != "" {
		p.Exit = &req.Exit
	}
	next, err := settings.Apply(b.hub.Status().Settings, p)
	if err != nil {
		return api.State{}, err
	}
	if next.Mode == api.ModeMixnet {
		return api.State{}, &api.APIError{Code: api.CodeNotSupported,
			Message: "mixnet mode is not available in this version yet; use fast mode (nymvpn connect --mode fast)"}
	}
	b.wg.Wait() // one change at a time
	b.mu.Lock()
	b.connects = append(b.connects, req)
	hold := b.hold
	b.mu.Unlock()
	b.hub.SetSettings(next)
	b.hub.SetTarget("connected")
	first := api.State{Kind: api.Connecting, Mode: api.ModeFast, Stage: viewmodel.FastStages[0], Attempt: 1}
	b.hub.SetState(first)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		de := &api.Gateway{ID: "entry-de-1", Country: "DE", Roles: []string{"entry"}}
		ch := &api.Gateway{ID: "exit-ch-1", Country: "CH", Roles: []string{"exit"}}
		for i, s := range viewmodel.FastStages[1:] {
			if i == 2 && hold != nil {
				<-hold
			}
			b.hub.SetState(api.State{Kind: api.Connecting, Mode: api.ModeFast, Stage: s, Attempt: 1, Entry: de, Exit: ch})
		}
		since := time.Now()
		b.hub.SetState(api.State{Kind: api.Connected, Mode: api.ModeFast, Since: &since, Interface: "nymvpn0", Entry: de, Exit: ch,
			Addresses: []netip.Addr{netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("fc01::2")},
			DNS:       []netip.Addr{netip.MustParseAddr("10.1.0.1")}})
		b.hub.SetTraffic(&api.Traffic{TxBytes: 1500, RxBytes: 2_500_000})
	}()
	return first, nil
}

func (b *backend) Disconnect(context.Context) (api.State, error) {
	b.wg.Wait()
	b.hub.SetTarget("disconnected")
	st := api.State{Kind: api.Disconnecting, Mode: api.ModeFast, Then: api.Disconnected}
	b.hub.SetState(st)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.hub.SetTraffic(nil)
		b.hub.SetState(api.State{Kind: api.Disconnected})
	}()
	return st, nil
}

func (b *backend) Gateways(_ context.Context, role, country string) ([]api.Gateway, error) {
	all := []api.Gateway{
		{ID: "entry-de-1", Country: "DE", Roles: []string{"entry"}},
		{ID: "entry-ch-1", Country: "CH", Roles: []string{"entry"}},
		{ID: "exit-ch-1", Country: "CH", Roles: []string{"exit"}},
	}
	var out []api.Gateway
	for _, g := range all {
		if (role == "" || g.Roles[0] == role) && (country == "" || g.Country == country) {
			out = append(out, g)
		}
	}
	return out, nil
}

func (b *backend) UpdateSettings(_ context.Context, p api.SettingsPatch) (api.Settings, error) {
	s, err := settings.Apply(b.hub.Status().Settings, p)
	if err != nil {
		return s, err
	}
	b.hub.SetSettings(s)
	return s, nil
}

// holdConnects makes the next connects pause before their fourth stage
// until the returned function is called.
func (b *backend) holdConnects() (release func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := make(chan struct{})
	b.hold = h
	var once sync.Once
	b.release = func() {
		once.Do(func() {
			close(h)
			b.mu.Lock()
			b.hold = nil
			b.mu.Unlock()
		})
	}
	return b.release
}

// readOnly lets nobody change anything.
type readOnly struct{}

func (readOnly) AuthorizeWrite(control.PeerCred) error {
	return errors.New("you may only read the VPN state: run as root (sudo), join the nymvpn group (sudo usermod -aG nymvpn $USER, then log in again)")
}

// fakeDaemon is a real control.Server over the fake backend.
type fakeDaemon struct {
	path string
	hub  *control.Hub
	b    *backend

	mu   sync.Mutex
	srv  *control.Server
	done chan error
	// plain is set for a daemon that keeps no account (noWallet).
	plain bool
}

// noWallet makes d a daemon without an account: its backend is no
// control.AccountBackend and its status carries no tickets. Call before
// start.
func (d *fakeDaemon) noWallet() {
	d.plain = true
	st := d.hub.Status()
	st.Tickets = nil
	d.hub = control.NewHub(st)
	d.b.hub = d.hub
}

// newFakeDaemon prepares a daemon on a socket in a fresh directory (short,
// for the length limit of socket paths); start serves it.
func newFakeDaemon(t *testing.T) *fakeDaemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "nymapp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &fakeDaemon{path: filepath.Join(dir, "nymvpnd.sock")}
	d.hub = control.NewHub(api.Status{State: api.State{Kind: api.Disconnected}, Target: "disconnected",
		Settings: api.DefaultSettings(), Daemon: api.DaemonInfo{Version: "v-test", PID: 4242}})
	d.hub.SetTickets(noTickets())
	d.b = &backend{hub: d.hub}
	t.Cleanup(func() {
		d.stop(t)
		d.b.mu.Lock()
		release := d.b.release
		d.b.mu.Unlock()
		if release != nil {
			release() // a test that failed while holding
		}
		d.b.wg.Wait()
	})
	return d
}

func (d *fakeDaemon) start(t *testing.T, authz control.Authorizer) {
	t.Helper()
	if authz == nil {
		authz = &control.Policy{OperatorUID: os.Geteuid()}
	}
	var b control.Backend = d.b
	if d.plain {
		b = struct{ control.Backend }{d.b} // only the Backend's methods
	}
	srv, err := control.New(control.Config{Backend: b, Hub: d.hub, Authorizer: authz,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := control.Listen(d.path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	d.mu.Lock()
	d.srv, d.done = srv, done
	d.mu.Unlock()
}

// stop stops serving (as a stopped daemon: the socket goes away).
func (d *fakeDaemon) stop(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	srv, done := d.srv, d.done
	d.srv = nil
	d.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Close()
	<-done
	os.Remove(d.path)
}
