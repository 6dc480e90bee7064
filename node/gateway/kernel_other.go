//go:build !linux

package gateway

import "errors"

// startKernelExit is Linux-only: it relies on the Linux TUN driver, netlink
// and nftables.
func startKernelExit(kernelExitConfig) (*kernelExit, error) {
	return nil, errors.New("gateway: kernel exit needs Linux (TUN, netlink, nftables); use the userspace exit on this system")
}
