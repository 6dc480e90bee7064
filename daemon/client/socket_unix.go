//go:build unix

package client

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
)

// checkSocket checks that path is a socket owned by root or by us.
func checkSocket(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return classify(path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return &DialError{Path: path, Err: errors.New("not a socket")}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return &DialError{Kind: ErrUntrustedSocket, Path: path, Err: errors.New("cannot read the socket's owner")}
	}
	if !trustedUID(int(st.Uid)) {
		return &DialError{Kind: ErrUntrustedSocket, Path: path, Err: fmt.Errorf("the socket belongs to uid %d, not to root or you (uid %d)", st.Uid, os.Geteuid())}
	}
	return nil
}

func trustedUID(uid int) bool { return uid == 0 || uid == os.Geteuid() }

func dialSocket(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
