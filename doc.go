// Package nymvpn is the root of the nymvpn module: a desktop VPN with a two-hop
// WireGuard fast mode and a Sphinx mixnet mode, plus the network side it talks to.
// See docs/architecture.md for the map of packages.
package nymvpn
