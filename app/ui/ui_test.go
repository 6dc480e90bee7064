package ui_test

import (
	"image"
	"image/color"
	"image/png"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gioui.org/f32"
	"gioui.org/io/event"
	"gioui.org/io/key"
	"gioui.org/io/pointer"

	"github.com/nymvpn/nymvpn/app/ui"
	"github.com/nymvpn/nymvpn/app/ui/uitest"
	"github.com/nymvpn/nymvpn/app/viewmodel"
	"github.com/nymvpn/nymvpn/daemon/api"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

var size = ui.DefaultSize // at one pixel per dp

func model(st api.State) viewmodel.Model {
	return viewmodel.Model{OS: "linux", Socket: "/run/nymvpn/nymvpnd.sock", Link: viewmodel.LinkUp,
		Status:  api.Status{State: st, Settings: api.DefaultSettings(), Caller: &api.Caller{UID: 1000, CanWrite: true}},
		Entries: []api.Gateway{{ID: "entry-de-1", Country: "DE"}, {ID: "entry-ch-1", Country: "CH"}},
		Exits:   []api.Gateway{{ID: "exit-ch-1", Country: "CH"}}, GatewaysLoaded: true}
}

const (
	testID     = "q3Yt0m8cXzqfVv8sQd0m2c8Q1kq0cJ9o0m7VZ3v9r1A="
	testPhrase = "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title"
)

func account() api.Account {
	created := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	return api.Account{Exists: true, ID: testID, Created: &created}
}

func tickets() *api.Tickets {
	exp := now.Add(7 * 24 * time.Hour)
	return &api.Tickets{Account: true,
		Left:       map[string]int{api.TicketFastEntry: 49, api.TicketFastExit: 50, api.TicketMixnetEntry: 0, api.TicketMixnetExit: 0},
		NextExpiry: &exp, Refilling: []string{api.TicketMixnetEntry, api.TicketMixnetExit},
		Books: []api.Ticketbook{{Type: api.TicketFastEntry, Expires: exp, Total: 50, Remaining: 49}, {Type: api.TicketFastExit, Expires: exp, Total: 50, Remaining: 50}}}
}

func screens() map[string]struct {
	m    viewmodel.Model
	page viewmodel.Page
	want []string
} {
	since := now.Add(-75 * time.Second)
	de := &api.Gateway{ID: "entry-de-1", Country: "DE"}
	ch := &api.Gateway{ID: "exit-ch-1", Country: "CH"}
	connected := model(api.State{Kind: api.Connected, Mode: api.ModeFast, Since: &since, Entry: de, Exit: ch,
		Addresses: []netip.Addr{netip.MustParseAddr("10.1.0.2")}})
	connected.Status.Traffic = &api.Traffic{TxBytes: 1500, RxBytes: 2_500_000}
	mixnetUp := model(api.State{Kind: api.Connected, Mode: api.ModeMixnet, Since: &since, Entry: de, Exit: ch,
		Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2")}})
	mixnetUp.Status.Settings.Mode = api.ModeMixnet
	mixnetUp.Status.Traffic = &api.Traffic{TxBytes: 41_000, RxBytes: 520_000}
	mixnetUp.Status.Mixnet = &api.MixnetStats{Profile: api.ProfileMax, RealPackets: 312, CoverPackets: 3800,
		LoopCoverPackets: 410, Retransmissions: 3, ExitSURBs: 48, ExitRTTMs: 142.3, OverheadMs: 7.3}
	mixnet := model(api.State{Kind: api.Disconnected})
	mixnet.Status.Settings.Mode = api.ModeMixnet
	mixnet.Failure = viewmodel.FailureOf(viewmodel.Intent{Kind: viewmodel.IntentConnect},
		&api.APIError{Status: 501, Code: api.CodeNotSupported, Message: "mixnet mode is not available in this version yet"})
	reader := model(api.State{Kind: api.Disconnected})
	reader.Status.Caller.CanWrite = false
	noAccount := model(api.State{Kind: api.Error, Mode: api.ModeFast, ErrorCode: api.CodeNoAccount,
		Reason: "this network's gateways take tickets and there is no account: run `nymvpn account create` or `nymvpn account import`"})
	withTickets := connected
	withTickets.Status.Tickets, withTickets.Account, withTickets.AccountLoaded = tickets(), account(), true
	phrase := withTickets
	phrase.NewPhrase = testPhrase
	forget := withTickets
	forget.ConfirmForget = true
	allowance := withTickets
	allowance.Status.Tickets = tickets()
	allowance.Status.Tickets.RefillError, allowance.Status.Tickets.RefillErrorCode = "your tickets ran out", api.CodeNoAllowance
	empty := model(api.State{Kind: api.Disconnected})
	empty.Status.Tickets, empty.AccountLoaded = &api.Tickets{Left: map[string]int{}}, true
	emptyReader := empty
	emptyReader.Status.Caller = &api.Caller{UID: 1000}
	return map[string]struct {
		m    viewmodel.Model
		page viewmodel.Page
		want []string
	}{
		"disconnected": {model(api.State{Kind: api.Disconnected}), viewmodel.PageMain,
			[]string{"Not connected", "Connect", "Settings", "Fast", "Mixnet", "Two hops", "Entry", "Exit", "Automatic  ▼"}},
		"connecting": {model(api.State{Kind: api.Connecting, Mode: api.ModeFast, Stage: "starting the entry tunnel", Attempt: 2, Entry: de, Exit: ch}), viewmodel.PageMain,
			[]string{"Connecting…", "Starting the entry tunnel.", "Step 6 of 9: Starting the entry tunnel (attempt 2)", "Cancel", "Germany · entry-de-1"}},
		"connected": {connected, viewmodel.PageMain,
			[]string{"Connected", "Your traffic goes through Germany and Switzerland.", "Disconnect", "Connected for", "1:15", "10.1.0.2", "sent 1.5 kB · received 2.5 MB"}},
		"connected-mixnet": {mixnetUp, viewmodel.PageMain,
			[]string{"Connected", "Disconnect", "Mixnet · maximum privacy", "Packets", "312 real / 4,210 cover (93% cover)",
				"Round trip", "142 ms to the exit · 3 resent"}},
		"error": {model(api.State{Kind: api.Error, Mode: api.ModeFast, Reason: "create the tunnel device nymvpn0: operation not permitted", ErrorCode: api.CodeInternal}), viewmodel.PageMain,
			[]string{"The VPN couldn't connect", "Create the tunnel device", "Try again", "Disconnect", "Press Try again"}},
		"mixnet-refused": {mixnet, viewmodel.PageMain,
			[]string{"Mixnet mode isn't available yet", "Switch to Fast mode and connect again.", "Dismiss", "Connect"}},
		"read-only": {reader, viewmodel.PageMain,
			[]string{"You can watch the VPN but not change it.", "sudo usermod -aG nymvpn $USER"}},
		"daemon-not-running": {viewmodel.Model{OS: "linux", Socket: "/run/nymvpn/nymvpnd.sock", Link: viewmodel.LinkDown,
			Problem: viewmodel.ProblemNotRunning, NextRetry: now.Add(2 * time.Second)}, viewmodel.PageMain,
			[]string{"The VPN service isn't running", "/run/nymvpn/nymvpnd.sock", "sudo systemctl start nymvpnd", "Try now", "Trying again in 2 seconds."}},
		"not-permitted": {viewmodel.Model{OS: "linux", Socket: "/run/nymvpn/nymvpnd.sock", Link: viewmodel.LinkDown,
			Problem: viewmodel.ProblemPermission, NextRetry: now.Add(2 * time.Second)}, viewmodel.PageMain,
			[]string{"You may not use the VPN service", "sudo usermod -aG nymvpn $USER"}},
		"settings": {model(api.State{Kind: api.Disconnected}), viewmodel.PageSettings,
			[]string{"Settings", "Back", "Kill switch", "Lockdown", "Allow local network", "IPv6", "Connect on start", "DNS servers", "Network directory", "Save"}},
		"error-no-account": {noAccount, viewmodel.PageMain,
			[]string{"No account to pay with", "Create or import an account on the Account page, then press Try again.", "Open the Account page", "Try again"}},
		"account": {withTickets, viewmodel.PageAccount,
			[]string{"Account", "Back", "Connected", "Disconnect", testID, "Created", "1 May 2026, 09:30", "TICKETS LEFT",
				"Fast entry", "49", "Fast exit", "50", "Mixnet entry", "Mixnet exit", "0 · fetching more…", "expire on 8 May 2026, 12:00 (in 7 days)", "Forget account…"}},
		"account-phrase": {phrase, viewmodel.PageMain, // shown on the account page wherever the user was
			[]string{"Write down your recovery phrase", "This is the only time it is shown.", testPhrase, "I have written it down", testID}},
		"account-forget": {forget, viewmodel.PageAccount,
			[]string{"Forget account q3Yt0m8c… and delete its tickets from this computer?", "Only its recovery phrase can bring them back.", "Forget", "Cancel"}},
		"account-no-allowance": {allowance, viewmodel.PageAccount,
			[]string{"The account's allowance is used up", "Top up the account"}},
		"account-none": {empty, viewmodel.PageAccount,
			[]string{"There is no account on this computer.", "Create account", "IMPORT AN ACCOUNT", "recovery phrase (24 words)", "Import", "Show the words"}},
		"account-read-only": {emptyReader, viewmodel.PageAccount,
			[]string{"You can watch the VPN but not change it.", "Create account"}},
	}
}

// TestScreens lays out every screen, checks its text through the semantic
// tree and, where a headless GPU context can be had, renders it and checks
// the big button's and the headline's colours in the pixels.
func TestScreens(t *testing.T) {
	out := os.Getenv("NYMVPN_UI_PNG_DIR") // keep the renders for a look
	for name, tc := range screens() {
		t.Run(name, func(t *testing.T) {
			r := uitest.NewRenderer(size)
			defer r.Release()
			r.UI.Page = tc.page
			f := r.Layout(tc.m, now)
			for _, w := range tc.want {
				if !f.Contains(w) {
					t.Errorf("screen lacks %q; it shows:\n%s", w, strings.Join(f.Text, "\n"))
				}
			}
			if len(f.Intents) != 0 {
				t.Errorf("intents without input: %v", f.Intents)
			}
			img, err := r.Image()
			if err != nil {
				t.Skipf("no pixel checks: %v", err)
			}
			if out != "" {
				savePNG(t, filepath.Join(out, name+".png"), img)
			}
			b := ui.PrimaryButton(size, r.Metric)
			if got := img.RGBAAt(b.Min.X+30, b.Min.Y+b.Dy()/2); !near(got, f.View.Primary.Color) {
				t.Errorf("big button at %v is %v, want %v (%s)", b, got, f.View.Primary.Color, f.View.Primary.Label)
			}
			status := image.Rect(0, b.Min.Y-96, size.X, b.Min.Y)
			if n := count(img, status, f.View.Status.Color); n < 100 {
				t.Errorf("the status block has %d pixels of the headline's colour %v", n, f.View.Status.Color)
			}
		})
	}
}

// TestClicks drives the widgets with pointer events, as a user would.
func TestClicks(t *testing.T) {
	r := uitest.NewRenderer(size)
	m := model(api.State{Kind: api.Disconnected})
	r.Layout(m, now)
	b := ui.PrimaryButton(size, r.Metric)
	f := r.Layout(m, now, click(b)...)
	if len(f.Intents) != 1 || f.Intents[0].Kind != viewmodel.IntentConnect {
		t.Fatalf("clicking Connect gave %v", f.Intents)
	}

	// A disabled button does nothing (another call is in flight).
	m.Busy = viewmodel.Intent{Kind: viewmodel.IntentConnect}
	r.Layout(m, now)
	if f := r.Layout(m, now, click(b)...); len(f.Intents) != 0 {
		t.Errorf("clicking a disabled button gave %v", f.Intents)
	}
	m.Busy = viewmodel.Intent{}

	// Settings and back: navigation stays in the UI.
	h := ui.HeaderButton(size, r.Metric)
	f = r.Layout(m, now, click(h)...)
	if f.View.Screen != viewmodel.ScreenSettings || len(f.Intents) != 0 || !f.Contains("Kill switch") {
		t.Fatalf("after clicking Settings: screen %v, intents %v", f.View.Screen, f.Intents)
	}
	f = r.Layout(m, now, click(h)...)
	if f.View.Screen != viewmodel.ScreenMain {
		t.Fatalf("after clicking Back: screen %v", f.View.Screen)
	}

	// The entry picker: open it, choose a country; then the mode switch.
	f = r.Layout(m, now)
	picker, ok := f.Find("Automatic  ▼") // the first is the entry's
	if !ok {
		t.Fatal("no entry picker")
	}
	r.Layout(m, now, clickNear(picker)...)
	f = r.Layout(m, now)
	de, ok := f.Find("Germany (DE) — 1 gateway")
	if !ok {
		t.Fatalf("the opened entry picker lacks Germany:\n%s", strings.Join(f.Text, "\n"))
	}
	f = r.Layout(m, now, clickNear(de)...)
	if len(f.Intents) != 1 || f.Intents[0] != (viewmodel.Intent{Kind: viewmodel.IntentEntry, Value: "DE"}) {
		t.Errorf("choosing Germany gave %v", f.Intents)
	}
	if f = r.Layout(m, now); f.Contains("Germany (DE) — 1 gateway") {
		t.Error("the picker stayed open after a choice")
	}
	mixnet, ok := f.Find("Mixnet")
	if !ok {
		t.Fatal("no Mixnet option")
	}
	f = r.Layout(m, now, clickNear(mixnet)...)
	if len(f.Intents) != 1 || f.Intents[0] != (viewmodel.Intent{Kind: viewmodel.IntentMode, Value: api.ModeMixnet}) {
		t.Errorf("clicking Mixnet gave %v", f.Intents)
	}

	// While connected the same button disconnects.
	m = model(api.State{Kind: api.Connected, Mode: api.ModeFast})
	r.Layout(m, now)
	if f := r.Layout(m, now, click(b)...); len(f.Intents) != 1 || f.Intents[0].Kind != viewmodel.IntentDisconnect {
		t.Errorf("clicking Disconnect gave %v", f.Intents)
	}
}

var clicks int

// clickNear clicks just inside the top left of a label's semantic bounds
// (only their top left corner is exact).
func clickNear(r image.Rectangle) []event.Event {
	p := r.Min.Add(image.Pt(8, 8))
	return click(image.Rectangle{Min: p, Max: p})
}

// click is a press and release of the primary mouse button at r's centre.
func click(r image.Rectangle) []event.Event {
	c := r.Min.Add(r.Max).Div(2)
	p := f32.Pt(float32(c.X), float32(c.Y))
	// Each click a second after the last, so none is taken for a double
	// click.
	clicks++
	at := time.Duration(clicks) * time.Second
	return []event.Event{
		pointer.Event{Kind: pointer.Move, Source: pointer.Mouse, Position: p, Time: at},
		pointer.Event{Kind: pointer.Press, Source: pointer.Mouse, Buttons: pointer.ButtonPrimary, Position: p, Time: at},
		pointer.Event{Kind: pointer.Release, Source: pointer.Mouse, Position: p, Time: at + 50*time.Millisecond},
	}
}

func near(c color.RGBA, want color.NRGBA) bool {
	d := func(a, b uint8) int {
		if a > b {
			return int(a - b)
		}
		return int(b - a)
	}
	return d(c.R, want.R) < 12 && d(c.G, want.G) < 12 && d(c.B, want.B) < 12
}

func count(img *image.RGBA, r image.Rectangle, want color.NRGBA) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if near(img.RGBAAt(x, y), want) {
				n++
			}
		}
	}
	return n
}

