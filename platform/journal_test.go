package platform

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testHeader() journalHeader {
	return journalHeader{Magic: journalMagic, Version: journalVersion, Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		PID: 42, Interface: "nymvpn0", Table: 51820, FwMark: 51820, RulePriority: 32765}
}

// testRecords are the records of a dual-stack plan with made-up undo data,
// among them a resolv.conf backup with bytes that are not UTF-8.
func testRecords(t testing.TB) []record {
	plan, err := Plan(NetConfig{Interface: "nymvpn0", MTU: 1340, Addresses: prefixes("10.1.0.7/32", "fc01::7/128"),
		DNS: addrs("10.1.0.1", "fc01::1"), IPv6: true}, DNSResolvConf)
	if err != nil {
		t.Fatal(err)
	}
	var recs []record
	for i, c := range plan {
		r := record{Seq: i, Change: c}
		switch c.Kind {
		case KindAddress, KindLinkUp, KindRoute:
			r.Undo.Ifindex = 7
		case KindMTU:
			r.Undo.Ifindex, r.Undo.OldMTU = 7, 1420
		case KindSysctl:
			r.Undo.OldValue = "0"
		case KindDNS:
			r.Undo.ResolvConf = &resolvBackup{Path: "/etc/resolv.conf", Exists: true, Content: []byte("nameserver 192.0.2.1\n\xff\x00"), Mode: 0o644, Wrote: renderResolvConf(c.DNS)}
		}
		recs = append(recs, r)
	}
	return recs
}

