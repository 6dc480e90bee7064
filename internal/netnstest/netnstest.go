// Package netnstest builds small networks out of Linux network namespaces for
// tests: namespaces with unique names, veth links with addresses, routes,
// commands and long-running processes inside a namespace. Everything a test
// creates is removed by t.Cleanup when the test ends, passed or failed:
// processes are stopped (SIGTERM, then SIGKILL), anything else still running
// in a namespace is killed, and the namespaces are deleted, which takes their
// interfaces with them.
//
// It needs root and the ip command (iproute2). Tests call RequireRoot first;
// it skips them with a clear message otherwise. CI runs the tests as root.
//
//	netnstest.RequireRoot(t)
//	a, b := netnstest.New(t, "a"), netnstest.New(t, "b")
//	netnstest.Link(t, a, netip.MustParsePrefix("10.9.0.1/24"), b, netip.MustParsePrefix("10.9.0.2/24"))
//	srv := b.Start(t, "server", "/path/to/server", "--listen", "10.9.0.2:80")
//	srv.WaitFor(t, regexp.MustCompile(`listening`), time.Minute)
//	out := a.MustRun(t, "curl", "-s", "http://10.9.0.2/")
//
// Linux only: on other systems RequireRoot skips and nothing else is called.
package netnstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// CommandTimeout bounds each command Run executes.
const CommandTimeout = 60 * time.Second

// StopTimeout is how long Stop waits after SIGTERM before SIGKILL.
const StopTimeout = 10 * time.Second

// NamePrefix starts the name of every namespace this package creates, so
// leftovers are recognisable: nymt-<label>-<pid>-<n>.
const NamePrefix = "nymt-"

// RequireRoot skips the test unless it runs as root on Linux with the ip
// command available.
func RequireRoot(t testing.TB) {
	t.Helper()
	if !supported {
		t.Skip("needs Linux network namespaces; CI runs it as root on Linux")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces; CI runs it as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2) for network namespaces; CI has it")
	}
}

var seq atomic.Int64

// Namespace is a network namespace created by New.
type Namespace struct {
	// Name is the namespace's name, as `ip netns list` shows it.
	Name string
	// Label is the short name New was given.
	Label string

	mu     sync.Mutex
	ifaces int
}

// New creates a namespace with a unique name derived from label, with its
// loopback up, and deletes it when the test ends (after the processes the
// test started in it are stopped and anything else in it is killed).
func New(t testing.TB, label string) *Namespace {
	t.Helper()
	n := &Namespace{Name: fmt.Sprintf("%s%s-%d-%d", NamePrefix, label, os.Getpid(), seq.Add(1)), Label: label}
	if out, err := run("ip", "netns", "add", n.Name); err != nil {
		t.Fatalf("netnstest: ip netns add %s: %v\n%s", n.Name, err, out)
	}
	t.Cleanup(func() {
		if err := n.destroy(); err != nil {
			t.Errorf("netnstest: %v", err)
		}
	})
	n.MustRun(t, "ip", "link", "set", "lo", "up")
	return n
}

// destroy kills whatever still runs in the namespace and deletes it.
func (n *Namespace) destroy() error {
	var errs error
	for range 3 {
		pids, err := n.pids()
		if err != nil {
			errs = errors.Join(errs, err)
			break
		}
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			signalPid(pid, syscall.SIGKILL)
			waitGone(pid, StopTimeout)
		}
	}
	if out, err := run("ip", "netns", "del", n.Name); err != nil {
		errs = errors.Join(errs, fmt.Errorf("ip netns del %s: %w: %s", n.Name, err, out))
	}
	return errs
}

// pids lists the processes in the namespace.
func (n *Namespace) pids() ([]int, error) {
	out, err := run("ip", "netns", "pids", n.Name)
	if err != nil {
		return nil, fmt.Errorf("ip netns pids %s: %w: %s", n.Name, err, out)
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// waitGone waits until pid no longer exists (or is a zombie reaped by its
// parent) or the timeout passes.
func waitGone(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || bytes.Contains(st, []byte(") Z ")) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Command returns a command that runs inside the namespace
// (ip netns exec NAME name args...).
func (n *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output.
// It fails after CommandTimeout.
func (n *Namespace) Run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s %s: %w", n.Name, name, strings.Join(args, " "), err)
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (n *Namespace) MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Run(name, args...)
	if err != nil {
		t.Fatalf("netnstest: %v\n%s", err, out)
	}
	return out
}

// AddAddr adds p (address and prefix length) to the interface and sets it up.
func (n *Namespace) AddAddr(t testing.TB, ifname string, p netip.Prefix) {
	t.Helper()
	args := []string{"addr", "add", p.String(), "dev", ifname}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	n.MustRun(t, "ip", args...)
	n.MustRun(t, "ip", "link", "set", ifname, "up")
}

// Route adds a route to dst via the gateway address.
func (n *Namespace) Route(t testing.TB, dst netip.Prefix, via netip.Addr) {
	t.Helper()
	n.MustRun(t, "ip", "route", "add", dst.String(), "via", via.String())
}

// DefaultRoute adds a default route (IPv4 or IPv6, by via's family).
func (n *Namespace) DefaultRoute(t testing.TB, via netip.Addr) {
	t.Helper()
	dst := netip.MustParsePrefix("0.0.0.0/0")
	if via.Is6() {
		dst = netip.MustParsePrefix("::/0")
	}
	n.Route(t, dst, via)
}

// nextIface names the namespace's next veth end: v<n>-<peer label>, cut to
// the 15 bytes Linux allows.
func (n *Namespace) nextIface(peer string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	name := fmt.Sprintf("v%d-%s", n.ifaces, peer)
	n.ifaces++
	if len(name) > 15 {
		name = name[:15]
	}
	return name
}

// Link joins two namespaces with a veth pair, gives each end its address
// (when valid) and sets both up. It returns the interface names in a and b.
// The pair is created directly inside the namespaces and disappears with
// them.
func Link(t testing.TB, a *Namespace, aAddr netip.Prefix, b *Namespace, bAddr netip.Prefix) (aIf, bIf string) {
	t.Helper()
	aIf, bIf = a.nextIface(b.Label), b.nextIface(a.Label)
	a.MustRun(t, "ip", "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name)
	for _, e := range []struct {
		ns   *Namespace
		name string
		addr netip.Prefix
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		if e.addr.IsValid() {
			e.ns.AddAddr(t, e.name, e.addr)
		} else {
			e.ns.MustRun(t, "ip", "link", "set", e.name, "up")
		}
	}
	return aIf, bIf
}

// List returns the names of all network namespaces `ip netns list` shows.
func List() ([]string, error) {
	out, err := run("ip", "netns", "list")
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w: %s", err, out)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// Leftovers returns namespaces this package created (by their prefix) that
// still exist, from this process or an earlier one.
func Leftovers() ([]string, error) {
	names, err := List()
	var left []string
	for _, n := range names {
		if strings.HasPrefix(n, NamePrefix) {
			left = append(left, n)
		}
	}
	return left, err
}

func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// Poll calls f until it returns nil or timeout passes; then it fails the test
// with what and f's last error. Use it to wait for readiness instead of
// sleeping.
func Poll(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("netnstest: timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
