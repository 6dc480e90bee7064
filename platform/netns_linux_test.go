package platform

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/internal/netnstest"
	"golang.zx2c4.com/wireguard/tun"
)

// The root tests run the package's code inside network namespaces by
// re-executing the test binary under `ip netns exec` with
// NYMVPN_PLATFORM_HELPER naming what to do. The product code then runs
// exactly as in the daemon: netlink, /proc/sys and /etc/resolv.conf of the
// process's own namespace. `ip netns exec` bind-mounts
// /etc/netns/NAME/resolv.conf over /etc/resolv.conf, which the tests use to
// give each namespace its own resolv.conf (and which is why it is written
// in place).

const (
	helperEnv = "NYMVPN_PLATFORM_HELPER"
	configEnv = "NYMVPN_PLATFORM_CONFIG"
)

// helperConfig is what a helper process is told, as JSON in configEnv.
type helperConfig struct {
	Net      NetConfig
	StateDir string
	// Netns is the namespace's name: helpers refuse to touch
	// /etc/resolv.conf unless it is /etc/netns/Netns/resolv.conf.
	Netns string
	// TUN creates the interface with tun.CreateTUN (else it exists).
	TUN    bool
	TUNMTU int
	// ReadTUN prints the UDP packets the TUN receives.
	ReadTUN bool
	// Steps waits for SIGUSR1 before Up, Down and exit; without it the
	// helper goes up and exits at once (a crash, for the journal).
	Steps bool
	// KillAt, when >= 0, SIGKILLs the helper after journaling record
	// KillAt (or after making its change, with KillApplied).
	KillAt      int
	KillApplied bool
	// Send is "ADDR:PORT" to send one UDP datagram with payload Payload,
	// with SO_MARK=Mark when Mark is not 0 (helper "send"); Listen is the
	// address helper "listen" prints datagrams on.
	Send    string
	Payload string
	Mark    int
	Listen  string
}

func TestMain(m *testing.M) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		os.Exit(m.Run())
	}
	var cfg helperConfig
	if err := json.Unmarshal([]byte(os.Getenv(configEnv)), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "helper config:", err)
		os.Exit(2)
	}
	if err := runHelper(mode, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		fmt.Println("HELPER ERROR", err)
		os.Exit(3)
	}
	os.Exit(0)
}

