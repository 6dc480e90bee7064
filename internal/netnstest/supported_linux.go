package netnstest

import (
	"errors"
	"syscall"
)

const supported = true

// sysProcAttr puts a started process in its own process group (so Stop
// reaches its children) and kills it if the test process dies first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup signals the process group led by pid.
func signalGroup(pid int, sig syscall.Signal) { syscall.Kill(-pid, sig) }

func signalPid(pid int, sig syscall.Signal) { syscall.Kill(pid, sig) }

func alive(pid int) bool { return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }
