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
	mixnet := model(api.State{Kind: api.Disconnected})
	mixnet.Status.Settings.Mode = api.ModeMixnet
	mixnet.Failure = viewmodel.FailureOf(viewmodel.Intent{Kind: viewmodel.IntentConnect},
		&api.APIError{Status: 501, Code: api.CodeNotSupported, Message: "mixnet mode is not available in this version yet"})
	reader := model(api.State{Kind: api.Disconnected})
	reader.Status.Caller.CanWrite = false
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
