package platform

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeOps records what the System asks of it; it is the only fake in the
// package and lives in tests.
type fakeOps struct {
	t        *testing.T
	dir      string
	events   []string
	failAt   int // apply fails for this Seq (-1: never)
	undoFail map[string]int
	sweeps   []journalHeader
}

func newFake(t *testing.T, s *System) *fakeOps {
	f := &fakeOps{t: t, dir: s.opts.StateDir, failAt: -1, undoFail: map[string]int{}}
	s.ops = f
	return f
}

func (f *fakeOps) capture(_ context.Context, r *record) error {
	if r.Change.Kind == KindSysctl {
		r.Undo.OldValue = "0"
	}
	return nil
}

func (f *fakeOps) apply(_ context.Context, r record) error {
	// The change must be in the journal, on disk, before it is made.
	b, err := os.ReadFile(filepath.Join(f.dir, journalName))
	if err != nil {
		f.t.Errorf("apply %q with no journal: %v", r.Change, err)
	} else if _, recs, err := decodeJournal(b); err != nil || len(recs) != r.Seq+1 || !reflect.DeepEqual(recs[r.Seq], r) {
		f.t.Errorf("apply %q before it is journaled (%d records, %v)", r.Change, len(recs), err)
	}
	if r.Seq == f.failAt {
		return errors.New("injected failure")
	}
	f.events = append(f.events, "do "+r.Change.String())
	return nil
}

func (f *fakeOps) undo(_ context.Context, r record) error {
	s := r.Change.String()
	if f.undoFail[s] > 0 {
		f.undoFail[s]--
		return errors.New("injected undo failure")
	}
	f.events = append(f.events, "undo "+s)
	return nil
}

func (f *fakeOps) dnsBackend(context.Context, DNSBackend) (DNSBackend, error) {
	return DNSResolvConf, nil
}

func (f *fakeOps) sweep(_ context.Context, h journalHeader) error {
	f.sweeps = append(f.sweeps, h)
	return nil
}

var testConfig = NetConfig{Interface: "nymvpn0", MTU: 1340, Addresses: prefixes("10.1.0.7/32", "fc01::7/128"), DNS: addrs("10.1.0.1"), IPv6: true}

func testPlan(t *testing.T) []string {
	plan, err := Plan(testConfig, DNSResolvConf)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, c := range plan {
		s = append(s, c.String())
	}
	return s
}

func newTestSystem(t *testing.T, dir string) *System {
	t.Helper()
	s, err := New(Options{StateDir: dir, DNSBackend: DNSResolvConf, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func withPrefix(p string, s []string) []string {
	var out []string
	for _, x := range s {
		out = append(out, p+x)
	}
	return out
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[len(s)-1-i] = x
	}
	return out
}

func journalExists(t *testing.T, dir string) bool {
	_, err := os.Stat(filepath.Join(dir, journalName))
	return err == nil
}

func TestUpDown(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := newTestSystem(t, dir)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v, %v; want mode 0700", fi, err)
	}
	f := newFake(t, s)
	ctx := context.Background()
	if err := s.Up(ctx, testConfig); err != nil {
		t.Fatal(err)
	}
	plan := testPlan(t)
	checkPlan(t, f.events, withPrefix("do ", plan))
	if !journalExists(t, dir) {
		t.Fatal("no journal while up")
	}
	if err := s.Up(ctx, testConfig); err == nil || !strings.Contains(err.Error(), "already up") {
		t.Errorf("second Up: %v", err)
	}
	f.events = nil
	if err := s.Down(ctx); err != nil {
		t.Fatal(err)
	}
	checkPlan(t, f.events, withPrefix("undo ", reversed(plan)))
	if journalExists(t, dir) {
		t.Error("journal left after Down")
	}
	f.events = nil
	if err := s.Down(ctx); err != nil || len(f.events) != 0 {
		t.Errorf("second Down: %v, %v", err, f.events)
	}
	// Reconnecting: up and down again on the same System.
	if err := s.Up(ctx, testConfig); err != nil {
		t.Fatalf("Up after Down: %v", err)
	}
	if err := s.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if journalExists(t, dir) {
		t.Error("journal left after the second Down")
	}
}

// A failing step is undone along with everything before it, in reverse.
func TestUpFailureUndoes(t *testing.T) {
	plan := testPlan(t)
	for k := range plan {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			dir := t.TempDir()
			s := newTestSystem(t, dir)
			f := newFake(t, s)
			f.failAt = k
			err := s.Up(context.Background(), testConfig)
			if err == nil || !strings.Contains(err.Error(), "injected failure") || !strings.Contains(err.Error(), plan[k]) {
				t.Fatalf("Up: %v, want the injected failure naming %q", err, plan[k])
			}
			want := slices2(withPrefix("do ", plan[:k]), withPrefix("undo ", reversed(plan[:k+1])))
			checkPlan(t, f.events, want)
			if journalExists(t, dir) {
				t.Error("journal left after a failed Up was undone")
			}
			if s.active != nil {
				t.Error("still up after a failed Up was undone")
			}
		})
	}
}

