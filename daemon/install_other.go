//go:build !linux

package daemon

// installEarly: launchd and the Windows service manager start the daemon
// itself early; there is no separate boot-time unit.
func installEarly(string) error { return nil }

func uninstallEarly() error { return nil }
