// Command nymvpn-app is the NymVPN window and tray over nymvpnd (package
// app).
package main

import (
	"os"

	"github.com/nymvpn/nymvpn/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stderr))
}
