package daemon

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/credential/wallet"
	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/control"
	"github.com/nymvpn/nymvpn/daemon/tunnelstate"
	"github.com/nymvpn/nymvpn/modes/fast"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/issuer"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/tyler-smith/go-bip39"
)

// The daemon's wallet: the account (from a recovery phrase), its
// ticketbooks and their refill, in <state-dir>/wallet (0700, files 0600).
//
// How the wallet reaches the issuers: while the tunnel carries the
// machine's traffic (routes up), through the tunnel like any other program,
// so the issuers see the exit gateway's address and the kill switch needs
// no hole; otherwise over marked sockets around the tunnel. A connection
// attempt that has no ticket of a type it needs fetches a book first, and
// before that lets the issuers' endpoints through the kill switch (the
// attempt's allow callback) — the only moment the issuers see the user's
// own address.

// StageTickets is the connector's stage while it fetches ticketbooks.
const StageTickets = "fetching tickets from the issuers"

// meterInterval is how often a tunnel compares its hops' traffic with the
// allowance its tickets bought (fast.Config.MeterInterval). A quarter of a
// second: reading two devices' counters is cheap, and a slow check spends
// the quarter-ticket margin the gateway leaves for the top-up.
const meterInterval = 250 * time.Millisecond

// ticketsPublishInterval is how often the wallet's content is compared with
// what the Hub published (refills happen in the wallet's own goroutine).
const ticketsPublishInterval = 2 * time.Second

// payTypes are the ticket types a fast-mode connection spends.
var payTypes = []credential.TicketType{credential.FastEntry, credential.FastExit}

// mixnetPayTypes are those a mixnet-mode connection spends: the entry's
// mixnet ingress and the exit's IP packet router.
var mixnetPayTypes = []credential.TicketType{credential.MixnetEntry, credential.MixnetExit}

// accounts is the daemon's side of the wallet: the account API, the
// connector's payments, and publishing the tickets left.
type accounts struct {
	log *slog.Logger
	dir string
	w   *wallet.Wallet // nil when the wallet could not be opened
	// openErr is why w is nil.
	openErr error
	net     *walletNet
	hub     *control.Hub
	// tunnelState reports the tunnel's state (forget refuses while it is up).
	tunnelState func(context.Context) (api.State, error)
	kick        chan struct{}

	mu sync.Mutex // serializes account changes
}

// walletNet dials for the wallet: through the tunnel while it carries the
// machine's traffic, else over marked sockets around it — where the kill
// switch lets them through, failing at once elsewhere rather than waiting
// for a connection the firewall drops.
type walletNet struct {
	mark      uint32
	viaTunnel atomic.Bool
	// protection is the kill switch's last applied rules (nil: none yet).
	protection atomic.Pointer[tunnelstate.Protection]
}

// errBlocked: the kill switch keeps the wallet from the issuers now.
var errBlocked = fmt.Errorf("%w: the kill switch blocks them; they are reached while connecting and through the tunnel", wallet.ErrNotNow)

func (n *walletNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if n.viaTunnel.Load() {
		d := net.Dialer{Timeout: 15 * time.Second}
		return d.DialContext(ctx, network, addr)
	}
	if p := n.protection.Load(); p != nil && p.Block && !allowsTCP(p, addr) {
		return nil, errBlocked
	}
	return markedDialer(n.mark).DialContext(ctx, network, addr)
}

// allowsTCP reports whether p lets the daemon's marked sockets reach addr.
func allowsTCP(p *tunnelstate.Protection, addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return false
	}
	for _, e := range p.Endpoints {
		if e.Proto == "tcp" && e.Addr.Addr().Unmap() == ap.Addr().Unmap() && e.Addr.Port() == ap.Port() {
			return true
		}
	}
	return false
}

// watchedFirewall tells the wallet's dialer what the kill switch lets
// through.
type watchedFirewall struct {
	tunnelstate.Firewall
	n *walletNet
}

func (w *watchedFirewall) Protect(ctx context.Context, p tunnelstate.Protection) error {
	err := w.Firewall.Protect(ctx, p)
	if err == nil {
		w.n.protection.Store(&p)
	}
	return err
}

