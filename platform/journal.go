package platform

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The journal is a text file of lines "CRC JSON\n": CRC is the CRC-32C of
// JSON in 8 lower-case hex digits. The first line is a journalHeader, every
// other line a record, written and fsync'd before its change is made.
//
// A last line without its newline is a write cut short (by a power loss, not
// by a kill: a line is one write): it is used when its checksum holds and
// ignored otherwise, since its change was never made. Anything else that does
// not decode makes the journal corrupt.

// journalName is the journal's file name in the state directory.
const journalName = "journal"

// journalMagic and journalVersion identify the format.
const (
	journalMagic   = "nymvpn-platform-journal"
	journalVersion = 1
)

// maxJournalSize bounds what Recover reads: a journal holds a few dozen
// lines and one resolv.conf.
const maxJournalSize = 1 << 20

// ErrCorruptJournal is wrapped by Recover's error when the journal cannot be
// decoded; the file is then moved aside (journal.corrupt-TIME), never
// deleted.
var ErrCorruptJournal = errors.New("corrupt journal")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journalHeader opens a journal. Table, FwMark and RulePriority let a
// recovery from a damaged journal still find the rules and routes by
// matching.
type journalHeader struct {
	Magic        string    `json:"magic"`
	Version      int       `json:"version"`
	Created      time.Time `json:"created"`
	PID          int       `json:"pid"`
	Interface    string    `json:"interface"`
	Table        int       `json:"table"`
	FwMark       uint32    `json:"fwmark"`
	RulePriority int       `json:"rule_priority"`
}

// record is one journal line after the header: a change and what undoing
// it needs, captured before it was made.
type record struct {
	Seq    int    `json:"seq"`
	Change Change `json:"change"`
	Undo   undo   `json:"undo"`
}

// undo is the state a change replaces.
type undo struct {
	// Ifindex identifies the link a link change (or route through it, or
	// resolved DNS) was made on; undo skips a link that is gone or is now
	// another link.
	Ifindex int `json:"ifindex,omitempty"`
	// OldMTU is the link's MTU before (mtu).
	OldMTU int `json:"old_mtu,omitempty"`
	// WasUp says the link was up before (link-up).
	WasUp bool `json:"was_up,omitempty"`
	// OldValue is the sysctl's value before (sysctl).
	OldValue string `json:"old_value,omitempty"`
	// ResolvConf is the resolv.conf backup (dns, resolvconf).
	ResolvConf *resolvBackup `json:"resolv_conf,omitempty"`
}

// encodeLine returns the journal line of v.
func encodeLine(v any) ([]byte, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("platform: encode journal line: %w", err)
	}
	line := make([]byte, 0, len(js)+10)
	line = fmt.Appendf(line, "%08x ", crc32.Checksum(js, castagnoli))
	line = append(line, js...)
	return append(line, '\n'), nil
}

// decodeLine checks a line's checksum (the line without its newline) and
// unmarshals its JSON into v.
func decodeLine(line []byte, v any) error {
	if len(line) < 10 || line[8] != ' ' {
		return errors.New("not a CRC and JSON")
	}
	for _, c := range line[:8] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("bad checksum field %q", line[:8])
		}
	}
	want, err := strconv.ParseUint(string(line[:8]), 16, 32)
	if err != nil {
		return fmt.Errorf("bad checksum field %q: %w", line[:8], err)
	}
	js := line[9:]
	if got := crc32.Checksum(js, castagnoli); uint32(want) != got {
		return fmt.Errorf("checksum %08x, want %08x", got, want)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON")
	}
	return nil
}

