package apptest

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"

	"gioui.org/unit"

	"github.com/nymvpn/nymvpn/app/ui"
)

// WaitTimeout bounds each wait for the app.
const WaitTimeout = 60 * time.Second

// BuildApp builds nymvpn-app into a temporary directory; moduleRoot is the
// module's directory relative to the test's.
func BuildApp(t testing.TB, moduleRoot string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "nymvpn-app")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./cmd/nymvpn-app")
	cmd.Dir = moduleRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/nymvpn-app: %v\n%s", err, out)
	}
	return bin
}

// App is a running nymvpn-app.
type App struct {
	Log *Log
	// Exited is closed when the process has exited; Err is then its
	// result.
	Exited chan struct{}
	Err    error
	cmd    *exec.Cmd
}

// StartApp runs the app binary with args on the display, with env added to
// this process's environment (DBUS_SESSION_BUS_ADDRESS is dropped unless env
// sets it, so the app finds no desktop by accident). The app is killed when
// the test ends; its log is shown if the test failed.
func StartApp(t testing.TB, d *Display, bin string, env []string, args ...string) *App {
	t.Helper()
	a := &App{Log: NewLog(), Exited: make(chan struct{})}
	a.cmd = exec.Command(bin, args...)
	for _, e := range os.Environ() {
		if len(e) < 25 || e[:25] != "DBUS_SESSION_BUS_ADDRESS=" {
			a.cmd.Env = append(a.cmd.Env, e)
		}
	}
	a.cmd.Env = append(a.cmd.Env, "DISPLAY="+d.Name)
	a.cmd.Env = append(a.cmd.Env, env...)
	a.cmd.Stdout, a.cmd.Stderr = a.Log, a.Log
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start nymvpn-app: %v", err)
	}
	go func() {
		a.Err = a.cmd.Wait()
		close(a.Exited)
	}()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.Exited
		if t.Failed() {
			t.Logf("nymvpn-app's log:\n%s", a.Log.String())
		}
	})
	return a
}

// Signal sends sig to the app.
func (a *App) Signal(sig os.Signal) error { return a.cmd.Process.Signal(sig) }

// Window is the app's window as its log and the X server show it.
type Window struct {
	Display *Display
	Log     *Log
	// ID is the X window id (FindWindow).
	ID string
	// Size and Metric are those of the last frame the log reported.
	Size   image.Point
	Metric unit.Metric
}

var showsRe = regexp.MustCompile(`msg="window shows" [^\n]* width=(\d+) height=(\d+) px_per_dp=(\S+)`)

// WaitShows waits until the app logs, after log offset from, a frame of the
// screen with the headline (and the problem's title, "" for none), and
// returns the log's offset after it.
func (w *Window) WaitShows(t testing.TB, from int, screen, headline, problem string) int {
	t.Helper()
	re := regexp.MustCompile(`msg="window shows" screen=` + screen + ` headline="?` + regexp.QuoteMeta(headline) +
		`"? [^\n]*problem="?` + regexp.QuoteMeta(problem) + `"? [^\n]*\n`)
	w.Log.WaitFor(t, from, re, WaitTimeout)
	all := showsRe.FindAllStringSubmatch(w.Log.String(), -1)
	last := all[len(all)-1]
	x, _ := strconv.Atoi(last[1])
	y, _ := strconv.Atoi(last[2])
	f, _ := strconv.ParseFloat(last[3], 32)
	w.Size, w.Metric = image.Pt(x, y), unit.Metric{PxPerDp: float32(f), PxPerSp: float32(f)}
	return w.Log.Len()
}

// Primary is where the big button is.
func (w *Window) Primary() image.Rectangle { return ui.PrimaryButton(w.Size, w.Metric) }

// Header is where the header's button (Settings, Back) is.
func (w *Window) Header() image.Rectangle { return ui.HeaderButton(w.Size, w.Metric) }

// Account is where the header's Account button is (main screen).
func (w *Window) Account() image.Rectangle { return ui.AccountButton(w.Size, w.Metric) }

// Click clicks the centre of r.
func (w *Window) Click(t testing.TB, r image.Rectangle) {
	t.Helper()
	w.Display.Click(t, w.ID, r.Min.Add(r.Max).Div(2))
}

// CheckButton waits until a screenshot shows the big button in colour c,
// and returns that screenshot.
func (w *Window) CheckButton(t testing.TB, c color.NRGBA) image.Image {
	t.Helper()
	var img image.Image
	b := w.Primary()
	// Left of the label, and above it in the middle, where a click's ripple
	// shows until it has faded.
	points := []image.Point{{b.Min.X + w.Metric.Dp(30), b.Min.Y + b.Dy()/2}, {(b.Min.X + b.Max.X) / 2, b.Min.Y + w.Metric.Dp(4)}}
	Poll(t, WaitTimeout, fmt.Sprintf("the big button in %v", c), func() error {
		shot := w.Display.Screenshot(t, w.ID)
		img = shot
		for _, p := range points {
			if got := shot.RGBAAt(p.X, p.Y); !Near(got, c) {
				return fmt.Errorf("it is %v at %v", got, p)
			}
		}
		return nil
	})
	return img
}

// Near reports whether c is within a small distance of want in every
// channel.
func Near(c color.RGBA, want color.NRGBA) bool {
	d := func(a, b uint8) int {
		if a > b {
			return int(a - b)
		}
		return int(b - a)
	}
	return d(c.R, want.R) < 12 && d(c.G, want.G) < 12 && d(c.B, want.B) < 12
}
