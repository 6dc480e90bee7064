package platform

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
)

// DefaultResolvConf is the resolv.conf the resolvconf backend rewrites.
const DefaultResolvConf = "/etc/resolv.conf"

// maxResolvConf bounds the resolv.conf that is backed up (into the journal).
const maxResolvConf = 64 << 10

// resolvConfMarker starts the file nymvpn writes.
const resolvConfMarker = "# Written by nymvpn while the VPN is connected; the previous file is restored on disconnect.\n"

// resolvBackup is what the resolvconf backend replaced: the exact old file
// and what nymvpn wrote in its place.
//
// A regular file is rewritten in place (opened with O_TRUNC and written),
// never renamed over: under `ip netns exec` /etc/resolv.conf is a bind mount
// of /etc/netns/NAME/resolv.conf and a rename onto a mount point fails. The
// old bytes are restored the same way, so the file keeps its inode, owner and
// mode.
//
// A symlink (to systemd-resolved's stub file, NetworkManager's or
// resolvconf's generated file, ...) is replaced by a regular file, and the
// symlink, with its exact target, is put back on restore. Writing through it
// would change a file another program owns and rewrites whenever it likes
// (a DHCP renewal, a restart of resolved), silently sending DNS around the
// tunnel again; the symlink's own directory entry is not a mount point, so
// replacing it with a rename is safe.
//
// A missing file is created and removed again on restore.
type resolvBackup struct {
	Path string `json:"path"`
	// Exists says there was a file (or symlink) at Path.
	Exists bool `json:"exists"`
	// Symlink is the target of the symlink that was at Path, if it was one.
	Symlink string `json:"symlink,omitempty"`
	// Content and Mode are the old regular file's bytes and permissions.
	Content []byte      `json:"content,omitempty"`
	Mode    fs.FileMode `json:"mode,omitempty"`
	// Wrote is what nymvpn writes at Path.
	Wrote []byte `json:"wrote"`
}

// renderResolvConf returns the resolv.conf that sends every query to dns.
func renderResolvConf(dns []netip.Addr) []byte {
	var b bytes.Buffer
	b.WriteString(resolvConfMarker)
	for _, a := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	return b.Bytes()
}

// backupResolvConf reads what is at path now and what will replace it.
func backupResolvConf(path string, dns []netip.Addr) (*resolvBackup, error) {
	b := &resolvBackup{Path: path, Wrote: renderResolvConf(dns)}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return b, nil
	case err != nil:
		return nil, fmt.Errorf("platform: back up %s: %w", path, err)
	}
	b.Exists = true
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		if b.Symlink, err = os.Readlink(path); err != nil {
			return nil, fmt.Errorf("platform: back up %s: %w", path, err)
		}
		if b.Symlink == "" {
			return nil, fmt.Errorf("platform: back up %s: empty symlink", path)
		}
	case fi.Mode().IsRegular():
		if b.Content, err = readSmall(path, maxResolvConf); err != nil {
			return nil, fmt.Errorf("platform: back up %s: %w", path, err)
		}
		b.Mode = fi.Mode().Perm()
	default:
		return nil, fmt.Errorf("platform: back up %s: not a regular file or symlink (%v)", path, fi.Mode().Type())
	}
	return b, nil
}

// readSmall reads a file of at most limit bytes.
func readSmall(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}

// apply writes b.Wrote at b.Path.
func (b *resolvBackup) apply() error {
	var err error
	switch {
	case !b.Exists:
		err = writeNew(b.Path, b.Wrote, 0o644)
	case b.Symlink != "":
		err = replaceWithFile(b.Path, b.Wrote, 0o644)
	default:
		err = writeInPlace(b.Path, b.Wrote)
	}
	if err != nil {
		return fmt.Errorf("platform: write %s: %w", b.Path, err)
	}
	return nil
}

// restore puts back what b recorded. It is harmless when apply never ran.
// If the file was changed since by someone else (it holds neither what was
// there nor what nymvpn wrote), it is left alone with a warning: the newer
// configuration wins over an old backup.
func (b *resolvBackup) restore(log *slog.Logger) error {
	fi, err := os.Lstat(b.Path)
	missing := errors.Is(err, fs.ErrNotExist)
	if err != nil && !missing {
		return fmt.Errorf("platform: restore %s: %w", b.Path, err)
	}
	var cur []byte
	isOurs := false
	if !missing && fi.Mode().IsRegular() {
		if cur, err = readSmall(b.Path, maxResolvConf); err != nil {
			return fmt.Errorf("platform: restore %s: %w", b.Path, err)
		}
		isOurs = bytes.Equal(cur, b.Wrote)
	}
	changedBySomeoneElse := func() error {
		log.Warn("resolv.conf was changed by another program while the VPN was connected; leaving it as it is", "path", b.Path)
		return nil
	}
	switch {
	case !b.Exists:
		if missing {
			return nil
		}
		if !isOurs {
			return changedBySomeoneElse()
		}
		if err := os.Remove(b.Path); err != nil {
			return fmt.Errorf("platform: restore %s (remove the file nymvpn created): %w", b.Path, err)
		}
		return syncDir(filepath.Dir(b.Path))
	case b.Symlink != "":
		if !missing && fi.Mode()&fs.ModeSymlink != 0 {
			if target, err := os.Readlink(b.Path); err == nil && target == b.Symlink {
				return nil
			}
			return changedBySomeoneElse()
		}
		if !missing && !isOurs {
			return changedBySomeoneElse()
		}
		if err := replaceWithSymlink(b.Path, b.Symlink); err != nil {
			return fmt.Errorf("platform: restore %s (symlink to %s): %w", b.Path, b.Symlink, err)
		}
		return nil
	default:
		if missing {
			// Deleted while connected: without it nothing resolves.
			if err := writeNew(b.Path, b.Content, b.Mode); err != nil {
				return fmt.Errorf("platform: restore %s: %w", b.Path, err)
			}
			return nil
		}
		if bytes.Equal(cur, b.Content) && fi.Mode().IsRegular() {
			return nil
		}
		if !isOurs {
			return changedBySomeoneElse()
		}
		if err := writeInPlace(b.Path, b.Content); err != nil {
			return fmt.Errorf("platform: restore %s: %w", b.Path, err)
		}
		return nil
	}
}

// writeInPlace truncates the existing file at path and writes data into it,
// keeping its inode (a bind mount stays a bind mount), owner and mode.
func writeInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	return writeSyncClose(f, data)
}

// writeNew creates a file that must not exist.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if err := writeSyncClose(f, data); err != nil {
		return err
	}
	if err := os.Chmod(path, perm); err != nil { // not narrowed by the umask
		return err
	}
	return syncDir(filepath.Dir(path))
}

func writeSyncClose(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// tempName is the temporary file next to path that replaceWithFile and
// replaceWithSymlink rename over it.
func tempName(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".nymvpn-tmp")
}

// replaceWithFile atomically replaces what is at path (a symlink) with a
// regular file holding data.
func replaceWithFile(path string, data []byte, perm fs.FileMode) error {
	tmp := tempName(path)
	os.Remove(tmp)
	if err := writeNew(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// replaceWithSymlink atomically replaces what is at path with a symlink to
// target.
func replaceWithSymlink(path, target string) error {
	tmp := tempName(path)
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}
