package wallet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/issuer"
	"github.com/nymvpn/nymvpn/registration"
)

// Defaults, NymVPN's where it has them.
const (
	DefaultBookSize    = 50
	DefaultRefillBelow = 30
	// groupTTL is how long a discovered issuer group is reused.
	groupTTL = 10 * time.Minute
	// expiryMargin: a book is not used in the last minute before it expires.
	expiryMargin = time.Minute
)

// Config configures a wallet.
type Config struct {
	// Dir holds the account, the books and issuance in progress; it is
	// created 0700 and every file in it is 0600.
	Dir string
	// Topology returns the directory's view, where the issuers are listed
	// (see FromDirectory).
	Topology func(ctx context.Context) (*directory.Topology, error)
	HTTP     *http.Client
	// BookSize is the number of tickets per book (default 50).
	BookSize int
	// RefillBelow: Run fetches a new book of a type once fewer unspent
	// tickets of it are left (default 30).
	RefillBelow int
	// Keep are the types Run keeps stocked (default fast entry and exit);
	// other types are fetched on first use and refilled afterwards.
	Keep   []credential.TicketType
	Now    func() time.Time
	Rand   io.Reader
	Logger *slog.Logger
}

// FromDirectory returns a Topology function for the directory at url (with
// its pinned key).
func FromDirectory(url string, hc *http.Client) func(ctx context.Context) (*directory.Topology, error) {
	c := &directory.Client{URL: url, HTTP: hc}
	return c.Fetch
}

// Wallet is an account's ticket store. Safe for concurrent use.
type Wallet struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	account *Account
	books   []*book
	group   *issuer.Group
	groupAt time.Time
	fetch   map[credential.TicketType]*fetchCall
	kick    chan struct{}
	// lastErr is the last failed fetch, nil after a success; "last" by
	// start (errSeq, of fetches numbered by fetchSeq): a fetch that began
	// before the one that set it, say through a tunnel that was dying,
	// does not override a newer answer when it ends late.
	lastErr          error
	errSeq, fetchSeq uint64
}

type book struct {
	path string
	b    *credential.Ticketbook
}

type fetchCall struct {
	acct *Account // the account the book is fetched for
	seq  uint64   // the order it started in
	done chan struct{}
	err  error
}

// pendingFile is an issuance in progress, kept so a restart resumes it with
// the same request id (the issuers answer it again without charging).
type pendingFile struct {
	ID      issuer.RequestID      `json:"request_id"`
	Type    credential.TicketType `json:"type"`
	Pending []byte                `json:"pending"`
	Created time.Time             `json:"created"`
}

// Open opens (creating) the wallet directory and loads the account and books;
// issuance that a previous run left unfinished is resumed by the next refill.
func Open(cfg Config) (*Wallet, error) {
	if cfg.Dir == "" {
		return nil, errors.New("wallet: no directory")
	}
	if cfg.BookSize <= 0 {
		cfg.BookSize = DefaultBookSize
	}
	if cfg.BookSize > issuer.MaxTicketsPerRequest {
		return nil, fmt.Errorf("wallet: book size %d exceeds the issuers' %d", cfg.BookSize, issuer.MaxTicketsPerRequest)
	}
	if cfg.RefillBelow <= 0 {
		cfg.RefillBelow = DefaultRefillBelow
	}
	if cfg.Keep == nil {
		cfg.Keep = []credential.TicketType{credential.FastEntry, credential.FastExit}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Wallet{cfg: cfg, log: cfg.Logger, fetch: map[credential.TicketType]*fetchCall{}, kick: make(chan struct{}, 1)}
	for _, d := range []string{cfg.Dir, w.booksDir(), w.pendingDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("wallet: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("wallet: %w", err)
		}
	}
	raw, err := readPrivate(filepath.Join(cfg.Dir, "account"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if w.account, err = AccountFromPhrase(string(raw)); err != nil {
			return nil, fmt.Errorf("wallet: %s: %w", filepath.Join(cfg.Dir, "account"), err)
		}
	}
	if err := w.loadBooks(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Wallet) booksDir() string   { return filepath.Join(w.cfg.Dir, "books") }
func (w *Wallet) pendingDir() string { return filepath.Join(w.cfg.Dir, "pending") }

// readPrivate reads a file that must be readable by its owner only.
func readPrivate(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("wallet: %s has mode %v; it must be readable by its owner only (chmod 600)", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wallet: %w", err)
	}
	return b, nil
}

// writeFileAtomic writes data to path (0600) so that a crash leaves either the
// old or the new content: a temporary file, fsync, rename, fsync of the
// directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("wallet: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("wallet: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("wallet: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("wallet: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("wallet: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("wallet: %w", err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func (w *Wallet) loadBooks() error {
	ents, err := os.ReadDir(w.booksDir())
	if err != nil {
		return fmt.Errorf("wallet: %w", err)
	}
	now := w.cfg.Now()
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".book") {
			continue
		}
		path := filepath.Join(w.booksDir(), e.Name())
		raw, err := readPrivate(path)
		if err != nil {
			return err
		}
		var b credential.Ticketbook
		if err := b.UnmarshalBinary(raw); err != nil {
			// A corrupt book is set aside, not used: its spent marks are unknown.
			w.log.Warn("wallet: unreadable ticketbook set aside", "file", path, "err", err)
			os.Rename(path, path+".corrupt")
			continue
		}
		if b.Expiry().Expired(now) || b.Remaining() == 0 {
			os.Remove(path)
			continue
		}
		w.books = append(w.books, &book{path: path, b: &b})
	}
	return nil
}

