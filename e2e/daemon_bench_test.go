package e2e

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/internal/netnstest"
)

// BenchmarkDaemonFastMode measures the system-wide fast mode across the
// namespaces of TestDaemonFastModeSystemWide:
//
//   - connect: from `nymvpn connect --wait` to Connected (ms/op);
//   - iperf3/one-hop: a plain wireguard-go tunnel between the client and the
//     entry host over the same link, the baseline;
//   - iperf3/two-hop: client → entry gateway → exit gateway → internet host
//     through nymvpnd's tunnel;
//   - ping: the round trip the tunnel adds above the underlay's
//     client→entry, entry→exit and exit→internet round trips.
//
// Run it as root:
//
//	go test ./e2e -run '^$' -bench DaemonFastMode -benchtime 1x -v
func BenchmarkDaemonFastMode(b *testing.B) {
	netnstest.RequireRoot(b)
	requireTUN(b)
	d := newDaemonNet(b)
	nymvpn := d.mustNymvpn(b)
	d.startDaemon(b, "nymvpnd")
	iperfServer := d.inet.Start(b, "iperf3 server", "iperf3", "-s", "--forceflush", "-B", inetAddr.Addr().String())
	iperfServer.WaitFor(b, regexp.MustCompile(`Server listening`), readyTimeout)

	b.Run("iperf3/one-hop", func(b *testing.B) {
		wgBaseline(b, d)
		for range b.N {
			b.ReportMetric(iperf(b, d.client, "10.77.0.1"), "Mbit/s")
		}
	})
	b.Run("ping/underlay", func(b *testing.B) {
		for range b.N {
			rtt := ping(b, d.client, entryAddrC.Addr()) + ping(b, d.entry, exitAddrE.Addr()) + ping(b, d.exit, inetAddr.Addr())
			b.ReportMetric(rtt, "ms-rtt")
		}
	})
	b.Run("connect", func(b *testing.B) {
		for range b.N {
			nymvpn("disconnect", "--wait")
			start := time.Now()
			nymvpn("connect", "--wait", "--timeout", "2m")
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "ms-to-connected")
		}
	})
	b.Run("iperf3/two-hop", func(b *testing.B) {
		for range b.N {
			b.ReportMetric(iperf(b, d.client, inetAddr.Addr().String()), "Mbit/s")
		}
	})
	b.Run("ping/tunnel", func(b *testing.B) {
		for range b.N {
			b.ReportMetric(ping(b, d.client, inetAddr.Addr()), "ms-rtt")
		}
	})
	nymvpn("disconnect", "--wait")
}

// iperf runs a 5-second TCP test to server and returns the receiver's Mbit/s.
func iperf(b *testing.B, ns *netnstest.Namespace, server string) float64 {
	b.Helper()
	out := ns.MustRun(b, "iperf3", "-c", server, "-t", "5", "-J")
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		b.Fatalf("iperf3 output: %v\n%s", err, out)
	}
	return r.End.SumReceived.BitsPerSecond / 1e6
}

var pingAvg = regexp.MustCompile(`= [\d.]+/([\d.]+)/`)

// ping returns the average round trip in milliseconds over 20 pings.
func ping(b *testing.B, ns *netnstest.Namespace, to netip.Addr) float64 {
	b.Helper()
	out := ns.MustRun(b, "ping", "-q", "-c", "20", "-i", "0.05", "-W", "5", to.String())
	m := pingAvg.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("ping output: %s", out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// wgBaseline starts a single-hop wireguard-go tunnel, 10.77.0.2 (client) ↔
// 10.77.0.1 (entry host), and an iperf3 server on the entry's end.
func wgBaseline(b *testing.B, d *daemonNet) {
	b.Helper()
	key := func() (priv, pub string) {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		return hex.EncodeToString(k.Bytes()), hex.EncodeToString(k.PublicKey().Bytes())
	}
	cPriv, cPub := key()
	ePriv, ePub := key()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	side := func(ns *netnstest.Namespace, name, priv, peer, endpoint string, port int, addr string) {
		uapi := fmt.Sprintf(`private_key=%s\nlisten_port=%d\npublic_key=%s\nallowed_ip=10.77.0.0/24\n`, priv, port, peer)
		if endpoint != "" {
			uapi += `endpoint=` + endpoint + `\n`
		}
		p := ns.Start(b, name, "env", "E2E_HELPER=wg", "E2E_WG_TUN=wg1hop", "E2E_WG_UAPI="+uapi, exe, "-test.run=^$")
		p.WaitFor(b, regexp.MustCompile(`wg ready`), readyTimeout)
		ns.MustRun(b, "ip", "addr", "add", addr, "dev", "wg1hop")
		ns.MustRun(b, "ip", "link", "set", "wg1hop", "up")
	}
	side(d.entry, "wg baseline (entry)", ePriv, cPub, "", 51900, "10.77.0.1/24")
	side(d.client, "wg baseline (client)", cPriv, ePub, entryAddrC.Addr().String()+":51900", 51901, "10.77.0.2/24")
	srv := d.entry.Start(b, "iperf3 server (one hop)", "iperf3", "-s", "--forceflush", "-B", "10.77.0.1")
	srv.WaitFor(b, regexp.MustCompile(`Server listening`), readyTimeout)
	netnstest.Poll(b, readyTimeout, "single-hop tunnel up", func() error {
		_, err := d.client.Run("ping", "-c", "1", "-W", "1", "10.77.0.1")
		return err
	})
}
