package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/internal/netnstest"
)

// capture is a packet capture on the client's outer link.
type capture struct {
	ns   *netnstest.Namespace
	proc *netnstest.Process
	file string
	// peer sends the end marker; to is the client's address now.
	peer *netnstest.Namespace
	to   string
}

// markerPort is where the end-of-capture marker goes: a datagram from the
// entry host to the client, inbound, so the kill switch does not stop it.
const markerPort = "7"

func startCapture(t *testing.T, d *daemonNet, ifname, name string) *capture {
	t.Helper()
	file := filepath.Join(t.TempDir(), name+".pcap")
	p := d.client.Start(t, "tcpdump "+name, "tcpdump", "-i", ifname, "-nn", "-U", "--immediate-mode", "-w", file)
	p.WaitFor(t, regexp.MustCompile(`listening on`), readyTimeout)
	return &capture{ns: d.client, proc: p, file: file, peer: d.entry, to: clientAddr.Addr().String()}
}

// stop sends a marker through the link and waits until the capture holds
// it, so every packet before it is in the file, then stops tcpdump.
func (c *capture) stop(t *testing.T) {
	t.Helper()
	netnstest.Poll(t, readyTimeout, "the capture's end marker", func() error {
		c.peer.Run("bash", "-c", "echo end > /dev/udp/"+c.to+"/"+markerPort)
		out, _ := c.ns.Run("tcpdump", "-r", c.file, "-nn", "udp dst port "+markerPort)
		if !strings.Contains(out, "."+markerPort+":") {
			return fmt.Errorf("not captured yet")
		}
		return nil
	})
	if err := c.proc.Stop(); err != nil && !strings.Contains(err.Error(), "signal") {
		t.Logf("tcpdump: %v", err)
	}
}

// leaks stops the capture and returns every packet that is neither to nor
// from one of the allowed endpoints of the entry gateway, nor link
// housekeeping (ARP, IPv6 neighbour and router discovery, multicast
// listener reports).
func (c *capture) leaks(t *testing.T, allowed ...string) []string {
	t.Helper()
	c.stop(t)
	// Neighbour discovery and multicast listener messages (after a
	// hop-by-hop header for MLD) never leave the link.
	filter := "not arp and not (icmp6 and ip6[40] >= 133 and ip6[40] <= 136)" +
		" and not (ip6[6] == 0 and ip6[40] == 58 and (ip6[48] == 143 or (ip6[48] >= 130 and ip6[48] <= 132)))" +
		" and not (src host " + entryAddrC.Addr().String() + " and udp dst port " + markerPort + ")" +
		// The entry host answering an allowed packet to a gateway that is
		// down (ICMP port unreachable) comes in; it is not a leak.
		" and not (src host " + entryAddrC.Addr().String() + " and icmp and icmp[0] == 3)"
	for _, a := range allowed {
		proto, hostport, _ := strings.Cut(a, "/")
		i := strings.LastIndex(hostport, ":")
		filter += fmt.Sprintf(" and not (host %s and %s port %s)", hostport[:i], proto, hostport[i+1:])
	}
	out, err := c.ns.Run("tcpdump", "-r", c.file, "-nn", filter)
	if err != nil {
		t.Fatalf("read capture: %v\n%s", err, out)
	}
	var leaks []string
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) != "" && !strings.HasPrefix(l, "reading from") {
			leaks = append(leaks, l)
		}
	}
	return leaks
}

// probe tries to reach the internet host and the LAN (the entry host's
// other ports) by TCP, UDP, ICMP and DNS, as a leaking application would.
// Every probe is expected to fail; the capture decides whether a packet
// got out.
func probe(t *testing.T, client *netnstest.Namespace) {
	t.Helper()
	lan := entryAddrC.Addr().String()
	inet := inetAddr.Addr().String()
	cmds := [][]string{
		{"curl", "-sS", "--max-time", "2", "http://" + inet + "/"},
		{"curl", "-sS", "--max-time", "2", "http://" + lan + ":80/"},
		{"bash", "-c", "echo leak > /dev/udp/" + inet + "/9"},
		{"bash", "-c", "echo leak > /dev/udp/" + lan + "/9"},
		{"ping", "-c", "1", "-W", "1", inet},
		{"ping", "-c", "1", "-W", "1", lan},
		{"dig", "+time=1", "+tries=1", "@" + inet, "web.test"},
		{"dig", "+time=1", "+tries=1", "@" + lan, "web.test"},
		{"dig", "+time=1", "+tries=1", "web.test"}, // the system resolver
	}
	var wg sync.WaitGroup
	for _, c := range cmds {
		wg.Go(func() { client.Run(c[0], c[1:]...) })
	}
	wg.Wait()
}

func waitState(t *testing.T, d *daemonNet, kind api.StateKind, check func(api.State) bool) api.State {
	t.Helper()
	var st api.Status
	netnstest.Poll(t, readyTimeout, "state "+string(kind), func() error {
		st = status(t, d.mustNymvpn(t))
		if st.State.Kind != kind || (check != nil && !check(st.State)) {
			return fmt.Errorf("state %s (%s: %s)", st.State.Kind, st.State.Stage, st.State.Reason)
		}
		return nil
	})
	return st.State
}

