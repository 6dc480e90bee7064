package tray

// available: Windows always has a notification area.
func available() error { return nil }
