package settings

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
)

const testDirURL = "http://127.0.0.1:8080/?key=11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"

func ptr[T any](v T) *T { return &v }

func TestLoadMissing(t *testing.T) {
	s, err := Load(filepath.Join(t.TempDir(), "nope", "settings.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, api.DefaultSettings()) {
		t.Fatalf("got %+v, want defaults", s)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "settings.json")
	want := api.Settings{
		Mode: api.ModeMixnet, PrivacyProfile: api.ProfileFast, Entry: "DE", Exit: "exit-ch-1",
		DNS:  []netip.Addr{netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("2606:4700:4700::1111")},
		IPv6: false, AutoConnect: true, DirectoryURL: testDirURL,
	}
	if err := Save(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if runtime.GOOS == "windows" {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("file mode %o, want 600", m)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m := di.Mode().Perm(); m != 0o700 {
		t.Errorf("dir mode %o, want 700", m)
	}
}

func TestSaveNormalizes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "settings.json")
	// No privacy profile (a file from before profiles): the default, max.
	in := api.Settings{Mode: "FAST", Entry: "de", Exit: "Exit-CH-1", DNS: []netip.Addr{netip.MustParseAddr("::ffff:9.9.9.9")}}
	if err := Save(path, in); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := api.Settings{Mode: "fast", PrivacyProfile: api.ProfileMax, Entry: "DE", Exit: "exit-ch-1", DNS: []netip.Addr{netip.MustParseAddr("9.9.9.9")}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// TestSaveAtomic checks that Save replaces the file in one step and leaves
// no temporary files, and that a failed Save keeps the old settings.
func TestSaveAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "settings.json")
	old := api.DefaultSettings()
	old.Entry = "DE"
	if err := Save(path, old); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// An invalid value is refused before anything is written.
	bad := old
	bad.Mode = "warp"
	if err := Save(path, bad); err == nil {
		t.Fatal("Save accepted an invalid mode")
	}
	if got, err := Load(path); err != nil || got.Entry != "DE" {
		t.Fatalf("after a refused Save: %+v, %v", got, err)
	}
	next := old
	next.Entry = "CH"
	if err := Save(path, next); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && os.SameFile(before, after) {
		t.Error("Save rewrote the file in place; want a new file renamed over it")
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only settings.json", names)
	}
	// A Save that cannot rename (the target is a directory) leaves no
	// temporary file behind.
	blocked := filepath.Join(dir, "blocked")
	if err := os.MkdirAll(filepath.Join(blocked, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Save(blocked, old); err == nil {
		t.Fatal("Save over a non-empty directory succeeded")
	}
	ents, _ = os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestLoadCorruptMovedAside(t *testing.T) {
	cases := map[string]string{
		"bad json":      `{"mode": "fast",`,
		"unknown field": `{"mode": "fast", "turbo": true}`,
		"invalid value": `{"mode": "warp"}`,
		"wrong type":    `{"ipv6": "yes"}`,
		"two values":    `{} {}`,
		"null":          `null`,
		"array":         `[]`,
		"empty":         ``,
		"bad dns":       `{"dns": ["1.1.1.1", "nonsense"]}`,
		"too large":     `{"entry": "` + strings.Repeat("a", MaxFileSize) + `"}`,
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "settings.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Load(path)
			if !reflect.DeepEqual(s, api.DefaultSettings()) {
				t.Errorf("got %+v, want defaults", s)
			}
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want *CorruptError", err, err)
			}
			if ce.Path != path || !strings.HasPrefix(ce.MovedTo, path+".corrupt-") {
				t.Fatalf("CorruptError %+v", ce)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("corrupt file still at %s: %v", path, err)
			}
			moved, err := os.ReadFile(ce.MovedTo)
			if err != nil {
				t.Fatal(err)
			}
			if string(moved) != content {
				t.Error("moved file differs from the original")
			}
			if !strings.Contains(ce.Error(), ce.MovedTo) {
				t.Errorf("message %q does not say where the file went", ce.Error())
			}
			// The next Load finds no file and gives the defaults quietly.
			if _, err := Load(path); err != nil {
				t.Errorf("second Load: %v", err)
			}
		})
	}
}

func TestMoveAsideNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "settings.json")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	taken := path + ".corrupt-20260102T030405Z"
	if err := os.WriteFile(taken, []byte("earlier"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("later"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := moveAside(path, now)
	if err != nil {
		t.Fatal(err)
	}
	if got != taken+".1" {
		t.Fatalf("moved to %s, want %s.1", got, taken)
	}
	for file, want := range map[string]string{taken: "earlier", got: "later"} {
		b, err := os.ReadFile(file)
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", file, b, err, want)
		}
	}
}

func TestLoadOlderFileTakesDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "settings.json")
	if err := os.WriteFile(path, []byte(`{"entry": "ch"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := api.DefaultSettings()
	want.Entry = "CH"
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v, want %+v", s, want)
	}
}

func TestLoadUnreadableIsNotCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "settings.json")
	if err := os.Mkdir(path, 0o700); err != nil { // a directory cannot be read as a file
		t.Fatal(err)
	}
	_, err := Load(path)
	var ce *CorruptError
	if err == nil || errors.As(err, &ce) {
		t.Fatalf("error %v, want a plain read error", err)
	}
	if _, serr := os.Stat(path); serr != nil {
		t.Errorf("Load moved an unreadable path: %v", serr)
	}
}

func TestValidate(t *testing.T) {
	ok := api.DefaultSettings()
	if err := Validate(ok); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	nineDNS := make([]netip.Addr, 9)
	for i := range nineDNS {
		nineDNS[i] = netip.AddrFrom4([4]byte{9, 9, 9, byte(i + 1)})
	}
	cases := []struct {
		name  string
		edit  func(*api.Settings)
		field string
		in    string // part of the message
	}{
		{"mode", func(s *api.Settings) { s.Mode = "warp" }, "mode", "fast or mixnet"},
		{"profile", func(s *api.Settings) { s.PrivacyProfile = "paranoid" }, "privacy_profile", "max or fast"},
		{"profile fast", func(s *api.Settings) { s.PrivacyProfile = "FAST" }, "", ""},
		{"empty entry", func(s *api.Settings) { s.Entry = "" }, "entry", "empty"},
		{"bad exit", func(s *api.Settings) { s.Exit = "exit_1" }, "exit", "gateway id"},
		{"leading dash", func(s *api.Settings) { s.Entry = "-gw" }, "entry", "gateway id"},
		{"long id", func(s *api.Settings) { s.Exit = strings.Repeat("a", 65) }, "exit", "gateway id"},
		{"three letters", func(s *api.Settings) { s.Entry = "DEU" }, "", ""}, // a valid id
		{"too many dns", func(s *api.Settings) { s.DNS = nineDNS }, "dns", "at most 8"},
		{"zero dns", func(s *api.Settings) { s.DNS = []netip.Addr{{}} }, "dns", "not an IP"},
		{"loopback dns", func(s *api.Settings) { s.DNS = []netip.Addr{netip.MustParseAddr("127.0.0.53")} }, "dns", "tunnel"},
		{"multicast dns", func(s *api.Settings) { s.DNS = []netip.Addr{netip.MustParseAddr("ff02::1")} }, "dns", "unicast"},
		{"unspecified dns", func(s *api.Settings) { s.DNS = []netip.Addr{netip.IPv4Unspecified()} }, "dns", "unicast"},
		{"url without key", func(s *api.Settings) { s.DirectoryURL = "http://127.0.0.1:8080/" }, "directory_url", "key"},
		{"url scheme", func(s *api.Settings) { s.DirectoryURL = "ftp://x/?key=a" }, "directory_url", "scheme"},
		{"good url", func(s *api.Settings) { s.DirectoryURL = testDirURL }, "", ""},
		{"auto any case", func(s *api.Settings) { s.Entry = "AUTO" }, "", ""},
		{"country", func(s *api.Settings) { s.Exit = "ch" }, "", ""},
		{"id with digit", func(s *api.Settings) { s.Exit = "a1" }, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := api.DefaultSettings()
			c.edit(&s)
			err := Validate(s)
			if c.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v, want *FieldError", err)
			}
			if fe.Field != c.field || !strings.Contains(fe.Error(), c.in) {
				t.Fatalf("got %q (field %s), want field %s mentioning %q", fe.Error(), fe.Field, c.field, c.in)
			}
		})
	}
}

func TestApply(t *testing.T) {
	base := api.DefaultSettings()
	got, err := Apply(base, api.SettingsPatch{
		Mode: ptr("mixnet"), PrivacyProfile: ptr("Fast"), Entry: ptr("de"), Exit: ptr("Exit-1"),
		DNS: ptr([]netip.Addr{netip.MustParseAddr("1.1.1.1")}), IPv6: ptr(false),
		AutoConnect: ptr(true), DirectoryURL: ptr(testDirURL),
		KillSwitch: ptr(false), Lockdown: ptr(true), AllowLAN: ptr(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := api.Settings{Mode: "mixnet", PrivacyProfile: "fast", Entry: "DE", Exit: "exit-1", DNS: []netip.Addr{netip.MustParseAddr("1.1.1.1")},
		IPv6: false, AutoConnect: true, Lockdown: true, AllowLAN: true, DirectoryURL: testDirURL}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if !reflect.DeepEqual(base, api.DefaultSettings()) {
		t.Error("Apply modified its input")
	}
	// An empty DNS list goes back to the exit's resolver; nil leaves it.
	cleared, err := Apply(got, api.SettingsPatch{DNS: ptr([]netip.Addr{})})
	if err != nil || cleared.DNS != nil {
		t.Fatalf("clearing DNS: %+v, %v", cleared.DNS, err)
	}
	same, err := Apply(got, api.SettingsPatch{})
	if err != nil || !reflect.DeepEqual(same, got) {
		t.Fatalf("empty patch: %+v, %v", same, err)
	}
	if _, err := Apply(got, api.SettingsPatch{Entry: ptr("no way")}); err == nil {
		t.Fatal("Apply accepted an invalid entry")
	}
}

func TestDecodeStrictMessages(t *testing.T) {
	var s api.Settings
	cases := map[string]string{
		`{"turbo":1}`:   `unknown field "turbo"`,
		`{"ipv6":"on"}`: `field "ipv6": want a JSON boolean`,
		`{"mode":`:      `truncated`,
		`{} 1`:          `more than one`,
		`"x"`:           `not a JSON object`,
		`{"mode":x}`:    `invalid JSON at byte`,
	}
	for in, want := range cases {
		err := DecodeStrict([]byte(in), &s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
	b, _ := json.Marshal(api.DefaultSettings())
	if err := DecodeStrict(b, &s); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
