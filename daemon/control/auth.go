package control

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"
)

// DefaultGroup is the group whose members may change the VPN.
const DefaultGroup = "nymvpn"

// PeerCred is what the kernel says about the process on the other end of a
// control connection, read once when the connection is accepted.
type PeerCred struct {
	// UID, GID (effective, at connect time) and PID on Unix; UID and GID
	// are -1 on Windows. PID is 0 when unknown.
	UID, GID, PID int
	// Groups are the supplementary group ids (Unix).
	Groups []int
	// SID is the user's security identifier, GroupSIDs the enabled groups
	// of its token, Admin whether it is LocalSystem or an elevated member
	// of Administrators (Windows).
	SID       string
	GroupSIDs []string
	Admin     bool
}

// anonymous is the PeerCred of a caller whose credentials could not be read:
// it may only read.
var anonymous = PeerCred{UID: -1, GID: -1}

type credKey struct{}

// withPeerCred returns ctx carrying c.
func withPeerCred(ctx context.Context, c PeerCred) context.Context {
	return context.WithValue(ctx, credKey{}, c)
}

// PeerCredFromContext returns the credentials of the caller whose request ctx
// belongs to (a Backend method's ctx), or an unknown caller (UID
// and GID -1, who may only read) and false.
func PeerCredFromContext(ctx context.Context) (PeerCred, bool) {
	c, ok := ctx.Value(credKey{}).(PeerCred)
	if !ok {
		return anonymous, false
	}
	return c, true
}

// Authorizer decides who may change the VPN (connect, disconnect, change
// settings). Everyone connected to the socket may read.
type Authorizer interface {
	// AuthorizeWrite returns nil if c may change the VPN, otherwise an
	// error whose message tells the user how to get the right; it is sent
	// to the caller as the message of a 403 forbidden.
	AuthorizeWrite(c PeerCred) error
}

// Policy is the default Authorizer. A caller may write if it is root (uid 0;
// on Windows LocalSystem or an elevated administrator), a member of Group
// (primary or supplementary group; on Windows an enabled group of its
// token), or the operator (OperatorUID on Unix, OperatorSID on Windows).
// Everyone else may only read. The zero Policy lets only root write.
type Policy struct {
	// Group is the name of the writers' group, resolved with os/user at
	// most every 30 seconds, so a group created after the daemon started
	// takes effect; a group that does not exist lets nobody in. Empty
	// disables group access.
	Group string
	// OperatorUID is a user who may write; 0 (root, who may anyway) means
	// none.
	OperatorUID int
	// OperatorSID is the Windows counterpart of OperatorUID.
	OperatorSID string

	// lookupGroup resolves Group; nil means user.LookupGroup (tests
	// replace it).
	lookupGroup func(name string) (*user.Group, error)

	mu       sync.Mutex
	cachedAt time.Time
	cached   string // Gid of Group: a number on Unix, a SID on Windows; "" if none
}

// groupCacheTTL is how long Policy trusts a group lookup.
const groupCacheTTL = 30 * time.Second

// CanWrite reports whether c may change the VPN.
func (p *Policy) CanWrite(c PeerCred) bool {
	if c.UID == 0 || c.Admin {
		return true
	}
	if p.OperatorUID > 0 && c.UID == p.OperatorUID {
		return true
	}
	if p.OperatorSID != "" && c.SID == p.OperatorSID {
		return true
	}
	if p.Group == "" {
		return false
	}
	gid := p.groupID()
	if gid == "" {
		return false
	}
	if n, err := strconv.Atoi(gid); err == nil {
		return n >= 0 && (c.GID == n || slices.Contains(c.Groups, n))
	}
	return slices.Contains(c.GroupSIDs, gid)
}

// groupID returns the cached id of p.Group, looking it up when stale.
func (p *Policy) groupID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cachedAt.IsZero() && time.Since(p.cachedAt) < groupCacheTTL {
		return p.cached
	}
	lookup := p.lookupGroup
	if lookup == nil {
		lookup = user.LookupGroup
	}
	p.cached = ""
	if g, err := lookup(p.Group); err == nil {
		p.cached = g.Gid
	}
	p.cachedAt = time.Now()
	return p.cached
}

// AuthorizeWrite implements Authorizer.
func (p *Policy) AuthorizeWrite(c PeerCred) error {
	if p.CanWrite(c) {
		return nil
	}
	return errors.New(p.denyMessage())
}

// denyMessage tells a read-only caller how to become a writer on this OS.
func (p *Policy) denyMessage() string {
	var join string
	switch runtime.GOOS {
	case "windows":
		msg := "you may only read the VPN state: run from an elevated (Run as administrator) prompt"
		if p.Group != "" {
			msg += fmt.Sprintf(", or join the %s group (net localgroup %s %%USERNAME%% /add as an administrator, then sign in again)", p.Group, p.Group)
		}
		return msg
	case "darwin":
		join = fmt.Sprintf("sudo dseditgroup -o edit -a $USER -t user %s", p.Group)
	default:
		join = fmt.Sprintf("sudo usermod -aG %s $USER", p.Group)
	}
	if p.Group == "" {
		return "you may only read the VPN state: run as root (sudo), or ask the administrator to make you nymvpnd's operator"
	}
	return fmt.Sprintf("you may only read the VPN state: run as root (sudo), join the %s group (%s, then log in again) or ask the administrator to make you nymvpnd's operator", p.Group, join)
}
