package viewmodel

import (
	"cmp"
	"fmt"
	"github.com/nymvpn/nymvpn/version"
	"image/color"
	"slices"
	"strings"
	"time"

	"github.com/nymvpn/nymvpn/assets"
	"github.com/nymvpn/nymvpn/daemon/api"
)

// Colours of the states, shared by the window and the tray icons
// (assets/gen_icons.go draws with the same ones).
var (
	Green    = color.NRGBA{R: 0x1f, G: 0xaa, B: 0x59, A: 0xff}
	Amber    = color.NRGBA{R: 0xe0, G: 0x9a, B: 0x00, A: 0xff}
	Grey     = color.NRGBA{R: 0x5f, G: 0x66, B: 0x70, A: 0xff}
	Red      = color.NRGBA{R: 0xd6, G: 0x45, B: 0x45, A: 0xff}
	Blue     = color.NRGBA{R: 0x2f, G: 0x5b, B: 0xd3, A: 0xff}
	Disabled = color.NRGBA{R: 0xc4, G: 0xc8, B: 0xcf, A: 0xff}
)

// Page is what the user navigated to.
type Page int

const (
	PageMain Page = iota
	PageSettings
	PageAccount
)

// Screen is what the window shows.
type Screen int

const (
	// ScreenMain: the big button, the state, mode and location.
	ScreenMain Screen = iota
	// ScreenSettings: the settings page.
	ScreenSettings
	// ScreenDaemon: the daemon cannot be reached (or not yet): what is
	// wrong, how to fix it, and that the app keeps trying.
	ScreenDaemon
	// ScreenAccount: the account and its tickets.
	ScreenAccount
)

func (s Screen) String() string {
	return [...]string{"main", "settings", "daemon", "account"}[s]
}

// Button is a button: its label, what it does and its colour.
type Button struct {
	Label   string
	Intent  Intent
	Enabled bool
	Color   color.NRGBA
}

// Status is the headline of a screen.
type Status struct {
	Headline string
	Detail   string
	Color    color.NRGBA
}

// Progress is how far connecting has got.
type Progress struct {
	// Step (from 1) of Steps; Steps is 0 when the stage is not a known one.
	Step, Steps int
	Stage       string
	Attempt     int
}

// Fraction is the progress as a fraction of 1.
func (p Progress) Fraction() float32 {
	if p.Steps == 0 {
		return 0
	}
	return float32(p.Step) / float32(p.Steps)
}

// Row is a labelled value.
type Row struct {
	Label, Value string
}

// Option is one choice of a Choice.
type Option struct {
	Value, Label, Help string
}

// Choice is a set of options with one selected: the mode switch and the
// gateway pickers.
type Choice struct {
	Label    string
	Selected string
	// SelectedLabel is the selected option's label.
	SelectedLabel string
	Options       []Option
	Enabled       bool
	// Note says something about the options (loading, failed).
	Note string
}

// SettingRow is one setting as the settings page shows it.
type SettingRow struct {
	Setting
	// Value is "on"/"off" for toggles, the text otherwise.
	Value   string
	Enabled bool
}

// Daemon is the daemon-not-reachable screen.
type Daemon struct {
	Title, Detail, Fix string
	// Retry says when the app tries again.
	Retry string
}

// Tray is what the tray shows.
type Tray struct {
	// Icon is one of assets.TrayNames.
	Icon    string
	Tooltip string
	// Toggle is the Connect/Disconnect item.
	Toggle Button
	Mode   Choice
}

// View is everything the window and the tray show.
type View struct {
	Screen Screen
	// Title is the window's title.
	Title string
	// Heading is the page's heading.
	Heading string
	// CanOpenSettings enables the header's Account and Settings buttons
	// (main screen).
	CanOpenSettings bool
	// CanGoBack enables the header's Back button (settings and account
	// pages; not while a new recovery phrase waits to be written down).
	CanGoBack bool

	Status    Status
	Primary   Button
	Secondary *Button
	Progress  *Progress
	// Problem is a failure in plain words with what to do; Dismiss is set
	// when it can be dismissed.
	Problem *Explanation
	Dismiss bool
	// Notices are lines the user should read (read-only access, the
	// daemon's notices).
	Notices []string
	Rows    []Row

	Mode        Choice
	Entry, Exit Choice

	Settings []SettingRow
	// About is the settings page's last line: the app's and the daemon's
	// versions, stamped from git at build time.
	About string
	// Account is the account page.
	Account AccountView
	Daemon  *Daemon

	Tray Tray
	// Redraw is how soon the view changes by itself (the connected timer, a
	// retry countdown); 0 when it does not.
	Redraw time.Duration
}

