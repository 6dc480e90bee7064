// Command nymvpnd is the nymvpn daemon: it owns the tunnel and serves the
// control API. See package daemon.
package main

import (
	"os"

	"github.com/nymvpn/nymvpn/daemon"
)

func main() { os.Exit(daemon.Main(os.Args[1:], os.Stdout, os.Stderr)) }