func runHelper(mode string, cfg helperConfig) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	switch mode {
	case "send":
		return helperSend(cfg)
	case "listen":
		return helperListen(cfg)
	case "recover":
		if err := checkResolvConfIsTheNamespaces(cfg.Netns); err != nil {
			return err
		}
		s, err := New(Options{StateDir: cfg.StateDir, DNSBackend: DNSResolvConf, Logger: log})
		if err != nil {
			return err
		}
		defer s.Close()
		if err := s.Recover(context.Background()); err != nil {
			return err
		}
		fmt.Println("STEP recovered")
		return nil
	case "session":
		return helperSession(cfg, log)
	case "fw", "fwserve", "fwprobe", "fwcapture": // firewall_helpers_linux_test.go
		return firewallHelper(mode)
	case "netmon":
		// Prints each verdict of WatchNetwork, ignoring the "nymvpn0" link.
		return WatchNetwork(context.Background(), func(n string) bool { return n == "nymvpn0" }, func(c NetworkChange) {
			fmt.Printf("NETWORK online=%v %v\n", c.Online, c.Addresses)
		})
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

// checkResolvConfIsTheNamespaces makes sure /etc/resolv.conf is the bind
// mount of the namespace's own file, so that a helper never rewrites the
// host's.
func checkResolvConfIsTheNamespaces(netns string) error {
	own, err := os.Stat(filepath.Join("/etc/netns", netns, "resolv.conf"))
	if err != nil {
		return fmt.Errorf("the namespace's resolv.conf: %w", err)
	}
	cur, err := os.Stat("/etc/resolv.conf")
	if err != nil {
		return err
	}
	if netns == "" || !os.SameFile(own, cur) {
		return fmt.Errorf("/etc/resolv.conf is not /etc/netns/%s/resolv.conf; refusing to touch it", netns)
	}
	return nil
}

func helperSession(cfg helperConfig, log *slog.Logger) error {
	if err := checkResolvConfIsTheNamespaces(cfg.Netns); err != nil {
		return err
	}
	step := make(chan os.Signal, 1)
	signal.Notify(step, syscall.SIGUSR1)
	wait := func(what string) {
		fmt.Println("STEP", what)
		if cfg.Steps {
			<-step
		}
	}
	if cfg.TUN {
		dev, err := tun.CreateTUN(cfg.Net.Interface, cfg.TUNMTU)
		if err != nil {
			return fmt.Errorf("create TUN: %w", err)
		}
		defer dev.Close()
		if cfg.ReadTUN {
			go readTUN(dev)
		}
	}
	wait("ready")
	if cfg.KillAt >= 0 {
		testHook = func(seq int, applied bool) {
			if seq == cfg.KillAt && applied == cfg.KillApplied {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
	}
	s, err := New(Options{StateDir: cfg.StateDir, DNSBackend: DNSResolvConf, Logger: log})
	if err != nil {
		return err
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Up(ctx, cfg.Net); err != nil {
		fmt.Println("STEP up-error:", strings.ReplaceAll(err.Error(), "\n", "; "))
		return nil
	}
	wait("up")
	if err := s.Down(ctx); err != nil {
		return err
	}
	wait("down")
	return nil
}

// readTUN prints "TUN udp SRC -> DST:PORT PAYLOAD" for each IPv4 UDP packet
// the kernel routes into the TUN.
func readTUN(dev tun.Device) {
	bufs := make([][]byte, dev.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 65536)
	}
	sizes := make([]int, len(bufs))
	for {
		n, err := dev.Read(bufs, sizes, 0)
		if err != nil {
			return
		}
		for i := range n {
			p := bufs[i][:sizes[i]]
			if len(p) < 28 || p[0]>>4 != 4 || p[9] != syscall.IPPROTO_UDP {
				continue
			}
			ihl := int(p[0]&0x0f) * 4
			if len(p) < ihl+8 {
				continue
			}
			src, _ := netip.AddrFromSlice(p[12:16])
			dst, _ := netip.AddrFromSlice(p[16:20])
			port := binary.BigEndian.Uint16(p[ihl+2:])
			fmt.Printf("TUN udp %s -> %s %s\n", src, netip.AddrPortFrom(dst, port), p[ihl+8:])
		}
	}
}

func helperSend(cfg helperConfig) error {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		if cfg.Mark == 0 {
			return nil
		}
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, cfg.Mark)
		}); err != nil {
			return err
		}
		return serr
	}}
	network := "udp4"
	if netip.MustParseAddrPort(cfg.Send).Addr().Is6() {
		network = "udp6"
	}
	pc, err := lc.ListenPacket(context.Background(), network, "")
	if err != nil {
		return err
	}
	defer pc.Close()
	to := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(cfg.Send))
	if _, err := pc.WriteTo([]byte(cfg.Payload), to); err != nil {
		fmt.Println("SEND ERROR", err)
		return nil
	}
	fmt.Println("SENT")
	return nil
}

func helperListen(cfg helperConfig) error {
	pc, err := net.ListenPacket("udp", cfg.Listen)
	if err != nil {
		return err
	}
	fmt.Println("LISTENING", pc.LocalAddr())
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		fmt.Printf("GOT %s from %s\n", buf[:n], from)
	}
}

// helperArgs returns the `env` arguments that run the test binary as
// helper mode with cfg.
func helperArgs(t *testing.T, mode string, cfg helperConfig) []string {
	t.Helper()
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{helperEnv + "=" + mode, configEnv + "=" + string(js), exe, "-test.run=^$"}
}

// testNS is a namespace with its own resolv.conf and a state directory.
type testNS struct {
	*netnstest.Namespace
	resolvConf string
	stateDir   string
}

