package client

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkPeer checks with LOCAL_PEERCRED that the process serving the socket
// runs as root or as us.
func checkPeer(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T is not a socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var xu *unix.Xucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		xu, serr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("reading the daemon's credentials: %w", serr)
	}
	if !trustedUID(int(xu.Uid)) {
		return fmt.Errorf("the process answering runs as uid %d, not root or you", xu.Uid)
	}
	return nil
}