// newLeakNet is the daemon network with the client behind a home router
// (a default route via the entry host), so a leak would get out; it returns
// the client's outer link.
func newLeakNet(t *testing.T) (*daemonNet, string) {
	t.Helper()
	netnstest.RequireRoot(t)
	requireTUN(t)
	if testing.Short() {
		t.Skip("builds the binaries and a network of namespaces; skipped in -short")
	}
	d := newDaemonNet(t)
	d.client.DefaultRoute(t, entryAddrC.Addr())
	link := strings.Fields(d.client.MustRun(t, "ip", "-o", "-4", "addr", "show", "to", clientAddr.Addr().String()))[1]
	return d, link
}

// TestKillSwitchNoLeaks holds the daemon in each state the kill switch must
// cover and probes by TCP, UDP, ICMP and DNS to the internet host and the
// LAN, with a capture on the client's only outer link: no packet may show
// other than to the entry gateway's endpoints. While connected, every
// packet on the link goes to the entry gateway. The client has a default
// route via the entry host, as behind a home router, so a leak would get
// out.
func TestKillSwitchNoLeaks(t *testing.T) {
	d, link := newLeakNet(t)
	client, nymvpn := d.client, d.mustNymvpn(t)
	dirEP := "tcp/" + entryAddrC.Addr().String() + ":" + directoryPort
	regEP := "tcp/" + entryAddrC.Addr().String() + ":51821"
	wgEP := "udp/" + entryAddrC.Addr().String() + ":51822"

	// Without the VPN the probes do get out: the test can see a leak.
	c := startCapture(t, d, link, "baseline")
	probe(t, client)
	if l := c.leaks(t, dirEP, regEP, wgEP); len(l) == 0 {
		t.Fatal("the probes produced no packet without the VPN: the capture cannot see leaks")
	}

	daemon := d.startDaemon(t, "nymvpnd")
	nymvpn("connect", "--entry", "gw-entry", "--exit", "gw-exit", "--wait", "--timeout", "2m")

	t.Run("connected", func(t *testing.T) {
		c := startCapture(t, d, link, "connected")
		checkThroughTunnel(t, client)
		probe(t, client)
		if l := c.leaks(t, wgEP); len(l) > 0 {
			t.Errorf("while connected, packets other than to the entry gateway's WireGuard endpoint:\n%s", strings.Join(l, "\n"))
		}
	})

	t.Run("reconnect", func(t *testing.T) {
		c := startCapture(t, d, link, "reconnect")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					probe(t, client)
				}
			}
		})
		// A changed setting rebuilds the tunnel: Disconnecting, Connecting, Connected.
		nymvpn("settings", "set", "dns", "default")
		nymvpn("settings", "set", "ipv6", "off")
		waitState(t, d, api.Connected, nil)
		close(stop)
		wg.Wait()
		if l := c.leaks(t, dirEP, regEP, wgEP); len(l) > 0 {
			t.Errorf("leaks during a reconnect:\n%s", strings.Join(l, "\n"))
		}
	})

	parent := t
	t.Run("kill -9", func(t *testing.T) {
		c := startCapture(t, d, link, "killed")
		if err := syscall.Kill(daemon.Pid(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-daemon.Exited()
		probe(t, client)
		if l := c.leaks(t); len(l) > 0 {
			t.Errorf("leaks after kill -9 of a connected daemon:\n%s", strings.Join(l, "\n"))
		}
		c = startCapture(t, d, link, "restart")
		daemon = d.startDaemon(parent, "nymvpnd (restarted)") // lives on after this subtest
		probe(t, client)
		waitState(t, d, api.Connected, nil)
		if l := c.leaks(t, dirEP, regEP, wgEP); len(l) > 0 {
			t.Errorf("leaks while the restarted daemon reconnects:\n%s", strings.Join(l, "\n"))
		}
	})

	t.Run("connecting to an unreachable gateway", func(t *testing.T) {
		if err := d.entryGW.Stop(); err != nil {
			t.Logf("entry gateway: %v", err)
		}
		c := startCapture(t, d, link, "connecting")
		nymvpn("disconnect", "--wait")
		nymvpn("connect") // no --wait: it cannot succeed
		waitState(t, d, api.Connecting, func(s api.State) bool { return s.Attempt >= 2 })
		probe(t, client)
		if l := c.leaks(t, dirEP, regEP, wgEP); len(l) > 0 {
			t.Errorf("leaks while connecting to an unreachable gateway:\n%s", strings.Join(l, "\n"))
		}
	})

	t.Run("error", func(t *testing.T) {
		// A directory named by host name cannot be reached with DNS
		// blocked: a permanent error.
		u := d.urlFrom(entryAddrC)
		nymvpn("settings", "set", "directory", strings.Replace(u, entryAddrC.Addr().String(), "directory.invalid", 1))
		c := startCapture(t, d, link, "error")
		waitState(t, d, api.Error, nil)
		probe(t, client)
		if l := c.leaks(t, dirEP, regEP, wgEP); len(l) > 0 {
			t.Errorf("leaks in the error state:\n%s", strings.Join(l, "\n"))
		}
		nymvpn("settings", "set", "directory", u)
	})

	t.Run("offline", func(t *testing.T) {
		c := startCapture(t, d, link, "offline")
		client.MustRun(t, "ip", "addr", "del", clientAddr.String(), "dev", link)
		waitState(t, d, api.Offline, nil)
		probe(t, client)
		client.MustRun(t, "ip", "addr", "add", clientAddr.String(), "dev", link)
		client.MustRun(t, "ip", "route", "replace", "default", "via", entryAddrC.Addr().String())
		if l := c.leaks(t, dirEP, regEP, wgEP); len(l) > 0 {
			t.Errorf("leaks while offline:\n%s", strings.Join(l, "\n"))
		}
	})

	t.Run("lockdown while disconnected", func(t *testing.T) {
		nymvpn("disconnect", "--wait")
		nymvpn("settings", "set", "lockdown", "on")
		c := startCapture(t, d, link, "lockdown")
		probe(t, client)
		if l := c.leaks(t); len(l) > 0 {
			t.Errorf("leaks with lockdown while disconnected:\n%s", strings.Join(l, "\n"))
		}
		nymvpn("settings", "set", "lockdown", "off")
		// Disconnected without lockdown is open again: the probes get out.
		c = startCapture(t, d, link, "open")
		probe(t, client)
		if l := c.leaks(t); len(l) == 0 {
			t.Errorf("disconnected without lockdown still blocks")
		}
	})
}

// TestNetworkChangeReconnects moves the client to a new outer address while
// connected: the tunnel comes back by itself, and nothing leaks meanwhile.
func TestNetworkChangeReconnects(t *testing.T) {
	d, link := newLeakNet(t)
	client, nymvpn := d.client, d.mustNymvpn(t)
	d.startDaemon(t, "nymvpnd")
	nymvpn("connect", "--entry", "gw-entry", "--exit", "gw-exit", "--wait", "--timeout", "2m")
	first := status(t, nymvpn).State.Since

	c := startCapture(t, d, link, "move")
	c.to = "172.31.1.3"
	// Another network: the old address goes (taking the default route with
	// it), a new one comes, as when a laptop joins another Wi-Fi.
	moved := "172.31.1.3/24"
	client.MustRun(t, "ip", "addr", "del", clientAddr.String(), "dev", link)
	client.MustRun(t, "ip", "addr", "add", moved, "dev", link)
	client.MustRun(t, "ip", "route", "replace", "default", "via", entryAddrC.Addr().String())
	waitState(t, d, api.Connected, func(s api.State) bool { return s.Since != nil && first != nil && s.Since.After(*first) })
	checkThroughTunnel(t, client)
	l := c.leaks(t, "tcp/"+entryAddrC.Addr().String()+":"+directoryPort, "tcp/"+entryAddrC.Addr().String()+":51821",
		"udp/"+entryAddrC.Addr().String()+":51822")
	if len(l) > 0 {
		t.Errorf("leaks while moving to a new address:\n%s", strings.Join(l, "\n"))
	}
	// The gateway saw the client come from its new address.
	if out := c.ns.MustRun(t, "tcpdump", "-r", c.file, "-nn", "src host 172.31.1.3 and udp port 51822"); !strings.Contains(out, "172.31.1.3") {
		all, _ := c.ns.Run("tcpdump", "-r", c.file, "-nn")
		t.Errorf("no WireGuard packet from the new address:\n%s\nthe capture:\n%s", out, all)
	}
}

// TestEarlyBlock runs what nymvpnd-early.service runs at boot: with the
// target "connected" (or lockdown on) it blocks before any daemon runs;
// otherwise it leaves the network alone.
func TestEarlyBlock(t *testing.T) {
	netnstest.RequireRoot(t)
	if testing.Short() {
		t.Skip("builds nymvpnd; skipped in -short")
	}
	bin := buildBinaries(t, "nymvpnd")
	host, peer := netnstest.New(t, "boot"), netnstest.New(t, "peer")
	netnstest.Link(t, host, clientAddr, peer, entryAddrC)
	state := t.TempDir()
	early := func() string {
		return host.MustRun(t, filepath.Join(bin, "nymvpnd"), "early-block", "--state-dir", state)
	}
	reachable := func() bool {
		_, err := host.Run("ping", "-c", "1", "-W", "1", entryAddrC.Addr().String())
		return err == nil
	}

	if out := early(); !strings.Contains(out, "nothing to block") || !reachable() {
		t.Fatalf("a fresh install blocked at boot: %s", out)
	}
	if err := os.WriteFile(filepath.Join(state, "target.json"), []byte(`{"connect":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := early(); !strings.Contains(out, "blocking all traffic") {
		t.Fatalf("target connected, early-block said: %s", out)
	}
	if reachable() {
		t.Fatal("the network is reachable at boot although the user wanted to be connected")
	}
	host.MustRun(t, "nft", "list", "table", "inet", "nymvpn")
}
