package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/internal/netnstest"
)

// Addresses of the test network. Every one lives inside a namespace the test
// creates; nothing is sent anywhere else.
//
//	client ─172.31.1.0/24─ entry ─172.31.2.0/24─ exit ─203.0.113.0/24─ inet
//	  .2                .1   .1               .2   .1                .10
//	nymvpn proxy        directory, entry gw     kernel exit gw        HTTP :80, DNS :53
var (
	clientAddr    = netip.MustParsePrefix("172.31.1.2/24")
	entryAddrC    = netip.MustParsePrefix("172.31.1.1/24") // entry, client side
	entryAddrX    = netip.MustParsePrefix("172.31.2.1/24") // entry, exit side
	exitAddrE     = netip.MustParsePrefix("172.31.2.2/24") // exit, entry side
	exitAddrOut   = netip.MustParsePrefix("203.0.113.1/24")
	inetAddr      = netip.MustParsePrefix("203.0.113.10/24")
	directoryPort = "8080"
)

const (
	readyTimeout = 2 * time.Minute
	curlTimeout  = "30" // seconds, per request
)

// TestFastModeKernelExit runs the whole fast-mode path across namespaces with
// a kernel-mode exit: `nymvpn proxy` in client, an entry gateway (and the
// directory) in entry, a `--exit-mode kernel` exit gateway in exit, and a web
// and DNS server in inet. A request through the proxy must reach the server
// from the exit's outer address (NAT), never the client's or the entry's,
// and must have crossed the exit's kernel TUN and nftables masquerade, not
// the userspace exit. When the exit stops, its TUN, nftables table and
// forwarding switches are gone.
func TestFastModeKernelExit(t *testing.T) {
	netnstest.RequireRoot(t)
	requireTUN(t)
	if testing.Short() {
		t.Skip("builds the binaries and a network of namespaces; skipped in -short")
	}
	var created []string
	t.Cleanup(func() { // runs last: nothing may be left behind
		left, err := netnstest.List()
		if err != nil {
			t.Errorf("list namespaces: %v", err)
		}
		for _, n := range created {
			if slices.Contains(left, n) {
				t.Errorf("namespace %s left behind", n)
			}
		}
	})
	bin := buildBinaries(t, "nym-node", "nymvpn")
	n := startNetwork(t, bin, "kernel")
	created = n.names()
	client, exit := n.client, n.exit
	forwarding, before := n.forwarding, n.forwardingBefore
	exitGW, tunName, urlFrom := n.exitGW, n.exitTUN, n.urlFrom

	proxy := client.Start(t, "nymvpn proxy", filepath.Join(bin, "nymvpn"), "proxy", "--mode", "fast",
		"--directory", urlFrom(entryAddrC), "--entry", "gw-entry", "--exit", "gw-exit", "--listen", "127.0.0.1:1080")
	socks := proxy.WaitFor(t, regexp.MustCompile(`SOCKS5 proxy on (\S+)`), readyTimeout)[1]

	// By address and by name (resolved at the exit, relayed to inet's DNS):
	// the server sees the exit's outer address.
	for _, url := range []string{"http://" + inetAddr.Addr().String() + "/", "http://web.test/"} {
		out := client.MustRun(t, "curl", "-sS", "--max-time", curlTimeout, "--socks5-hostname", socks, url)
		seen, err := netip.ParseAddrPort(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("%s: server answered %q: %v", url, out, err)
		}
		t.Logf("%s through the proxy: the server saw %v", url, seen)
		if seen.Addr() != exitAddrOut.Addr() {
			t.Errorf("%s: server saw %v, want the exit's outer address %v (not the client %v or the entry %v)",
				url, seen.Addr(), exitAddrOut.Addr(), clientAddr.Addr(), entryAddrX.Addr())
		}
	}

	// A bulk download: the kernel hands the TUN large (GSO) segments that
	// the device splits; every byte must arrive.
	const bulk = 16 << 20
	got := client.MustRun(t, "curl", "-sS", "--max-time", "120", "--socks5-hostname", socks, "-o", "/dev/null",
		"-w", "%{size_download}", fmt.Sprintf("http://%s/bytes/%d", inetAddr.Addr(), bulk))
	if strings.TrimSpace(got) != strconv.Itoa(bulk) {
		t.Errorf("bulk download through the kernel exit got %s bytes, want %d", got, bulk)
	}

	// The flow crossed the kernel: the TUN carried packets both ways and the
	// nftables forward and masquerade rules counted them.
	rx, tx := linkPackets(t, exit, tunName)
	if rx == 0 || tx == 0 {
		t.Errorf("kernel TUN %s carried rx=%d tx=%d packets; want both > 0", tunName, rx, tx)
	}
	table := "nymvpn_exit_" + tunName
	counts := nftCounters(t, exit, table)
	t.Logf("kernel TUN %s: rx=%d tx=%d packets; nftables %s packet counters: %v", tunName, rx, tx, table, counts)
	if counts["postrouting"] == 0 {
		t.Errorf("masquerade rules of %s counted nothing: %v", table, counts)
	}
	if counts["forward"] == 0 {
		t.Errorf("forward rules of %s counted nothing: %v", table, counts)
	}
	if got := strings.TrimSpace(exit.MustRun(t, "cat", "/proc/sys/net/ipv4/ip_forward")); got != "1" {
		t.Errorf("ip_forward in the exit is %q while the kernel exit runs; want 1", got)
	}

	// Stopping the exit reports its counters and undoes its host changes.
	if err := exitGW.Stop(); err != nil {
		t.Errorf("exit gateway: %v", err)
	}
	stats := exitGW.WaitFor(t, regexp.MustCompile(`msg="gateway stopping".* exit_flows=(\d+) .*kernel_out=(\d+) kernel_in=(\d+)`), readyTimeout)
	t.Logf("exit gateway at stop: exit_flows=%s kernel_out=%s kernel_in=%s", stats[1], stats[2], stats[3])
	if stats[1] != "0" {
		t.Errorf("userspace exit flows = %s; with --exit-mode kernel the exit traffic must not take the userspace path", stats[1])
	}
	if n, _ := strconv.Atoi(stats[2]); n == 0 {
		t.Errorf("kernel_out = 0: no packet was handed to the kernel TUN")
	}
	if n, _ := strconv.Atoi(stats[3]); n == 0 {
		t.Errorf("kernel_in = 0: no packet came back from the kernel TUN")
	}
	if out, err := exit.Run("ip", "link", "show", tunName); err == nil {
		t.Errorf("TUN %s still exists after the gateway stopped:\n%s", tunName, out)
	}
	if tables := nftTables(t, exit); slices.Contains(tables, table) {
		t.Errorf("nftables table %s still exists after the gateway stopped", table)
	}
	for _, f := range forwarding {
		if got := strings.TrimSpace(exit.MustRun(t, "cat", f)); got != before[f] {
			t.Errorf("%s is %q after the gateway stopped; want it restored to %q", f, got, before[f])
		}
	}
}

