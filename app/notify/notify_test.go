package notify

import (
	"context"
	"errors"
	"image"
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/nymvpn/nymvpn/app/apptest"
)

type call struct {
	app, summary, body string
	replaces           uint32
	hints              map[string]dbus.Variant
}

type server struct{ calls chan call }

func (s server) Notify(app string, replaces uint32, icon, summary, body string, actions []string,
	hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	s.calls <- call{app: app, summary: summary, body: body, replaces: replaces, hints: hints}
	return 7, nil
}

func TestNoBus(t *testing.T) {
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir()) // no bus socket in it
	if _, err := New("test"); !errors.Is(err, ErrNoSessionBus) {
		t.Errorf("New without a bus: %v", err)
	}
}

func TestNotify(t *testing.T) {
	bus := apptest.StartSessionBus(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus)
	conn, err := dbus.Connect(bus)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	n, err := New("NymVPN")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// No notification service yet: Notify fails, quickly.
	if err := n.Notify(context.Background(), Message{Title: "lost"}); err == nil {
		t.Error("Notify without a service succeeded")
	}

	s := server{calls: make(chan call, 2)}
	if err := conn.Export(s, Path, Interface); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.RequestName(Service, dbus.NameFlagDoNotQueue); err != nil {
		t.Fatal(err)
	}
	icon := image.NewNRGBA(image.Rect(0, 0, 4, 3))
	if err := n.Notify(context.Background(), Message{Title: "Connected", Body: "Through Germany.", Icon: icon}); err != nil {
		t.Fatal(err)
	}
	c := <-s.calls
	if c.app != "NymVPN" || c.summary != "Connected" || c.body != "Through Germany." || c.replaces != 0 {
		t.Errorf("first notification %+v", c)
	}
	if u := c.hints["urgency"].Value(); u != byte(1) {
		t.Errorf("urgency %v", u)
	}
	var img rawImage
	if err := dbus.Store([]any{c.hints["image-data"].Value()}, &img); err != nil || img.Width != 4 || img.Height != 3 || len(img.Data) != 48 {
		t.Errorf("image-data %+v %v", img, err)
	}
	if err := n.Notify(context.Background(), Message{Title: "Error", Urgent: true}); err != nil {
		t.Fatal(err)
	}
	c = <-s.calls
	if c.replaces != 7 || c.hints["urgency"].Value() != byte(2) {
		t.Errorf("second notification replaces %d, urgency %v", c.replaces, c.hints["urgency"].Value())
	}
}
