package cli

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"text/tabwriter"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// settingKey is one setting as the CLI names it.
type settingKey struct {
	name    string
	aliases []string
	get     func(api.Settings) string
	json    func(api.Settings) any
	// set parses a value into a patch.
	set func(value string, p *api.SettingsPatch) error
}

var settingKeys = []settingKey{
	{
		name: "mode",
		get:  func(s api.Settings) string { return s.Mode },
		json: func(s api.Settings) any { return s.Mode },
		set:  func(v string, p *api.SettingsPatch) error { p.Mode = &v; return nil },
	},
	{
		name:    "privacy-profile",
		aliases: []string{"profile", "privacy_profile"},
		get:     func(s api.Settings) string { return s.PrivacyProfile },
		json:    func(s api.Settings) any { return s.PrivacyProfile },
		set:     func(v string, p *api.SettingsPatch) error { p.PrivacyProfile = &v; return nil },
	},
	{
		name: "entry",
		get:  func(s api.Settings) string { return s.Entry },
		json: func(s api.Settings) any { return s.Entry },
		set:  func(v string, p *api.SettingsPatch) error { p.Entry = &v; return nil },
	},
	{
		name: "exit",
		get:  func(s api.Settings) string { return s.Exit },
		json: func(s api.Settings) any { return s.Exit },
		set:  func(v string, p *api.SettingsPatch) error { p.Exit = &v; return nil },
	},
	{
		name: "dns",
		get: func(s api.Settings) string {
			if len(s.DNS) == 0 {
				return "default"
			}
			return strings.ReplaceAll(joinAddrs(s.DNS), " ", "")
		},
		json: func(s api.Settings) any {
			if s.DNS == nil {
				return []netip.Addr{}
			}
			return s.DNS
		},
		set: func(v string, p *api.SettingsPatch) error {
			dns, err := parseDNS(v)
			p.DNS = &dns
			return err
		},
	},
	{
		name: "ipv6",
		get:  func(s api.Settings) string { return onOff(s.IPv6) },
		json: func(s api.Settings) any { return s.IPv6 },
		set: func(v string, p *api.SettingsPatch) error {
			b, err := parseBool(v)
			p.IPv6 = &b
			return err
		},
	},
	{
		name:    "auto-connect",
		aliases: []string{"auto_connect", "autoconnect"},
		get:     func(s api.Settings) string { return onOff(s.AutoConnect) },
		json:    func(s api.Settings) any { return s.AutoConnect },
		set: func(v string, p *api.SettingsPatch) error {
			b, err := parseBool(v)
			p.AutoConnect = &b
			return err
		},
	},
	boolSetting("kill-switch", "block traffic outside the tunnel while connecting, reconnecting or failed",
		func(s api.Settings) bool { return s.KillSwitch }, func(p *api.SettingsPatch, b bool) { p.KillSwitch = &b }),
	boolSetting("lockdown", "block traffic outside the tunnel even when disconnected",
		func(s api.Settings) bool { return s.Lockdown }, func(p *api.SettingsPatch, b bool) { p.Lockdown = &b }),
	boolSetting("allow-lan", "let the local network through while blocking (DNS excepted)",
		func(s api.Settings) bool { return s.AllowLAN }, func(p *api.SettingsPatch, b bool) { p.AllowLAN = &b }),
	{
		name:    "directory",
		aliases: []string{"directory-url", "directory_url"},
		get: func(s api.Settings) string {
			if s.DirectoryURL == "" {
				return "none"
			}
			return s.DirectoryURL
		},
		json: func(s api.Settings) any { return s.DirectoryURL },
		set: func(v string, p *api.SettingsPatch) error {
			if v == "none" {
				v = ""
			}
			p.DirectoryURL = &v
			return nil
		},
	},
}

func lookupKey(name string) (settingKey, bool) {
	n := strings.ToLower(name)
	for _, k := range settingKeys {
		if k.name == n {
			return k, true
		}
		for _, a := range k.aliases {
			if a == n {
				return k, true
			}
		}
	}
	return settingKey{}, false
}

func keyNames() string {
	names := make([]string, len(settingKeys))
	for i, k := range settingKeys {
		names[i] = k.name
	}
	return strings.Join(names, ", ")
}

// parseDNS parses a comma-separated list of addresses; "", "default" and
// "none" mean none (the exit gateway's resolver).
func parseDNS(v string) ([]netip.Addr, error) {
	v = strings.TrimSpace(v)
	if v == "" || strings.EqualFold(v, "default") || strings.EqualFold(v, "none") {
		return []netip.Addr{}, nil
	}
	var out []netip.Addr
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, usagef("dns: %q is not an IP address", f)
		}
		out = append(out, a)
	}
	return out, nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "true", "yes", "1", "enable", "enabled":
		return true, nil
	case "off", "false", "no", "0", "disable", "disabled":
		return false, nil
	}
	return false, usagef("%q is not on or off", v)
}

func (r *runner) settings(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("settings needs get or set")
	}
	switch args[0] {
	case "get", "show":
		return r.settingsGet(ctx, args[1:])
	case "set":
		return r.settingsSet(ctx, args[1:])
	}
	return usagef("settings %q: want get or set", args[0])
}

func (r *runner) settingsGet(ctx context.Context, args []string) error {
	fs := r.newFlags("settings get")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := r.parseFlags(fs, "[--json] [KEY]", args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("settings get takes at most one key")
	}
	var key settingKey
	if len(pos) == 1 {
		var ok bool
		if key, ok = lookupKey(pos[0]); !ok {
			return usagef("unknown setting %q; the settings are %s", pos[0], keyNames())
		}
	}
	rctx, cancel := request(ctx)
	defer cancel()
	s, err := r.c.Settings(rctx)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 1 && *asJSON:
		return writeJSON(r.stdout, key.json(s))
	case len(pos) == 1:
		fmt.Fprintln(r.stdout, key.get(s))
		return nil
	case *asJSON:
		return writeJSON(r.stdout, s)
	}
	tw := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	for _, k := range settingKeys {
		fmt.Fprintf(tw, "%s\t%s\n", k.name, k.get(s))
	}
	return tw.Flush()
}

func (r *runner) settingsSet(ctx context.Context, args []string) error {
	fs := r.newFlags("settings set")
	pos, err := r.parseFlags(fs, "KEY VALUE", args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("settings set needs KEY and VALUE (the settings are %s)", keyNames())
	}
	key, ok := lookupKey(pos[0])
	if !ok {
		return usagef("unknown setting %q; the settings are %s", pos[0], keyNames())
	}
	var p api.SettingsPatch
	if err := key.set(pos[1], &p); err != nil {
		return err
	}
	rctx, cancel := request(ctx)
	defer cancel()
	s, err := r.c.UpdateSettings(rctx, p)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "%s = %s\n", key.name, key.get(s))
	return nil
}

// boolSetting is an on/off setting; underscores and no separator are
// accepted as aliases of its dashed name. The description is for help.
func boolSetting(name, _ string, get func(api.Settings) bool, set func(*api.SettingsPatch, bool)) settingKey {
	return settingKey{
		name:    name,
		aliases: []string{strings.ReplaceAll(name, "-", "_"), strings.ReplaceAll(name, "-", "")},
		get:     func(s api.Settings) string { return onOff(get(s)) },
		json:    func(s api.Settings) any { return get(s) },
		set: func(v string, p *api.SettingsPatch) error {
			b, err := parseBool(v)
			set(p, b)
			return err
		},
	}
}
