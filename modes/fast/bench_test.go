package fast

import (
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/localnet"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
	"github.com/nymvpn/nymvpn/tun/netstack"
	"golang.zx2c4.com/wireguard/conn"
)

// benchNet starts a local network and a bulk source on loopback: every
// connection receives size bytes and is closed.
func benchNet(b *testing.B, size int) (*directory.Topology, string) {
	b.Helper()
	if runtime.GOOS != "linux" {
		b.Skip("needs one loopback address per node (Linux)")
	}
	cfg := localnet.DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.FreePass = true // the tunnel's throughput, not tickets
	n, err := localnet.Start(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	topo, err := (&directory.Client{URL: n.DirectoryURL}).Fetch(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	chunk := make([]byte, 64<<10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for left := size; left > 0; left -= len(chunk) {
					if _, err := c.Write(chunk[:min(left, len(chunk))]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return topo, ln.Addr().String()
}

func download(b *testing.B, st *netstack.Stack, addr string, size int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := st.DialContext(ctx, "tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	n, err := io.Copy(io.Discard, c)
	if err != nil || n != int64(size) {
		b.Fatalf("received %d of %d bytes: %v", n, size, err)
	}
}

const benchSize = 32 << 20

// BenchmarkTwoHopThroughput downloads through entry and exit.
func BenchmarkTwoHopThroughput(b *testing.B) {
	topo, addr := benchNet(b, benchSize)
	entry, _ := topo.Node("entry-de-1")
	exit, _ := topo.Node("exit-ch-1")
	t, err := Connect(context.Background(), Config{Entry: *entry, Exit: *exit, AllowLoopback: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer t.Close()
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		download(b, t.Net, addr, benchSize)
	}
}

// BenchmarkOneHopThroughput is the same code with one hop: the client
// registers with the exit directly and runs one WireGuard tunnel to it.
func BenchmarkOneHopThroughput(b *testing.B) {
	topo, addr := benchNet(b, benchSize)
	exit, _ := topo.Node("exit-ch-1")
	key, _ := transport.GenerateKey()
	cfg := Config{Logger: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	grant, psk, err := register(ctx, *exit, registration.RoleExit, key, nil, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", exit.RegistrationAddr)
	})
	if err != nil {
		b.Fatal(err)
	}
	st, err := netstack.New(netstack.Config{Addresses: grant.Addresses, MTU: EntryMTU, AllowLoopback: true})
	if err != nil {
		b.Fatal(err)
	}
	ep, _ := endpoint(exit.WireGuardAddr, grant.Port)
	dev, err := startDevice(st, conn.NewStdNetBind(), key, grant, psk, ep, 0, cfg.Logger)
	if err != nil {
		b.Fatal(err)
	}
	defer dev.Close()
	if err := waitHandshake(ctx, dev); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		download(b, st, addr, benchSize)
	}
}

// BenchmarkConnect measures Connect: both registrations, both tunnels, and
// the exit handshake through the entry.
func BenchmarkConnect(b *testing.B) {
	topo, _ := benchNet(b, 1)
	entry, _ := topo.Node("entry-de-1")
	exit, _ := topo.Node("exit-ch-1")
	for i := 0; i < b.N; i++ {
		t, err := Connect(context.Background(), Config{Entry: *entry, Exit: *exit, AllowLoopback: true, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		t.Close()
		b.StartTimer()
	}
}
