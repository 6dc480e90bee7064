// Package settings loads, validates and saves nymvpnd's persisted user
// settings (api.Settings) as one JSON file.
//
// Save is crash-safe: the file is written to a temporary file in the same
// directory, synced, renamed over the old one and the directory synced, so a
// crash leaves either the old or the new settings, never a mix. Load never
// fails hard: a missing file gives api.DefaultSettings(), and a corrupt one is
// moved aside (never deleted) and reported as a *CorruptError next to the
// defaults, so the daemon keeps running and can tell the user.
//
// The package does no locking: one owner (the daemon) loads and saves.
package settings

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/node/directory"
)

// Limits.
const (
	MaxDNS      = 8        // DNS servers in Settings.DNS
	MaxFileSize = 64 << 10 // bytes of a settings file
	MaxURLSize  = 2048     // bytes of Settings.DirectoryURL
	fileMode    = 0o600    // the settings file
	dirMode     = 0o700    // its directory, when Save creates it
	stampLayout = "20060102T150405Z"
)

// FieldError is a setting whose value is not allowed. Field is the JSON name
// of the setting.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// CorruptError reports a settings file that could not be used. The file was
// moved to MovedTo (empty if moving it failed too, see Err) and Load returned
// the default settings.
type CorruptError struct {
	Path    string
	MovedTo string
	Err     error
}

