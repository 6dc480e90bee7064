// Package version holds the build's version, stamped by the linker from git:
// -ldflags "-X github.com/nymvpn/nymvpn/version.Version=$(git describe)".
package version

import "runtime/debug"

// Version is the release, set at link time.
var Version = "dev"

// String returns the version with the VCS revision when the build has one.
func String() string {
	v := Version
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}
