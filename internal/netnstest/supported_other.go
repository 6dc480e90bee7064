//go:build !linux

package netnstest

import (
	"os"
	"syscall"
)

// Network namespaces are Linux-only; RequireRoot skips everywhere else, so
// the helpers below only keep the package building.
const supported = false

func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(pid int, sig syscall.Signal) { signalPid(pid, sig) }

func signalPid(pid int, sig syscall.Signal) {
	if p, err := os.FindProcess(pid); err == nil {
		p.Signal(sig)
	}
}

func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	return err == nil && p.Signal(syscall.Signal(0)) == nil
}