// Stages of connecting in each mode, in order, as the daemon names them
// (daemon.Stage*, then modes/fast.Stage* or modes/mixnet.Stage*; a test
// checks they agree). Fetching tickets happens only when the wallet needs
// more; progress then skips a step.
var (
	FastStages = []string{
		"fetching the network directory",
		"choosing gateways",
		"fetching tickets from the issuers",
		"creating the tunnel device",
		"registering with the entry gateway",
		"starting the entry tunnel",
		"registering with the exit gateway through the entry",
		"starting the exit tunnel",
		"waiting for the exit handshake",
	}
	MixnetStages = []string{
		"fetching the network directory",
		"choosing gateways",
		"fetching tickets from the issuers",
		"creating the tunnel device",
		"paying the entry gateway for mixnet access",
		"connecting to the entry gateway",
		"opening a session at the exit gateway through the mixnet",
	}
)

// Modes are the mode switch's options: what each protects against, in one
// line.
var Modes = []Option{
	{Value: api.ModeFast, Label: "Fast",
		Help: "Two hops: hides you from your network and ISP, and no single server sees both who you are and where you go."},
	{Value: api.ModeMixnet, Label: "Mixnet",
		Help: "Five hops with mixing and cover traffic: also defeats someone watching the whole network's timing. Slower."},
}