// testNet is the namespace network of the end-to-end tests, with the
// directory and both gateways running.
type testNet struct {
	// bin holds the binaries.
	bin                       string
	client, entry, exit, inet *netnstest.Namespace
	exitGW, entryGW, dir      *netnstest.Process
	// exitTUN is the kernel exit's TUN (kernel exit mode only).
	exitTUN string
	// forwarding are the exit's forwarding switches, forwardingBefore their
	// values before the exit started.
	forwarding       []string
	forwardingBefore map[string]string
	query            string // the directory URL's query: its pinned key
}

// urlFrom is the directory's URL as reached at address a.
func (n *testNet) urlFrom(a netip.Prefix) string {
	return "http://" + a.Addr().String() + ":" + directoryPort + "/?" + n.query
}

func (n *testNet) names() []string {
	return []string{n.client.Name, n.entry.Name, n.exit.Name, n.inet.Name}
}

// netOption adds to the network startNetwork builds (e2e/mixnet_netns_test.go
// adds mix nodes).
type netOption struct {
	// linked runs once the core namespaces are linked, before any node.
	linked func(t testing.TB, n *testNet)
	// entryArgs and exitArgs are extra flags of the gateways.
	entryArgs, exitArgs []string
	// ready runs once both gateways are listed.
	ready func(t testing.TB, n *testNet)
}

