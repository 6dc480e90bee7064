package app

import (
	"log/slog"
	"sync"

	gioapp "gioui.org/app"
	"gioui.org/io/system"
	"gioui.org/op"
	"gioui.org/unit"

	"github.com/nymvpn/nymvpn/app/ui"
	"github.com/nymvpn/nymvpn/app/viewmodel"
)

// windows manages the app's one window: shown on demand (again after the user
// closed it, from the tray), redrawn when the model changes.
type windows struct {
	ctrl *Controller
	log  *slog.Logger
	// handle gets the intents the window does not handle itself.
	handle func(viewmodel.Intent)
	// closed is called when the user closed the window.
	closed func()

	mu sync.Mutex
	w  *gioapp.Window
}

// Show opens the window, or raises it when it is open.
func (ws *windows) Show() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.w != nil {
		ws.w.Perform(system.ActionRaise)
		return
	}
	w := new(gioapp.Window)
	w.Option(gioapp.Title("NymVPN"), gioapp.Size(unit.Dp(ui.DefaultSize.X), unit.Dp(ui.DefaultSize.Y)),
		gioapp.MinSize(unit.Dp(360), unit.Dp(480)))
	ws.w = w
	go ws.loop(w)
}

// Invalidate redraws the window, if open. It does not block.
func (ws *windows) Invalidate() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.w != nil {
		ws.w.Invalidate()
	}
}

// Close closes the window, if open.
func (ws *windows) Close() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.w != nil {
		ws.w.Perform(system.ActionClose)
	}
}

// shown is what the log says about a frame, when it changes: tests follow
// it.
type shown struct {
	screen           viewmodel.Screen
	headline, button string
	enabled          bool
	problem          string
	gateways         bool
	traffic          bool
	width, height    int
	pxPerDp          float32
	title            string
}

func (ws *windows) loop(w *gioapp.Window) {
	u := ui.New()
	var ops op.Ops
	var last shown
	for {
		switch e := w.Event().(type) {
		case gioapp.DestroyEvent:
			ws.mu.Lock()
			if ws.w == w {
				ws.w = nil
			}
			ws.mu.Unlock()
			if e.Err != nil {
				ws.log.Error("window failed", "err", e.Err)
			} else {
				ws.log.Info("window closed")
			}
			ws.closed()
			return
		case gioapp.FrameEvent:
			gtx := gioapp.NewContext(&ops, e)
			m := ws.ctrl.Model()
			v, intents := u.Layout(gtx, m)
			e.Frame(gtx.Ops)
			problem := ""
			if v.Problem != nil {
				problem = v.Problem.Title
			}
			now := shown{screen: v.Screen, headline: v.Status.Headline, button: v.Primary.Label, enabled: v.Primary.Enabled, problem: problem, gateways: m.GatewaysLoaded, traffic: m.Status.Traffic != nil,
				width: e.Size.X, height: e.Size.Y, pxPerDp: e.Metric.PxPerDp, title: v.Title}
			if now != last {
				if now.title != last.title {
					w.Option(gioapp.Title(v.Title))
				}
				last = now
				ws.log.Info("window shows", "screen", v.Screen.String(), "headline", v.Status.Headline,
					"button", v.Primary.Label, "enabled", v.Primary.Enabled, "problem", problem, "gateways", m.GatewaysLoaded, "traffic", m.Status.Traffic != nil,
					"width", e.Size.X, "height", e.Size.Y, "px_per_dp", e.Metric.PxPerDp)
			}
			for _, in := range intents {
				ws.handle(in)
			}
		}
	}
}