func savePNG(t *testing.T, path string, img image.Image) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

// TestAccountClicks: the account page from the header, its buttons, the
// masked phrase field, the forget confirmation, the phrase shown once, and
// the error card's way to the page.
func TestAccountClicks(t *testing.T) {
	r := uitest.NewRenderer(size)
	m := model(api.State{Kind: api.Disconnected})
	m.Status.Tickets, m.AccountLoaded = &api.Tickets{Left: map[string]int{}}, true
	f := r.Layout(m, now)
	if !f.Contains("Account") || !f.Contains("Settings") {
		t.Fatalf("the header lacks Account or Settings:\n%s", strings.Join(f.Text, "\n"))
	}
	f = r.Layout(m, now, click(ui.AccountButton(size, r.Metric))...)
	if f.View.Screen != viewmodel.ScreenAccount || len(f.Intents) != 0 || !f.Contains("Create account") {
		t.Fatalf("after clicking Account: screen %v, intents %v", f.View.Screen, f.Intents)
	}
	f = r.Layout(m, now)
	create, ok := f.Find("Create account")
	if !ok {
		t.Fatal("no Create account button")
	}
	if f = r.Layout(m, now, clickNear(create)...); len(f.Intents) != 1 || f.Intents[0].Kind != viewmodel.IntentCreateAccount {
		t.Errorf("clicking Create account gave %v", f.Intents)
	}

	// Type a phrase into the masked field and import it: the intent
	// carries it, the semantic tree never shows it.
	field, ok := f.Find("recovery phrase (24 words)")
	if !ok {
		t.Fatal("no phrase field")
	}
	r.Layout(m, now, clickNear(field)...)
	f = r.Layout(m, now, key.EditEvent{Text: testPhrase})
	if f.Contains("legal winner") {
		t.Errorf("the typed phrase shows in the semantic tree:\n%s", strings.Join(f.Text, "\n"))
	}
	imp, ok := f.Find("Import")
	if !ok {
		t.Fatal("no Import button")
	}
	f = r.Layout(m, now, clickNear(imp)...)
	if len(f.Intents) != 1 || f.Intents[0].Kind != viewmodel.IntentImportAccount || f.Intents[0].Secret != testPhrase {
		t.Errorf("clicking Import gave %+v", f.Intents)
	}

	// Leaving the page lets go of the typed phrase.
	f = r.Layout(m, now, click(ui.HeaderButton(size, r.Metric))...)
	if f.View.Screen != viewmodel.ScreenMain {
		t.Fatalf("after Back: screen %v", f.View.Screen)
	}
	r.Layout(m, now) // the main screen's frame clears the field
	r.UI.Page = viewmodel.PageAccount
	f = r.Layout(m, now)
	imp, _ = f.Find("Import")
	f = r.Layout(m, now, clickNear(imp)...)
	if len(f.Intents) != 1 || f.Intents[0].Secret != "" {
		t.Errorf("after leaving the page the field still held %+v", f.Intents)
	}

	// With an account: forget asks first.
	m.Status.Tickets, m.Account = tickets(), account()
	f = r.Layout(m, now)
	forget, ok := f.Find("Forget account…")
	if !ok {
		t.Fatalf("no Forget button:\n%s", strings.Join(f.Text, "\n"))
	}
	if f = r.Layout(m, now, clickNear(forget)...); len(f.Intents) != 1 || f.Intents[0].Kind != viewmodel.IntentAskForget {
		t.Errorf("clicking Forget account gave %v", f.Intents)
	}
	m.ConfirmForget = true
	f = r.Layout(m, now)
	yes, ok := f.Find("Forget")
	if !ok {
		t.Fatalf("no confirmation:\n%s", strings.Join(f.Text, "\n"))
	}
	if f = r.Layout(m, now, clickNear(yes)...); len(f.Intents) != 1 || f.Intents[0].Kind != viewmodel.IntentForgetAccount {
		t.Errorf("confirming gave %v", f.Intents)
	}
	no, _ := f.Find("Cancel")
	if f = r.Layout(m, now, clickNear(no)...); len(f.Intents) != 1 || f.Intents[0].Kind != viewmodel.IntentCancelForget {
		t.Errorf("cancelling gave %v", f.Intents)
	}
	m.ConfirmForget = false

	// A new phrase: shown, no way back until it is written down.
	m.NewPhrase = testPhrase
	r.UI.Page = viewmodel.PageMain
	f = r.Layout(m, now)
	if f.View.Screen != viewmodel.ScreenAccount || !f.Contains(testPhrase) || f.Contains("Back") {
		t.Fatalf("with a new phrase: screen %v:\n%s", f.View.Screen, strings.Join(f.Text, "\n"))
	}
	done, _ := f.Find("I have written it down")
	if f = r.Layout(m, now, clickNear(done)...); len(f.Intents) != 1 || f.Intents[0].Kind != viewmodel.IntentPhraseDone {
		t.Errorf("clicking I have written it down gave %v", f.Intents)
	}
	m.NewPhrase = ""
	if f = r.Layout(m, now); f.Contains("legal winner") {
		t.Error("the phrase still shows after it was written down")
	}

	// The error card of no_account leads to the page.
	m = model(api.State{Kind: api.Error, Mode: api.ModeFast, ErrorCode: api.CodeNoAccount, Reason: "no account"})
	r.UI.Page = viewmodel.PageMain
	f = r.Layout(m, now)
	open, ok := f.Find("Open the Account page")
	if !ok {
		t.Fatalf("no way to the account page:\n%s", strings.Join(f.Text, "\n"))
	}
	if f = r.Layout(m, now, clickNear(open)...); f.View.Screen != viewmodel.ScreenAccount || len(f.Intents) != 0 {
		t.Errorf("after Open the Account page: screen %v, intents %v", f.View.Screen, f.Intents)
	}
}
