package control

import (
	"errors"
	"fmt"
	"net"

	"github.com/Microsoft/go-winio"
)

// PipeSDDL is the control pipe's security descriptor: full access for
// LocalSystem and Administrators, read and write for authenticated users
// (a client must write its requests even to read the state; what it may
// change is decided per request from its token, see PeerCred). Generic
// write includes creating pipe instances, but the pipe lives under
// \\.\pipe\ProtectedPrefix\Administrators\, where only administrators and
// SYSTEM may create pipes at all, so no user can squat the name or add an
// instance that impersonates the daemon.
const PipeSDDL = "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGW;;;AU)"

// Listen opens the control named pipe at path (normally
// api.DefaultSocket()). Creating the first instance fails if another daemon
// holds the pipe.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("control: listen: empty pipe path")
	}
	ln, err := winio.ListenPipe(path, &winio.PipeConfig{
		SecurityDescriptor: PipeSDDL,
		InputBufferSize:    64 << 10,
		OutputBufferSize:   64 << 10,
	})
	if err != nil {
		return nil, fmt.Errorf("control: listen on %s (is another nymvpnd running, or is this not an elevated process?): %w", path, err)
	}
	return ln, nil
}