func (e *CorruptError) Error() string {
	if e.MovedTo == "" {
		return fmt.Sprintf("settings file %s is corrupt and could not be moved aside: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("settings file %s is corrupt (%v); it was moved to %s and the default settings are in use", e.Path, e.Err, e.MovedTo)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Load reads the settings at path. A missing file gives the defaults and no
// error. A file that is not valid (bad JSON, unknown fields, more than one
// JSON value, values Validate refuses, larger than MaxFileSize) is renamed to
// <path>.corrupt-<UTC time> and Load returns the defaults with a
// *CorruptError. Other errors (e.g. permission denied) return the defaults
// with that error, leaving the file alone. Fields missing from the file take
// their default values, so settings written by an older version load.
func Load(path string) (api.Settings, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return api.DefaultSettings(), nil
	}
	if err != nil {
		return api.DefaultSettings(), fmt.Errorf("open settings: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	f.Close()
	if err != nil {
		return api.DefaultSettings(), fmt.Errorf("read settings %s: %w", path, err)
	}
	s, perr := parse(data)
	if perr == nil {
		return s, nil
	}
	cerr := &CorruptError{Path: path, Err: perr}
	moved, err := moveAside(path, time.Now())
	if err != nil {
		cerr.Err = fmt.Errorf("%w; moving it aside: %w", perr, err)
	} else {
		cerr.MovedTo = moved
	}
	return api.DefaultSettings(), cerr
}

// parse decodes and validates a settings file.
func parse(data []byte) (api.Settings, error) {
	if len(data) > MaxFileSize {
		return api.Settings{}, fmt.Errorf("larger than %d bytes", MaxFileSize)
	}
	s := api.DefaultSettings()
	if err := DecodeStrict(data, &s); err != nil {
		return api.Settings{}, err
	}
	return normalize(s)
}

// DecodeStrict decodes exactly one JSON object from data into v, refusing
// unknown fields, a null or non-object value and trailing data. Its errors
// say what is wrong in words fit for a user.
func DecodeStrict(data []byte, v any) error {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return errors.New("empty: want a JSON object")
	}
	if trimmed[0] != '{' {
		return errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("more than one JSON value")
	}
	return nil
}

// describeJSONError turns encoding/json errors into plain words.
func describeJSONError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("invalid JSON at byte %d: %w", syn.Offset, err)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Errorf("field %q: want a JSON %s, got %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
		}
		return fmt.Errorf("want a JSON %s, got %s", jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("truncated JSON")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return fmt.Errorf("invalid value: %w", err)
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "string"
	case "bool":
		return "boolean (true or false)"
	case "slice", "array":
		return "array"
	case "struct", "map", "ptr":
		return "object"
	}
	return "number"
}

// moveAside renames path to path.corrupt-<UTC stamp>, adding .1, .2, … if
// that name is taken; it never replaces an existing file.
func moveAside(path string, now time.Time) (string, error) {
	base := path + ".corrupt-" + now.UTC().Format(stampLayout)
	for i := 0; i < 100; i++ {
		target := base
		if i > 0 {
			target = fmt.Sprintf("%s.%d", base, i)
		}
		// A hard link fails if target exists, so nothing is overwritten
		// even if another process races us.
		err := os.Link(path, target)
		if err == nil {
			if err := os.Remove(path); err != nil {
				return "", fmt.Errorf("remove %s after linking it to %s: %w", path, target, err)
			}
			return target, nil
		}
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		// No hard links here (some file systems): check, then rename.
		if _, serr := os.Lstat(target); serr == nil {
			continue
		}
		if err := os.Rename(path, target); err != nil {
			return "", fmt.Errorf("rename %s: %w", path, err)
		}
		return target, nil
	}
	return "", fmt.Errorf("move %s aside: %s and 99 more names are taken", path, base)
}

// Save validates s and writes it to path atomically: a temporary file (mode
// 0600) in the same directory, fsync, rename over path, fsync of the
// directory. The directory is created with mode 0700 if missing.
func Save(path string, s api.Settings) error {
	s, err := normalize(s)
	if err != nil {
		return fmt.Errorf("save settings: %w", err)
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("save settings: %w", err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("save settings: create directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("save settings: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(fileMode); err != nil && runtime.GOOS != "windows" {
		return fmt.Errorf("save settings: chmod: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("save settings: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("save settings: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save settings: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save settings: %w", err)
	}
	ok = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("save settings: sync directory %s: %w", dir, err)
	}
	return nil
}

// syncDir makes a rename in dir durable. Windows cannot open directories for
// syncing (NTFS journals renames), so there it does nothing.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Validate reports the first setting of s that is not allowed, as a
// *FieldError.
func Validate(s api.Settings) error {
	_, err := normalize(s)
	return err
}

// Apply returns s with the fields set in p changed, normalized (country
// codes upper case, gateway ids lower case, "auto" lower case) and
// validated. s itself is not modified.
func Apply(s api.Settings, p api.SettingsPatch) (api.Settings, error) {
	if p.Mode != nil {
		s.Mode = *p.Mode
	}
	if p.PrivacyProfile != nil {
		s.PrivacyProfile = *p.PrivacyProfile
	}
	if p.Entry != nil {
		s.Entry = *p.Entry
	}
	if p.Exit != nil {
		s.Exit = *p.Exit
	}
	if p.DNS != nil {
		s.DNS = *p.DNS
	}
	if p.IPv6 != nil {
		s.IPv6 = *p.IPv6
	}
	if p.AutoConnect != nil {
		s.AutoConnect = *p.AutoConnect
	}
	if p.KillSwitch != nil {
		s.KillSwitch = *p.KillSwitch
	}
	if p.Lockdown != nil {
		s.Lockdown = *p.Lockdown
	}
	if p.AllowLAN != nil {
		s.AllowLAN = *p.AllowLAN
	}
	if p.DirectoryURL != nil {
		s.DirectoryURL = *p.DirectoryURL
	}
	return normalize(s)
}

// normalize validates s and returns it in canonical form, with its own copy
// of DNS.
func normalize(s api.Settings) (api.Settings, error) {
	var err error
	if s.Mode, err = NormalizeMode(s.Mode); err != nil {
		return api.Settings{}, err
	}
	if s.PrivacyProfile, err = NormalizeProfile(s.PrivacyProfile); err != nil {
		return api.Settings{}, err
	}
	if s.Entry, err = NormalizeChoice("entry", s.Entry); err != nil {
		return api.Settings{}, err
	}
	if s.Exit, err = NormalizeChoice("exit", s.Exit); err != nil {
		return api.Settings{}, err
	}
	if len(s.DNS) > MaxDNS {
		return api.Settings{}, &FieldError{"dns", fmt.Sprintf("%d servers, at most %d", len(s.DNS), MaxDNS)}
	}
	if len(s.DNS) == 0 {
		s.DNS = nil
	} else {
		dns := make([]netip.Addr, len(s.DNS))
		for i, a := range s.DNS {
			if err := checkDNS(a); err != nil {
				return api.Settings{}, &FieldError{"dns", fmt.Sprintf("server %d: %v", i+1, err)}
			}
			dns[i] = a.Unmap()
		}
		s.DNS = dns
	}
	if s.DirectoryURL != "" {
		if len(s.DirectoryURL) > MaxURLSize {
			return api.Settings{}, &FieldError{"directory_url", fmt.Sprintf("%d bytes, at most %d", len(s.DirectoryURL), MaxURLSize)}
		}
		if _, _, err := directory.ParseURL(s.DirectoryURL); err != nil {
			return api.Settings{}, &FieldError{"directory_url", err.Error()}
		}
	}
	return s, nil
}

// NormalizeMode checks a tunnel mode and returns it in lower case.
func NormalizeMode(m string) (string, error) {
	switch l := strings.ToLower(strings.TrimSpace(m)); l {
	case api.ModeFast, api.ModeMixnet:
		return l, nil
	}
	return "", &FieldError{"mode", fmt.Sprintf("%q is not a mode: use %s or %s", clip(m), api.ModeFast, api.ModeMixnet)}
}

// NormalizeProfile checks a privacy profile and returns it in lower case;
// empty (settings written before profiles existed) is the default, max.
func NormalizeProfile(p string) (string, error) {
	switch l := strings.ToLower(strings.TrimSpace(p)); l {
	case "":
		return api.ProfileMax, nil
	case api.ProfileMax, api.ProfileFast:
		return l, nil
	}
	return "", &FieldError{"privacy_profile", fmt.Sprintf("%q is not a privacy profile: use %s or %s", clip(p), api.ProfileMax, api.ProfileFast)}
}

// NormalizeChoice checks a gateway choice for field ("entry" or "exit"):
// "auto" (any case), a two-letter country code (returned in upper case) or a
// gateway id as node/directory defines it (returned in lower case).
func NormalizeChoice(field, c string) (string, error) {
	t := strings.TrimSpace(c)
	switch {
	case t == "":
		return "", &FieldError{field, "empty: use auto, a two-letter country code such as DE, or a gateway id"}
	case strings.EqualFold(t, "auto"):
		return "auto", nil
	case len(t) == 2 && isLetter(t[0]) && isLetter(t[1]):
		return strings.ToUpper(t), nil
	}
	id := strings.ToLower(t)
	if err := directory.ValidateID(id); err != nil {
		return "", &FieldError{field, fmt.Sprintf("%q is not auto, a two-letter country code or a gateway id (%v)", clip(c), err)}
	}
	return id, nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// checkDNS refuses addresses that cannot be a resolver inside the tunnel.
func checkDNS(a netip.Addr) error {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return errors.New("not an IP address")
	case a.Zone() != "":
		return fmt.Errorf("%s: zoned addresses are not allowed", a)
	case a.IsUnspecified(), a.IsMulticast():
		return fmt.Errorf("%s is not a unicast address", a)
	case a.IsLoopback(), a.IsLinkLocalUnicast():
		return fmt.Errorf("%s would not be reached through the tunnel", a)
	}
	return nil
}

// clip shortens a user value for an error message.
func clip(s string) string {
	const max = 70
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