// decodeJournal decodes a journal. On a corrupt journal it returns the
// error (wrapping ErrCorruptJournal) along with the header, if it decoded,
// and the records before the first bad line, which can still be trusted.
func decodeJournal(b []byte) (*journalHeader, []record, error) {
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("platform: %w: empty file", ErrCorruptJournal)
	}
	lines := bytes.Split(b, []byte{'\n'})
	// The element after the last newline is empty, or a line cut short.
	tail := lines[len(lines)-1]
	lines = lines[:len(lines)-1]
	var h *journalHeader
	var recs []record
	for i, line := range lines {
		if err := decodeJournalLine(i, line, &h, &recs); err != nil {
			return h, recs, fmt.Errorf("platform: %w: line %d: %w", ErrCorruptJournal, i+1, err)
		}
	}
	if len(tail) > 0 {
		// A cut-short last line counts only if it is whole but for the
		// newline; otherwise its change was never made.
		var h2 = h
		recs2 := recs
		if decodeJournalLine(len(lines), tail, &h2, &recs2) == nil {
			h, recs = h2, recs2
		}
	}
	if h == nil {
		return nil, nil, fmt.Errorf("platform: %w: no header", ErrCorruptJournal)
	}
	return h, recs, nil
}

// decodeJournalLine decodes line number i (from 0) into the header or a new
// record.
func decodeJournalLine(i int, line []byte, h **journalHeader, recs *[]record) error {
	if i == 0 {
		var hd journalHeader
		if err := decodeLine(line, &hd); err != nil {
			return fmt.Errorf("header: %w", err)
		}
		if hd.Magic != journalMagic || hd.Version != journalVersion {
			return fmt.Errorf("header: not a version %d nymvpn journal (magic %q, version %d)", journalVersion, hd.Magic, hd.Version)
		}
		*h = &hd
		return nil
	}
	var r record
	if err := decodeLine(line, &r); err != nil {
		return err
	}
	if r.Seq != len(*recs) {
		return fmt.Errorf("record %d out of sequence (want %d)", r.Seq, len(*recs))
	}
	*recs = append(*recs, r)
	return nil
}

// journal is an open journal being written.
type journal struct {
	f    *os.File
	path string
	dir  string
	seq  int
}

// createJournal creates the journal in dir (0600; it must not exist) with
// its header, fsync'd along with the directory entry.
func createJournal(dir string, h journalHeader) (*journal, error) {
	path := filepath.Join(dir, journalName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("platform: create journal: %w", err)
	}
	j := &journal{f: f, path: path, dir: dir}
	if err := j.writeLine(h); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return j, nil
}

// append writes r (its Seq set to the next number) and fsyncs the file.
// When it returns nil the change may be made.
func (j *journal) append(r *record) error {
	r.Seq = j.seq
	if err := j.writeLine(r); err != nil {
		return err
	}
	j.seq++
	return nil
}

func (j *journal) writeLine(v any) error {
	line, err := encodeLine(v)
	if err != nil {
		return err
	}
	if _, err := j.f.Write(line); err != nil {
		return fmt.Errorf("platform: write journal %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("platform: fsync journal %s: %w", j.path, err)
	}
	return nil
}

// remove closes and deletes the journal: everything it records is undone.
func (j *journal) remove() error {
	j.f.Close()
	return removeJournal(j.dir)
}

// removeJournal deletes the journal in dir, if any, durably.
func removeJournal(dir string) error {
	if err := os.Remove(filepath.Join(dir, journalName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("platform: delete journal: %w", err)
	}
	return syncDir(dir)
}

// readJournal reads the journal in dir; it returns nil, nil when there is
// none.
func readJournal(dir string) ([]byte, error) {
	f, err := os.Open(filepath.Join(dir, journalName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("platform: open journal: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxJournalSize+1)); err != nil {
		return nil, fmt.Errorf("platform: read journal: %w", err)
	}
	if buf.Len() > maxJournalSize {
		return buf.Bytes(), fmt.Errorf("platform: %w: larger than %d bytes", ErrCorruptJournal, maxJournalSize)
	}
	return buf.Bytes(), nil
}

// moveAside renames the journal in dir to journal.corrupt-TIME and returns
// the new path.
func moveAside(dir string, now time.Time) (string, error) {
	to := filepath.Join(dir, journalName+".corrupt-"+now.UTC().Format("20060102T150405.000000000Z"))
	if err := os.Rename(filepath.Join(dir, journalName), to); err != nil {
		return "", fmt.Errorf("platform: move the corrupt journal aside: %w", err)
	}
	return to, syncDir(dir)
}

// syncDir fsyncs a directory so that entries created, renamed or removed in
// it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("platform: open %s to fsync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("platform: fsync %s: %w", dir, err)
	}
	return nil
}
