// Package cli implements the nymvpn command's daemon commands — connect,
// disconnect, status, watch, gateways, settings, account, tickets, version —
// as clients of nymvpnd's control API (daemon/client). cmd/nymvpn only hands
// it the arguments.
//
// Exit codes: 0 success, 1 failure, 2 usage error, 3 the daemon is not
// running, 4 permission refused (the caller may only read, or cannot open
// the socket).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/client"
)

// Exit codes of Main.
const (
	ExitOK         = 0
	ExitFailure    = 1
	ExitUsage      = 2
	ExitNotRunning = 3
	ExitForbidden  = 4
)

// SocketEnv names the environment variable that overrides the default
// socket path (--socket overrides both).
const SocketEnv = "NYMVPN_SOCKET"

// requestTimeout bounds one request to the daemon.
const requestTimeout = 15 * time.Second

// usage is the nymvpn command's usage text; %s is the default socket.
const usage = `usage: nymvpn [--socket PATH] <command> [flags]

commands:
  connect     connect the VPN: [--mode fast|mixnet] [--entry auto|CC|ID] [--exit auto|CC|ID]
              [--wait] [--timeout 2m]; choices given are saved for later connects
  disconnect  disconnect the VPN: [--wait] [--timeout 1m]
  status      show the VPN's state: [--json]
  watch       print every change of state until interrupted: [--json]
  gateways    list the network's gateways: [--role entry|exit] [--country CC] [--json]
  account     account create [--json] | import | forget [--yes] | show [--json]: the account
              that pays for connections; import reads the recovery phrase from stdin or asks for it
  tickets     show the tickets left per type: [--json]
  settings    settings get [--json] [KEY] | settings set KEY VALUE
              keys: mode, entry, exit, dns (comma list, or default), ipv6 (on|off),
              auto-connect, kill-switch, lockdown, allow-lan (on|off), directory (URL with ?key=)
  proxy       run an unprivileged SOCKS5 proxy through the VPN, without the daemon
  version     print the version of nymvpn and of the running nymvpnd

--socket PATH (or $NYMVPN_SOCKET) is nymvpnd's control socket; the default is
` + "%s" + `.

exit codes: 0 ok, 1 failure, 2 usage, 3 nymvpnd not running, 4 not allowed
`

// usageText is usage with the default socket filled in.
func usageText() string { return fmt.Sprintf(usage, api.DefaultSocket()) }

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// runner carries one invocation's input, outputs and client.
type runner struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	c              *client.Client
}

// Main runs the nymvpn command with args (without the program name) and
// returns its exit code. ctx ends waits and watches (Ctrl-C).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return mainWithInput(ctx, args, os.Stdin, stdout, stderr)
}

// mainWithInput is Main reading from stdin (account import's phrase).
func mainWithInput(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	socket, rest, err := extractSocket(args)
	if err != nil {
		fmt.Fprintf(stderr, "nymvpn: %v\n\n%s", err, usageText())
		return ExitUsage
	}
	if socket == "" {
		socket = os.Getenv(SocketEnv)
	}
	if len(rest) == 0 {
		fmt.Fprint(stderr, usageText())
		return ExitUsage
	}
	r := &runner{stdin: stdin, stdout: stdout, stderr: stderr, c: client.New(socket)}
	defer r.c.Close()
	cmd, cmdArgs := rest[0], rest[1:]
	var run func(context.Context, []string) error
	switch cmd {
	case "connect":
		run = r.connect
	case "disconnect":
		run = r.disconnect
	case "status":
		run = r.status
	case "watch":
		run = r.watch
	case "gateways":
		run = r.gateways
	case "settings":
		run = r.settings
	case "account":
		run = r.account
	case "tickets":
		run = r.tickets
	case "version", "--version":
		run = r.version
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText())
		return ExitOK
	default:
		fmt.Fprintf(stderr, "nymvpn: unknown command %q\n\n%s", cmd, usageText())
		return ExitUsage
	}
	return r.exit(run(ctx, cmdArgs))
}

// exit reports err and returns the exit code it deserves.
func (r *runner) exit(err error) int {
	if err == nil {
		return ExitOK
	}
	var ue *usageError
	var ae *api.APIError
	var ee *exitError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(r.stderr, "nymvpn: %s (see nymvpn help)\n", ue.msg)
		return ExitUsage
	case errors.As(err, &ee):
		fmt.Fprintf(r.stderr, "nymvpn: %s\n", ee.msg)
		return ee.code
	case errors.Is(err, client.ErrDaemonNotRunning):
		fmt.Fprintf(r.stderr, "nymvpn: %v\n", err)
		return ExitNotRunning
	case errors.Is(err, client.ErrPermission):
		fmt.Fprintf(r.stderr, "nymvpn: %v\n", err)
		return ExitForbidden
	case errors.As(err, &ae):
		fmt.Fprintf(r.stderr, "nymvpn: %s\n", ae.Message)
		if ae.Code == api.CodeForbidden || ae.Code == api.CodeOriginRefused {
			return ExitForbidden
		}
		return ExitFailure
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintln(r.stderr, "nymvpn: nymvpnd did not answer in time")
		return ExitFailure
	}
	fmt.Fprintf(r.stderr, "nymvpn: %v\n", err)
	return ExitFailure
}

// exitError ends a command with a message and a code.
type exitError struct {
	msg  string
	code int
}

func (e *exitError) Error() string { return e.msg }

// extractSocket removes --socket PATH / --socket=PATH (one or two dashes)
// from anywhere before a "--" and returns it.
func extractSocket(args []string) (string, []string, error) {
	var socket string
	rest := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "socket" {
			rest = append(rest, a)
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return "", nil, errors.New("--socket needs a path")
			}
			i++
			val = args[i]
		}
		if val == "" {
			return "", nil, errors.New("--socket needs a path")
		}
		socket = val
	}
	return socket, rest, nil
}

// parseFlags parses fs from args, allowing flags after positional
// arguments, and returns the positional ones. -h prints the command's usage.
func (r *runner) parseFlags(fs *flag.FlagSet, synopsis string, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(r.stderr, "usage: nymvpn %s %s\n", fs.Name(), synopsis)
				fs.SetOutput(r.stderr)
				fs.PrintDefaults()
				return nil, err
			}
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// newFlags returns a flag set for a command; parseFlags reports its errors.
func (r *runner) newFlags(name string) *flag.FlagSet {
	return flag.NewFlagSet(name, flag.ContinueOnError)
}

// request returns a context for one request.
func request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, requestTimeout)
}
