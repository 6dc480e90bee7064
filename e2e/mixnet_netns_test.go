package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/internal/netnstest"
)

// The mixnet's addresses: a "mix" namespace with three mix nodes (one per
// layer), linked to the entry and to the exit.
//
//	entry ─172.31.3.0/24─ mix ─172.31.4.0/24─ exit
//	  .1                   .2 .2               .1
//	mix listener            mix-1..3            mix listener, IP packet router
var (
	entryAddrM = netip.MustParsePrefix("172.31.3.1/24") // entry, mix side
	mixAddrE   = netip.MustParsePrefix("172.31.3.2/24") // mix nodes, entry side: their address
	mixAddrX   = netip.MustParsePrefix("172.31.4.2/24") // mix, exit side
	exitAddrM  = netip.MustParsePrefix("172.31.4.1/24") // exit, mix side
)

// The entry's mixnet client port.
const mixClientPort = "1791"

// withMixnet adds the mix namespace and its three mix nodes, and makes both
// gateways Sphinx nodes: the entry takes mixnet clients on the client's
// link, the exit runs the IP packet router (in the exit's mode: kernel).
func withMixnet() netOption {
	var mix *netnstest.Namespace
	return netOption{
		linked: func(t testing.TB, n *testNet) {
			mix = netnstest.New(t, "mix")
			netnstest.Link(t, n.entry, entryAddrM, mix, mixAddrE)
			netnstest.Link(t, mix, mixAddrX, n.exit, exitAddrM)
			// The exit reaches the mixes (acks, replies) through the mix link.
			n.exit.Route(t, netip.MustParsePrefix("172.31.3.0/24"), mixAddrX.Addr())
		},
		entryArgs: []string{"--mix", entryAddrM.Addr().String() + ":1790", "--mix-client", entryAddrC.Addr().String() + ":" + mixClientPort},
		exitArgs:  []string{"--mix", exitAddrM.Addr().String() + ":1790"},
		ready: func(t testing.TB, n *testNet) {
			for i := 1; i <= 3; i++ {
				p := mix.Start(t, fmt.Sprintf("mix node %d", i), filepath.Join(n.bin, "nym-node"), "--role", "mixnode",
					"--id", fmt.Sprintf("mix-%d", i), "--country", "NL", "--data-dir", t.TempDir(),
					"--directory", n.urlFrom(entryAddrM), "--mix", fmt.Sprintf("%s:%d", mixAddrE.Addr(), 1790+i))
				p.WaitFor(t, regexp.MustCompile(`mixnode: sphinx`), readyTimeout)
			}
			// One mix node per layer, and both gateways with Sphinx keys.
			url := "http://" + entryAddrC.Addr().String() + ":" + directoryPort + "/v1/topology"
			netnstest.Poll(t, readyTimeout, "three mix layers in the directory", func() error {
				out, err := n.client.Run("curl", "-sS", "--max-time", "5", url)
				if err != nil {
					return err
				}
				for _, want := range []string{`"layer":1`, `"layer":2`, `"layer":3`, `"mix_client_addr"`} {
					if !strings.Contains(out, want) {
						return fmt.Errorf("no %s yet", want)
					}
				}
				if strings.Count(out, `"sphinx_keys"`) < 5 {
					return fmt.Errorf("not every node has Sphinx keys yet")
				}
				return nil
			})
		},
	}
}