// CreateAccount makes a new account, stores its phrase and returns it: show it
// to the user once, it is the only way to restore the account elsewhere.
func (w *Wallet) CreateAccount() (string, error) {
	phrase, err := NewPhrase()
	if err != nil {
		return "", err
	}
	if err := w.ImportAccount(phrase); err != nil {
		return "", err
	}
	return phrase, nil
}

// ImportAccount restores the account of phrase. A wallet that holds another
// account must forget it first.
func (w *Wallet) ImportAccount(phrase string) error {
	a, err := AccountFromPhrase(phrase)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.account != nil && !w.account.ID().Equal(a.ID()) {
		return errors.New("wallet: an account is already stored; forget it first")
	}
	if err := writeFileAtomic(filepath.Join(w.cfg.Dir, "account"), []byte(a.Phrase()+"\n")); err != nil {
		return err
	}
	w.account = a
	return nil
}

// ForgetAccount deletes the account, its books and issuance in progress.
func (w *Wallet) ForgetAccount() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for _, d := range []string{w.booksDir(), w.pendingDir()} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if err := os.Remove(filepath.Join(d, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := os.Remove(filepath.Join(w.cfg.Dir, "account")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	w.account, w.books, w.lastErr = nil, nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wallet: forget account: %w", err)
	}
	return nil
}

// Account returns the account, or nil.
func (w *Wallet) Account() *Account {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.account
}

// TypeFor is the ticket type that pays a gateway in a registration role.
func TypeFor(role string) (credential.TicketType, error) {
	switch role {
	case registration.RoleEntry:
		return credential.FastEntry, nil
	case registration.RoleExit:
		return credential.FastExit, nil
	case registration.RoleMixnet:
		return credential.MixnetEntry, nil
	case registration.RoleMixnetExit:
		return credential.MixnetExit, nil
	}
	return 0, fmt.Errorf("wallet: no ticket type for role %q", role)
}

// Ticket spends one ticket for gw in role, bound to gw's key and the current
// time: the function modes/fast's Config.Ticket wants. It fetches a book first
// if none of the type is left, and asks for a refill when few are.
func (w *Wallet) Ticket(ctx context.Context, role string, gw directory.Node) ([]byte, error) {
	typ, err := TypeFor(role)
	if err != nil {
		return nil, err
	}
	if gw.NoiseKey.IsZero() {
		return nil, fmt.Errorf("wallet: gateway %s has no key to bind a ticket to", gw.ID)
	}
	return w.Spend(ctx, typ, [32]byte(gw.NoiseKey))
}

// Spend spends one ticket of typ bound to gatewayKey (the gateway's Noise key).
func (w *Wallet) Spend(ctx context.Context, typ credential.TicketType, gatewayKey [32]byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		sp, left, err := w.spendOne(typ, gatewayKey)
		if err == nil {
			if left < w.cfg.RefillBelow {
				w.wantRefill(typ)
			}
			return sp, nil
		}
		if !errors.Is(err, errEmpty) || attempt > 0 {
			return nil, err
		}
		if err := w.Refill(ctx, typ); err != nil {
			return nil, err
		}
	}
}