// Build returns what to show for m on page at time now.
func Build(m Model, page Page, now time.Time) View {
	if m.Link != LinkUp {
		return buildDaemon(m, now)
	}
	v := View{Screen: ScreenMain, Heading: "NymVPN", CanOpenSettings: true, About: about(m)}
	st := m.Status.State
	canWrite := m.CanWrite()
	idle := m.Busy.Kind == ""
	enabled := canWrite && idle

	connect := Button{Label: "Connect", Intent: Intent{Kind: IntentConnect}, Enabled: enabled, Color: Green}
	disconnect := Button{Label: "Disconnect", Intent: Intent{Kind: IntentDisconnect}, Enabled: enabled, Color: Red}
	cancel := Button{Label: "Cancel", Intent: Intent{Kind: IntentDisconnect}, Enabled: enabled, Color: Amber}
	through := route(st)

	switch st.Kind {
	case api.Disconnected:
		v.Status = Status{Headline: "Not connected", Detail: "Your traffic goes to the internet without the VPN.", Color: Grey}
		if m.Status.Settings.Lockdown {
			v.Status.Detail = "Lockdown is on: nothing leaves this computer until you connect."
		}
		v.Primary = connect
	case api.Connecting:
		v.Status = Status{Headline: "Connecting…", Color: Amber}
		p := progress(st)
		v.Progress = &p
		if st.Retrying {
			v.Status.Detail = "Attempt " + fmt.Sprint(st.Attempt) + " failed: " + strings.TrimSuffix(sentence(st.Reason), ".") + "."
			if st.NextAttempt != nil {
				if d := st.NextAttempt.Sub(now); d > 0 {
					v.Status.Detail += " Trying again in " + seconds(d) + "."
					v.Redraw = time.Second
				} else {
					v.Status.Detail += " Trying again now."
				}
			}
		} else {
			v.Status.Detail = sentence(st.Stage)
		}
		v.Primary = cancel
	case api.Connected:
		v.Status = Status{Headline: "Connected", Detail: "Your traffic goes through " + through + ".", Color: Green}
		if through == "" {
			v.Status.Detail = "Your traffic goes through the VPN."
		}
		v.Primary = disconnect
		v.Rows = connectedRows(m, now)
		v.Redraw = time.Second - now.Sub(since(st, now))%time.Second
	case api.Disconnecting:
		v.Status = Status{Headline: "Disconnecting…", Color: Grey}
		if st.Then == api.Connecting {
			v.Status = Status{Headline: "Reconnecting…", Detail: "Applying your new choices.", Color: Amber}
		}
		v.Primary = Button{Label: "Disconnecting…", Intent: Intent{Kind: IntentDisconnect}, Color: Disabled}
	case api.Error:
		e := ExplainState(st, m.OS)
		v.Status = Status{Headline: e.Title, Detail: e.Detail, Color: Red}
		v.Problem = &Explanation{Title: "What to do", Fix: e.Fix, Open: e.Open}
		if m.Status.Settings.KillSwitch || m.Status.Settings.Lockdown {
			v.Problem.Detail = "Meanwhile the kill switch blocks all traffic outside the tunnel, until you connect or disconnect."
		}
		v.Primary = Button{Label: "Try again", Intent: Intent{Kind: IntentConnect}, Enabled: enabled, Color: Green}
		d := disconnect
		v.Secondary = &d
	case api.Offline:
		v.Status = Status{Headline: "Waiting for a network", Detail: "This computer is offline; the VPN connects when the network is back.", Color: Amber}
		v.Primary = cancel
	default:
		v.Status = Status{Headline: string(st.Kind), Detail: sentence(st.Reason), Color: Grey}
		v.Primary = disconnect
	}
	if st.Kind == api.Connecting && (st.Entry != nil || st.Exit != nil) {
		v.Rows = gatewayRows(st)
	}
	if !v.Primary.Enabled {
		v.Primary.Color = Disabled
	}
	if v.Secondary != nil && !v.Secondary.Enabled {
		v.Secondary.Color = Disabled
	}

	if m.Failure != nil {
		e := ExplainFailure(m.Failure, m.OS)
		v.Problem, v.Dismiss = &e, true
	}
	if !canWrite {
		v.Notices = append(v.Notices, "You can watch the VPN but not change it. "+joinGroup(m.OS))
	}
	v.Notices = append(v.Notices, m.Status.Notices...)

	choose := enabled && st.Kind != api.Disconnecting
	v.Mode = modeChoice(m, choose)
	v.Entry = gatewayChoice(m, "Entry", m.Status.Settings.Entry, m.Entries, IntentEntry, choose)
	v.Exit = gatewayChoice(m, "Exit", m.Status.Settings.Exit, m.Exits, IntentExit, choose)
	for _, s := range Settings {
		v.Settings = append(v.Settings, SettingRow{Setting: s, Value: pending(m, s.Key, s.Value(m.Status.Settings)), Enabled: enabled})
	}
	v.Account = accountView(m, now)
	if m.NewPhrase != "" {
		// A new recovery phrase waits to be written down, wherever the
		// user was (the window may have been closed and opened again).
		page = PageAccount
	}
	switch page {
	case PageSettings:
		v.Screen, v.Heading, v.CanGoBack = ScreenSettings, "Settings", true
	case PageAccount:
		v.Screen, v.Heading, v.CanGoBack = ScreenAccount, "Account", m.NewPhrase == ""
	}
	v.Title = "NymVPN — " + strings.TrimSuffix(v.Status.Headline, "…")
	v.Tray = buildTray(m, v)
	return v
}

// about names the versions of the app and of the daemon it talks to.
func about(m Model) string {
	a := "nymvpn-app " + version.String()
	if d := m.Status.Daemon.Version; d != "" {
		a += " · nymvpnd " + d
	}
	return a
}

// pending returns the value a call in flight is setting for key, else
// current, so a switch shows the user's choice while the daemon saves it.
func pending(m Model, key, current string) string {
	if m.Busy.Kind == IntentSetting && m.Busy.Key == key {
		return m.Busy.Value
	}
	if m.Busy.Kind == IntentKind(key) {
		return m.Busy.Value
	}
	return current
}

func modeChoice(m Model, enabled bool) Choice {
	c := Choice{Label: "Mode", Options: Modes, Enabled: enabled,
		Selected: pending(m, string(IntentMode), m.Status.Settings.Mode)}
	for _, o := range c.Options {
		if o.Value == c.Selected {
			c.SelectedLabel = o.Label
		}
	}
	return c
}

