package platform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"
)

// Options configures a System.
type Options struct {
	// StateDir holds the journal (and nothing else of this package's).
	// It is created with mode 0700 (and narrowed to it if it exists); the
	// journal is 0600. Required; on Linux e.g. /var/lib/nymvpn/platform.
	StateDir string
	// ResolvConf is the file the resolvconf DNS backend rewrites; default
	// DefaultResolvConf.
	ResolvConf string
	// DNSBackend is DNSAuto (the default), DNSResolved or DNSResolvConf.
	// DNSAuto uses systemd-resolved when it is reachable on the system
	// D-Bus and ResolvConf is managed by it (a symlink into
	// /run/systemd/resolve, or a file naming only its stub resolvers);
	// otherwise it rewrites ResolvConf. DNSResolved fails Up when resolved
	// is not reachable.
	DNSBackend DNSBackend
	// Logger receives what the System does; default slog.Default().
	Logger *slog.Logger
}

// System makes and undoes the system changes a tunnel needs. Its methods
// are safe for concurrent use, but they serialize: one Up at a time, and
// Down or Recover between two Ups.
type System struct {
	opts Options
	log  *slog.Logger
	ops  ops // nil where system integration is not implemented

	mu     sync.Mutex
	closed bool
	unlock func() error // releases the state directory's lock
	// active is the journal and records of the current Up; nil when down.
	active *session
}

type session struct {
	j    *journal
	recs []record
}

// ops makes changes on one OS. capture fills r.Undo with what undoing
// r.Change needs, read from the system before the change; apply makes the
// change; undo reverts it and must be harmless when the change was never
// made (or its link is gone).
type ops interface {
	capture(ctx context.Context, r *record) error
	apply(ctx context.Context, r record) error
	undo(ctx context.Context, r record) error
	// dnsBackend picks the concrete backend for the configured one.
	dnsBackend(ctx context.Context, configured DNSBackend) (DNSBackend, error)
	// sweep undoes, by matching, what a damaged journal may have recorded:
	// rules to or with table and mark, and the routes in table.
	sweep(ctx context.Context, h journalHeader) error
}

// testHook, when set (only by tests), is called after a record is journaled
// (applied false) and after its change is made (applied true).
var testHook func(seq int, applied bool)

// New returns a System keeping its journal in opts.StateDir. On Linux it
// takes an exclusive lock on the directory (released by Close, or by the
// kernel when the process dies), so two daemons never share a journal.
// New does not touch the network configuration: call Recover next.
func New(opts Options) (*System, error) {
	if opts.StateDir == "" {
		return nil, errors.New("platform: Options.StateDir is required")
	}
	if opts.ResolvConf == "" {
		opts.ResolvConf = DefaultResolvConf
	}
	switch opts.DNSBackend {
	case "":
		opts.DNSBackend = DNSAuto
	case DNSAuto, DNSResolved, DNSResolvConf:
	default:
		return nil, fmt.Errorf("platform: DNS backend %q is not one of auto, resolved, resolvconf", opts.DNSBackend)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("platform: create state directory: %w", err)
	}
	fi, err := os.Stat(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("platform: state directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("platform: state directory %s is not a directory", opts.StateDir)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(opts.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("platform: make the state directory private: %w", err)
		}
	}
	s := &System{opts: opts, log: opts.Logger.With("component", "platform")}
	if s.unlock, err = lockDir(opts.StateDir); err != nil {
		return nil, err
	}
	s.ops = newOps(opts, s.log)
	return s, nil
}

// Close releases the state directory. It does not undo anything: call Down
// first. A System that is closed refuses Up.
func (s *System) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.active != nil {
		s.log.Warn("closing while up: the journal stays for Recover", "journal", s.active.j.path)
		s.active.j.f.Close()
		s.active = nil
	}
	if s.unlock != nil {
		return s.unlock()
	}
	return nil
}

func unsupported() error {
	return fmt.Errorf("platform: system integration is not implemented on %s yet: %w", runtime.GOOS, errors.ErrUnsupported)
}

// Up sends the system's traffic and DNS through c.Interface: it makes the
// changes Plan returns, journaling each before making it. Call it once the
// tunnel works: from then on only sockets marked with c.FwMark reach the
// real network. On failure (or when ctx ends) it undoes what it made and
// returns the error, joined with any undo errors; if undoing failed too,
// the System stays up so that Down can retry, and the journal stays for
// Recover.
//
// A journal left by a crashed run is recovered first (see Recover). Up on a
// System that is already up is an error: call Down first.
func (s *System) Up(ctx context.Context, c NetConfig) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ops == nil {
		return unsupported()
	}
	if s.closed {
		return errors.New("platform: Up on a closed System")
	}
	if s.active != nil {
		return errors.New("platform: already up: call Down first")
	}
	if err := s.recover(ctx); err != nil {
		return fmt.Errorf("platform: a previous run's journal could not be recovered, not going up: %w", err)
	}
	backend, err := s.ops.dnsBackend(ctx, s.opts.DNSBackend)
	if err != nil {
		return err
	}
	plan, err := Plan(c, backend)
	if err != nil {
		return err
	}
	c = c.withDefaults()
	j, err := createJournal(s.opts.StateDir, journalHeader{
		Magic: journalMagic, Version: journalVersion, Created: time.Now().UTC(), PID: os.Getpid(),
		Interface: c.Interface, Table: c.Table, FwMark: c.FwMark, RulePriority: c.RulePriority,
	})
	if err != nil {
		return err
	}
	sess := &session{j: j}
	s.active = sess
	defer func() {
		if err == nil {
			return
		}
		if uerr := s.undoAll(context.WithoutCancel(ctx), sess.recs); uerr != nil {
			err = errors.Join(err, fmt.Errorf("platform: undoing the failed Up (call Down to retry): %w", uerr))
			return
		}
		s.active = nil
		if rerr := j.remove(); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	for _, ch := range plan {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("platform: Up cancelled before %q: %w", ch, err)
		}
		r := record{Change: ch}
		if err := s.ops.capture(ctx, &r); err != nil {
			return fmt.Errorf("platform: before %q: %w", ch, err)
		}
		if err := j.append(&r); err != nil {
			return err
		}
		sess.recs = append(sess.recs, r)
		if testHook != nil {
			testHook(r.Seq, false)
		}
		if err := s.ops.apply(ctx, r); err != nil {
			return fmt.Errorf("platform: %s: %w", ch, err)
		}
		if testHook != nil {
			testHook(r.Seq, true)
		}
		s.log.Debug("changed", "change", ch.String())
	}
	s.log.Info("traffic and DNS go through the tunnel", "interface", c.Interface, "table", c.Table,
		"fwmark", c.FwMark, "dns_backend", backend, "changes", len(plan))
	return nil
}

