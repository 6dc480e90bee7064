package app

import (
	"fmt"
	"image/color"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/nymvpn/nymvpn/app/apptest"
	"github.com/nymvpn/nymvpn/app/viewmodel"
	"github.com/nymvpn/nymvpn/daemon/api"
)

// desktop fakes what a Linux desktop offers the app on the session bus: a
// tray host (StatusNotifierWatcher) and a notification service.
type desktop struct {
	conn  *dbus.Conn
	items chan string

	mu    sync.Mutex
	notes []string // titles
	more  chan struct{}
}

type watcher struct{ d *desktop }

func (w watcher) RegisterStatusNotifierItem(_ string, sender dbus.Sender) *dbus.Error {
	w.d.items <- string(sender)
	return nil
}

type notifications struct{ d *desktop }

func (n notifications) Notify(app string, replaces uint32, icon, summary, body string, actions []string,
	hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	n.d.mu.Lock()
	defer n.d.mu.Unlock()
	n.d.notes = append(n.d.notes, summary)
	close(n.d.more)
	n.d.more = make(chan struct{})
	return uint32(len(n.d.notes)), nil
}

func startDesktop(t *testing.T, bus string) *desktop {
	t.Helper()
	conn, err := dbus.Connect(bus)
	if err != nil {
		t.Fatalf("connect to the test bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	d := &desktop{conn: conn, items: make(chan string, 4), more: make(chan struct{})}
	for _, e := range []struct {
		obj        any
		path       dbus.ObjectPath
		iface, own string
	}{
		{watcher{d}, "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher", "org.kde.StatusNotifierWatcher"},
		{notifications{d}, "/org/freedesktop/Notifications", "org.freedesktop.Notifications", "org.freedesktop.Notifications"},
	} {
		if err := conn.Export(e.obj, e.path, e.iface); err != nil {
			t.Fatal(err)
		}
		if r, err := conn.RequestName(e.own, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
			t.Fatalf("own %s: %v %v", e.own, r, err)
		}
	}
	return d
}

// waitNote waits for a notification titled title after the first from.
func (d *desktop) waitNote(t *testing.T, from int, title string) int {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		d.mu.Lock()
		for i := from; i < len(d.notes); i++ {
			if d.notes[i] == title {
				d.mu.Unlock()
				return i + 1
			}
		}
		more, notes := d.more, append([]string(nil), d.notes...)
		d.mu.Unlock()
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("no notification %q; got %q", title, notes)
		}
	}
}

// trayItem reads and clicks the app's tray item over D-Bus, as a desktop's
// tray host does.
type trayItem struct {
	d      *desktop
	sender string
}

func (ti trayItem) prop(t *testing.T, name string, into any) {
	t.Helper()
	var v dbus.Variant
	err := ti.d.conn.Object(ti.sender, "/StatusNotifierItem").Call("org.freedesktop.DBus.Properties.Get", 0,
		"org.kde.StatusNotifierItem", name).Store(&v)
	if err != nil {
		t.Fatalf("tray property %s: %v", name, err)
	}
	if err := dbus.Store([]any{v.Value()}, into); err != nil {
		t.Fatalf("tray property %s: %v", name, err)
	}
}

func (ti trayItem) tooltip(t *testing.T) string {
	var tip struct {
		Name  string
		Icons []struct {
			W, H int32
			Pix  []byte
		}
		Title, Text string
	}
	ti.prop(t, "ToolTip", &tip)
	return tip.Title
}

// iconColor is the colour of the icon's pixel at 30% across and down (the
// shield's fill, or its outline's background).
func (ti trayItem) iconColor(t *testing.T) color.NRGBA {
	var px []struct {
		W, H int32
		Pix  []byte
	}
	ti.prop(t, "IconPixmap", &px)
	if len(px) == 0 || px[0].W == 0 {
		t.Fatal("the tray item has no icon")
	}
	x, y := int(px[0].W)*3/10, int(px[0].H)*3/10
	p := px[0].Pix[4*(y*int(px[0].W)+x):]
	return color.NRGBA{R: p[1], G: p[2], B: p[3], A: p[0]}
}

