package netnstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a long-running command started in a namespace by Start.
type Process struct {
	// Name labels the process in logs and failures.
	Name string
	ns   *Namespace
	cmd  *exec.Cmd

	mu             sync.Mutex
	stdout, output bytes.Buffer // stdout alone; stdout and stderr interleaved

	done    chan struct{}
	waitErr error // set before done is closed
}

// Start runs a command in the namespace until the test ends or Stop is
// called. Its stdout and stderr are kept (Output, Stdout) and logged if the
// test fails. The process runs in its own process group; Stop and the
// cleanup signal the whole group.
func (n *Namespace) Start(t testing.TB, name, path string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, ns: n, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", n.Name, path}, args...)...)
	p.cmd.Stdout = io.MultiWriter(lockedWriter{p, &p.stdout}, lockedWriter{p, &p.output})
	p.cmd.Stderr = lockedWriter{p, &p.output}
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("netnstest: start %s in %s: %v", name, n.Name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("netnstest: %s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("netnstest: output of %s (in %s):\n%s", name, n.Name, tail(p.Output(), 64<<10))
		}
	})
	return p
}

type lockedWriter struct {
	p *Process
	b *bytes.Buffer
}

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.b.Write(b)
}

// Pid is the process's id (ip netns exec replaces itself with the command,
// so this is the command's own pid).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output returns stdout and stderr so far, interleaved.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// Stdout returns stdout so far.
func (p *Process) Stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// WaitFor waits until the process's output matches re and returns the
// match's submatches. It fails the test if the process exits first or the
// timeout passes.
func (p *Process) WaitFor(t testing.TB, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	m, err := p.waitFor(re, timeout)
	if err != nil {
		t.Fatalf("netnstest: %v\noutput of %s:\n%s", err, p.Name, tail(p.Output(), 16<<10))
	}
	return m
}

func (p *Process) waitFor(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if m := re.FindStringSubmatch(p.Output()); m != nil {
			return m, nil
		}
		select {
		case <-p.done:
			if m := re.FindStringSubmatch(p.Output()); m != nil {
				return m, nil
			}
			return nil, fmt.Errorf("%s exited (%v) before printing %q", p.Name, p.waitErr, re)
		case <-ctx.Done():
			return nil, fmt.Errorf("%s did not print %q within %v", p.Name, re, timeout)
		case <-tick.C:
		}
	}
}

// Stop sends SIGTERM to the process group, waits up to StopTimeout for the
// process to exit, then sends SIGKILL. It returns the process's exit error
// (nil for a clean exit after SIGTERM). Calling it again returns the same.
func (p *Process) Stop() error {
	select {
	case <-p.done:
		return p.exitErr()
	default:
	}
	signalGroup(p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(StopTimeout):
		signalGroup(p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s ignored SIGTERM for %v and was killed", p.Name, StopTimeout)
	}
	// Children left in the group (none, normally) go too.
	signalGroup(p.cmd.Process.Pid, syscall.SIGKILL)
	return p.exitErr()
}

// exitErr is the process's exit status, treating death by SIGTERM as clean.
func (p *Process) exitErr() error {
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
	}
	if p.waitErr != nil {
		return fmt.Errorf("%s: %w", p.Name, p.waitErr)
	}
	return nil
}

// tail returns at most the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "…\n" + s
}
