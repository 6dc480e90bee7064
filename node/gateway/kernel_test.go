package gateway_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/internal/netnstest"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/gateway"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
	"github.com/nymvpn/nymvpn/tun/netstack"
)

// Environment of the re-executed test binary.
const (
	envHelper = "GATEWAY_TEST_HELPER" // "echo": TCP server answering with the peer's address
	envAddr   = "GATEWAY_TEST_ADDR"
	envChild  = "GATEWAY_TEST_KERNEL_CHILD" // set: run TestKernelExit's body in this namespace
)

// Addresses of TestKernelExit's two namespaces.
var (
	kxGateway = netip.MustParsePrefix("172.30.5.1/24") // the gateway's outer address
	kxServer  = netip.MustParsePrefix("172.30.5.2/24")
	kxDenied  = netip.MustParsePrefix("172.30.5.3/24") // in ExitPolicy.Deny
)

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) == "echo" {
		if err := serveEcho(os.Getenv(envAddr)); err != nil {
			fmt.Fprintln(os.Stderr, "echo helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func serveEcho(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("echo listening on", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		fmt.Fprint(c, c.RemoteAddr().String())
		c.Close()
	}
}

// TestKernelExitNeedsExitRoleAndNoLoopback: configurations the kernel exit
// refuses before touching the host.
func TestKernelExitNeedsExitRoleAndNoLoopback(t *testing.T) {
	base := func() gateway.Config {
		nk, _ := transport.GenerateKey()
		wk, _ := transport.GenerateKey()
		return gateway.Config{ID: "k", NoiseKey: nk, WireGuardKey: wk, FreePass: true,
			WireGuardListen: netip.MustParseAddrPort("127.0.0.1:0"), RegistrationListen: netip.MustParseAddrPort("127.0.0.1:0"),
			Topology: func() *directory.Topology { return nil }, Logger: slog.New(slog.DiscardHandler)}
	}
	cfg := base()
	cfg.Roles = []directory.Role{directory.RoleEntry}
	cfg.Exit.Kernel = true
	if _, err := gateway.New(cfg); err == nil || !strings.Contains(err.Error(), "exit role") {
		t.Errorf("kernel exit on an entry-only gateway: %v, want an error naming the exit role", err)
	}
	cfg = base()
	cfg.Roles = []directory.Role{directory.RoleExit}
	cfg.Exit.Kernel, cfg.Exit.AllowLoopback = true, true
	if _, err := gateway.New(cfg); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("kernel exit with AllowLoopback: %v, want an error about loopback", err)
	}
	if runtime.GOOS != "linux" {
		cfg.Exit.AllowLoopback = false
		if _, err := gateway.New(cfg); err == nil || !strings.Contains(err.Error(), "needs Linux") {
			t.Errorf("kernel exit on %s: %v, want \"needs Linux\"", runtime.GOOS, err)
		}
	}
}

