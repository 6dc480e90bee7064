package client

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkPeer checks with SO_PEERCRED that the process serving the socket
// runs as root or as us (the socket file's owner says who created it, this
// says who answers).
func checkPeer(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T is not a socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var uc *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		uc, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("reading the daemon's credentials: %w", serr)
	}
	if !trustedUID(int(uc.Uid)) {
		return fmt.Errorf("the process answering (pid %d) runs as uid %d, not root or you", uc.Pid, uc.Uid)
	}
	return nil
}