// gatewayChoice offers Automatic and the countries of gateways; a gateway id
// chosen elsewhere (the CLI) is an option of its own.
func gatewayChoice(m Model, label, current string, gws []api.Gateway, kind IntentKind, enabled bool) Choice {
	c := Choice{Label: label, Enabled: enabled, Selected: pending(m, string(kind), current)}
	c.Options = append(c.Options, Option{Value: "auto", Label: "Automatic", Help: "The fastest available " + strings.ToLower(label) + " gateway"})
	count := map[string]int{}
	for _, g := range gws {
		if g.Country != "" {
			count[strings.ToUpper(g.Country)]++
		}
	}
	var codes []string
	for cc := range count {
		codes = append(codes, cc)
	}
	slices.SortFunc(codes, func(a, b string) int { return cmp.Compare(CountryName(a), CountryName(b)) })
	for _, cc := range codes {
		help := "1 gateway"
		if count[cc] > 1 {
			help = fmt.Sprint(count[cc], " gateways")
		}
		c.Options = append(c.Options, Option{Value: cc, Label: CountryName(cc) + " (" + cc + ")", Help: help})
	}
	found := false
	for _, o := range c.Options {
		if o.Value == c.Selected {
			found, c.SelectedLabel = true, o.Label
		}
	}
	if !found && c.Selected != "" {
		l := "Gateway " + c.Selected
		if len(c.Selected) == 2 {
			l = CountryName(c.Selected) + " (" + c.Selected + ", no gateway now)"
		}
		c.Options = append(c.Options, Option{Value: c.Selected, Label: l})
		c.SelectedLabel = l
	}
	switch {
	case m.GatewaysError != nil:
		c.Note = "Couldn't load the gateways: " + strings.TrimSuffix(ExplainFailure(m.GatewaysError, m.OS).Title, ".") + "."
		if m.GatewaysError.Code == api.CodeNoDirectory {
			c.Note = "No network is set up: enter the network directory under Settings."
		}
	case !m.GatewaysLoaded:
		c.Note = "Loading the gateways…"
	case len(gws) == 0:
		c.Note = "The network lists no " + strings.ToLower(label) + " gateway."
	}
	return c
}

// progress places a connecting stage among the known ones.
func progress(st api.State) Progress {
	p := Progress{Stage: strings.TrimSuffix(sentence(st.Stage), "."), Attempt: st.Attempt}
	if st.Retrying {
		p.Stage = "Waiting to try again"
	}
	stages := FastStages
	if st.Mode == api.ModeMixnet {
		stages = MixnetStages
	}
	if i := slices.Index(stages, st.Stage); i >= 0 {
		p.Step, p.Steps = i+1, len(stages)
	}
	return p
}

// route names the gateways of a state: "Germany and Switzerland".
func route(st api.State) string {
	if st.Entry == nil || st.Exit == nil {
		return ""
	}
	return place(st.Entry) + " and " + place(st.Exit)
}

func place(g *api.Gateway) string {
	if g.Country == "" {
		return g.ID
	}
	return CountryName(g.Country)
}

func gatewayRows(st api.State) []Row {
	var rows []Row
	for _, g := range []struct {
		label string
		g     *api.Gateway
	}{{"Entry", st.Entry}, {"Exit", st.Exit}} {
		if g.g != nil {
			rows = append(rows, Row{g.label, place(g.g) + " · " + g.g.ID})
		}
	}
	return rows
}

func since(st api.State, now time.Time) time.Time {
	if st.Since == nil {
		return now
	}
	return *st.Since
}

func connectedRows(m Model, now time.Time) []Row {
	st := m.Status.State
	rows := []Row{{"Connected for", Duration(now.Sub(since(st, now)))}}
	rows = append(rows, gatewayRows(st)...)
	if len(st.Addresses) > 0 {
		rows = append(rows, Row{"Your addresses", joinAddrs(st.Addresses)})
	}
	if t := m.Status.Traffic; t != nil {
		rows = append(rows, Row{"Traffic", "sent " + Bytes(t.TxBytes) + " · received " + Bytes(t.RxBytes)})
		rows = append(rows, Row{"Speed", "up " + Bytes(int64(m.Rate.Tx)) + "/s · down " + Bytes(int64(m.Rate.Rx)) + "/s"})
	}
	if len(st.DNS) > 0 {
		rows = append(rows, Row{"DNS", joinAddrs(st.DNS)})
	}
	mode := st.Mode
	for _, o := range Modes {
		if o.Value == st.Mode {
			mode = o.Label
		}
	}
	if st.Mode == api.ModeMixnet {
		mode = mixnetMode(m)
	}
	if mode != "" {
		rows = append(rows, Row{"Mode", mode})
	}
	if mx := m.Status.Mixnet; mx != nil && st.Mode == api.ModeMixnet {
		rows = append(rows, mixnetRows(*mx)...)
	}
	return rows
}