// TestKernelExit runs a kernel-exit gateway in a namespace of its own (the
// test binary re-executed there), linked to a second namespace with a
// server. An exit client's connection reaches the server from the gateway's
// outer address through the TUN and masquerade; the pools, Deny prefixes and
// the gateway host itself are refused; Close, and a setup that fails
// halfway, leave nothing behind.
func TestKernelExit(t *testing.T) {
	if os.Getenv(envChild) != "" {
		kernelExitInNamespace(t)
		return
	}
	netnstest.RequireRoot(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("needs /dev/net/tun; CI has it")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	gw, out := netnstest.New(t, "kxgw"), netnstest.New(t, "kxout")
	netnstest.Link(t, gw, kxGateway, out, kxServer)
	out.AddAddr(t, "v0-kxgw", kxDenied)
	srv := out.Start(t, "echo server", "env", envHelper+"=echo", envAddr+"=0.0.0.0:8000", exe)
	srv.WaitFor(t, regexp.MustCompile(`echo listening`), time.Minute)
	args := []string{"-test.run=^TestKernelExit$", "-test.count=1"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	res, err := gw.Run("env", append([]string{envChild + "=1", exe}, args...)...)
	t.Logf("in %s:\n%s", gw.Name, res)
	if err != nil {
		t.Fatalf("kernel exit test in the namespace failed: %v", err)
	}
}

func kernelExitInNamespace(t *testing.T) {
	forwarding := []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"}
	before := map[string]string{}
	for _, f := range forwarding {
		before[f] = readSysctl(t, f)
	}
	nothingLeft := func(when string) {
		t.Helper()
		if links := run(t, "ip", "-o", "link", "show"); strings.Contains(links, "nymx") {
			t.Errorf("%s: a nymx TUN is left:\n%s", when, links)
		}
		for _, tb := range nftTables(t) {
			if strings.HasPrefix(tb, "nymvpn_exit_") {
				t.Errorf("%s: nftables table %s is left", when, tb)
			}
		}
		for _, f := range forwarding {
			if got := readSysctl(t, f); got != before[f] {
				t.Errorf("%s: %s = %s, want it back at %s", when, f, got, before[f])
			}
		}
	}
	cfg := func() gateway.Config {
		nk, _ := transport.GenerateKey()
		wk, _ := transport.GenerateKey()
		return gateway.Config{ID: "kx", Roles: []directory.Role{directory.RoleExit}, NoiseKey: nk, WireGuardKey: wk,
			WireGuardListen: netip.MustParseAddrPort("127.0.0.1:0"), RegistrationListen: netip.MustParseAddrPort("127.0.0.1:0"),
			FreePass: true, Exit: gateway.ExitPolicy{Kernel: true, Deny: []netip.Prefix{netip.PrefixFrom(kxDenied.Addr(), 32)}},
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	}

	// Halfway: with IPv6 off for new interfaces, the TUN gets its IPv4
	// address but not its IPv6 one; New fails and undoes the TUN.
	writeSysctl(t, "/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")
	_, err := gateway.New(cfg())
	writeSysctl(t, "/proc/sys/net/ipv6/conf/default/disable_ipv6", "0")
	if err == nil || !strings.Contains(err.Error(), "fc01::1/112") {
		t.Errorf("New with IPv6 disabled: %v, want the IPv6 address failure", err)
	}
	nothingLeft("after a failed setup")

	g, err := gateway.New(cfg())
	if err != nil {
		t.Fatalf("kernel exit gateway: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			g.Close()
		}
	}()
	links := run(t, "ip", "-o", "addr", "show")
	for _, a := range []string{"10.1.0.1/16", "fc01::1/112"} {
		if !regexp.MustCompile(`nymx\d+ +inet6? ` + regexp.QuoteMeta(a)).MatchString(links) {
			t.Errorf("the TUN lacks %s:\n%s", a, links)
		}
	}
	for _, f := range forwarding {
		if got := readSysctl(t, f); got != "1" {
			t.Errorf("%s = %s while the kernel exit runs, want 1", f, got)
		}
	}
	node := g.Node()
	st := tunnel(t, &node, registration.RoleExit)

	// Through the TUN and masquerade: the server sees the gateway's outer
	// address, not the client's tunnel address.
	server := netip.AddrPortFrom(kxServer.Addr(), 8000)
	seen, err := fetchEcho(st, server, 30*time.Second)
	if err != nil {
		t.Fatalf("exit client to %v: %v", server, err)
	}
	if seen.Addr() != kxGateway.Addr() {
		t.Errorf("server saw %v, want the gateway's outer address %v (masquerade)", seen, kxGateway.Addr())
	}
	s := g.Stats()
	if s.ExitFlows != 0 || s.KernelOut == 0 || s.KernelIn == 0 {
		t.Errorf("stats %+v: want no userspace exit flow and packets both ways through the TUN", s)
	}

	// Refused by the nftables table: a Deny prefix, another client's pool
	// address, and the gateway host's own address (not its services).
	host, err := net.Listen("tcp", netip.AddrPortFrom(kxGateway.Addr(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	for _, dst := range []string{
		netip.AddrPortFrom(kxDenied.Addr(), 8000).String(),
		"10.1.0.200:80",
		host.Addr().String(),
	} {
		if _, err := fetchEcho(st, netip.MustParseAddrPort(dst), 2*time.Second); err == nil {
			t.Errorf("exit client reached %s", dst)
		}
	}
	if s2 := g.Stats(); s2.ExitFlows != 0 {
		t.Errorf("refused flows took the userspace exit: %+v", s2)
	}

	closed = true
	if err := g.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	nothingLeft("after Close")
}

// fetchEcho connects through st and returns what the echo server says it
// saw.
func fetchEcho(st *netstack.Stack, dst netip.AddrPort, timeout time.Duration) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := st.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.ParseAddrPort(string(b))
}

func readSysctl(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func writeSysctl(t *testing.T, path, v string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}
