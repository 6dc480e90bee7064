package mixnet_test

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/modes/mixnet"
	"github.com/nymvpn/nymvpn/node/localnet"
	"github.com/nymvpn/nymvpn/sphinx"
)

// benchNet is one local network for all benchmarks, with the exits'
// default bundling delay (NymVPN's 20 ms).
func benchNet(b *testing.B) *localnet.Network {
	return startNet(b, func(c *localnet.Config) { c.ExitFlushDelay = 0 })
}

// BenchmarkGoodput measures TCP goodput through the mixnet for each
// profile: a download and an upload of 2 MB (max: 512 kB) per iteration, in
// Mbit/s of HTTP body, and the CPU time the whole process (client, mixes,
// gateways, web server) spent per MB. Uploads also report the real Sphinx
// packets sent per second (first sends, retransmissions and SURB
// messages) and their raw payload rate (packets/s × 2048-byte plaintext).
//
//	go test ./modes/mixnet -run '^$' -bench Goodput -benchtime 3x
func BenchmarkGoodput(b *testing.B) {
	n := benchNet(b)
	base := bulkServer(b)
	for _, p := range mixnet.Profiles {
		size := 2 << 20
		if p.Name == "max" {
			size = 512 << 10
		}
		tun := connect(b, n, func(c *mixnet.Config) { c.Profile = p; c.RetransmitBase = mixnet.RetransmitBase })
		c := httpClient(tun)
		download(b, c, base, 1000) // warm up: the exit has its SURBs
		b.Run(p.Name+"/download", func(b *testing.B) {
			start, cpu := time.Now(), cpuTime()
			for range b.N {
				download(b, c, base, size)
			}
			b.ReportMetric(float64(size*b.N*8)/time.Since(start).Seconds()/1e6, "Mbit/s")
			b.ReportMetric((cpuTime()-cpu).Seconds()/(float64(size*b.N)/1e6), "cpu-s/MB")
			b.ReportMetric(0, "ns/op")
		})
		b.Run(p.Name+"/upload", func(b *testing.B) {
			body := bytes.Repeat([]byte("u"), size)
			real0 := tun.Stats().Real
			start, cpu := time.Now(), cpuTime()
			for range b.N {
				resp, err := c.Post(base+"/upload", "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(got) != fmt.Sprint(size) {
					b.Fatalf("server got %s bytes", got)
				}
			}
			elapsed := time.Since(start).Seconds()
			b.ReportMetric(float64(size*b.N*8)/elapsed/1e6, "Mbit/s")
			b.ReportMetric((cpuTime()-cpu).Seconds()/(float64(size*b.N)/1e6), "cpu-s/MB")
			// The raw rate is what NymVPN's "≈ 0.8 Mbit/s" counts: every
			// real packet's whole plaintext (50 packets/s × 2048 bytes in
			// max), of which the SURB-ACK and the fragment header take a
			// part, so it is an upper bound of the goodput above.
			pps := float64(tun.Stats().Real-real0) / elapsed
			b.ReportMetric(pps, "real-pkt/s")
			b.ReportMetric(pps*sphinx.RegularPlaintextLength*8/1e6, "raw-Mbit/s")
			b.ReportMetric(0, "ns/op")
		})
		st := tun.Stats()
		b.Logf("%s: real %d (retransmitted %d, lost %d), cover %d, loops %d, replies %d, SURBs sent %d, requests %d, dropped IP %d",
			p.Name, st.Real, st.Retransmissions, st.Lost, st.Cover, st.Loops, st.Replies, st.SURBsSent, st.NeedSURBs, st.IPDropped)
		tun.Close()
	}
}

// BenchmarkRTT measures round trips through the mixnet for each profile,
// from pings to the exit's IP packet router (answered at once, no
// bundling): the median round trip, and the median overhead above the
// configured delays (a ping's round trip less its wait for a send slot and
// the delays its packet and its reply SURB asked of the mixes). It also
// reports an HTTP request's round trip, which adds the exit's bundling.
//
//	go test ./modes/mixnet -run '^$' -bench RTT -benchtime 200x
func BenchmarkRTT(b *testing.B) {
	n := benchNet(b)
	for _, p := range mixnet.Profiles {
		b.Run(p.Name, func(b *testing.B) {
			tun := connect(b, n, func(c *mixnet.Config) {
				c.Profile = p
				c.RetransmitBase = mixnet.RetransmitBase
				c.HealthInterval = 50 * time.Millisecond
			})
			defer tun.Close()
			c := httpClient(tun)
			get(b, c, n.WebURL)
			start := tun.Stats().Pongs
			b.ResetTimer()
			waitForN(b, func() bool { return tun.Stats().Pongs >= start+uint64(b.N) })
			b.StopTimer()
			rtt, over := tun.Samples()
			rtt, over = rtt[len(rtt)-min(len(rtt), b.N):], over[len(over)-min(len(over), b.N):]
			st := tun.Stats()
			b.ReportMetric(ms(median(rtt)), "rtt-ms")
			b.ReportMetric(ms(median(over)), "overhead-ms")
			b.ReportMetric(ms(st.SendWait), "sendwait-ms")
			b.ReportMetric(ms(st.MixDelays), "mixdelays-ms")
			var web []time.Duration
			for range 20 {
				t0 := time.Now()
				get(b, c, n.WebURL)
				web = append(web, time.Since(t0))
			}
			b.ReportMetric(ms(median(web)), "http-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func waitForN(b *testing.B, cond func() bool) {
	deadline := time.Now().Add(10 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