// nsResolvConf is the namespace's resolv.conf before the tests: it must
// come back byte for byte.
var nsResolvConf = []byte("# the namespace's own resolv.conf\nsearch example.net\nnameserver 192.0.2.53\noptions ndots:2 \xc3\n")

func newNS(t *testing.T, label string) *testNS {
	t.Helper()
	netnstest.RequireRoot(t)
	n := netnstest.New(t, label)
	dir := filepath.Join("/etc/netns", n.Name)
	_, err := os.Stat("/etc/netns")
	created := os.IsNotExist(err)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(dir)
		if created {
			os.Remove("/etc/netns") // fails, rightly, when not empty
		}
	})
	rc := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(rc, nsResolvConf, 0o644); err != nil {
		t.Fatal(err)
	}
	return &testNS{Namespace: n, resolvConf: rc, stateDir: t.TempDir()}
}

var qdisc = regexp.MustCompile(`qdisc \S+ `)

// snapshot is everything Up changes, as the tools show it.
type snapshot map[string]string

func (n *testNS) snapshot(t *testing.T) snapshot {
	t.Helper()
	s := snapshot{}
	for _, cmd := range [][]string{
		{"ip", "rule", "show"},
		{"ip", "-6", "rule", "show"},
		{"ip", "route", "show", "table", "all"},
		{"ip", "-6", "route", "show", "table", "all"},
		{"ip", "addr", "show"},
		{"cat", "/proc/sys/net/ipv4/conf/all/src_valid_mark"},
	} {
		out := n.MustRun(t, cmd[0], cmd[1:]...)
		if cmd[1] == "addr" {
			// The kernel attaches the default queueing discipline the
			// first time a link goes up and keeps it when it goes down;
			// that is not configuration (the link goes with its TUN).
			out = qdisc.ReplaceAllString(out, "qdisc * ")
		}
		s[strings.Join(cmd, " ")] = out
	}
	fi, err := os.Lstat(n.resolvConf)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(n.resolvConf)
	if err != nil {
		t.Fatal(err)
	}
	s["resolv.conf"] = fmt.Sprintf("%v %q", fi.Mode(), b)
	return s
}

func sameSnapshot(t *testing.T, what string, got, want snapshot) {
	t.Helper()
	for k, w := range want {
		if g := got[k]; g != w {
			t.Errorf("%s: `%s` differs:\n--- now\n%s\n--- before\n%s", what, k, g, w)
		}
	}
}

func (n *testNS) helper(t *testing.T, name, mode string, cfg helperConfig) *netnstest.Process {
	t.Helper()
	cfg.StateDir, cfg.Netns = n.stateDir, n.Name
	return n.Start(t, name, "env", helperArgs(t, mode, cfg)...)
}

func (n *testNS) run(t *testing.T, mode string, cfg helperConfig) (string, error) {
	t.Helper()
	cfg.StateDir, cfg.Netns = n.stateDir, n.Name
	return n.Run("env", helperArgs(t, mode, cfg)...)
}

var (
	ipv4Only = NetConfig{Interface: "nymvpn0", MTU: 1340, Addresses: prefixes("10.1.0.7/32", "fc01::7/128"), DNS: addrs("10.1.0.1", "fc01::1")}
	dualNet  = NetConfig{Interface: "nymvpn0", MTU: 1340, Addresses: prefixes("10.1.0.7/32", "fc01::7/128"), DNS: addrs("10.1.0.1", "fc01::1"), IPv6: true}
)

func step(t *testing.T, p *netnstest.Process) {
	t.Helper()
	if err := syscall.Kill(p.Pid(), syscall.SIGUSR1); err != nil {
		t.Fatalf("signal %s: %v", p.Name, err)
	}
}

