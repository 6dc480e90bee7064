//go:build !linux && !darwin && !windows

package control

import (
	"errors"
	"net"
)

// peerCred cannot read peer credentials on this platform: every caller may
// only read.
func peerCred(net.Conn) (PeerCred, error) {
	return anonymous, errors.New("peer credentials are not supported on this platform")
}