// watch wraps the kill switch's firewall (nil stays nil) so that the
// wallet knows what it lets through.
func (a *accounts) watch(fw tunnelstate.Firewall) tunnelstate.Firewall {
	if fw == nil {
		return nil
	}
	return &watchedFirewall{Firewall: fw, n: a.net}
}

// client is the wallet's HTTP client. No connection is kept: one made
// around the tunnel must not be reused once the tunnel is up, where the
// kill switch blocks it, nor the other way round.
func (n *walletNet) client() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: n.dial, Proxy: nil, DisableKeepAlives: true},
		Timeout:   issuer.DefaultHTTPTimeout,
	}
}

// openAccounts opens the wallet in stateDir/wallet; a wallet that cannot be
// opened is reported (openErr) rather than stopping the daemon, which can
// still use gateways that take no tickets.
func openAccounts(stateDir string, mark uint32, directoryURL func() string, log *slog.Logger) *accounts {
	a := &accounts{log: log, dir: filepath.Join(stateDir, "wallet"), net: &walletNet{mark: mark}, kick: make(chan struct{}, 1)}
	hc := a.net.client()
	a.w, a.openErr = wallet.Open(wallet.Config{
		Dir:  a.dir,
		HTTP: hc,
		Topology: func(ctx context.Context) (*directory.Topology, error) {
			u := directoryURL()
			if u == "" {
				return nil, errors.New("no network directory is configured")
			}
			return (&directory.Client{URL: u, HTTP: hc}).Fetch(ctx)
		},
		Keep:   payTypes,
		Logger: log,
	})
	if a.openErr != nil {
		log.Error("the wallet cannot be opened: no tickets can be bought or spent", "dir", a.dir, "err", a.openErr)
	}
	return a
}

// routed is told whether the tunnel carries the machine's traffic.
func (a *accounts) routed(up bool) { a.net.viaTunnel.Store(up) }

// run keeps the books stocked and the published tickets current until ctx
// ends.
func (a *accounts) run(ctx context.Context) {
	if a.w == nil {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { a.w.Run(ctx) })
	tick := time.NewTicker(ticketsPublishInterval)
	defer tick.Stop()
	for {
		a.publish()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-a.kick:
			// A new account: stock it now rather than at the
			// wallet's next minute.
			wg.Go(func() {
				for _, typ := range payTypes {
					if a.w.Counts()[typ] >= wallet.DefaultRefillBelow {
						continue
					}
					if err := a.w.Refill(ctx, typ); err != nil && ctx.Err() == nil {
						a.log.Warn("fetching tickets for the account", "type", typ, "err", err)
					}
					a.publish()
				}
			})
		}
	}
}

// unavailable is the API's answer when the wallet could not be opened.
func (a *accounts) unavailable() error {
	return &api.APIError{Code: api.CodeUnavailable, Message: fmt.Sprintf("the wallet in %s cannot be opened: %v", a.dir, a.openErr)}
}

func noAccountError() *api.APIError {
	return &api.APIError{Code: api.CodeNoAccount, Message: "there is no account: run `nymvpn account create` or `nymvpn account import`"}
}

// info describes the wallet's account.
func (a *accounts) info() api.Account {
	acct := a.w.Account()
	if acct == nil {
		return api.Account{}
	}
	out := api.Account{Exists: true, ID: base64.StdEncoding.EncodeToString(acct.ID())}
	if fi, err := os.Stat(filepath.Join(a.dir, "account")); err == nil {
		t := fi.ModTime().UTC()
		out.Created = &t
	}
	return out
}

// Account implements control.AccountBackend.
func (d *daemon) Account(context.Context) (api.Account, error) {
	if d.accounts.w == nil {
		return api.Account{}, d.accounts.unavailable()
	}
	return d.accounts.info(), nil
}

