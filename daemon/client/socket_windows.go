package client

import (
	"context"
	"errors"
	"net"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

// checkSocket has nothing to check on Windows: only administrators and
// SYSTEM can create pipes under ProtectedPrefix\Administrators.
func checkSocket(string) error { return nil }

// checkPeer: see checkSocket.
func checkPeer(net.Conn) error { return nil }

func dialSocket(ctx context.Context, path string) (net.Conn, error) {
	return winio.DialPipeContext(ctx, path)
}

func isRefused(err error) bool {
	return errors.Is(err, windows.ERROR_FILE_NOT_FOUND) || errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED)
}