func writeTestJournal(t testing.TB, dir string, recs []record) []byte {
	j, err := createJournal(dir, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		r := recs[i]
		if err := j.append(&r); err != nil {
			t.Fatal(err)
		}
	}
	j.f.Close()
	b, err := os.ReadFile(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJournalRoundTrip(t *testing.T) {
	dir := t.TempDir()
	recs := testRecords(t)
	b := writeTestJournal(t, dir, recs)
	fi, err := os.Stat(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("journal mode %v, want 0600", fi.Mode().Perm())
	}
	h, got, err := decodeJournal(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := testHeader(); *h != want {
		t.Errorf("header %+v, want %+v", *h, want)
	}
	if !reflect.DeepEqual(got, recs) {
		t.Errorf("records differ after a round trip:\n got %+v\nwant %+v", got, recs)
	}
	if _, err := createJournal(dir, testHeader()); err == nil {
		t.Error("createJournal over an existing journal succeeded")
	}
	if err := removeJournal(dir); err != nil {
		t.Fatal(err)
	}
	if b, err := readJournal(dir); b != nil || err != nil {
		t.Errorf("readJournal after remove: %q, %v", b, err)
	}
}

// A last line cut short was never acted on; one that is whole but for its
// newline counts.
func TestJournalTornTail(t *testing.T) {
	recs := testRecords(t)
	b := writeTestJournal(t, t.TempDir(), recs)
	lastStart := bytes.LastIndexByte(b[:len(b)-1], '\n') + 1
	for cut := lastStart + 1; cut < len(b); cut++ {
		_, got, err := decodeJournal(b[:cut])
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		want := len(recs) - 1
		if cut == len(b)-1 {
			want = len(recs)
		}
		if len(got) != want {
			t.Fatalf("cut at %d: %d records, want %d", cut, len(got), want)
		}
	}
	// Only the header, and the header cut short.
	first := bytes.IndexByte(b, '\n') + 1
	if _, got, err := decodeJournal(b[:first]); err != nil || len(got) != 0 {
		t.Errorf("header only: %d records, %v", len(got), err)
	}
	if _, _, err := decodeJournal(b[:first-5]); !errors.Is(err, ErrCorruptJournal) {
		t.Errorf("header cut short: %v, want ErrCorruptJournal", err)
	}
}

func TestJournalCorrupt(t *testing.T) {
	recs := testRecords(t)
	good := writeTestJournal(t, t.TempDir(), recs)
	lines := bytes.SplitAfter(good, []byte{'\n'})
	// Flip one byte in the JSON of the fourth line (the third record).
	flipped := bytes.Clone(good)
	off := len(bytes.Join(lines[:3], nil)) + 20
	flipped[off] ^= 0x01
	h, got, err := decodeJournal(flipped)
	if !errors.Is(err, ErrCorruptJournal) || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("flipped byte: %v, want ErrCorruptJournal at line 4", err)
	}
	if h == nil || h.Table != 51820 {
		t.Errorf("header of a journal damaged later: %+v", h)
	}
	if !reflect.DeepEqual(got, recs[:2]) {
		t.Errorf("trusted records: %d, want the 2 before the damage", len(got))
	}

	for name, b := range map[string][]byte{
		"empty":           {},
		"garbage":         []byte("hello\n"),
		"no header":       bytes.Join(lines[1:], nil),
		"missing record":  append(bytes.Clone(lines[0]), bytes.Join(lines[2:], nil)...),
		"uppercase crc":   append([]byte(strings.ToUpper(string(lines[0][:8]))), good[8:]...),
		"unknown field":   append(mustLine(t, map[string]any{"magic": journalMagic, "version": 1, "extra": 1}), lines[1]...),
		"wrong version":   mustLine(t, map[string]any{"magic": journalMagic, "version": 2}),
		"wrong magic":     mustLine(t, map[string]any{"magic": "x", "version": 1}),
		"trailing json":   []byte(crcLine([]byte(`{"magic":"nymvpn-platform-journal","version":1} {}`))),
		"blank line":      append(bytes.Clone(lines[0]), '\n'),
		"record not json": append(bytes.Clone(lines[0]), crcLine([]byte("[1,2]"))...),
	} {
		if _, _, err := decodeJournal(b); !errors.Is(err, ErrCorruptJournal) {
			t.Errorf("%s: %v, want ErrCorruptJournal", name, err)
		}
	}
}

func mustLine(t testing.TB, v any) []byte {
	b, err := encodeLine(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// crcLine makes a journal line of any bytes, with a good checksum.
func crcLine(js []byte) string {
	return fmt.Sprintf("%08x %s\n", crc32.Checksum(js, castagnoli), js)
}

func TestMoveAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, journalName), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	to, err := moveAside(dir, time.Date(2026, 5, 6, 7, 8, 9, 10, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(to) != "journal.corrupt-20260506T070809.000000010Z" {
		t.Errorf("moved to %s", to)
	}
	if b, err := os.ReadFile(to); err != nil || string(b) != "junk" {
		t.Errorf("moved journal: %q, %v", b, err)
	}
}

// FuzzDecodeJournal: the decoder never panics; what it accepts encodes
// back to the same header and records.
func FuzzDecodeJournal(f *testing.F) {
	dir := f.TempDir()
	f.Add(writeTestJournal(f, dir, testRecords(f)))
	f.Add([]byte{})
	f.Add([]byte("00000000 {}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, recs, err := decodeJournal(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptJournal) {
				t.Fatalf("error %v does not wrap ErrCorruptJournal", err)
			}
			return
		}
		var out []byte
		out = append(out, mustLine(t, h)...)
		for _, r := range recs {
			out = append(out, mustLine(t, r)...)
		}
		h2, recs2, err := decodeJournal(out)
		if err != nil {
			t.Fatalf("re-encoded journal does not decode: %v", err)
		}
		if !reflect.DeepEqual(h, h2) || len(recs) != len(recs2) {
			t.Fatalf("round trip changed the journal")
		}
		for i := range recs {
			a, _ := encodeLine(recs[i])
			b, _ := encodeLine(recs2[i])
			if !bytes.Equal(a, b) {
				t.Fatalf("record %d changed: %s vs %s", i, a, b)
			}
		}
	})
}
