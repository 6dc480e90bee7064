package control

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// peerCred reads the credentials of the process on the other end of a Unix
// socket with SO_PEERCRED: the uid, gid and pid it had when it connected.
// Its supplementary groups come from /proc/<pid>/status (the groups the
// process really has, which may differ from /etc/group, e.g. before the user
// logged in again after being added to a group), or from the user database
// when the process is gone or is no longer the one that connected.
func peerCred(c net.Conn) (PeerCred, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return anonymous, fmt.Errorf("peer credentials: %T is not a socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return anonymous, fmt.Errorf("peer credentials: %w", err)
	}
	var uc *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		uc, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return anonymous, fmt.Errorf("peer credentials: %w", err)
	}
	if serr != nil {
		return anonymous, fmt.Errorf("peer credentials: SO_PEERCRED: %w", serr)
	}
	cred := PeerCred{UID: int(uc.Uid), GID: int(uc.Gid), PID: int(uc.Pid)}
	groups, err := procGroups(uc)
	if err != nil {
		groups, err = userGroups(cred.UID)
	}
	if err != nil {
		return cred, fmt.Errorf("peer credentials: groups of uid %d: %w", cred.UID, err)
	}
	cred.Groups = groups
	return cred, nil
}

// procGroups reads the supplementary groups of uc.Pid, provided the process
// still has the effective uid and gid it connected with.
func procGroups(uc *unix.Ucred) ([]int, error) {
	if uc.Pid <= 0 {
		return nil, errors.New("no pid")
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", uc.Pid))
	if err != nil {
		return nil, err
	}
	return parseProcStatus(data, int(uc.Uid), int(uc.Gid))
}

// parseProcStatus returns the Groups of a /proc/<pid>/status whose effective
// Uid and Gid are uid and gid.
func parseProcStatus(data []byte, uid, gid int) ([]int, error) {
	var groups []int
	var sawUID, sawGID, sawGroups bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		switch key {
		case "Uid", "Gid":
			want := uid
			if key == "Gid" {
				want = gid
			}
			if len(f) < 2 || f[1] != strconv.Itoa(want) {
				return nil, fmt.Errorf("process changed its %s since it connected", strings.ToLower(key))
			}
			if key == "Uid" {
				sawUID = true
			} else {
				sawGID = true
			}
		case "Groups":
			sawGroups = true
			for _, s := range f {
				g, err := strconv.Atoi(s)
				if err != nil {
					return nil, fmt.Errorf("bad group %q", s)
				}
				groups = append(groups, g)
			}
		}
	}
	if !sawUID || !sawGID || !sawGroups {
		return nil, errors.New("status lacks Uid, Gid or Groups")
	}
	return groups, nil
}

// userGroups looks up the groups of uid in the user database.
func userGroups(uid int) ([]int, error) {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return nil, err
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, err
	}
	groups := make([]int, 0, len(ids))
	for _, s := range ids {
		if g, err := strconv.Atoi(s); err == nil {
			groups = append(groups, g)
		}
	}
	return groups, nil
}
