package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open the pty's slave: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

func echoOn(t *testing.T, f *os.File) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio.Lflag&unix.ECHO != 0
}

// TestReadPhraseFromTerminal: on a terminal the phrase is asked for with
// echo off, and echo comes back afterwards.
func TestReadPhraseFromTerminal(t *testing.T) {
	master, slave := openPTY(t)
	if !isTerminal(slave) {
		t.Fatal("the pty's slave is not a terminal")
	}
	if r, w, err := os.Pipe(); err == nil {
		if isTerminal(r) {
			t.Error("a pipe counts as a terminal")
		}
		r.Close()
		w.Close()
	}
	if !echoOn(t, slave) {
		t.Fatal("echo is off before the prompt")
	}
	var stderr syncBuffer
	r := &runner{stdin: slave, stdout: io.Discard, stderr: &stderr}
	type result struct {
		s   string
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := r.readPhrase(context.Background())
		done <- result{s, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for echoOn(t, slave) {
		if time.Now().After(deadline) {
			t.Fatal("echo was not turned off")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := master.Write([]byte("secret words here\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res.err != nil || res.s != "secret words here\n" {
			t.Fatalf("read %q, %v", res.s, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no phrase read")
	}
	if !echoOn(t, slave) {
		t.Error("echo is still off after the phrase was read")
	}
	if got := stderr.String(); got != "Recovery phrase (the words are not shown as you type): \n" {
		t.Errorf("prompt %q", got)
	}
}

// TestReadPhraseInterrupted: Ctrl-C at the prompt restores the echo.
func TestReadPhraseInterrupted(t *testing.T) {
	_, slave := openPTY(t)
	r := &runner{stdin: slave, stdout: io.Discard, stderr: io.Discard}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.readPhrase(ctx)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for echoOn(t, slave) {
		if time.Now().After(deadline) {
			t.Fatal("echo was not turned off")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("an interrupted prompt returned no error")
	}
	if !echoOn(t, slave) {
		t.Error("echo is still off after the interruption")
	}
}