func mustContain(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

// TestUpDownInNamespace: Up on a real TUN makes the wg-quick rules and
// routes, the sysctl and resolv.conf; Down puts all of it back byte for
// byte, and closing the TUN leaves the namespace as it was before it.
func TestUpDownInNamespace(t *testing.T) {
	for _, tc := range []struct {
		name string
		net  NetConfig
	}{{"ipv4-only", ipv4Only}, {"dual-stack", dualNet}} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNS(t, "updown")
			pristine := n.snapshot(t)
			p := n.helper(t, "session", "session", helperConfig{Net: tc.net, TUN: true, TUNMTU: 1420, Steps: true, KillAt: -1})
			p.WaitFor(t, regexp.MustCompile(`STEP ready`), time.Minute)
			before := n.snapshot(t)
			step(t, p)
			p.WaitFor(t, regexp.MustCompile(`STEP (up|up-error.*)\n`), time.Minute)
			if m := regexp.MustCompile(`STEP up-error.*`).FindString(p.Stdout()); m != "" {
				t.Fatal(m)
			}

			rules := n.MustRun(t, "ip", "rule", "show")
			mustContain(t, "ip rule", rules,
				"32763:\tfrom all to 10.1.0.1 lookup 51820",
				"32764:\tfrom all lookup main suppress_prefixlength 0",
				"32765:\tnot from all fwmark 0xca6c lookup 51820")
			rules6 := n.MustRun(t, "ip", "-6", "rule", "show")
			mustContain(t, "ip -6 rule", rules6,
				"32764:\tfrom all lookup main suppress_prefixlength 0",
				"32765:\tnot from all fwmark 0xca6c lookup 51820")
			mustContain(t, "ip route show table 51820", n.MustRun(t, "ip", "route", "show", "table", "51820"), "default dev nymvpn0 scope link")
			routes6 := n.MustRun(t, "ip", "-6", "route", "show", "table", "51820")
			addr := n.MustRun(t, "ip", "addr", "show", "dev", "nymvpn0")
			mustContain(t, "ip addr", addr, "inet 10.1.0.7/32", "mtu 1340", ",UP")
			if tc.net.IPv6 {
				mustContain(t, "ip -6 rule", rules6, "32763:\tfrom all to fc01::1 lookup 51820")
				mustContain(t, "ip -6 route show table 51820", routes6, "default dev nymvpn0")
				mustContain(t, "ip addr", addr, "inet6 fc01::7/128")
			} else {
				mustContain(t, "ip -6 route show table 51820", routes6, "unreachable default dev lo")
				if strings.Contains(addr, "fc01::7") {
					t.Errorf("IPv6 address added with IPv6 off:\n%s", addr)
				}
			}
			if v := strings.TrimSpace(n.MustRun(t, "cat", "/proc/sys/net/ipv4/conf/all/src_valid_mark")); v != "1" {
				t.Errorf("src_valid_mark = %s, want 1", v)
			}
			rc, _ := os.ReadFile(n.resolvConf)
			wantRC := "nameserver 10.1.0.1\n"
			if tc.net.IPv6 {
				wantRC += "nameserver fc01::1\n"
			}
			if !strings.HasPrefix(string(rc), resolvConfMarker) || !strings.HasSuffix(string(rc), "\n"+wantRC) || strings.Count(string(rc), "nameserver") != strings.Count(wantRC, "nameserver") {
				t.Errorf("resolv.conf while up:\n%s", rc)
			}
			if _, err := os.Stat(filepath.Join(n.stateDir, journalName)); err != nil {
				t.Errorf("no journal while up: %v", err)
			}

			step(t, p)
			p.WaitFor(t, regexp.MustCompile(`STEP down`), time.Minute)
			sameSnapshot(t, "after Down", n.snapshot(t), before)
			if _, err := os.Stat(filepath.Join(n.stateDir, journalName)); !os.IsNotExist(err) {
				t.Errorf("journal after Down: %v", err)
			}
			step(t, p)
			<-p.Exited()
			if err := p.Stop(); err != nil {
				t.Fatal(err)
			}
			sameSnapshot(t, "after the TUN is closed", n.snapshot(t), pristine)
		})
	}
}