// TestDaemonMixnetModeSystemWide runs nymvpnd with a real TUN in the client
// namespace in mixnet mode: `connect --mode mixnet --wait` carries all of
// the client's traffic through the entry gateway, three mix nodes and the
// exit's IP packet router (kernel TUN + NAT); curl and dig work, the
// internet host sees only the exit, and the client's outer link carries
// nothing but its connections to the entry gateway. Switching mode and
// privacy profile while connected reconnects cleanly; disconnect puts
// routes, rules and resolv.conf back byte for byte.
func TestDaemonMixnetModeSystemWide(t *testing.T) {
	netnstest.RequireRoot(t)
	requireTUN(t)
	if testing.Short() {
		t.Skip("builds the binaries and a network of namespaces; skipped in -short")
	}
	d := newDaemonNet(t, withMixnet())
	client, mustNymvpn := d.client, d.mustNymvpn(t)
	netnstest.Poll(t, readyTimeout, "IPv6 addresses settled", func() error {
		if out := client.MustRun(t, "ip", "-6", "addr", "show", "tentative"); strings.TrimSpace(out) != "" {
			return fmt.Errorf("tentative: %s", out)
		}
		return nil
	})
	before := systemSnapshot(t, client)
	d.startDaemon(t, "nymvpnd")

	link := strings.Fields(client.MustRun(t, "ip", "-o", "-4", "addr", "show", "to", clientAddr.Addr().String()))[1]
	capture := startCapture(t, d, link, "mixnet")
	start := time.Now()
	out := mustNymvpn("connect", "--mode", "mixnet", "--entry", "DE", "--exit", "gw-exit", "--wait", "--timeout", "2m")
	t.Logf("connect --mode mixnet --wait took %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	for _, want := range []string{"opening a session at the exit gateway through the mixnet", "Connected"} {
		if !strings.Contains(out, want) {
			t.Errorf("connect output lacks %q:\n%s", want, out)
		}
	}
	st := status(t, mustNymvpn)
	if st.State.Kind != api.Connected || st.State.Mode != api.ModeMixnet || st.State.Entry.ID != "gw-entry" || st.State.Exit.ID != "gw-exit" ||
		st.Settings.PrivacyProfile != api.ProfileMax {
		t.Fatalf("status after connect: %+v, settings %+v", st.State, st.Settings)
	}
	if len(st.State.Addresses) == 0 || !netip.MustParsePrefix("10.0.0.0/16").Contains(st.State.Addresses[0]) {
		t.Errorf("tunnel addresses %v, want the IP packet router's 10.0.0.0/16", st.State.Addresses)
	}
	if mtu := strings.TrimSpace(client.MustRun(t, "cat", "/sys/class/net/nymvpn0/mtu")); mtu != "1500" {
		t.Errorf("TUN MTU %s, want 1500", mtu)
	}
	out = mustNymvpn("status")
	if !strings.Contains(out, "mixnet mode, max privacy profile") {
		t.Errorf("status does not show the mode and profile:\n%s", out)
	}
	checkThroughTunnel(t, client)
	// The tunnel's statistics in the status, counting that traffic.
	netnstest.Poll(t, readyTimeout, "mixnet statistics in the status", func() error {
		m := status(t, mustNymvpn).Mixnet
		if m == nil || m.Profile != api.ProfileMax || m.RealPackets == 0 || m.CoverPackets+m.LoopCoverPackets == 0 ||
			m.IPPacketsOut == 0 || m.IPPacketsIn == 0 || m.SURBsUsed == 0 || m.ExitRTTMs == 0 {
			return fmt.Errorf("mixnet %+v", m)
		}
		return nil
	})
	out = mustNymvpn("status")
	for _, want := range []string{"Packets:", "% cover)", "Exit RTT:", "above the mix delays", "Exit SURBs:"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks the mixnet block's %q:\n%s", want, out)
		}
	}
	t.Logf("status with the mixnet block:\n%s", out)
	// Everything on the client's outer link went to the entry gateway:
	// the directory, its registration and mixnet client endpoints.
	entry := entryAddrC.Addr().String()
	if leaks := capture.leaks(t, "tcp/"+entry+":"+mixClientPort, "tcp/"+entry+":"+directoryPort, "tcp/"+entry+":51821"); len(leaks) > 0 {
		t.Errorf("%d packets on the client's link to somewhere else than the entry gateway:\n%s", len(leaks), strings.Join(leaks, "\n"))
	}
	// The exit's IP packet router carried the flows through its kernel TUN
	// and masquerade.
	tunName := d.exitGW.WaitFor(t, regexp.MustCompile(`msg="IP packet router up".* kernel_tun=(\S+)`), readyTimeout)[1]
	counts := nftCounters(t, d.exit, "nymvpn_exit_"+tunName)
	t.Logf("IP packet router TUN %s, nftables counters %v", tunName, counts)
	if counts["postrouting"] == 0 || counts["forward"] == 0 {
		t.Errorf("the IP packet router's nftables table counted no forwarded or masqueraded packet: %v", counts)
	}

	// Switch to fast mode while connected, then back to mixnet mode with
	// the fast privacy profile, then the profile through the settings:
	// each reconnects (a new Connected state), and traffic flows.
	reconnected := func(what string, run func(), check func(api.Status) bool) {
		t.Helper()
		since := *status(t, mustNymvpn).State.Since
		run()
		netnstest.Poll(t, readyTimeout, what, func() error {
			st := status(t, mustNymvpn)
			if st.State.Kind != api.Connected || st.State.Since == nil || !st.State.Since.After(since) || !check(st) {
				return fmt.Errorf("state %s mode %s (%s %s)", st.State.Kind, st.State.Mode, st.State.Stage, st.State.Reason)
			}
			return nil
		})
		checkThroughTunnel(t, client)
	}
	reconnected("reconnected in fast mode", func() { mustNymvpn("connect", "--mode", "fast") },
		func(st api.Status) bool { return st.State.Mode == api.ModeFast })
	if m := status(t, mustNymvpn).Mixnet; m != nil {
		t.Errorf("mixnet statistics in fast mode: %+v", m)
	}
	reconnected("reconnected in mixnet mode, fast profile", func() { mustNymvpn("connect", "--mode", "mixnet", "--profile", "fast") },
		func(st api.Status) bool {
			return st.State.Mode == api.ModeMixnet && st.Settings.PrivacyProfile == api.ProfileFast
		})
	reconnected("reconnected with the max profile", func() { mustNymvpn("settings", "set", "privacy-profile", "max") },
		func(st api.Status) bool {
			return st.State.Mode == api.ModeMixnet && st.Settings.PrivacyProfile == api.ProfileMax
		})

	mustNymvpn("disconnect", "--wait")
	compareSnapshots(t, "after disconnect", before, systemSnapshot(t, client))
}

