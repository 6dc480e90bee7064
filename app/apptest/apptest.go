// Package apptest drives nymvpn-app as a user would, for tests: a virtual
// X display (Xvfb), clicks with xdotool, screenshots with ImageMagick's
// import, closing a window as a window manager does, a private D-Bus session
// bus, and the app's own log to wait on. Tests skip, saying why, when a tool
// is missing; scripts/deps.sh installs them all and CI has them.
package apptest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Require skips the test unless the named commands are installed.
func Require(t testing.TB, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s is not installed (scripts/deps.sh installs it; CI has it)", c)
		}
	}
}

// Display is a running Xvfb.
type Display struct {
	// Name is the DISPLAY value, ":N".
	Name string
}

// ScreenSize is the virtual display's size in pixels.
var ScreenSize = image.Pt(1024, 800)

// StartXvfb starts a virtual X display of ScreenSize, letting Xvfb pick
// a free display number, and stops it when the test ends.
func StartXvfb(t testing.TB) *Display {
	t.Helper()
	Require(t, "Xvfb", "xdotool", "import")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", fmt.Sprintf("%dx%dx24", ScreenSize.X, ScreenSize.Y),
		"-nolisten", "tcp", "-noreset")
	cmd.ExtraFiles = []*os.File{w}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Xvfb: %v", err)
	}
	w.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// Xvfb writes the display number once it accepts connections.
	num := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		r.Close()
		num <- strings.TrimSpace(line)
	}()
	select {
	case n := <-num:
		if _, err := strconv.Atoi(n); err != nil {
			t.Fatalf("Xvfb did not start (display %q): %s", n, stderr.String())
		}
		return &Display{Name: ":" + n}
	case <-time.After(30 * time.Second):
		t.Fatalf("Xvfb did not start within 30s: %s", stderr.String())
	}
	return nil
}

// run runs an X client command on the display.
func (d *Display) run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "DISPLAY="+d.Name)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// FindWindow waits until a window whose title matches title (a regular
// expression) is mapped and returns its id.
func (d *Display) FindWindow(t testing.TB, title string, timeout time.Duration) string {
	t.Helper()
	var id string
	Poll(t, timeout, "a window titled "+title, func() error {
		out, err := d.run("xdotool", "search", "--onlyvisible", "--name", title)
		if err != nil {
			return err
		}
		if f := strings.Fields(string(out)); len(f) > 0 {
			id = f[0]
			return nil
		}
		return fmt.Errorf("no such window")
	})
	return id
}

// Click clicks the left mouse button at p, in the window's coordinates,
// then moves the pointer to the window's top left corner, so the widget
// clicked is not left hovered (which changes its colour).
func (d *Display) Click(t testing.TB, window string, p image.Point) {
	t.Helper()
	if _, err := d.run("xdotool", "mousemove", "--window", window, strconv.Itoa(p.X), strconv.Itoa(p.Y),
		"click", "1", "mousemove", "--window", window, "2", "2"); err != nil {
		t.Fatal(err)
	}
}

// Screenshot returns the window's pixels.
func (d *Display) Screenshot(t testing.TB, window string) *image.RGBA {
	t.Helper()
	out, err := d.run("import", "-window", window, "png:-")
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	rgba := image.NewRGBA(img.Bounds())
	draw.Draw(rgba, rgba.Bounds(), img, img.Bounds().Min, draw.Src)
	return rgba
}

// SavePNG writes img to path.
func SavePNG(t testing.TB, path string, img image.Image) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// StartSessionBus starts a private D-Bus session bus for the test and
// returns its address.
func StartSessionBus(t testing.TB) string {
	t.Helper()
	Require(t, "dbus-daemon")
	dir := t.TempDir()
	conf := filepath.Join(dir, "session.conf")
	sock := filepath.Join(dir, "bus")
	err := os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=`+sock+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--print-address=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		addr <- strings.TrimSpace(line)
	}()
	select {
	case a := <-addr:
		if a == "" {
			t.Fatalf("dbus-daemon did not start: %s", stderr.String())
		}
		return a
	case <-time.After(30 * time.Second):
		t.Fatalf("dbus-daemon did not start within 30s: %s", stderr.String())
	}
	return ""
}

// Poll calls f until it returns nil or timeout passes, then fails the test
// with what and f's last error.
func Poll(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 20 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// Log collects a process's output and lets a test wait for a line.
type Log struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	grown chan struct{}
}

// NewLog returns an empty log.
func NewLog() *Log { return &Log{grown: make(chan struct{})} }

// Write appends p.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.grown)
	l.grown = make(chan struct{})
	return len(p), nil
}

// String returns everything written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Len is how many bytes were written so far; WaitFor(from) looks only after
// that point.
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Len()
}

// WaitFor waits until the output after offset from matches re and returns
// the submatches of the first match.
func (l *Log) WaitFor(t testing.TB, from int, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		m := re.FindStringSubmatch(l.buf.String()[from:])
		grown := l.grown
		l.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-grown:
		case <-deadline.C:
			t.Fatalf("waited %v for %q in the output:\n%s", timeout, re, l.String()[from:])
		}
	}
}