func slices2(a, b []string) []string { return append(append([]string{}, a...), b...) }

func TestUpCancelled(t *testing.T) {
	s := newTestSystem(t, t.TempDir())
	f := newFake(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Up(ctx, testConfig); !errors.Is(err, context.Canceled) {
		t.Fatalf("Up with a cancelled context: %v", err)
	}
	if len(f.events) != 0 {
		t.Errorf("changes made: %v", f.events)
	}
}

// A failed undo keeps the System up and the journal; Down again finishes.
func TestDownRetry(t *testing.T) {
	dir := t.TempDir()
	s := newTestSystem(t, dir)
	f := newFake(t, s)
	ctx := context.Background()
	if err := s.Up(ctx, testConfig); err != nil {
		t.Fatal(err)
	}
	plan := testPlan(t)
	f.undoFail[plan[3]] = 1
	f.events = nil
	if err := s.Down(ctx); err == nil || !strings.Contains(err.Error(), "injected undo failure") {
		t.Fatalf("Down: %v, want the undo failure", err)
	}
	// Everything else was still undone.
	if len(f.events) != len(plan)-1 {
		t.Errorf("undone %d changes, want %d", len(f.events), len(plan)-1)
	}
	if !journalExists(t, dir) {
		t.Fatal("journal deleted although an undo failed")
	}
	f.events = nil
	if err := s.Down(ctx); err != nil {
		t.Fatal(err)
	}
	checkPlan(t, f.events, withPrefix("undo ", reversed(plan)))
	if journalExists(t, dir) {
		t.Error("journal left after a successful Down")
	}
}

// A System closed while up (the daemon died) leaves its journal; Recover in
// a new System undoes it in reverse.
func TestRecover(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := newTestSystem(t, dir)
	newFake(t, s)
	if err := s.Up(ctx, testConfig); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s2 := newTestSystem(t, dir)
	f2 := newFake(t, s2)
	if err := s2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	checkPlan(t, f2.events, withPrefix("undo ", reversed(testPlan(t))))
	if journalExists(t, dir) {
		t.Error("journal left after Recover")
	}
	f2.events = nil
	if err := s2.Recover(ctx); err != nil || len(f2.events) != 0 {
		t.Errorf("Recover without a journal: %v, %v", err, f2.events)
	}
}

// Up recovers a previous run's journal before going up.
func TestUpRecoversFirst(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := newTestSystem(t, dir)
	newFake(t, s)
	if err := s.Up(ctx, testConfig); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := newTestSystem(t, dir)
	f2 := newFake(t, s2)
	if err := s2.Up(ctx, testConfig); err != nil {
		t.Fatal(err)
	}
	plan := testPlan(t)
	checkPlan(t, f2.events, slices2(withPrefix("undo ", reversed(plan)), withPrefix("do ", plan)))
	if err := s2.Recover(ctx); err == nil {
		t.Error("Recover while up succeeded")
	}
}

// Recover of a journal cut short by a crash while the 5th record was being
// written undoes the 4 before it.
func TestRecoverTornJournal(t *testing.T) {
	dir := t.TempDir()
	b := writeTestJournal(t, dir, testRecords(t))
	lines := strings.SplitAfter(string(b), "\n")
	torn := strings.Join(lines[:5], "") + lines[5][:10]
	if err := os.WriteFile(filepath.Join(dir, journalName), []byte(torn), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newTestSystem(t, dir)
	f := newFake(t, s)
	if err := s.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, r := range testRecords(t)[:4] {
		want = append(want, "undo "+r.Change.String())
	}
	checkPlan(t, f.events, reversed(want))
}

func TestRecoverCorrupt(t *testing.T) {
	ctx := context.Background()
	t.Run("garbage", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, journalName), []byte("not a journal\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s := newTestSystem(t, dir)
		f := newFake(t, s)
		err := s.Recover(ctx)
		if !errors.Is(err, ErrCorruptJournal) {
			t.Fatalf("Recover: %v, want ErrCorruptJournal", err)
		}
		if journalExists(t, dir) {
			t.Error("corrupt journal still in place")
		}
		aside, _ := filepath.Glob(filepath.Join(dir, "journal.corrupt-*"))
		if len(aside) != 1 {
			t.Fatalf("moved-aside journals: %v", aside)
		}
		if b, _ := os.ReadFile(aside[0]); string(b) != "not a journal\n" {
			t.Errorf("moved-aside journal holds %q", b)
		}
		want := []journalHeader{{Table: DefaultTable, FwMark: DefaultFwMark, RulePriority: DefaultRulePriority}}
		if !reflect.DeepEqual(f.sweeps, want) {
			t.Errorf("sweeps %+v, want the defaults", f.sweeps)
		}
		// The next Up is not blocked.
		if err := s.Up(ctx, testConfig); err != nil {
			t.Errorf("Up after a corrupt journal was handled: %v", err)
		}
	})
	t.Run("header cut short", func(t *testing.T) {
		dir := t.TempDir()
		b := writeTestJournal(t, dir, nil)
		if err := os.WriteFile(filepath.Join(dir, journalName), b[:20], 0o600); err != nil {
			t.Fatal(err)
		}
		s := newTestSystem(t, dir)
		f := newFake(t, s)
		if err := s.Recover(ctx); err != nil {
			t.Fatalf("Recover of a journal cut short in its header: %v", err)
		}
		if len(f.events) != 0 || len(f.sweeps) != 0 || journalExists(t, dir) {
			t.Errorf("events %v, sweeps %v, journal left %v", f.events, f.sweeps, journalExists(t, dir))
		}
		if aside, _ := filepath.Glob(filepath.Join(dir, "journal.corrupt-*")); len(aside) != 1 {
			t.Errorf("the cut-short journal was not kept aside: %v", aside)
		}
	})
	t.Run("damaged record", func(t *testing.T) {
		dir := t.TempDir()
		recs := testRecords(t)
		b := writeTestJournal(t, dir, recs)
		lines := strings.SplitAfter(string(b), "\n")
		lines[3] = strings.Replace(lines[3], "nymvpn0", "nymvpn1", 1)
		if err := os.WriteFile(filepath.Join(dir, journalName), []byte(strings.Join(lines, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		s := newTestSystem(t, dir)
		f := newFake(t, s)
		if err := s.Recover(ctx); !errors.Is(err, ErrCorruptJournal) {
			t.Fatalf("Recover: %v, want ErrCorruptJournal", err)
		}
		checkPlan(t, f.events, []string{"undo " + recs[1].Change.String(), "undo " + recs[0].Change.String()})
		if len(f.sweeps) != 1 || f.sweeps[0].Table != 51820 || f.sweeps[0].PID != 42 {
			t.Errorf("sweeps %+v, want one with the journal's header", f.sweeps)
		}
	})
}

func TestNewOptions(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without a state directory succeeded")
	}
	if _, err := New(Options{StateDir: t.TempDir(), DNSBackend: "nscd"}); err == nil {
		t.Error("New with an unknown DNS backend succeeded")
	}
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o600)
	if _, err := New(Options{StateDir: file}); err == nil {
		t.Error("New with a file as state directory succeeded")
	}
	// An existing directory is made private.
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	s := newTestSystem(t, dir)
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, want 0700", fi.Mode().Perm())
	}
	s.Close()
	if err := s.Up(context.Background(), testConfig); err == nil {
		t.Error("Up on a closed System succeeded")
	}
}
