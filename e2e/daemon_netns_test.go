package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/internal/netnstest"
)

// clientResolvConf is the client's resolver before the VPN: a LAN resolver
// on the entry host's side of the link, which must never see a query while
// connected (nothing listens there; a leak would simply time out).
const clientResolvConf = "# the client's own resolv.conf, before the VPN\nnameserver 172.31.1.1\noptions timeout:2\n"

// TestDaemonFastModeSystemWide runs nymvpnd with a real TUN in the client
// namespace and drives it with the nymvpn CLI: `connect --mode fast --wait`
// routes all of the client's traffic and DNS through the two-hop tunnel
// (the client has no route to the internet host otherwise, and the server
// sees only the exit's address); `disconnect` puts rules, routes and
// resolv.conf back byte for byte; `kill -9` of a connected daemon followed by
// a restart leaves nothing behind and reconnects by itself. An unprivileged
// user outside the nymvpn group may read the status and is refused connect.
func TestDaemonFastModeSystemWide(t *testing.T) {
	netnstest.RequireRoot(t)
	requireTUN(t)
	if testing.Short() {
		t.Skip("builds the binaries and a network of namespaces; skipped in -short")
	}
	d := newDaemonNet(t)
	client, mustNymvpn := d.client, d.mustNymvpn(t)
	snapshot := func() map[string]string { return systemSnapshot(t, client) }
	// The kernel finishes IPv6 duplicate address detection on the links in
	// its own time and then adds their local routes: wait for that, so the
	// snapshot holds only what the daemon may change.
	netnstest.Poll(t, readyTimeout, "IPv6 addresses settled", func() error {
		if out := client.MustRun(t, "ip", "-6", "addr", "show", "tentative"); strings.TrimSpace(out) != "" {
			return fmt.Errorf("tentative: %s", out)
		}
		return nil
	})
	before := snapshot()
	daemon := d.startDaemon(t, "nymvpnd")

	// Before connecting, the internet host is unreachable from the client.
	if out, err := client.Run("curl", "-sS", "--max-time", "3", "http://"+inetAddr.Addr().String()+"/"); err == nil {
		t.Fatalf("the client reaches the internet host without the VPN: %s", out)
	}

	start := time.Now()
	out := mustNymvpn("connect", "--mode", "fast", "--entry", "DE", "--exit", "gw-exit", "--wait", "--timeout", "2m")
	t.Logf("connect --wait took %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	for _, want := range []string{"registering with the entry gateway", "Connected"} {
		if !strings.Contains(out, want) {
			t.Errorf("connect output lacks %q:\n%s", want, out)
		}
	}
	st := status(t, mustNymvpn)
	if st.State.Kind != api.Connected || st.State.Entry == nil || st.State.Entry.ID != "gw-entry" || st.State.Exit.ID != "gw-exit" {
		t.Fatalf("status after connect: %+v", st.State)
	}
	checkThroughTunnel(t, client)

	// Status for everyone, connect only for those allowed.
	checkUnprivileged(t, client, d.cli, d.socket)

	// Disconnect restores everything byte for byte.
	out = mustNymvpn("disconnect", "--wait")
	t.Logf("disconnect: %s", out)
	compareSnapshots(t, "after disconnect", before, snapshot())
	if out, err := client.Run("curl", "-sS", "--max-time", "3", "http://"+inetAddr.Addr().String()+"/"); err == nil {
		t.Errorf("the client still reaches the internet host after disconnect: %s", out)
	}

	// Connect again, then kill -9 the daemon while connected.
	mustNymvpn("connect", "--wait", "--timeout", "2m")
	checkThroughTunnel(t, client)
	if err := syscall.Kill(daemon.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-daemon.Exited()
	// A restarted daemon first undoes what the dead one left, then
	// reconnects because the user still wants to be connected.
	daemon = d.startDaemon(t, "nymvpnd (restarted)")
	daemon.WaitFor(t, regexp.MustCompile(`reconnecting`), readyTimeout)
	netnstest.Poll(t, readyTimeout, "reconnected after kill -9", func() error {
		st := status(t, mustNymvpn)
		if st.State.Kind != api.Connected {
			return fmt.Errorf("state %s (%s %s)", st.State.Kind, st.State.Stage, st.State.Reason)
		}
		return nil
	})
	checkThroughTunnel(t, client)
	mustNymvpn("disconnect", "--wait")
	compareSnapshots(t, "after kill -9, restart and disconnect", before, snapshot())
	if err := daemon.Stop(); err != nil {
		t.Errorf("nymvpnd: %v", err)
	}
	compareSnapshots(t, "after the daemon stopped", before, snapshot())
}

// daemonNet is the namespace network with nymvpnd's files prepared.
type daemonNet struct {
	*testNet
	bin, socket, stateDir, cli string
}

// newDaemonNet starts the network and prepares the client: its own
// resolv.conf, a socket directory every user can traverse, and the CLI
// where every user can run it.
func newDaemonNet(t testing.TB, opts ...netOption) *daemonNet {
	t.Helper()
	bin := buildBinaries(t, "nym-node", "nymvpn", "nymvpnd")
	d := &daemonNet{testNet: startNetwork(t, bin, "kernel", opts...), bin: bin, stateDir: t.TempDir()}
	// The client's own resolv.conf, bind-mounted over /etc/resolv.conf by
	// `ip netns exec`.
	nsEtc := filepath.Join("/etc/netns", d.client.Name)
	if err := os.MkdirAll(nsEtc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(nsEtc) })
	if err := os.WriteFile(filepath.Join(nsEtc, "resolv.conf"), []byte(clientResolvConf), 0o644); err != nil {
		t.Fatal(err)
	}
	pub, err := os.MkdirTemp("", "nymvpnd-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pub) })
	if err := os.Chmod(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	d.socket = filepath.Join(pub, "nymvpnd.sock")
	d.cli = filepath.Join(pub, "nymvpn")
	copyFile(t, filepath.Join(bin, "nymvpn"), d.cli, 0o755)
	return d
}

func (d *daemonNet) nymvpn(args ...string) (string, error) {
	return d.client.Run(d.cli, append([]string{"--socket", d.socket}, args...)...)
}

func (d *daemonNet) mustNymvpn(t testing.TB) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		out, err := d.nymvpn(args...)
		if err != nil {
			t.Fatalf("nymvpn %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
}

func (d *daemonNet) startDaemon(t testing.TB, name string) *netnstest.Process {
	t.Helper()
	p := d.client.Start(t, name, filepath.Join(d.bin, "nymvpnd"), "run", "--socket", d.socket, "--state-dir", d.stateDir,
		"--directory", d.urlFrom(entryAddrC), "--dns", "resolvconf", "--log-level", "debug")
	p.WaitFor(t, regexp.MustCompile(`msg="nymvpnd ready"`), readyTimeout)
	return p
}

// checkThroughTunnel fetches from the internet host by address and by name,
// and resolves with dig through the system resolver: the server must see
// the exit's outer address.
func checkThroughTunnel(t testing.TB, client *netnstest.Namespace) {
	t.Helper()
	for _, url := range []string{"http://" + inetAddr.Addr().String() + "/", "http://web.test/"} {
		out := client.MustRun(t, "curl", "-sS", "--max-time", curlTimeout, url)
		seen, err := netip.ParseAddrPort(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("%s: server answered %q: %v", url, out, err)
		}
		if seen.Addr() != exitAddrOut.Addr() {
			t.Errorf("%s: server saw %v, want only the exit's address %v", url, seen.Addr(), exitAddrOut.Addr())
		}
	}
	out := client.MustRun(t, "dig", "+short", "+time=5", "+tries=2", "web.test")
	if strings.TrimSpace(out) != inetAddr.Addr().String() {
		t.Errorf("dig web.test through the tunnel's resolver = %q, want %s", out, inetAddr.Addr())
	}
}

// checkUnprivileged runs the CLI as nobody: status works, connect is
// refused with a message that says what to do.
func checkUnprivileged(t *testing.T, client *netnstest.Namespace, cli, socket string) {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) is needed to run the CLI as another user")
	}
	asNobody := func(args ...string) (string, error) {
		return client.Run(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--", cli, "--socket", socket}, args...)...)
	}
	out, err := asNobody("status", "--json")
	if err != nil {
		t.Fatalf("status as nobody: %v\n%s", err, out)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json as nobody: %v\n%s", err, out)
	}
	if st.State.Kind != api.Connected || st.Caller == nil || st.Caller.UID != 65534 || st.Caller.CanWrite {
		t.Errorf("status as nobody: state %s, caller %+v", st.State.Kind, st.Caller)
	}
	out, err = asNobody("disconnect")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 {
		t.Errorf("disconnect as nobody: %v, want exit code 4\n%s", err, out)
	}
	if !strings.Contains(out, "nymvpn group") {
		t.Errorf("refusal does not say how to get access:\n%s", out)
	}
}

func status(t testing.TB, run func(...string) string) api.Status {
	t.Helper()
	var st api.Status
	out := run("status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// systemSnapshot records what the daemon may change in a namespace.
func systemSnapshot(t testing.TB, ns *netnstest.Namespace) map[string]string {
	t.Helper()
	snap := map[string]string{}
	for name, cmd := range map[string][]string{
		"ip -4 rule":         {"ip", "-4", "rule", "show"},
		"ip -6 rule":         {"ip", "-6", "rule", "show"},
		"ip -4 route (all)":  {"ip", "-4", "route", "show", "table", "all"},
		"ip -6 route (all)":  {"ip", "-6", "route", "show", "table", "all"},
		"links":              {"ip", "-o", "link", "show"},
		"resolv.conf":        {"cat", "/etc/resolv.conf"},
		"src_valid_mark":     {"cat", "/proc/sys/net/ipv4/conf/all/src_valid_mark"},
		"addresses (global)": {"ip", "-o", "addr", "show", "scope", "global"},
	} {
		snap[name] = ns.MustRun(t, cmd[0], cmd[1:]...)
	}
	return snap
}

// qdiscNoise drops what the kernel adds the first time a link goes up and
// that no daemon can undo.
var qdiscNoise = regexp.MustCompile(` qdisc \S+`)

func compareSnapshots(t *testing.T, when string, a, b map[string]string) {
	t.Helper()
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		x, y := a[k], b[k]
		if k == "links" {
			x, y = qdiscNoise.ReplaceAllString(x, ""), qdiscNoise.ReplaceAllString(y, "")
		}
		if x != y {
			t.Errorf("%s: %s differs\nbefore:\n%s\nnow:\n%s", when, k, a[k], b[k])
		}
	}
}

func copyFile(t testing.TB, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}
