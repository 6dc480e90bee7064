package viewmodel

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// SettingKind is how a setting is edited.
type SettingKind int

const (
	// Toggle is on or off (values "on", "off").
	Toggle SettingKind = iota
	// Text is a line of text, saved with a button.
	Text
)

// Setting is one row of the settings page: how to show a field of
// api.Settings and how to change it.
type Setting struct {
	Key         string
	Label, Help string
	Kind        SettingKind
	// Placeholder is shown in an empty text field.
	Placeholder string
	get         func(api.Settings) string
	patch       func(string) (api.SettingsPatch, error)
}

// Settings are the rows of the settings page, in order: only fields the
// daemon's api.Settings has. Adding a daemon setting to the page is one
// line here.
var Settings = []Setting{
	toggle("kill_switch", "Kill switch", "Blocks all traffic outside the tunnel while connecting, reconnecting or after an error, so nothing leaks.", func(s api.Settings) bool { return s.KillSwitch }, func(p *api.SettingsPatch, v *bool) { p.KillSwitch = v }),
	toggle("lockdown", "Lockdown", "Blocks all traffic outside the tunnel even when you disconnect: nothing leaves this computer without the VPN.", func(s api.Settings) bool { return s.Lockdown }, func(p *api.SettingsPatch, v *bool) { p.Lockdown = v }),
	toggle("allow_lan", "Allow local network", "Lets printers and other devices on your local network through while traffic is blocked.", func(s api.Settings) bool { return s.AllowLAN }, func(p *api.SettingsPatch, v *bool) { p.AllowLAN = v }),
	toggle("privacy_profile", "Maximum mixnet privacy", "Mixnet mode: delays at every mix and a steady stream of cover traffic (slower); off trades some anonymity for speed.", func(s api.Settings) bool { return s.PrivacyProfile != api.ProfileFast }, func(p *api.SettingsPatch, v *bool) {
		p.PrivacyProfile = ptr(map[bool]string{true: api.ProfileMax, false: api.ProfileFast}[*v])
	}),
	toggle("ipv6", "IPv6", "Carries IPv6 through the tunnel; when off, IPv6 is blocked while connected.", func(s api.Settings) bool { return s.IPv6 }, func(p *api.SettingsPatch, v *bool) { p.IPv6 = v }),
	toggle("auto_connect", "Connect on start", "Connects when the VPN service starts, e.g. after the computer boots.", func(s api.Settings) bool { return s.AutoConnect }, func(p *api.SettingsPatch, v *bool) { p.AutoConnect = v }),
	text("dns", "DNS servers", "Resolvers to use inside the tunnel, separated by commas; empty uses the exit gateway's.", "exit gateway's resolver", func(s api.Settings) string { return joinAddrs(s.DNS) }, patchDNS),
	text("directory_url", "Network directory", "The network's directory with its key (…?key=…); empty uses the service's own.", "the service's own", func(s api.Settings) string { return s.DirectoryURL }, func(v string) (api.SettingsPatch, error) { return api.SettingsPatch{DirectoryURL: &v}, nil }),
}

// toggle describes an on/off setting: get reads it, set puts a value into a
// patch.
func toggle(key, label, help string, get func(api.Settings) bool, set func(*api.SettingsPatch, *bool)) Setting {
	return Setting{Key: key, Label: label, Help: help, Kind: Toggle,
		get: func(s api.Settings) string { return onOff(get(s)) },
		patch: func(v string) (api.SettingsPatch, error) {
			var p api.SettingsPatch
			switch v {
			case "on", "off":
				b := v == "on"
				set(&p, &b)
				return p, nil
			}
			return p, fmt.Errorf("%s: %q is neither on nor off", label, v)
		}}
}

// text describes a setting edited as a line of text.
func text(key, label, help, placeholder string, get func(api.Settings) string, patch func(string) (api.SettingsPatch, error)) Setting {
	return Setting{Key: key, Label: label, Help: help, Kind: Text, Placeholder: placeholder, get: get, patch: patch}
}

func ptr[T any](v T) *T { return &v }

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// Value returns the setting's value in s ("on"/"off" for toggles).
func (st Setting) Value(s api.Settings) string { return st.get(s) }

// PatchFor returns the patch that sets the setting key to value; errors are
// fit to show the user.
func PatchFor(key, value string) (api.SettingsPatch, error) {
	for _, st := range Settings {
		if st.Key == key {
			return st.patch(strings.TrimSpace(value))
		}
	}
	return api.SettingsPatch{}, fmt.Errorf("no setting %q", key)
}

func patchDNS(v string) (api.SettingsPatch, error) {
	addrs := []netip.Addr{}
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		a, err := netip.ParseAddr(f)
		if err != nil {
			return api.SettingsPatch{}, fmt.Errorf("DNS servers: %q is not an IP address", f)
		}
		addrs = append(addrs, a)
	}
	return api.SettingsPatch{DNS: &addrs}, nil
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
