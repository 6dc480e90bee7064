package control

import (
	"os/user"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestPolicy(t *testing.T) {
	lookups := 0
	p := &Policy{Group: "nymvpn", OperatorUID: 1500, lookupGroup: func(name string) (*user.Group, error) {
		lookups++
		if name != "nymvpn" {
			return nil, user.UnknownGroupError(name)
		}
		return &user.Group{Name: name, Gid: "990"}, nil
	}}
	cases := []struct {
		name string
		c    PeerCred
		want bool
	}{
		{"root", PeerCred{UID: 0, GID: 0}, true},
		{"root with other gid", PeerCred{UID: 0, GID: 1000}, true},
		{"group via supplementary", PeerCred{UID: 1000, GID: 1000, Groups: []int{27, 990}}, true},
		{"group via primary", PeerCred{UID: 1000, GID: 990}, true},
		{"operator", PeerCred{UID: 1500, GID: 1500}, true},
		{"other user", PeerCred{UID: 1000, GID: 1000, Groups: []int{27, 100}}, false},
		{"nobody", PeerCred{UID: 65534, GID: 65534}, false},
		{"anonymous", anonymous, false},
		{"windows admin", PeerCred{UID: -1, GID: -1, SID: "S-1-5-21-1-2-3-1001", Admin: true}, true},
		{"windows user", PeerCred{UID: -1, GID: -1, SID: "S-1-5-21-1-2-3-1002", GroupSIDs: []string{"S-1-5-32-545"}}, false},
	}
	for _, c := range cases {
		if got := p.CanWrite(c.c); got != c.want {
			t.Errorf("%s: CanWrite = %v, want %v", c.name, got, c.want)
		}
		err := p.AuthorizeWrite(c.c)
		if (err == nil) != c.want {
			t.Errorf("%s: AuthorizeWrite = %v", c.name, err)
		}
	}
	if lookups != 1 {
		t.Errorf("group looked up %d times, want 1 (cached)", lookups)
	}
	// The cache expires.
	p.cachedAt = time.Now().Add(-groupCacheTTL - time.Second)
	p.CanWrite(PeerCred{UID: 1000, GID: 1000})
	if lookups != 2 {
		t.Errorf("stale cache not refreshed: %d lookups", lookups)
	}
}

func TestPolicyWindowsGroupSID(t *testing.T) {
	p := &Policy{Group: "nymvpn", lookupGroup: func(string) (*user.Group, error) {
		return &user.Group{Name: "nymvpn", Gid: "S-1-5-21-1-2-3-1010"}, nil
	}}
	if !p.CanWrite(PeerCred{UID: -1, GID: -1, GroupSIDs: []string{"S-1-5-32-545", "S-1-5-21-1-2-3-1010"}}) {
		t.Error("member of the group's SID refused")
	}
	op := &Policy{OperatorSID: "S-1-5-21-1-2-3-1002"}
	if !op.CanWrite(PeerCred{UID: -1, GID: -1, SID: "S-1-5-21-1-2-3-1002"}) {
		t.Error("operator SID refused")
	}
}

func TestPolicyAbsentGroup(t *testing.T) {
	p := &Policy{Group: "nymvpn", lookupGroup: func(name string) (*user.Group, error) {
		return nil, user.UnknownGroupError(name)
	}}
	// A caller whose gid happens to be 0 or -1 is not let in by a missing
	// group.
	for _, c := range []PeerCred{{UID: 1000, GID: -1, Groups: []int{-1}}, {UID: 1000, GID: 1000}} {
		if p.CanWrite(c) {
			t.Errorf("%+v may write through a group that does not exist", c)
		}
	}
	zero := &Policy{}
	if zero.CanWrite(PeerCred{UID: 1000, GID: 0}) || !zero.CanWrite(PeerCred{UID: 0}) {
		t.Error("zero Policy must let exactly root write")
	}
}

func TestPolicyMessage(t *testing.T) {
	err := (&Policy{Group: "nymvpn"}).AuthorizeWrite(PeerCred{UID: 1000, GID: 1000})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{"you may only read the VPN state", "nymvpn group"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if runtime.GOOS == "linux" && !strings.Contains(msg, "sudo usermod -aG nymvpn $USER") {
		t.Errorf("message %q lacks the usermod hint", msg)
	}
	if msg := (&Policy{}).AuthorizeWrite(PeerCred{UID: 1000}).Error(); strings.Contains(msg, "group") {
		t.Errorf("no-group policy mentions a group: %q", msg)
	}
}