var errEmpty = errors.New("wallet: no ticket left")

// spendOne spends from the book of typ that expires first, and writes the book
// (spent mark included) before the spend is returned.
func (w *Wallet) spendOne(typ credential.TicketType, gatewayKey [32]byte) ([]byte, int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.account == nil {
		return nil, 0, ErrNoAccount
	}
	now := w.cfg.Now()
	bk := w.usableLocked(typ, now)
	if bk == nil {
		return nil, 0, fmt.Errorf("%w of type %v", errEmpty, typ)
	}
	pay, err := credential.NewPayInfo(w.cfg.Rand, gatewayKey, now)
	if err != nil {
		return nil, 0, err
	}
	i := bk.b.NextUnused()
	sp, err := bk.b.Spend(w.cfg.Rand, i, pay)
	if err != nil {
		return nil, 0, fmt.Errorf("wallet: %w", err)
	}
	raw, _ := bk.b.MarshalBinary()
	if err := writeFileAtomic(bk.path, raw); err != nil {
		// The ticket stays marked spent in memory; the spend is not used.
		return nil, 0, err
	}
	if bk.b.Remaining() == 0 {
		os.Remove(bk.path)
		w.books = slices.DeleteFunc(w.books, func(x *book) bool { return x == bk })
	}
	return sp, w.countLocked(typ, now), nil
}

// usableLocked is the unexpired book of typ with tickets left that expires first.
func (w *Wallet) usableLocked(typ credential.TicketType, now time.Time) *book {
	var best *book
	for _, bk := range w.books {
		if bk.b.Type() != typ || bk.b.Remaining() == 0 || bk.b.Expiry().Expired(now.Add(expiryMargin)) {
			continue
		}
		if best == nil || bk.b.Expiry() < best.b.Expiry() {
			best = bk
		}
	}
	return best
}

func (w *Wallet) countLocked(typ credential.TicketType, now time.Time) int {
	n := 0
	for _, bk := range w.books {
		if bk.b.Type() == typ && !bk.b.Expiry().Expired(now.Add(expiryMargin)) {
			n += bk.b.Remaining()
		}
	}
	return n
}

// Counts returns the unspent, unexpired tickets left per type.
func (w *Wallet) Counts() map[credential.TicketType]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.cfg.Now()
	out := map[credential.TicketType]int{}
	for _, t := range []credential.TicketType{credential.FastEntry, credential.FastExit, credential.MixnetEntry, credential.MixnetExit} {
		out[t] = w.countLocked(t, now)
	}
	return out
}

// BookInfo describes one stored book.
type BookInfo struct {
	Type      credential.TicketType
	Expires   time.Time
	Total     int
	Remaining int
}

// Books lists the stored books, soonest expiry first.
func (w *Wallet) Books() []BookInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []BookInfo
	for _, bk := range w.books {
		out = append(out, BookInfo{Type: bk.b.Type(), Expires: bk.b.Expiry().End(), Total: bk.b.Len(), Remaining: bk.b.Remaining()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Expires.Before(out[j].Expires) })
	return out
}

