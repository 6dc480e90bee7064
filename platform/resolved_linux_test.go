package platform

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/godbus/dbus/v5"
)

// fakeResolved is a stand-in for systemd-resolved's manager object on a
// private bus: it records the calls it gets.
type fakeResolved struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeResolved) record(format string, a ...any) *dbus.Error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
	return nil
}

func (f *fakeResolved) SetLinkDNS(ifindex int32, servers []resolvedDNS) *dbus.Error {
	var s []string
	for _, d := range servers {
		a, _ := netip.AddrFromSlice(d.Address)
		s = append(s, fmt.Sprintf("%d:%s", d.Family, a))
	}
	return f.record("SetLinkDNS %d %s", ifindex, strings.Join(s, ","))
}

func (f *fakeResolved) SetLinkDomains(ifindex int32, domains []resolvedDomain) *dbus.Error {
	return f.record("SetLinkDomains %d %+v", ifindex, domains)
}

func (f *fakeResolved) RevertLink(ifindex int32) *dbus.Error {
	return f.record("RevertLink %d", ifindex)
}

func (f *fakeResolved) taken() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// fakeResolvedNew also has SetLinkDefaultRoute (systemd 240 and later).
type fakeResolvedNew struct{ *fakeResolved }

func (f fakeResolvedNew) SetLinkDefaultRoute(ifindex int32, on bool) *dbus.Error {
	return f.record("SetLinkDefaultRoute %d %v", ifindex, on)
}

// privateBus starts a dbus-daemon of its own and points
// DBUS_SYSTEM_BUS_ADDRESS at it for the test.
func privateBus(t *testing.T) string {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("needs dbus-daemon (apt-get install dbus-daemon) for a private bus")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(cfg, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=`+filepath.Join(dir, "bus")+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon, "--config-file="+cfg, "--nofork", "--nopidfile", "--print-address=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// The daemon prints its address once it listens.
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon did not print its address: %v", err)
	}
	addr = strings.TrimSpace(addr)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", addr)
	return addr
}

// serveResolved owns org.freedesktop.resolve1 on the bus with obj.
func serveResolved(t *testing.T, addr string, obj any) {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.Export(obj, resolvedPath, resolvedIface); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName(resolvedName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: %v, %v", resolvedName, reply, err)
	}
}

func TestResolvedBackend(t *testing.T) {
	addr := privateBus(t)
	ctx := context.Background()
	dir := t.TempDir()
	stubLink := filepath.Join(dir, "resolv-stub.conf")
	if err := os.Symlink("/run/systemd/resolve/stub-resolv.conf", stubLink); err != nil {
		t.Fatal(err)
	}
	stubFile := filepath.Join(dir, "resolv-file.conf")
	os.WriteFile(stubFile, []byte("# resolved\nnameserver 127.0.0.53\noptions edns0\n"), 0o644)
	static := filepath.Join(dir, "resolv-static.conf")
	os.WriteFile(static, []byte("nameserver 192.168.1.1\n"), 0o644)

	backend := func(path string, configured DNSBackend) (DNSBackend, error) {
		o := &linuxOps{log: discard, resolvConf: path, procSys: "/proc/sys"}
		return o.dnsBackend(ctx, configured)
	}
	// Nobody owns the name yet.
	if b, err := backend(stubLink, DNSAuto); err != nil || b != DNSResolvConf {
		t.Errorf("auto without resolved: %v, %v; want resolvconf", b, err)
	}
	if _, err := backend(stubLink, DNSResolved); err == nil {
		t.Error("resolved backend without resolved succeeded")
	}

	fake := &fakeResolved{}
	serveResolved(t, addr, fakeResolvedNew{fake})
	for _, tc := range []struct {
		path string
		want DNSBackend
	}{{stubLink, DNSResolved}, {stubFile, DNSResolved}, {static, DNSResolvConf}} {
		if b, err := backend(tc.path, DNSAuto); err != nil || b != tc.want {
			t.Errorf("auto with resolved running and %s: %v, %v; want %v", filepath.Base(tc.path), b, err, tc.want)
		}
	}
	if b, err := backend(static, DNSResolved); err != nil || b != DNSResolved {
		t.Errorf("resolved backend: %v, %v", b, err)
	}

	// The DNS change on lo (index 1), as Up and Down make and undo it.
	o := &linuxOps{log: discard, resolvConf: static, procSys: "/proc/sys"}
	r := record{Change: Change{Kind: KindDNS, Backend: DNSResolved, Link: "lo", DNS: addrs("10.1.0.1", "fc01::1")}}
	if err := o.capture(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if r.Undo.Ifindex != 1 {
		t.Fatalf("lo's index %d", r.Undo.Ifindex)
	}
	if err := o.apply(ctx, r); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"SetLinkDNS 1 2:10.1.0.1,10:fc01::1",
		"SetLinkDomains 1 [{Domain:. RoutingOnly:true}]",
		"SetLinkDefaultRoute 1 true",
	}
	if got := fake.taken(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
	if err := o.undo(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got := fake.taken(); !reflect.DeepEqual(got, []string{"RevertLink 1"}) {
		t.Errorf("undo calls %q, want RevertLink 1", got)
	}
	// A link that is gone is not reverted: resolved forgot it already.
	gone := r
	gone.Undo.Ifindex = 1 << 30
	if err := o.undo(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if got := fake.taken(); len(got) != 0 {
		t.Errorf("calls for a gone link: %q", got)
	}
	// resolv.conf is not touched by the resolved backend.
	if b, _ := os.ReadFile(static); string(b) != "nameserver 192.168.1.1\n" {
		t.Errorf("resolv.conf changed: %q", b)
	}
}

// A resolved older than 240 has no SetLinkDefaultRoute; "~." alone does.
func TestResolvedWithoutDefaultRoute(t *testing.T) {
	addr := privateBus(t)
	fake := &fakeResolved{}
	serveResolved(t, addr, fake)
	if err := resolvedSetLink(context.Background(), discard, 1, addrs("10.1.0.1")); err != nil {
		t.Fatal(err)
	}
	want := []string{"SetLinkDNS 1 2:10.1.0.1", "SetLinkDomains 1 [{Domain:. RoutingOnly:true}]"}
	if got := fake.taken(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}

func TestStateDirLock(t *testing.T) {
	dir := t.TempDir()
	s := newTestSystem(t, dir)
	if _, err := New(Options{StateDir: dir, Logger: discard}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second New on the same state directory: %v", err)
	}
	s.Close()
	s2, err := New(Options{StateDir: dir, Logger: discard})
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	s2.Close()
}