type menuItem struct {
	id      int32
	enabled bool
	checked bool
}

// menu returns the menu's items by label.
func (ti trayItem) menu(t *testing.T) map[string]menuItem {
	t.Helper()
	var rev uint32
	var layout struct {
		ID       int32
		Props    map[string]dbus.Variant
		Children []dbus.Variant
	}
	err := ti.d.conn.Object(ti.sender, "/StatusNotifierItem/menu").Call("com.canonical.dbusmenu.GetLayout", 0,
		int32(0), int32(-1), []string{}).Store(&rev, &layout)
	if err != nil {
		t.Fatalf("tray menu: %v", err)
	}
	items := map[string]menuItem{}
	for _, c := range layout.Children {
		var it struct {
			ID       int32
			Props    map[string]dbus.Variant
			Children []dbus.Variant
		}
		if err := dbus.Store([]any{c.Value()}, &it); err != nil {
			t.Fatalf("menu item: %v", err)
		}
		label, _ := it.Props["label"].Value().(string)
		if label == "" {
			continue
		}
		m := menuItem{id: it.ID, enabled: true}
		if e, ok := it.Props["enabled"].Value().(bool); ok {
			m.enabled = e
		}
		if s, ok := it.Props["toggle-state"].Value().(int32); ok {
			m.checked = s == 1
		}
		items[label] = m
	}
	return items
}

// click clicks the menu item labelled label.
func (ti trayItem) click(t *testing.T, label string) {
	t.Helper()
	it, ok := ti.menu(t)[label]
	if !ok {
		t.Fatalf("no menu item %q", label)
	}
	err := ti.d.conn.Object(ti.sender, "/StatusNotifierItem/menu").Call("com.canonical.dbusmenu.Event", 0,
		it.id, "clicked", dbus.MakeVariant(""), uint32(time.Now().Unix())).Err
	if err != nil {
		t.Fatalf("click %q: %v", label, err)
	}
}

// waitTray waits until the tray's tooltip is want.
func (ti trayItem) waitTooltip(t *testing.T, want string) {
	t.Helper()
	apptest.Poll(t, waitTimeout, "tray tooltip "+want, func() error {
		if got := ti.tooltip(t); got != want {
			return fmt.Errorf("tooltip %q", got)
		}
		return nil
	})
}

