package control

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/windows"
)

// administratorsSID is BUILTIN\Administrators.
const administratorsSID = "S-1-5-32-544"

// peerCred identifies the client of a named pipe: GetNamedPipeClientProcessId
// gives its process, whose primary token gives the user SID and the enabled
// groups. Admin is set for LocalSystem and for tokens in which Administrators
// is enabled, i.e. elevated administrators (a filtered UAC token holds
// Administrators as deny-only). The process token is read rather than
// impersonating the client, so clients need not grant impersonation rights
// (go-winio dials with anonymous impersonation level).
func peerCred(c net.Conn) (PeerCred, error) {
	fc, ok := c.(interface{ Fd() uintptr })
	if !ok {
		return anonymous, fmt.Errorf("peer credentials: %T is not a named pipe", c)
	}
	var pid uint32
	if err := windows.GetNamedPipeClientProcessId(windows.Handle(fc.Fd()), &pid); err != nil {
		return anonymous, fmt.Errorf("peer credentials: GetNamedPipeClientProcessId: %w", err)
	}
	cred := anonymous
	cred.PID = int(pid)
	proc, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return cred, fmt.Errorf("peer credentials: open process %d: %w", pid, err)
	}
	defer windows.CloseHandle(proc)
	var tok windows.Token
	if err := windows.OpenProcessToken(proc, windows.TOKEN_QUERY, &tok); err != nil {
		return cred, fmt.Errorf("peer credentials: token of process %d: %w", pid, err)
	}
	defer tok.Close()
	tu, err := tok.GetTokenUser()
	if err != nil {
		return cred, fmt.Errorf("peer credentials: token user of process %d: %w", pid, err)
	}
	if tu.User.Sid == nil {
		return cred, errors.New("peer credentials: token has no user")
	}
	cred.SID = tu.User.Sid.String()
	cred.Admin = tu.User.Sid.IsWellKnown(windows.WinLocalSystemSid)
	groups, err := tok.GetTokenGroups()
	if err != nil {
		return cred, fmt.Errorf("peer credentials: token groups of process %d: %w", pid, err)
	}
	for _, g := range groups.AllGroups() {
		if g.Attributes&windows.SE_GROUP_ENABLED == 0 || g.Sid == nil {
			continue
		}
		s := g.Sid.String()
		cred.GroupSIDs = append(cred.GroupSIDs, s)
		if s == administratorsSID {
			cred.Admin = true
		}
	}
	return cred, nil
}
