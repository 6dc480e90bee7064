package localnet

import (
	"context"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/mixnet"
)

// BenchmarkProbeLoop sends loop packets over every route of the local
// network (client → entry gateway → L1 → L2 → L3 → entry gateway → client,
// no mix delays) with mixnet.Probe and reports round trips per second and
// the median and 95th-percentile round-trip time. Client, gateways and the
// six mix nodes share the machine's cores; the client builds each packet
// (about 0.4 ms) as it sends.
func BenchmarkProbeLoop(b *testing.B) {
	n := startNet(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The probe pays its entry with the demo account: its ticketbook is
	// fetched before the clock starts.
	if err := n.Wallet.Refill(ctx, credential.MixnetEntry); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	rep, err := mixnet.Probe(ctx, mixnet.ProbeConfig{DirectoryURL: n.DirectoryURL, Packets: max(1, b.N/8), Timeout: time.Minute, Ticket: n.Ticket})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if rep.Received != rep.Sent {
		b.Errorf("lost %d of %d", rep.Sent-rep.Received, rep.Sent)
	}
	b.ReportMetric(float64(rep.Received)/rep.Elapsed.Seconds(), "loops/s")
	b.ReportMetric(float64(rep.Median.Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(rep.P95.Microseconds())/1000, "p95-ms")
}