// BenchmarkDaemonMixnetMode measures system-wide mixnet mode through
// nymvpnd across the namespaces of TestDaemonMixnetModeSystemWide, for
// each privacy profile: iperf3 downloads and uploads (10 s each, receiver's
// goodput) and ping round trips to the internet host (the ICMP crosses the
// exit's kernel TUN; the mixes add three delays each way).
//
//	go test ./e2e -run '^$' -bench DaemonMixnetMode -benchtime 1x -v
func BenchmarkDaemonMixnetMode(b *testing.B) {
	netnstest.RequireRoot(b)
	requireTUN(b)
	d := newDaemonNet(b, withMixnet())
	nymvpn := d.mustNymvpn(b)
	d.startDaemon(b, "nymvpnd")
	iperfServer := d.inet.Start(b, "iperf3 server", "iperf3", "-s", "--forceflush", "-B", inetAddr.Addr().String())
	iperfServer.WaitFor(b, regexp.MustCompile(`Server listening`), readyTimeout)
	for _, profile := range []string{api.ProfileMax, api.ProfileFast} {
		nymvpn("connect", "--mode", "mixnet", "--profile", profile, "--wait", "--timeout", "2m")
		b.Run(profile+"/iperf3-download", func(b *testing.B) {
			for range b.N {
				b.ReportMetric(iperfDir(b, d.client, inetAddr.Addr().String(), true), "Mbit/s")
			}
		})
		b.Run(profile+"/iperf3-upload", func(b *testing.B) {
			for range b.N {
				b.ReportMetric(iperfDir(b, d.client, inetAddr.Addr().String(), false), "Mbit/s")
			}
		})
		b.Run(profile+"/ping", func(b *testing.B) {
			for range b.N {
				b.ReportMetric(ping(b, d.client, inetAddr.Addr()), "ms-rtt")
			}
		})
		nymvpn("disconnect", "--wait")
	}
}

// iperfDir runs a 10-second TCP test to server, downloading with reverse,
// and returns the receiver's Mbit/s.
func iperfDir(b *testing.B, ns *netnstest.Namespace, server string, reverse bool) float64 {
	b.Helper()
	args := []string{"-c", server, "-t", "10", "-J"}
	if reverse {
		args = append(args, "-R")
	}
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	// The server takes one test at a time: the previous one's end may
	// still be on its way through the mixnet.
	netnstest.Poll(b, readyTimeout, "an iperf3 test", func() error {
		out, _ := ns.Run("iperf3", args...)
		r.Error = ""
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return fmt.Errorf("iperf3 output: %w\n%s", err, out)
		}
		if r.Error != "" {
			return errors.New(r.Error)
		}
		return nil
	})
	return r.End.SumReceived.BitsPerSecond / 1e6
}
