package api

// DefaultSocket is where nymvpnd listens unless told otherwise: a named pipe
// under ProtectedPrefix\Administrators, where only elevated administrators
// and SYSTEM may create pipes, so no other process can squat the name.
func DefaultSocket() string { return `\\.\pipe\ProtectedPrefix\Administrators\nymvpn\nymvpnd` }
