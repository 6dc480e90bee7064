package socks5

import (
	"context"
	"io"
	"net"
	"testing"
)

// BenchmarkConnectThroughput measures bulk client-to-target copying
// through the proxy on loopback; the target discards and reports the byte
// count when the client half-closes.
func BenchmarkConnectThroughput(b *testing.B) {
	ts := newTestServer(b, nil)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	received := make(chan int64, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		received <- n
	}()
	c, err := DialThrough(context.Background(), ts.Addr, "tcp4", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()

	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	var sent int64
	for b.Loop() {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
		sent += int64(len(chunk))
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		b.Fatal(err)
	}
	n := <-received
	b.StopTimer()
	if n != sent {
		b.Fatalf("target received %d bytes, sent %d", n, sent)
	}
}
