// Package e2e holds end-to-end tests that run the real binaries (nym-node,
// nymvpn) in a network of Linux network namespaces built with
// internal/netnstest. They need root and skip with a clear message without
// it; CI runs them as root. They are skipped in -short mode too, since they
// build the binaries first.
package e2e
