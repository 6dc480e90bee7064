package e2e

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// serveWireGuard runs a plain single-hop wireguard-go device on a kernel
// TUN, configured by a UAPI string ("\\n" for newlines), until SIGTERM: the
// baseline the two-hop tunnel is measured against.
func serveWireGuard(name, uapi string) error {
	dev, err := tun.CreateTUN(name, 1420)
	if err != nil {
		return fmt.Errorf("create TUN %s: %w", name, err)
	}
	wg := device.NewDevice(dev, conn.NewStdNetBind(), device.NewLogger(device.LogLevelError, "wg: "))
	defer wg.Close()
	if err := wg.IpcSet(strings.ReplaceAll(uapi, `\n`, "\n")); err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	if err := wg.Up(); err != nil {
		return err
	}
	fmt.Println("wg ready", name)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	return nil
}
