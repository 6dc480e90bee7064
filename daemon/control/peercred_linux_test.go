package control

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/nymvpn/nymvpn/daemon/api"
)

func TestParseProcStatus(t *testing.T) {
	status := "Name:\tbash\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t4 27 990 \nNgid:\t0\n"
	got, err := parseProcStatus([]byte(status), 1000, 1000)
	if err != nil || !reflect.DeepEqual(got, []int{4, 27, 990}) {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := parseProcStatus([]byte(status), 0, 1000); err == nil {
		t.Error("a process with another uid was accepted")
	}
	if _, err := parseProcStatus([]byte(status), 1000, 0); err == nil {
		t.Error("a process with another gid was accepted")
	}
	if _, err := parseProcStatus([]byte("Uid:\t1000\t1000\t1000\t1000\nGid:\t1\t1\t1\t1\n"), 1000, 1); err == nil {
		t.Error("a status without Groups was accepted")
	}
	none, err := parseProcStatus([]byte("Uid:\t5\t5\t5\t5\nGid:\t5\t5\t5\t5\nGroups:\t\n"), 5, 5)
	if err != nil || len(none) != 0 {
		t.Errorf("no groups: %v, %v", none, err)
	}
}

func TestPeerCredSelf(t *testing.T) {
	path := filepath.Join(socketDir(t), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("unix", path)
		if err == nil {
			io.Copy(io.Discard, c)
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cred, err := peerCred(c)
	if err != nil {
		t.Fatal(err)
	}
	groups, _ := os.Getgroups()
	if cred.UID != os.Geteuid() || cred.GID != os.Getegid() || cred.PID != os.Getpid() || !reflect.DeepEqual(cred.Groups, groups) && !(len(groups) == 0 && len(cred.Groups) == 0) {
		t.Fatalf("cred %+v; want uid %d gid %d pid %d groups %v", cred, os.Geteuid(), os.Getegid(), os.Getpid(), groups)
	}
	if _, err := peerCred(nil); err == nil {
		t.Error("peerCred of a nil conn succeeded")
	}
}

// runAs runs this test binary's helper as uid/gid with groups against the
// socket at path. The binary is copied where that user can read it.
func runAs(t *testing.T, path string, uid, gid uint32, groups []uint32) helperResult {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(filepath.Dir(path), "control.test")
	if _, err := os.Stat(bin); err != nil {
		data, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{helperEnv + "=" + path, "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helper as uid %d: %v; stderr: %s", uid, err, stderr.String())
	}
	var res helperResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("helper output %q: %v", stdout.String(), err)
	}
	if res.UID != int(uid) {
		t.Fatalf("helper ran as uid %d, want %d", res.UID, uid)
	}
	return res
}

// TestUnprivilegedCaller runs real clients as other users: nobody may read
// but not write; a member of the writers' group and the operator may write.
func TestUnprivilegedCaller(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	const nobody, group, operator = 65534, 4242, 4343
	policy := &Policy{Group: "nymvpn", OperatorUID: operator, lookupGroup: func(name string) (*user.Group, error) {
		return &user.Group{Name: name, Gid: "4242"}, nil
	}}
	ts := startServer(t, Config{Authorizer: policy})

	t.Run("nobody reads", func(t *testing.T) {
		res := runAs(t, ts.path, nobody, nobody, nil)
		if res.StatusCode != 200 || res.SettingsCode != 200 {
			t.Fatalf("status %d, settings %d: %+v", res.StatusCode, res.SettingsCode, res)
		}
		var st api.Status
		if err := json.Unmarshal([]byte(res.StatusBody), &st); err != nil {
			t.Fatal(err)
		}
		if st.Caller == nil || st.Caller.UID != nobody || st.Caller.CanWrite {
			t.Fatalf("caller %+v, want uid %d read-only", st.Caller, nobody)
		}
		if res.ConnectCode != 403 || res.SettingsPatch != 403 {
			t.Fatalf("connect %d, patch %d, want 403", res.ConnectCode, res.SettingsPatch)
		}
		var eb api.ErrorBody
		if err := json.Unmarshal([]byte(res.ConnectBody), &eb); err != nil {
			t.Fatal(err)
		}
		if eb.Error.Code != api.CodeForbidden ||
			!strings.Contains(eb.Error.Message, "you may only read the VPN state") ||
			!strings.Contains(eb.Error.Message, "sudo usermod -aG nymvpn $USER") {
			t.Fatalf("forbidden body %+v", eb)
		}
	})
	t.Run("group member writes", func(t *testing.T) {
		res := runAs(t, ts.path, nobody, nobody, []uint32{100, group})
		if res.ConnectCode != 202 || res.SettingsPatch != 200 {
			t.Fatalf("connect %d (%s), patch %d", res.ConnectCode, res.ConnectBody, res.SettingsPatch)
		}
		var st api.Status
		json.Unmarshal([]byte(res.StatusBody), &st)
		if st.Caller == nil || !st.Caller.CanWrite {
			t.Fatalf("caller %+v, want a writer", st.Caller)
		}
	})
	t.Run("primary group writes", func(t *testing.T) {
		if res := runAs(t, ts.path, nobody, group, nil); res.ConnectCode != 202 {
			t.Fatalf("connect %d (%s)", res.ConnectCode, res.ConnectBody)
		}
	})
	t.Run("operator writes", func(t *testing.T) {
		if res := runAs(t, ts.path, operator, operator, nil); res.ConnectCode != 202 {
			t.Fatalf("connect %d (%s)", res.ConnectCode, res.ConnectBody)
		}
	})
	ts.backend.mu.Lock()
	defer ts.backend.mu.Unlock()
	var uids []int
	for _, c := range ts.backend.creds {
		uids = append(uids, c.UID)
	}
	if !reflect.DeepEqual(uids, []int{nobody, nobody, nobody, nobody, operator, operator}) {
		t.Errorf("backend calls by uids %v", uids)
	}
}