// TestRoutesCarryTraffic: unmarked traffic goes into the TUN, from the
// tunnel address; the daemon's marked traffic takes the main table out of
// the real link, from the real address; IPv6 is blocked, and the LAN stays
// reachable (as with wg-quick), except for the tunnel's DNS resolver when
// the LAN overlaps it.
func TestRoutesCarryTraffic(t *testing.T) {
	client := newNS(t, "client")
	inet := netnstest.New(t, "inet")
	cIf, _ := netnstest.Link(t, client.Namespace, netip.MustParsePrefix("192.0.2.2/24"), inet, netip.MustParsePrefix("192.0.2.1/24"))
	client.MustRun(t, "ip", "addr", "add", "2001:db8:1::2/64", "dev", cIf, "nodad")
	inet.MustRun(t, "ip", "addr", "add", "2001:db8:1::1/64", "dev", "v0-client", "nodad")
	inet.MustRun(t, "ip", "addr", "add", "203.0.113.10/32", "dev", "lo")
	inet.MustRun(t, "ip", "addr", "add", "2001:db8:2::10/128", "dev", "lo")
	client.DefaultRoute(t, netip.MustParseAddr("192.0.2.1"))
	client.DefaultRoute(t, netip.MustParseAddr("2001:db8:1::1"))
	// A local network that covers the tunnel's resolver 10.1.0.1.
	client.Route(t, netip.MustParsePrefix("10.0.0.0/8"), netip.MustParseAddr("192.0.2.1"))

	p := client.helper(t, "session", "session", helperConfig{Net: ipv4Only, TUN: true, TUNMTU: 1420, ReadTUN: true, Steps: true, KillAt: -1})
	p.WaitFor(t, regexp.MustCompile(`STEP ready`), time.Minute)
	step(t, p)
	p.WaitFor(t, regexp.MustCompile(`STEP up\n`), time.Minute)

	// Route lookups.
	mustContain(t, "ip route get", client.MustRun(t, "ip", "route", "get", "203.0.113.10"), "dev nymvpn0 table 51820 src 10.1.0.7")
	mustContain(t, "ip route get mark", client.MustRun(t, "ip", "route", "get", "203.0.113.10", "mark", "51820"), "via 192.0.2.1 dev "+cIf+" src 192.0.2.2")
	mustContain(t, "ip route get LAN", client.MustRun(t, "ip", "route", "get", "192.0.2.1"), "dev "+cIf+" src 192.0.2.2")
	mustContain(t, "ip route get LAN", client.MustRun(t, "ip", "route", "get", "10.2.0.1"), "via 192.0.2.1 dev "+cIf)
	mustContain(t, "ip route get resolver", client.MustRun(t, "ip", "route", "get", "10.1.0.1"), "dev nymvpn0 table 51820 src 10.1.0.7")
	if out, err := client.Run("ip", "-6", "route", "get", "2001:db8:2::10"); err == nil {
		t.Errorf("IPv6 route lookup succeeded with IPv6 blocked:\n%s", out)
	}
	mustContain(t, "ip -6 route get mark", client.MustRun(t, "ip", "-6", "route", "get", "2001:db8:2::10", "mark", "51820"), "via 2001:db8:1::1 dev "+cIf)

	// Real packets.
	srv := inet.Start(t, "listen", "env", helperArgs(t, "listen", helperConfig{Listen: ":9999"})...)
	srv.WaitFor(t, regexp.MustCompile(`LISTENING`), time.Minute)
	out, err := client.run(t, "send", helperConfig{Send: "203.0.113.10:9999", Payload: "unmarked-hello"})
	if err != nil || !strings.Contains(out, "SENT") {
		t.Fatalf("send without mark: %v\n%s", err, out)
	}
	p.WaitFor(t, regexp.MustCompile(`TUN udp 10\.1\.0\.7 -> 203\.0\.113\.10:9999 unmarked-hello`), time.Minute)
	out, err = client.run(t, "send", helperConfig{Send: "10.1.0.1:53", Payload: "dns-query"})
	if err != nil || !strings.Contains(out, "SENT") {
		t.Fatalf("send to the resolver: %v\n%s", err, out)
	}
	p.WaitFor(t, regexp.MustCompile(`TUN udp 10\.1\.0\.7 -> 10\.1\.0\.1:53 dns-query`), time.Minute)
	out, err = client.run(t, "send", helperConfig{Send: "203.0.113.10:9999", Payload: "marked-hello", Mark: 51820})
	if err != nil || !strings.Contains(out, "SENT") {
		t.Fatalf("send with mark: %v\n%s", err, out)
	}
	srv.WaitFor(t, regexp.MustCompile(`GOT marked-hello from 192\.0\.2\.2:`), time.Minute)
	out, err = client.run(t, "send", helperConfig{Send: "[2001:db8:2::10]:9999", Payload: "v6-leak"})
	if err != nil || !regexp.MustCompile(`SEND ERROR .*(unreachable|no route to host)`).MatchString(out) {
		t.Errorf("IPv6 send without mark: %v\n%s, want an unreachable error at once", err, out)
	}
	out, err = client.run(t, "send", helperConfig{Send: "[2001:db8:2::10]:9999", Payload: "v6-marked", Mark: 51820})
	if err != nil || !strings.Contains(out, "SENT") {
		t.Fatalf("IPv6 send with mark: %v\n%s", err, out)
	}
	srv.WaitFor(t, regexp.MustCompile(`GOT v6-marked from \[2001:db8:1::2\]:`), time.Minute)
	if strings.Contains(srv.Stdout(), "unmarked-hello") || strings.Contains(srv.Stdout(), "v6-leak") {
		t.Errorf("unmarked traffic reached the internet host around the tunnel:\n%s", srv.Stdout())
	}
	step(t, p)
	p.WaitFor(t, regexp.MustCompile(`STEP down`), time.Minute)
	mustContain(t, "ip route get after Down", client.MustRun(t, "ip", "route", "get", "203.0.113.10"), "via 192.0.2.1 dev "+cIf)
}