// TestAppUnderXvfb runs the nymvpn-app binary on a virtual display against
// a fake daemon, with a fake desktop's tray host and notification service on
// a private session bus: clicks in the window and in the tray menu, what the
// window and the tray show, notifications, the daemon going away and coming
// back, closing the window (the tray stays) and quitting from the tray.
func TestAppUnderXvfb(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the app and runs it under Xvfb; skipped in -short")
	}
	disp := apptest.StartXvfb(t)
	bus := apptest.StartSessionBus(t)
	desk := startDesktop(t, bus)
	d := newFakeDaemon(t)
	d.start(t, nil)
	bin := apptest.BuildApp(t, "..")
	a := apptest.StartApp(t, disp, bin, []string{"DBUS_SESSION_BUS_ADDRESS=" + bus}, "--socket", d.path, "--log-level", "debug")
	log, exited := a.Log, a.Exited

	w := &apptest.Window{Display: disp, Log: log}
	at := w.WaitShows(t, 0, "main", "Not connected", "")
	w.ID = disp.FindWindow(t, "^NymVPN", waitTimeout)
	log.WaitFor(t, 0, regexp.MustCompile(`msg="tray icon up"`), waitTimeout)
	var ti trayItem
	select {
	case s := <-desk.items:
		ti = trayItem{d: desk, sender: s}
	case <-time.After(waitTimeout):
		t.Fatal("the app did not register a tray item")
	}
	ti.waitTooltip(t, "NymVPN: Not connected")
	if c := ti.iconColor(t); c.A != 0 {
		t.Errorf("disconnected tray icon is filled (%v); want the hollow shield", c)
	}
	menu := ti.menu(t)
	for _, l := range []string{"Connect", "Fast mode", "Mixnet mode", "Show window", "Quit"} {
		if _, ok := menu[l]; !ok {
			t.Errorf("tray menu lacks %q: %v", l, menu)
		}
	}
	if !menu["Fast mode"].checked || menu["Mixnet mode"].checked || !menu["Connect"].enabled {
		t.Errorf("tray menu %+v", menu)
	}
	w.CheckButton(t, viewmodel.Green)

	// Click Connect; hold the daemon in a stage to see the progress.
	release := d.b.holdConnects()
	w.Click(t, w.Primary())
	at = w.WaitShows(t, at, "main", "Connecting…", "")
	w.CheckButton(t, viewmodel.Amber)
	ti.waitTooltip(t, "NymVPN: Connecting")
	release()
	at = w.WaitShows(t, at, "main", "Connected", "")
	w.CheckButton(t, viewmodel.Red)
	notes := desk.waitNote(t, 0, "Connected")
	ti.waitTooltip(t, "NymVPN: Connected through Germany and Switzerland")
	if c := ti.iconColor(t); c != viewmodel.Green {
		t.Errorf("connected tray icon %v, want %v", c, viewmodel.Green)
	}

	// Mixnet from the tray menu: the daemon refuses; plain words in the
	// window and a notification.
	ti.click(t, "Mixnet mode")
	at = w.WaitShows(t, at, "main", "Connected", "Mixnet mode isn't available yet")
	notes = desk.waitNote(t, notes, "Mixnet mode isn't available yet")

	// Disconnect with the window's button.
	w.Click(t, w.Primary())
	at = w.WaitShows(t, at, "main", "Not connected", "")
	notes = desk.waitNote(t, notes, "Disconnected")
	w.CheckButton(t, viewmodel.Green)

	// The settings page and back.
	w.Click(t, w.Header())
	at = w.WaitShows(t, at, "settings", "Not connected", "")
	w.Click(t, w.Header())
	at = w.WaitShows(t, at, "main", "Not connected", "")

	// The account page and back.
	w.Click(t, w.Account())
	at = w.WaitShows(t, at, "account", "Not connected", "")
	w.Click(t, w.Header())
	at = w.WaitShows(t, at, "main", "Not connected", "")

	// The daemon goes away: the not-running screen, a notification, the
	// tray says so; it comes back: the app recovers by itself.
	d.stop(t)
	at = w.WaitShows(t, at, "daemon", "The VPN service isn't running", "")
	w.CheckButton(t, viewmodel.Blue)
	notes = desk.waitNote(t, notes, "The VPN service isn't running")
	ti.waitTooltip(t, "NymVPN: The VPN service isn't running")
	d.start(t, nil)
	at = w.WaitShows(t, at, "main", "Not connected", "")

	// Closing the window keeps the app in the tray; Show window opens it.
	disp.CloseWindow(t, w.ID)
	log.WaitFor(t, at, regexp.MustCompile(`msg="window closed; still in the tray"`), waitTimeout)
	at = log.Len()
	select {
	case <-exited:
		t.Fatalf("the app exited when its window closed: %v", a.Err)
	default:
	}
	ti.click(t, "Connect") // the tray works without the window
	apptest.Poll(t, waitTimeout, "connected from the tray", func() error {
		if st := d.hub.Status().State.Kind; st != api.Connected {
			return fmt.Errorf("state %s", st)
		}
		return nil
	})
	ti.waitTooltip(t, "NymVPN: Connected through Germany and Switzerland")
	ti.click(t, "Show window")
	at = w.WaitShows(t, at, "main", "Connected", "")
	w.ID = disp.FindWindow(t, "^NymVPN", waitTimeout)
	w.CheckButton(t, viewmodel.Red)

	// Quit from the tray: the process ends cleanly; the VPN stays as it is.
	ti.click(t, "Quit")
	select {
	case <-exited:
		if a.Err != nil {
			t.Errorf("nymvpn-app exited with %v", a.Err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the app did not quit")
	}
	if st := d.hub.Status().State.Kind; st != api.Connected {
		t.Errorf("quitting the app changed the VPN: %s", st)
	}
}
