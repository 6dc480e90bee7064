// Package uitest lays nymvpn-app's window out off screen, for tests and
// screenshots, as httptest does for HTTP: a Renderer keeps a Gio input
// router, so clicks can be queued and the semantic tree (every label) read,
// and renders frames to images with gioui.org/gpu/headless where a GPU
// context can be had (with Mesa on Linux no display is needed).
package uitest

import (
	"fmt"
	"image"
	"os"
	"strings"
	"time"

	"gioui.org/gpu/headless"
	"gioui.org/io/event"
	"gioui.org/io/input"
	"gioui.org/layout"
	"gioui.org/op"
	"gioui.org/unit"

	"github.com/nymvpn/nymvpn/app/ui"
	"github.com/nymvpn/nymvpn/app/viewmodel"
)

// Renderer lays out a ui.UI off screen.
type Renderer struct {
	UI     *ui.UI
	Size   image.Point
	Metric unit.Metric

	router input.Router
	ops    op.Ops
	win    *headless.Window
}

// Frame is one laid out frame.
type Frame struct {
	View    viewmodel.View
	Intents []viewmodel.Intent
	// Text is every label and description of the semantic tree, in order.
	Text []string
	// Nodes are the semantic tree's nodes with a label or description.
	Nodes []Node
}

// Node is a labelled node of the semantic tree.
type Node struct {
	Text   string
	Bounds image.Rectangle
}

// Find returns the bounds of the first node whose text is text.
func (f Frame) Find(text string) (image.Rectangle, bool) {
	for _, n := range f.Nodes {
		if n.Text == text {
			return n.Bounds, true
		}
	}
	return image.Rectangle{}, false
}

// Contains reports whether one of the frame's texts contains s.
func (f Frame) Contains(s string) bool {
	for _, t := range f.Text {
		if strings.Contains(t, s) {
			return true
		}
	}
	return false
}

// NewRenderer returns a renderer of size pixels at one pixel per dp.
func NewRenderer(size image.Point) *Renderer {
	return &Renderer{UI: ui.New(), Size: size, Metric: unit.Metric{PxPerDp: 1, PxPerSp: 1}}
}

// Layout lays out a frame of m at now after delivering events to the
// widgets.
func (r *Renderer) Layout(m viewmodel.Model, now time.Time, events ...event.Event) Frame {
	r.router.Queue(events...)
	r.ops.Reset()
	gtx := layout.Context{Ops: &r.ops, Now: now, Metric: r.Metric,
		Constraints: layout.Exact(r.Size), Source: r.router.Source()}
	v, intents := r.UI.Layout(gtx, m)
	r.router.Frame(&r.ops)
	f := Frame{View: v, Intents: intents}
	for _, n := range r.router.AppendSemantics(nil) {
		for _, s := range []string{n.Desc.Label, n.Desc.Description} {
			if s != "" {
				f.Text = append(f.Text, s)
				f.Nodes = append(f.Nodes, Node{Text: s, Bounds: n.Desc.Bounds})
			}
		}
	}
	return f
}

// Image renders the last laid out frame. The first call creates the GPU
// context; its error says why none could be had.
func (r *Renderer) Image() (*image.RGBA, error) {
	if r.win == nil {
		if os.Getenv("EGL_PLATFORM") == "" && os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			// Mesa renders without a display on its surfaceless platform.
			os.Setenv("EGL_PLATFORM", "surfaceless")
		}
		w, err := headless.NewWindow(r.Size.X, r.Size.Y)
		if err != nil {
			return nil, fmt.Errorf("headless GPU context: %w", err)
		}
		r.win = w
	}
	if err := r.win.Frame(&r.ops); err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	img := image.NewRGBA(image.Rectangle{Max: r.Size})
	if err := r.win.Screenshot(img); err != nil {
		return nil, fmt.Errorf("screenshot: %w", err)
	}
	return img, nil
}

// Release frees the GPU context.
func (r *Renderer) Release() {
	if r.win != nil {
		r.win.Release()
		r.win = nil
	}
}
