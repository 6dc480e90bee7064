//go:build !linux && !darwin && !windows

package cli

import (
	"errors"
	"os"
)

// isTerminal: without a known terminal interface, stdin is read like a pipe.
func isTerminal(*os.File) bool { return false }

func noEcho(*os.File) (func(), error) { return nil, errors.New("cannot turn echo off here") }
