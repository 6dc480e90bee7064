package mixnode

import (
	"context"
	"crypto/rand"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/sphinx"
	"github.com/nymvpn/nymvpn/transport"
)

// sink is a next hop that only counts the packets it receives (benchmarks).
type sink struct {
	ln    net.Listener
	key   transport.Key
	count atomic.Int64
}

func newSink(b testing.TB) *sink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &sink{ln: ln, key: testKey(b, "sink")}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc, err := transport.Server(context.Background(), c, transport.Config{Pattern: transport.IK,
					Prologue: []byte(mixnet.NodePrologue), LocalStatic: s.key, AllowPeer: func(transport.Key) bool { return true }})
				if err != nil {
					return
				}
				var buf []byte
				for {
					msg, err := tc.ReadMessage(buf)
					if err != nil {
						return
					}
					for len(msg) > 0 {
						_, _, rest, err := mixnet.NextRecord(msg)
						if err != nil {
							break
						}
						s.count.Add(1)
						msg = rest
					}
					buf = msg[:0]
				}
			}()
		}
	}()
	return s
}

// BenchmarkMixThroughput is the sustained rate of one mix node in process,
// on every core: regular 2413-byte packets arrive from 4 sender channels
// (Noise, loopback TCP, batched as a node sends them) and leave to a next
// hop that only counts them. Packets are built before the clock starts;
// the queues hold the whole burst, so nothing is dropped and the figure is
// the processing rate.
// ns/op is the time per packet; pkts/s is the node's throughput.
func BenchmarkMixThroughput(b *testing.B) {
	tn := newTestNet(b)
	mix := tn.add("mix", nil, Limits{QueueLength: 1 << 16, ConnQueue: 1 << 16, ReplayCapacity: 1 << 20})
	s := newSink(b)
	priv, _ := sphinx.GenerateKey(rand.Reader)
	tn.mu.Lock()
	tn.extra = append(tn.extra, directory.Node{ID: "sink", Roles: []directory.Role{directory.RoleMixnode},
		NoiseKey: directory.Key32(s.key.Public()), MixAddr: s.ln.Addr().String(),
		SphinxKeys: []directory.SphinxKey{{Epoch: tn.epoch(), PublicKey: directory.Key32(priv.Public())}}})
	tn.mu.Unlock()
	tn.publish()
	e := tn.epoch()
	g := sphinx.RegularGeometry()
	n := b.N
	pkts := make([][]byte, n)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				pkts[i] = tn.packet(e, g, 0, make([]byte, g.PlaintextLength), "mix", "sink")
			}
		}()
	}
	wg.Wait()
	const senders = 4
	conns := make([]*transport.Conn, senders)
	for i := range conns {
		conns[i] = tn.dial("mix")
	}
	m := mix.Metrics()
	b.SetBytes(int64(g.PacketLength))
	b.ResetTimer()
	start := time.Now()
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var msg []byte
			for j := i; j < n; j += senders {
				msg = mixnet.AppendPacket(msg, e, pkts[j])
				if len(msg) > maxBatch-mixnet.PacketRecordLength(pkts[j]) || j+senders >= n {
					if err := conns[i].WriteMessage(msg); err != nil {
						b.Error(err)
						return
					}
					msg = msg[:0]
				}
			}
		}()
	}
	wg.Wait()
	for s.count.Load()+int64(m.DroppedTotal()) < int64(n) {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(n)/el.Seconds(), "pkts/s")
	b.ReportMetric(float64(m.DroppedTotal()), "dropped")
}
