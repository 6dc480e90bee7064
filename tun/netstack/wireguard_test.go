package netstack

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// TestOverWireGuard runs both roles under real wireguard-go devices talking
// over loopback UDP: the client's device uses a host Stack as its TUN, the
// gateway's a forwarding Stack with DirectForwarder. This exercises the
// tun.Device contract as wireguard-go uses it (batches, offsets, Close).
func TestOverWireGuard(t *testing.T) {
	tcpSrv, tcpPeers := tcpEchoServer(t, "tcp4", "127.0.0.1:0")
	udpSrv, _ := udpEchoServer(t, "udp4", "127.0.0.1:0")

	client := wireGuardPair(t)

	c, err := client.DialContext(testContext(t), "tcp", tcpSrv.String())
	if err != nil {
		t.Fatalf("dial through WireGuard: %v", err)
	}
	defer c.Close()
	msg := make([]byte, 1<<20)
	rand.Read(msg)
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("TCP echo through WireGuard: err=%v equal=%v", err, bytes.Equal(got, msg))
	}
	if p := <-tcpPeers; p.Addr() != gwLocal {
		t.Errorf("server saw %v, want %v", p, gwLocal)
	}

	u, err := client.DialContext(testContext(t), "udp", udpSrv.String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	udpRoundTrip(t, u, []byte("over wireguard"))
}

// wireGuardPair builds a client host Stack and a forwarding gateway Stack
// (DirectForwarder from gwLocal), each the TUN of a wireguard-go device,
// the two devices peered over loopback UDP. It returns the client stack.
func wireGuardPair(t testing.TB) *Stack {
	t.Helper()
	cPriv, cPub := wgKey(t)
	gPriv, gPub := wgKey(t)

	client, err := New(Config{Addresses: []netip.Addr{clientV4}, MTU: 1420, AllowLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(Config{Addresses: []netip.Addr{gwV4}, MTU: 1420, AllowLoopback: true, Forward: &DirectForwarder{LocalAddr: gwLocal}})
	if err != nil {
		t.Fatal(err)
	}
	logger := device.NewLogger(device.LogLevelSilent, "")
	gdev := device.NewDevice(gw, conn.NewDefaultBind(), logger)
	t.Cleanup(gdev.Close)
	if err := gdev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=0\npublic_key=%s\nallowed_ip=%s/32\n", gPriv, cPub, clientV4)); err != nil {
		t.Fatalf("gateway config: %v", err)
	}
	if err := gdev.Up(); err != nil {
		t.Fatalf("gateway up: %v", err)
	}
	port := listenPort(t, gdev)

	cdev := device.NewDevice(client, conn.NewDefaultBind(), logger)
	t.Cleanup(cdev.Close)
	if err := cdev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=0\npublic_key=%s\nendpoint=127.0.0.1:%d\nallowed_ip=0.0.0.0/0\n", cPriv, gPub, port)); err != nil {
		t.Fatalf("client config: %v", err)
	}
	if err := cdev.Up(); err != nil {
		t.Fatalf("client up: %v", err)
	}
	return client
}

func wgKey(t testing.TB) (priv, pub string) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(k.Bytes()), hex.EncodeToString(k.PublicKey().Bytes())
}

func listenPort(t testing.TB, d *device.Device) int {
	cfg, err := d.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(cfg, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			p, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	t.Fatalf("no listen_port in %q", cfg)
	return 0
}