// CreateAccount implements control.AccountBackend.
func (d *daemon) CreateAccount(context.Context) (api.AccountCreated, error) {
	a := d.accounts
	if a.w == nil {
		return api.AccountCreated{}, a.unavailable()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur := a.info(); cur.Exists {
		return api.AccountCreated{}, &api.APIError{Code: api.CodeAccountExists, Message: fmt.Sprintf(
			"an account is already set up (%s); to replace it, run `nymvpn account forget` first — its tickets are lost unless you kept its recovery phrase", cur.ID)}
	}
	phrase, err := a.w.CreateAccount()
	if err != nil {
		return api.AccountCreated{}, fmt.Errorf("create account: %w", err)
	}
	info := a.info()
	a.log.Info("account created", "id", info.ID)
	a.changed()
	return api.AccountCreated{Account: info, Phrase: phrase}, nil
}

// ImportAccount implements control.AccountBackend.
func (d *daemon) ImportAccount(_ context.Context, phrase string) (api.Account, error) {
	a := d.accounts
	if a.w == nil {
		return api.Account{}, a.unavailable()
	}
	acct, err := wallet.AccountFromPhrase(phrase)
	if err != nil {
		return api.Account{}, &api.APIError{Code: api.CodeBadPhrase, Message: describeBadPhrase(phrase)}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur := a.w.Account(); cur != nil {
		if cur.ID().Equal(acct.ID()) {
			return a.info(), nil // already this account
		}
		return api.Account{}, &api.APIError{Code: api.CodeAccountExists, Message: fmt.Sprintf(
			"another account is set up (%s); to replace it, run `nymvpn account forget` first", base64.StdEncoding.EncodeToString(cur.ID()))}
	}
	if err := a.w.ImportAccount(phrase); err != nil {
		return api.Account{}, fmt.Errorf("import account: %w", err)
	}
	info := a.info()
	a.log.Info("account imported", "id", info.ID)
	a.changed()
	return info, nil
}

// describeBadPhrase says what is wrong with a phrase without repeating any
// of its words.
func describeBadPhrase(phrase string) string {
	words := strings.Fields(strings.ToLower(phrase))
	const want = "want the 24 words `nymvpn account create` showed, in order"
	switch n := len(words); n {
	case 12, 15, 18, 21, 24:
	default:
		return fmt.Sprintf("not a recovery phrase: it has %d words; %s", n, want)
	}
	for i, w := range words {
		if _, ok := bip39.GetWordIndex(w); !ok {
			return fmt.Sprintf("not a recovery phrase: word %d is not in the BIP39 English word list; %s", i+1, want)
		}
	}
	return "not a recovery phrase: its checksum does not match (a word is wrong or out of order); " + want
}

// ForgetAccount implements control.AccountBackend.
func (d *daemon) ForgetAccount(ctx context.Context) (api.Account, error) {
	a := d.accounts
	if a.w == nil {
		return api.Account{}, a.unavailable()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	info := a.info()
	if !info.Exists {
		return api.Account{}, noAccountError()
	}
	st, err := a.tunnelState(ctx)
	if err != nil {
		return api.Account{}, err
	}
	switch st.Kind {
	case api.Connecting, api.Connected, api.Disconnecting:
		return api.Account{}, &api.APIError{Code: api.CodeTunnelActive,
			Message: "the tunnel is paid with this account's tickets: disconnect first (`nymvpn disconnect`)"}
	}
	if err := a.w.ForgetAccount(); err != nil {
		return api.Account{}, fmt.Errorf("forget account: %w", err)
	}
	a.log.Info("account forgotten", "id", info.ID)
	a.publish()
	return api.Account{}, nil
}

// Tickets implements control.AccountBackend.
func (d *daemon) Tickets(context.Context) (api.Tickets, error) {
	a := d.accounts
	if a.w == nil {
		return api.Tickets{}, a.unavailable()
	}
	if a.w.Account() == nil {
		return api.Tickets{}, noAccountError()
	}
	return a.snapshot(), nil
}

// changed publishes the wallet and has a new account stocked.
func (a *accounts) changed() {
	a.publish()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// snapshot describes the wallet's tickets.
func (a *accounts) snapshot() api.Tickets {
	t := api.Tickets{Left: map[string]int{}}
	for _, name := range api.TicketTypes {
		t.Left[name] = 0
	}
	if a.w == nil {
		return t
	}
	acct := a.w.Account()
	if acct == nil {
		return t
	}
	t.Account = true
	for typ, n := range a.w.Counts() {
		t.Left[typ.String()] = n
	}
	for _, b := range a.w.Books() {
		t.Books = append(t.Books, api.Ticketbook{Type: b.Type.String(), Expires: b.Expires.UTC(), Total: b.Total, Remaining: b.Remaining})
	}
	if len(t.Books) > 0 {
		e := t.Books[0].Expires
		t.NextExpiry = &e
	}
	for _, typ := range a.w.Fetching() {
		t.Refilling = append(t.Refilling, typ.String())
	}
	if err := a.w.LastRefillError(); err != nil {
		t.RefillErrorCode = api.CodeUnavailable
		t.RefillError = "fetching tickets failed: " + err.Error()
		if wallet.NoAllowance(err) {
			t.RefillErrorCode = api.CodeNoAllowance
			t.RefillError = noAllowanceMessage(acct)
		}
	}
	return t
}

func noAllowanceMessage(acct *wallet.Account) string {
	id := "?"
	if acct != nil {
		id = base64.StdEncoding.EncodeToString(acct.ID())
	}
	return fmt.Sprintf("your tickets ran out: the issuers have no allowance left for account %s; top the account up (on a test network: nym-node issuer-grant --account %s)", id, id)
}

// publish sends the wallet's content to the Hub (which drops repeats).
func (a *accounts) publish() {
	if a != nil && a.hub != nil {
		a.hub.SetTickets(a.snapshot())
	}
}

// payment is one connection attempt's way of paying its gateways.
type payment struct {
	a *accounts
	// ticket is fast.Config.Ticket: nil without an account, so gateways
	// that take no tickets still serve the user.
	ticket func(ctx context.Context, role string, gw directory.Node) ([]byte, error)

	mu        sync.Mutex
	topUpErrs map[string]error // last failed top-up per role, nil after a success
}

// pay prepares a fast-mode attempt's payment (payFor with payTypes).
func (a *accounts) pay(ctx context.Context, topo *directory.Topology, progress func(), allow tunnelstate.Allow) (*payment, error) {
	return a.payFor(ctx, payTypes, topo, progress, allow)
}

// payFor prepares an attempt's payment: without an account nothing (a
// gateway that wants tickets then says so); with one, a ticketbook of every
// type in types (those the connection spends) it has none of is fetched
// first, after the issuers' endpoints are let through the kill switch. The
// payment's ticket function serves every role (wallet.TypeFor).
func (a *accounts) payFor(ctx context.Context, types []credential.TicketType, topo *directory.Topology, progress func(), allow tunnelstate.Allow) (*payment, error) {
	p := &payment{a: a, topUpErrs: map[string]error{}}
	if a == nil || a.w == nil || a.w.Account() == nil {
		return p, nil
	}
	counts := a.w.Counts()
	var need []credential.TicketType
	for _, typ := range types {
		if counts[typ] == 0 {
			need = append(need, typ)
		}
	}
	if len(need) > 0 {
		progress()
		if err := allow(ctx, issuerEndpoints(topo, a.log)...); err != nil {
			return nil, err
		}
		errs := make([]error, len(need))
		var wg sync.WaitGroup
		for i, typ := range need {
			wg.Go(func() { errs[i] = a.w.Refill(ctx, typ) })
		}
		wg.Wait()
		a.publish()
		for _, err := range errs {
			if err == nil {
				continue
			}
			if perr := p.classify(err); perr != nil {
				return nil, perr
			}
			return nil, fmt.Errorf("fetch tickets from the issuers: %w", err)
		}
	}
	p.ticket = func(ctx context.Context, role string, gw directory.Node) ([]byte, error) {
		tk, err := a.w.Ticket(ctx, role, gw)
		a.publish()
		return tk, err
	}
	return p, nil
}

// onTopUp is fast.Config.OnTopUp.
func (p *payment) onTopUp(role string, _ int64, err error) {
	p.mu.Lock()
	p.topUpErrs[role] = err
	p.mu.Unlock()
	p.a.publish()
}

// check reports a hop whose allowance is used up after its top-up failed:
// the gateway has cut it off, and only a new connection (which fetches
// tickets, or says why it cannot) helps.
func (p *payment) check(t *fast.Tunnel) error {
	if p == nil {
		return nil
	}
	entry, exit := t.Allowances()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range []struct {
		role string
		a    fast.Allowance
	}{{registration.RoleEntry, entry}, {registration.RoleExit, exit}} {
		err := p.topUpErrs[h.role]
		if !h.a.Metered || h.a.Left > 0 || err == nil {
			continue
		}
		if wallet.NoAllowance(err) {
			return fmt.Errorf("the %s gateway's allowance is used up and %s", h.role, noAllowanceMessage(p.a.w.Account()))
		}
		return fmt.Errorf("the %s gateway's allowance is used up and paying again failed: %w", h.role, err)
	}
	return nil
}

// classify turns a failure to pay into the state machine's permanent
// error, or returns nil when retrying may help (payment_unavailable: the
// gateway does not know the issuers' key yet; issuers unreachable).
func (p *payment) classify(err error) error {
	switch {
	case errors.Is(err, wallet.ErrNoAccount):
		return tunnelstate.Permanent(api.CodeNoAccount, errors.New(noAccountError().Message))
	case wallet.NoAllowance(err):
		var acct *wallet.Account
		if p.a != nil && p.a.w != nil {
			acct = p.a.w.Account()
		}
		return tunnelstate.Permanent(api.CodeNoAllowance, errors.New(noAllowanceMessage(acct)))
	}
	var rerr *registration.Error
	if !errors.As(err, &rerr) {
		return nil
	}
	switch {
	case rerr.Code == registration.CodePaymentRequired && p.ticket == nil:
		return noAccountToPay(err)
	case rerr.Code == registration.CodePaymentRequired:
		return tunnelstate.Permanent(api.CodeUnavailable, fmt.Errorf("gateway wants payment: %w", err))
	case rerr.Code == registration.CodeTicketStale:
		return tunnelstate.Permanent(api.CodeTicketRefused, fmt.Errorf("the gateway refused a ticket as stale: is this computer's clock right? (%w)", err))
	case registration.IsTicketRefusal(rerr.Code):
		return tunnelstate.Permanent(api.CodeTicketRefused, fmt.Errorf("the gateway refused a ticket: %w", err))
	}
	return nil
}

// noAccountToPay is the permanent error of a gateway that wants payment
// (err) from a user without an account.
func noAccountToPay(err error) error {
	return tunnelstate.Permanent(api.CodeNoAccount, fmt.Errorf(
		"this network's gateways take tickets and there is no account: run `nymvpn account create` or `nymvpn account import` (%w)", err))
}

// issuerEndpoints are the issuers' HTTP endpoints, for the kill switch;
// issuers whose URL names no IP address are left out (DNS is blocked
// while connecting) and logged.
func issuerEndpoints(topo *directory.Topology, log *slog.Logger) []tunnelstate.Endpoint {
	var eps []tunnelstate.Endpoint
	for _, n := range topo.WithRole(directory.RoleIssuer) {
		ep, err := urlEndpoint(n.IssuerURL)
		if err != nil {
			log.Warn("an issuer cannot be let through the kill switch", "issuer", n.ID, "err", err)
			continue
		}
		eps = append(eps, ep)
	}
	return eps
}

// urlEndpoint is the TCP endpoint of an http(s) URL that names an IP address.
func urlEndpoint(raw string) (tunnelstate.Endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return tunnelstate.Endpoint{}, err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return tunnelstate.Endpoint{}, fmt.Errorf("%q does not name an IP address and port", raw)
	}
	return tunnelstate.Endpoint{Proto: "tcp", Addr: ap}, nil
}