func (w *Wallet) wantRefill(typ credential.TicketType) {
	w.mu.Lock()
	if !slices.Contains(w.cfg.Keep, typ) {
		w.cfg.Keep = append(w.cfg.Keep, typ)
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Fetching returns the types whose book is being fetched now, in the
// order of the ticket types.
func (w *Wallet) Fetching() []credential.TicketType {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []credential.TicketType
	for typ := range w.fetch {
		out = append(out, typ)
	}
	slices.Sort(out)
	return out
}

// LastRefillError is why the last fetch of a book (by Run, Refill or
// Ticket) failed, or nil if it succeeded or none was made. A fetch
// abandoned because its context ended is not recorded.
func (w *Wallet) LastRefillError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// Run keeps the Keep types (and every type used since) above RefillBelow
// until ctx ends: at start, after spends that leave few tickets, and every
// minute. Failures are logged and retried.
func (w *Wallet) Run(ctx context.Context) {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		w.mu.Lock()
		keep := slices.Clone(w.cfg.Keep)
		has := w.account != nil
		w.mu.Unlock()
		if has {
			for _, typ := range keep {
				w.mu.Lock()
				n := w.countLocked(typ, w.cfg.Now())
				w.mu.Unlock()
				if n >= w.cfg.RefillBelow {
					continue
				}
				if err := w.Refill(ctx, typ); err != nil && ctx.Err() == nil {
					w.log.Warn("wallet: refill", "type", typ, "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-w.kick:
		}
	}
}

// Refill fetches one book of typ (resuming an unfinished issuance of that type
// first). Concurrent calls for one type share one fetch.
func (w *Wallet) Refill(ctx context.Context, typ credential.TicketType) error {
	w.mu.Lock()
	for {
		if w.account == nil {
			w.mu.Unlock()
			return ErrNoAccount
		}
		c := w.fetch[typ]
		if c == nil {
			break
		}
		w.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if c.acct == w.Account() {
			return c.err
		}
		// That fetch was for an account since forgotten: fetch anew.
		w.mu.Lock()
	}
	acct := w.account
	w.fetchSeq++
	c := &fetchCall{acct: acct, seq: w.fetchSeq, done: make(chan struct{})}
	w.fetch[typ] = c
	w.mu.Unlock()
	c.err = w.refill(ctx, acct, typ)
	w.mu.Lock()
	delete(w.fetch, typ)
	if c.seq > w.errSeq && (c.err == nil || (ctx.Err() == nil && !errors.Is(c.err, ErrNoAccount) && !notNow(c.err))) {
		w.lastErr, w.errSeq = c.err, c.seq
	}
	w.mu.Unlock()
	close(c.done)
	return c.err
}

func (w *Wallet) refill(ctx context.Context, acct *Account, typ credential.TicketType) error {
	g, err := w.issuerGroup(ctx)
	if err != nil {
		return err
	}
	// Resume an issuance a previous run left, else start one.
	pf, path, err := w.findPending(typ)
	if err != nil {
		return err
	}
	if pf == nil {
		_, pend, err := credential.NewTicketbookRequest(w.cfg.Rand, acct.user, typ, credential.ExpiryFor(w.cfg.Now()), w.cfg.BookSize)
		if err != nil {
			return fmt.Errorf("wallet: %w", err)
		}
		pf = &pendingFile{Type: typ, Created: w.cfg.Now().UTC()}
		if _, err := io.ReadFull(w.cfg.Rand, pf.ID[:]); err != nil {
			return fmt.Errorf("wallet: %w", err)
		}
		if pf.Pending, err = pend.MarshalBinary(); err != nil {
			return err
		}
		raw, _ := json.Marshal(pf)
		path = filepath.Join(w.pendingDir(), hex.EncodeToString(pf.ID[:])+".json")
		if err := writeFileAtomic(path, raw); err != nil {
			return err
		}
	}
	var pend credential.PendingTicketbook
	if err := pend.UnmarshalBinary(pf.Pending); err != nil {
		os.Remove(path)
		return fmt.Errorf("wallet: unfinished issuance %s unreadable, dropped: %w", path, err)
	}
	b, err := w.issue(ctx, acct, g, pf.ID, &pend)
	if err != nil {
		var ae *issuer.APIError
		if errors.As(err, &ae) && ae.Code == issuer.CodeWrongExpiry {
			os.Remove(path) // a request made for a week that is gone
		}
		return err
	}
	raw, _ := b.MarshalBinary()
	bpath := filepath.Join(w.booksDir(), fmt.Sprintf("%s-%d-%s.book", typ, b.Expiry(), hex.EncodeToString(pf.ID[:8])))
	// The account may have been forgotten (or replaced) while the issuers
	// answered: then the book is not kept.
	w.mu.Lock()
	if w.account != acct {
		w.mu.Unlock()
		os.Remove(path)
		return ErrNoAccount
	}
	if err := writeFileAtomic(bpath, raw); err != nil {
		w.mu.Unlock()
		return err
	}
	w.books = append(w.books, &book{path: bpath, b: b})
	w.mu.Unlock()
	os.Remove(path)
	w.log.Info("wallet: ticketbook fetched", "type", typ, "tickets", b.Len(), "expires", b.Expiry().End().UTC().Format(time.RFC3339))
	return nil
}

func (w *Wallet) findPending(typ credential.TicketType) (*pendingFile, string, error) {
	ents, err := os.ReadDir(w.pendingDir())
	if err != nil {
		return nil, "", fmt.Errorf("wallet: %w", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(w.pendingDir(), e.Name())
		raw, err := readPrivate(path)
		if err != nil {
			return nil, "", err
		}
		var pf pendingFile
		if json.Unmarshal(raw, &pf) != nil {
			os.Remove(path)
			continue
		}
		if pf.Type == typ {
			return &pf, path, nil
		}
	}
	return nil, "", nil
}

// issue asks every issuer of g in parallel and aggregates as soon as a
// threshold of them answered; an issuer whose answer does not verify is left
// out and the others are used.
func (w *Wallet) issue(ctx context.Context, acct *Account, g *issuer.Group, id issuer.RequestID, pend *credential.PendingTicketbook) (*credential.Ticketbook, error) {
	reqBytes, err := pend.Request().MarshalBinary()
	if err != nil {
		return nil, err
	}
	type answer struct {
		ep    issuer.Endpoint
		share *credential.SignatureShares
		err   error
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	answers := make(chan answer, len(g.Issuers))
	for _, ep := range g.Issuers {
		go func() {
			part, _, err := issuer.Sign(cctx, w.cfg.HTTP, ep, acct.key, id, reqBytes, w.cfg.Now())
			if err != nil {
				answers <- answer{ep: ep, err: err}
				return
			}
			sh, err := pend.Unblind(ep.Share, part)
			answers <- answer{ep: ep, share: sh, err: err}
		}()
	}
	var shares []*credential.SignatureShares
	var errs []error
	for range g.Issuers {
		a := <-answers
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		shares = append(shares, a.share)
		if len(shares) < g.Threshold {
			continue
		}
		b, err := credential.Aggregate(w.cfg.Rand, g.Key, shares)
		if err == nil {
			return b, nil
		}
		// Drop the issuer Aggregate names and wait for another.
		errs = append(errs, err)
		shares = slices.DeleteFunc(shares, func(s *credential.SignatureShares) bool {
			return strings.Contains(err.Error(), fmt.Sprintf("issuer %d:", s.Index()))
		})
	}
	return nil, fmt.Errorf("wallet: fewer than %d of %d issuers signed: %w", g.Threshold, len(g.Issuers), errors.Join(errs...))
}

// issuerGroup discovers the issuers (cached for a while).
func (w *Wallet) issuerGroup(ctx context.Context) (*issuer.Group, error) {
	w.mu.Lock()
	if w.group != nil && time.Since(w.groupAt) < groupTTL {
		g := w.group
		w.mu.Unlock()
		return g, nil
	}
	w.mu.Unlock()
	if w.cfg.Topology == nil {
		return nil, errors.New("wallet: no directory to find the issuers in")
	}
	topo, err := w.cfg.Topology(ctx)
	if err != nil {
		return nil, fmt.Errorf("wallet: directory: %w", err)
	}
	g, err := issuer.Discover(ctx, w.cfg.HTTP, topo)
	if err != nil {
		return nil, fmt.Errorf("wallet: %w", err)
	}
	w.mu.Lock()
	w.group, w.groupAt = g, time.Now()
	w.mu.Unlock()
	return g, nil
}

// notNow reports whether err failed only for ErrNotNow: every issuer that
// failed was not tried (errors.Join of per-issuer errors).
func notNow(err error) bool {
	switch u := err.(type) {
	case nil:
		return false
	case interface{ Unwrap() []error }:
		errs := u.Unwrap()
		for _, e := range errs {
			if !notNow(e) {
				return false
			}
		}
		return len(errs) > 0
	}
	return err == ErrNotNow || notNow(errors.Unwrap(err))
}

// NoAllowance reports whether err (from Ticket, Spend or Refill) means the
// issuers refused because the account is unknown to them or has no allowance
// left: the user must buy more, retrying does not help.
func NoAllowance(err error) bool {
	var ae *issuer.APIError
	return errors.As(err, &ae) && (ae.Code == issuer.CodeNoAllowance || ae.Code == issuer.CodeUnknownAcct)
}
