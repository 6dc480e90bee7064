package gateway_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/gateway"
	"github.com/nymvpn/nymvpn/node/localnet"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
	"github.com/nymvpn/nymvpn/tun/netstack"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

func startNet(t *testing.T) (*localnet.Network, *directory.Topology) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs one loopback address per node (Linux)")
	}
	cfg := localnet.DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.FreePass = true // routing policy, not tickets (tickets_test.go)
	n, err := localnet.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	topo, err := (&directory.Client{URL: n.DirectoryURL}).Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n, topo
}

// tunnel registers with gw in role and returns a stack inside a WireGuard
// tunnel to it: one hop, driven by hand.
func tunnel(t *testing.T, gw *directory.Node, role string) *netstack.Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, _ := transport.GenerateKey()
	c, err := net.Dial("tcp", gw.RegistrationAddr)
	if err != nil {
		t.Fatal(err)
	}
	res, err := registration.Register(ctx, c, registration.Gateway{NoiseKey: transport.Key(gw.NoiseKey), WireGuardKey: transport.Key(gw.WireGuardKey)},
		registration.Params{Role: role, WireGuardKey: key})
	if err != nil {
		t.Fatalf("register as %s: %v", role, err)
	}
	st, err := netstack.New(netstack.Config{Addresses: res.Addresses, MTU: 1420, AllowLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	dev := device.NewDevice(st, conn.NewStdNetBind(), device.NewLogger(device.LogLevelSilent, ""))
	t.Cleanup(dev.Close)
	ep := netip.AddrPortFrom(netip.MustParseAddrPort(gw.WireGuardAddr).Addr(), res.Port)
	err = dev.IpcSet(fmt.Sprintf("private_key=%s\npublic_key=%s\npreshared_key=%s\nendpoint=%s\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\n",
		hex.EncodeToString(key[:]), hex.EncodeToString(res.GatewayKey[:]), hex.EncodeToString(res.PresharedKey[:]), ep))
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	return st
}

func dial(st *netstack.Stack, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := st.DialContext(ctx, "tcp", addr)
	if err == nil {
		c.Close()
	}
	return err
}

// TestEntryOnlyReachesExits: an entry client may reach exit gateways'
// endpoints and nothing else.
func TestEntryOnlyReachesExits(t *testing.T) {
	n, topo := startNet(t)
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	entry, _ := topo.Node("entry-de-1")
	exit, _ := topo.Node("exit-de-1")
	otherEntry, _ := topo.Node("entry-ch-1")
	st := tunnel(t, entry, registration.RoleEntry)

	if err := dial(st, exit.RegistrationAddr); err != nil {
		t.Fatalf("entry client to an exit's registration endpoint: %v", err)
	}
	if err := dial(st, web.Addr().String()); err == nil {
		t.Fatal("entry client reached a web server directly")
	}
	if err := dial(st, otherEntry.RegistrationAddr); err == nil {
		t.Fatal("entry client reached another entry gateway")
	}
	if s := n.Gateways["entry-de-1"].Stats(); s.PolicyRefused < 2 || s.EntryFlows != 1 {
		t.Errorf("entry stats %+v: want ≥2 refused and 1 forwarded", s)
	}
}

// TestExitPolicy: an exit client reaches the outside but not the gateway's
// other clients.
func TestExitPolicy(t *testing.T) {
	n, topo := startNet(t)
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	exit, _ := topo.Node("exit-ch-1")
	a := tunnel(t, exit, registration.RoleExit)
	if err := dial(a, web.Addr().String()); err != nil {
		t.Fatalf("exit client to the outside: %v", err)
	}
	b := tunnel(t, exit, registration.RoleExit)
	peer := b.Addresses()[0]
	if err := dial(a, netip.AddrPortFrom(peer, 80).String()); err == nil {
		t.Fatal("exit client reached another client of the gateway")
	}
	if s := n.Gateways["exit-ch-1"].Stats(); s.PolicyRefused < 1 {
		t.Errorf("exit stats %+v: want the client-to-client flow refused", s)
	}
}

func TestRoleAndPaymentRefusals(t *testing.T) {
	_, topo := startNet(t)
	exit, _ := topo.Node("exit-ch-1")
	key, _ := transport.GenerateKey()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := net.Dial("tcp", exit.RegistrationAddr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = registration.Register(ctx, c, registration.Gateway{NoiseKey: transport.Key(exit.NoiseKey), WireGuardKey: transport.Key(exit.WireGuardKey)},
		registration.Params{Role: registration.RoleEntry, WireGuardKey: key})
	var re *registration.Error
	if !errors.As(err, &re) || re.Code != registration.CodeRoleNotServed {
		t.Fatalf("entry registration at an exit-only gateway: %v", err)
	}
}

func TestPaymentRequiredWithoutFreePass(t *testing.T) {
	noiseKey, _ := transport.GenerateKey()
	wgKey, _ := transport.GenerateKey()
	lo := netip.MustParseAddr("127.0.0.1")
	gw, err := gateway.New(gateway.Config{
		ID: "paid", Roles: []directory.Role{directory.RoleExit}, NoiseKey: noiseKey, WireGuardKey: wgKey,
		WireGuardListen: netip.AddrPortFrom(lo, 0), RegistrationListen: netip.AddrPortFrom(lo, 0),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	key, _ := transport.GenerateKey()
	c, err := net.Dial("tcp", gw.RegistrationAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = registration.Register(ctx, c, registration.Gateway{NoiseKey: noiseKey.Public(), WireGuardKey: wgKey.Public()},
		registration.Params{Role: registration.RoleExit, WireGuardKey: key})
	var re *registration.Error
	if !errors.As(err, &re) || re.Code != registration.CodePaymentRequired {
		t.Fatalf("registration without ticket or free pass: %v", err)
	}
	if gw.Stats().Peers != 0 {
		t.Fatal("refused client was added as a peer")
	}
}
