package netstack

import (
	"io"
	"net"
	"net/netip"
	"testing"
)

// BenchmarkTCPThroughput measures bulk TCP through two stacks joined back
// to back by the in-memory link (MTU 1420, as under WireGuard):
//
//   - host: a client stack dials a listener on a second host stack;
//   - forwarded: the second stack is a forwarding gateway that splices the
//     flow to a real loopback TCP sink through DirectForwarder;
//   - wireguard-forwarded: as forwarded, but each stack is the TUN of a
//     wireguard-go device and the link is encrypted WireGuard over loopback
//     UDP (the gateway's real deployment).
//
// Each iteration writes 64 KiB; the figure is end-to-end (the timer stops
// when the receiver has everything).
func BenchmarkTCPThroughput(b *testing.B) {
	const chunk = 64 << 10
	run := func(b *testing.B, sender *Stack, dial func() (net.Conn, <-chan int64)) {
		c, done := dial()
		defer c.Close()
		buf := make([]byte, chunk)
		b.SetBytes(chunk)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := c.Write(buf); err != nil {
				b.Fatalf("write: %v", err)
			}
		}
		c.(interface{ CloseWrite() error }).CloseWrite()
		if got := <-done; got != int64(b.N)*chunk {
			b.Fatalf("receiver got %d bytes, want %d", got, int64(b.N)*chunk)
		}
		b.StopTimer()
		b.ReportMetric(float64(sender.Stats().DroppedQueueFull), "qdrops")
	}
	sink := func(c net.Conn, done chan<- int64) {
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		done <- n
	}

	b.Run("host", func(b *testing.B) {
		a, err := New(Config{Addresses: []netip.Addr{clientV4}, MTU: 1420})
		if err != nil {
			b.Fatal(err)
		}
		srv, err := New(Config{Addresses: []netip.Addr{gwV4}, MTU: 1420})
		if err != nil {
			b.Fatal(err)
		}
		joinDevices(b, a, srv)
		ln, err := srv.ListenTCP(netip.AddrPortFrom(gwV4, 5001))
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		run(b, a, func() (net.Conn, <-chan int64) {
			done := make(chan int64, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- -1
					return
				}
				sink(c, done)
			}()
			c, err := a.DialContext(testContext(b), "tcp", "10.64.0.1:5001")
			if err != nil {
				b.Fatal(err)
			}
			return c, done
		})
	})

	b.Run("forwarded", func(b *testing.B) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		client, _ := newPair(b, &DirectForwarder{}, nil)
		run(b, client, func() (net.Conn, <-chan int64) {
			done := make(chan int64, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- -1
					return
				}
				sink(c, done)
			}()
			c, err := client.DialContext(testContext(b), "tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			return c, done
		})
	})

	b.Run("wireguard-forwarded", func(b *testing.B) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		client := wireGuardPair(b)
		run(b, client, func() (net.Conn, <-chan int64) {
			done := make(chan int64, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- -1
					return
				}
				sink(c, done)
			}()
			c, err := client.DialContext(testContext(b), "tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			return c, done
		})
	})
}
