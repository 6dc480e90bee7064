package tunnelstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// FileTarget persists the target in a small JSON file, written atomically
// (temporary file, fsync, rename, fsync of the directory) so a crash at any
// moment leaves either the old or the new target.
type FileTarget struct {
	Path string
	// Now stamps the file; nil is time.Now.
	Now func() time.Time
}

type targetFile struct {
	Connect bool      `json:"connect"`
	Updated time.Time `json:"updated"`
}

// Load reads the target; a missing file means disconnected. A corrupt file
// is moved aside (never deleted) and reported; the target is then
// "disconnected".
func (f FileTarget) Load() (bool, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read target %s: %w", f.Path, err)
	}
	var t targetFile
	if err := json.Unmarshal(b, &t); err != nil {
		aside := fmt.Sprintf("%s.corrupt-%s", f.Path, f.now().UTC().Format("20060102T150405Z"))
		if rerr := os.Rename(f.Path, aside); rerr != nil {
			return false, fmt.Errorf("target %s is corrupt (%v) and could not be moved aside: %w", f.Path, err, rerr)
		}
		return false, fmt.Errorf("target %s was corrupt (%v); moved to %s", f.Path, err, aside)
	}
	return t.Connect, nil
}

// Save writes the target.
func (f FileTarget) Save(connect bool) error {
	b, err := json.Marshal(targetFile{Connect: connect, Updated: f.now().UTC()})
	if err != nil {
		return err
	}
	return WriteFileAtomic(f.Path, append(b, '\n'))
}

func (f FileTarget) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// WriteFileAtomic writes b to path with mode 0600 in a 0700 directory so
// that a crash leaves the old or the new content, never a mix.
func WriteFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