// TestRecoverAfterKill: the daemon is SIGKILLed while up. Its TUN goes with
// it, but the rules, the IPv6 block, the sysctl and resolv.conf stay;
// Recover in a fresh process removes them, byte for byte.
func TestRecoverAfterKill(t *testing.T) {
	n := newNS(t, "kill")
	pristine := n.snapshot(t)
	p := n.helper(t, "session", "session", helperConfig{Net: ipv4Only, TUN: true, TUNMTU: 1420, Steps: true, KillAt: -1})
	p.WaitFor(t, regexp.MustCompile(`STEP ready`), time.Minute)
	step(t, p)
	p.WaitFor(t, regexp.MustCompile(`STEP up\n`), time.Minute)
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Exited()
	netnstest.Poll(t, time.Minute, "the TUN to disappear with its process", func() error {
		if out, err := n.Run("ip", "link", "show", "nymvpn0"); err == nil {
			return fmt.Errorf("still there: %s", out)
		}
		return nil
	})
	left := n.snapshot(t)
	mustContain(t, "ip rule after the kill", left["ip rule show"], "lookup 51820")
	mustContain(t, "ip -6 route after the kill", left["ip -6 route show table all"], "unreachable default dev lo table 51820")
	if left["resolv.conf"] == pristine["resolv.conf"] {
		t.Error("resolv.conf unchanged after going up")
	}
	if out, err := n.run(t, "recover", helperConfig{KillAt: -1}); err != nil || !strings.Contains(out, "STEP recovered") {
		t.Fatalf("recover: %v\n%s", err, out)
	}
	sameSnapshot(t, "after Recover", n.snapshot(t), pristine)
	if _, err := os.Stat(filepath.Join(n.stateDir, journalName)); !os.IsNotExist(err) {
		t.Errorf("journal after Recover: %v", err)
	}
}