// buildDaemon is the view while the daemon cannot be reached.
func buildDaemon(m Model, now time.Time) View {
	v := View{Screen: ScreenDaemon, Heading: "NymVPN"}
	d := &Daemon{Title: "Contacting the VPN service…"}
	if m.Link == LinkDown {
		e := explainLink(m.Problem, m.LinkError, m.Socket, m.OS)
		d.Title, d.Detail, d.Fix = e.Title, e.Detail, e.Fix
		d.Retry = "Trying again now…"
		if wait := m.NextRetry.Sub(now); wait > 0 {
			d.Retry = "Trying again in " + seconds(wait) + "."
			v.Redraw = min(time.Second, wait)
		}
	}
	v.Daemon = d
	v.Status = Status{Headline: d.Title, Detail: d.Detail, Color: Grey}
	v.Primary = Button{Label: "Try now", Intent: Intent{Kind: IntentRetry}, Enabled: m.Link == LinkDown, Color: Blue}
	if !v.Primary.Enabled {
		v.Primary.Color = Disabled
	}
	v.Title = "NymVPN — " + strings.TrimSuffix(d.Title, "…")
	v.Tray = Tray{Icon: assets.TrayNoDaemon, Tooltip: "NymVPN: " + strings.TrimSuffix(d.Title, "…"),
		Toggle: Button{Label: "Connect", Intent: Intent{Kind: IntentConnect}},
		Mode:   modeChoice(m, false)}
	return v
}

func buildTray(m Model, v View) Tray {
	t := Tray{Toggle: v.Primary, Mode: v.Mode}
	switch m.Status.State.Kind {
	case api.Connected:
		t.Icon = assets.TrayConnected
	case api.Connecting, api.Disconnecting, api.Offline:
		t.Icon = assets.TrayConnecting
	case api.Error:
		t.Icon = assets.TrayError
	default:
		t.Icon = assets.TrayDisconnected
	}
	if t.Toggle.Label == "Cancel" {
		t.Toggle.Label = "Cancel connecting"
	}
	t.Tooltip = "NymVPN: " + strings.TrimSuffix(v.Status.Headline, "…")
	if r := route(m.Status.State); r != "" && m.Status.State.Kind == api.Connected {
		t.Tooltip += " through " + r
	}
	return t
}

// seconds formats a wait in whole seconds, rounded up.
func seconds(d time.Duration) string {
	s := int((d + time.Second - 1) / time.Second)
	if s == 1 {
		return "1 second"
	}
	return fmt.Sprint(s, " seconds")
}

// Duration formats a time connected: "4:05", "1:02:03", "2 d 03:04:05".
func Duration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	days, h, mi, sec := s/86400, s/3600%24, s/60%60, s%60
	switch {
	case days > 0:
		return fmt.Sprintf("%d d %02d:%02d:%02d", days, h, mi, sec)
	case h > 0:
		return fmt.Sprintf("%d:%02d:%02d", h, mi, sec)
	}
	return fmt.Sprintf("%d:%02d", mi, sec)
}

// Bytes formats a byte count in decimal units: "999 B", "1.5 kB", "2.5 MB".
func Bytes(n int64) string {
	if n < 1000 {
		return fmt.Sprint(n, " B")
	}
	f := float64(n)
	for _, u := range []string{"kB", "MB", "GB", "TB"} {
		f /= 1000
		if f < 1000 || u == "TB" {
			if f < 10 {
				return fmt.Sprintf("%.1f %s", f, u)
			}
			return fmt.Sprintf("%.0f %s", f, u)
		}
	}
	return ""
}