// Down undoes everything Up made, in reverse order, and deletes the journal.
// It is idempotent: Down on a System that is down returns nil. If some undo
// fails, Down returns the errors and stays up, so that a later Down retries
// (undoing what is already undone is harmless); the journal stays too.
// Down does not stop early when ctx ends; ctx bounds the D-Bus calls.
func (s *System) Down(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil {
		return nil
	}
	if err := s.undoAll(ctx, s.active.recs); err != nil {
		return fmt.Errorf("platform: down (the journal is kept; Down again to retry): %w", err)
	}
	j := s.active.j
	s.active = nil
	if err := j.remove(); err != nil {
		return err
	}
	s.log.Info("system configuration restored")
	return nil
}

// Recover undoes what the journal of a previous run records, in reverse
// order, then deletes the journal. Call it once at daemon start, before
// going up; it returns nil when there is no journal. The new TUN may exist
// already: changes on a link are undone only on the link with the journaled
// index and name, so a new link of the same name is left alone (a crashed
// daemon's TUN is gone, with its addresses and routes).
//
// If undoing fails, the journal stays and the error says so; Up retries.
// A journal that does not decode is reported (the error wraps
// ErrCorruptJournal), moved aside to journal.corrupt-TIME in StateDir, and
// recovered as far as possible: the records before the damage are undone,
// then the rules and routes are found by matching the table, mark and rule
// priority (from the header, or the defaults). A journal cut short within
// its header (the run died before its first change) is moved aside too, but
// is no error.
func (s *System) Recover(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active != nil {
		return errors.New("platform: Recover while up: Recover is for a previous run's journal; call Down")
	}
	return s.recover(ctx)
}

func (s *System) recover(ctx context.Context) error {
	b, rerr := readJournal(s.opts.StateDir)
	if rerr == nil && b == nil {
		return nil
	}
	if s.ops == nil {
		return fmt.Errorf("platform: a journal exists in %s: %w", s.opts.StateDir, unsupported())
	}
	var h *journalHeader
	var recs []record
	if rerr == nil {
		h, recs, rerr = decodeJournal(b)
	}
	if rerr == nil {
		s.log.Warn("undoing the system changes of a previous run", "pid", h.PID, "since", h.Created, "changes", len(recs))
		if err := s.undoAll(ctx, recs); err != nil {
			return fmt.Errorf("platform: recover (the journal is kept for another try): %w", err)
		}
		if err := removeJournal(s.opts.StateDir); err != nil {
			return err
		}
		s.log.Info("system configuration of the previous run restored")
		return nil
	}
	if !errors.Is(rerr, ErrCorruptJournal) {
		return rerr
	}
	aside, err := moveAside(s.opts.StateDir, time.Now())
	if err != nil {
		return errors.Join(rerr, err)
	}
	if !bytes.Contains(b, []byte{'\n'}) {
		// Every change comes after the header's newline: a run that died
		// while writing the header made none.
		s.log.Warn("the journal of a previous run was cut short before its first change; nothing to undo", "moved_to", aside)
		return nil
	}
	s.log.Error("the journal of a previous run is corrupt: moved aside, undoing what it still tells and what matches the table and mark",
		"error", rerr, "moved_to", aside, "trusted_changes", len(recs))
	errs := []error{fmt.Errorf("%w (moved to %s)", rerr, aside)}
	if err := s.undoAll(ctx, recs); err != nil {
		errs = append(errs, err)
	}
	sweep := journalHeader{Table: DefaultTable, FwMark: DefaultFwMark, RulePriority: DefaultRulePriority}
	if h != nil && h.Table != 0 && h.FwMark != 0 && h.RulePriority != 0 {
		sweep = *h
	}
	if err := s.ops.sweep(ctx, sweep); err != nil {
		errs = append(errs, err)
	}
	if !slices.ContainsFunc(recs, func(r record) bool { return r.Change.Kind == KindDNS }) {
		if cur, err := os.ReadFile(s.opts.ResolvConf); err == nil && len(cur) >= len(resolvConfMarker) && string(cur[:len(resolvConfMarker)]) == resolvConfMarker {
			errs = append(errs, fmt.Errorf("platform: %s is still the one nymvpn wrote and its backup was in the damaged journal: restore it by hand (its old bytes may be in %s)", s.opts.ResolvConf, aside))
		}
	}
	return errors.Join(errs...)
}

// undoAll undoes recs in reverse order, going on past errors.
func (s *System) undoAll(ctx context.Context, recs []record) error {
	var errs []error
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if err := s.ops.undo(ctx, r); err != nil {
			errs = append(errs, fmt.Errorf("undo %q: %w", r.Change, err))
			continue
		}
		s.log.Debug("undone", "change", r.Change.String())
	}
	return errors.Join(errs...)
}