// TestRecoverAfterKillAtEveryStep: the daemon is SIGKILLed right after
// journaling each change, and right after making it. The interface is a
// persistent TUN (ip tuntap), which outlives the process, so its addresses,
// MTU and state must be undone too. Each time Recover in a fresh process
// restores the namespace byte for byte.
func TestRecoverAfterKillAtEveryStep(t *testing.T) {
	n := newNS(t, "steps")
	n.MustRun(t, "ip", "tuntap", "add", "dev", "nymvpn0", "mode", "tun")
	before := n.snapshot(t)
	plan, err := Plan(dualNet, DNSResolvConf)
	if err != nil {
		t.Fatal(err)
	}
	for seq := range plan {
		for _, applied := range []bool{false, true} {
			out, err := n.run(t, "session", helperConfig{Net: dualNet, KillAt: seq, KillApplied: applied})
			if err == nil || strings.Contains(out, "STEP up") {
				t.Fatalf("kill at %d (applied %v): the helper was not killed: %v\n%s", seq, applied, err, out)
			}
			if _, err := os.Stat(filepath.Join(n.stateDir, journalName)); err != nil {
				t.Fatalf("kill at %d (applied %v): no journal: %v", seq, applied, err)
			}
			if out, err := n.run(t, "recover", helperConfig{KillAt: -1}); err != nil || !strings.Contains(out, "STEP recovered") {
				t.Fatalf("kill at %d (applied %v): recover: %v\n%s", seq, applied, err, out)
			}
			sameSnapshot(t, fmt.Sprintf("kill after %q (applied %v), then Recover", plan[seq], applied), n.snapshot(t), before)
			if t.Failed() {
				return
			}
		}
	}
}

// TestUpFailureInNamespace: a route already in the table makes Up fail
// halfway; what it did before is undone and the other route is untouched.
func TestUpFailureInNamespace(t *testing.T) {
	n := newNS(t, "fail")
	n.MustRun(t, "ip", "tuntap", "add", "dev", "nymvpn0", "mode", "tun")
	n.MustRun(t, "ip", "route", "add", "default", "dev", "lo", "table", "51820")
	before := n.snapshot(t)
	out, err := n.run(t, "session", helperConfig{Net: dualNet, KillAt: -1})
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	mustContain(t, "Up", out, "STEP up-error", "0.0.0.0/0 dev nymvpn0 table 51820", "file exists", "another VPN")
	sameSnapshot(t, "after the failed Up", n.snapshot(t), before)
	if _, err := os.Stat(filepath.Join(n.stateDir, journalName)); !os.IsNotExist(err) {
		t.Errorf("journal after a failed Up: %v", err)
	}
}

// TestCorruptJournalInNamespace: a journal damaged after its header still
// gets the rules and routes of the table removed by matching.
func TestCorruptJournalInNamespace(t *testing.T) {
	n := newNS(t, "corrupt")
	before := n.snapshot(t)
	p := n.helper(t, "session", "session", helperConfig{Net: ipv4Only, TUN: true, TUNMTU: 1420, Steps: true, KillAt: -1})
	p.WaitFor(t, regexp.MustCompile(`STEP ready`), time.Minute)
	step(t, p)
	p.WaitFor(t, regexp.MustCompile(`STEP up\n`), time.Minute)
	syscall.Kill(p.Pid(), syscall.SIGKILL)
	<-p.Exited()
	// Damage the second record: only the first (an address on the TUN,
	// gone with it) stays trusted.
	path := filepath.Join(n.stateDir, journalName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	lines[2] = bytes.Replace(lines[2], []byte("nymvpn0"), []byte("nymvpnX"), 1)
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := n.run(t, "recover", helperConfig{KillAt: -1})
	mustContain(t, "recover of a corrupt journal", out, "corrupt journal", "restore it by hand")
	if err == nil {
		t.Error("recover of a corrupt journal reported success")
	}
	after := n.snapshot(t)
	for _, k := range []string{"ip rule show", "ip -6 rule show", "ip route show table all", "ip -6 route show table all"} {
		if after[k] != before[k] {
			t.Errorf("`%s` after recovering a corrupt journal:\n%s\nwant:\n%s", k, after[k], before[k])
		}
	}
	if aside, _ := filepath.Glob(filepath.Join(n.stateDir, "journal.corrupt-*")); len(aside) != 1 {
		t.Errorf("corrupt journal not moved aside: %v", aside)
	}
}
