package control

import (
	"fmt"
	"net"
	"os/user"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// peerCred reads the credentials of the process on the other end of a Unix
// socket with LOCAL_PEERCRED (uid and up to 16 groups, the first being the
// effective gid) and LOCAL_PEERPID. When the kernel's list is full it may be
// cut short, so the user database's groups for the uid are added.
func peerCred(c net.Conn) (PeerCred, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return anonymous, fmt.Errorf("peer credentials: %T is not a socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return anonymous, fmt.Errorf("peer credentials: %w", err)
	}
	var xu *unix.Xucred
	var pid int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		xu, serr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
		if serr == nil {
			pid, _ = unix.GetsockoptInt(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERPID)
		}
	}); err != nil {
		return anonymous, fmt.Errorf("peer credentials: %w", err)
	}
	if serr != nil {
		return anonymous, fmt.Errorf("peer credentials: LOCAL_PEERCRED: %w", serr)
	}
	cred := PeerCred{UID: int(xu.Uid), GID: -1, PID: pid}
	n := min(int(xu.Ngroups), len(xu.Groups))
	for i, g := range xu.Groups[:n] {
		if i == 0 {
			cred.GID = int(g)
			continue
		}
		cred.Groups = append(cred.Groups, int(g))
	}
	if n == len(xu.Groups) {
		if u, err := user.LookupId(strconv.Itoa(cred.UID)); err == nil {
			if ids, err := u.GroupIds(); err == nil {
				for _, s := range ids {
					if g, err := strconv.Atoi(s); err == nil && !slices.Contains(cred.Groups, g) {
						cred.Groups = append(cred.Groups, g)
					}
				}
			}
		}
	}
	return cred, nil
}
