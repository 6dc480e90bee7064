//go:build !linux

package e2e

import "errors"

func serveWireGuard(string, string) error { return errors.New("the single-hop baseline needs Linux") }