// startNetwork builds the four namespaces, starts the internet host's web
// and DNS servers, the directory, the exit gateway (exitMode "kernel" or
// "userspace") and the entry gateway, and waits until both gateways are
// listed.
func startNetwork(t testing.TB, bin, exitMode string, opts ...netOption) *testNet {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	n := &testNet{bin: bin, client: netnstest.New(t, "client"), entry: netnstest.New(t, "entry"),
		exit: netnstest.New(t, "exit"), inet: netnstest.New(t, "inet")}
	netnstest.Link(t, n.client, clientAddr, n.entry, entryAddrC)
	netnstest.Link(t, n.entry, entryAddrX, n.exit, exitAddrE)
	netnstest.Link(t, n.exit, exitAddrOut, n.inet, inetAddr)
	// The exit's "internet" is inet; the client has no route there at all,
	// so only the tunnel can get it to the web server.
	n.exit.DefaultRoute(t, inetAddr.Addr())
	var entryArgs, exitArgs []string
	for _, o := range opts {
		if o.linked != nil {
			o.linked(t, n)
		}
		entryArgs = append(entryArgs, o.entryArgs...)
		exitArgs = append(exitArgs, o.exitArgs...)
	}

	web := n.inet.Start(t, "inet", "env", "E2E_HELPER=inet",
		"E2E_HTTP="+inetAddr.Addr().String()+":80", "E2E_DNS="+inetAddr.Addr().String()+":53",
		"E2E_ZONE=web.test="+inetAddr.Addr().String(), exe)
	web.WaitFor(t, regexp.MustCompile(`inet ready`), readyTimeout)

	n.dir = n.entry.Start(t, "directory", filepath.Join(bin, "nym-node"), "--role", "directory",
		"--data-dir", t.TempDir(), "--listen", "0.0.0.0:"+directoryPort, "--open")
	dirURL := n.dir.WaitFor(t, regexp.MustCompile(`directory: (\S+)`), readyTimeout)[1]
	var ok bool
	if _, n.query, ok = strings.Cut(dirURL, "?"); !ok {
		t.Fatalf("directory URL %q has no key", dirURL)
	}

	n.forwarding = []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"}
	n.forwardingBefore = map[string]string{}
	for _, f := range n.forwarding {
		n.forwardingBefore[f] = strings.TrimSpace(n.exit.MustRun(t, "cat", f))
	}

	// The exit first, so the entry's first topology fetch lists it.
	n.exitGW = n.exit.Start(t, "exit gateway", filepath.Join(bin, "nym-node"), append([]string{"--role", "gateway",
		"--id", "gw-exit", "--country", "CH", "--gateway-roles", "exit", "--free-pass",
		"--data-dir", t.TempDir(), "--directory", n.urlFrom(entryAddrX),
		"--wireguard", exitAddrE.Addr().String() + ":51822", "--registration", exitAddrE.Addr().String() + ":51821",
		"--dns-upstream", inetAddr.Addr().String() + ":53", "--exit-mode", exitMode}, exitArgs...)...)
	n.exitGW.WaitFor(t, regexp.MustCompile(`msg="gateway up".*exit_mode=`+exitMode), readyTimeout)
	if exitMode == "kernel" {
		n.exitTUN = n.exitGW.WaitFor(t, regexp.MustCompile(`msg="kernel exit up" .*tun=(\S+)`), readyTimeout)[1]
	}
	waitListed(t, n.client, "gw-exit", n.exitGW)

	n.entryGW = n.entry.Start(t, "entry gateway", filepath.Join(bin, "nym-node"), append([]string{"--role", "gateway",
		"--id", "gw-entry", "--country", "DE", "--gateway-roles", "entry", "--free-pass",
		"--data-dir", t.TempDir(), "--directory", n.urlFrom(entryAddrC),
		"--wireguard", entryAddrC.Addr().String() + ":51822", "--registration", entryAddrC.Addr().String() + ":51821"}, entryArgs...)...)
	n.entryGW.WaitFor(t, regexp.MustCompile(`msg="gateway up"`), readyTimeout)
	waitListed(t, n.client, "gw-entry", n.entryGW, n.exitGW)
	for _, o := range opts {
		if o.ready != nil {
			o.ready(t, n)
		}
	}
	return n
}

// waitListed waits until the directory, fetched from ns, lists the node id;
// it fails at once if one of the running processes exits.
func waitListed(t testing.TB, ns *netnstest.Namespace, id string, running ...*netnstest.Process) {
	t.Helper()
	url := "http://" + entryAddrC.Addr().String() + ":" + directoryPort + "/v1/topology"
	netnstest.Poll(t, readyTimeout, id+" in the directory", func() error {
		for _, p := range running {
			select {
			case <-p.Exited():
				t.Fatalf("%s exited while waiting for %s in the directory", p.Name, id)
			default:
			}
		}
		out, err := ns.Run("curl", "-sS", "--max-time", "5", url)
		if err != nil {
			return err
		}
		if !strings.Contains(out, `"`+id+`"`) {
			return fmt.Errorf("not listed yet")
		}
		return nil
	})
}

// linkPackets returns an interface's received and transmitted packets.
func linkPackets(t *testing.T, ns *netnstest.Namespace, ifname string) (rx, tx uint64) {
	t.Helper()
	out := ns.MustRun(t, "cat", "/sys/class/net/"+ifname+"/statistics/rx_packets", "/sys/class/net/"+ifname+"/statistics/tx_packets")
	f := strings.Fields(out)
	if len(f) != 2 {
		t.Fatalf("statistics of %s: %q", ifname, out)
	}
	rx, _ = strconv.ParseUint(f[0], 10, 64)
	tx, _ = strconv.ParseUint(f[1], 10, 64)
	return rx, tx
}
