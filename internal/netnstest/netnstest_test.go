package netnstest_test

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/internal/netnstest"
)

// TestMain doubles as a tiny TCP server and client that the tests run inside
// namespaces by re-executing the test binary.
func TestMain(m *testing.M) {
	switch os.Getenv("NETNSTEST_HELPER") {
	case "listen":
		ln, err := net.Listen("tcp", os.Getenv("NETNSTEST_ADDR"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("listening on", ln.Addr())
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(1)
			}
			fmt.Fprintf(c, "hello %s\n", c.RemoteAddr())
			c.Close()
		}
	case "dial":
		c, err := net.DialTimeout("tcp", os.Getenv("NETNSTEST_ADDR"), 10*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		io.Copy(os.Stdout, c)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestLinkStartAndCleanup(t *testing.T) {
	netnstest.RequireRoot(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var server *netnstest.Process
	t.Run("network", func(t *testing.T) {
		a, b := netnstest.New(t, "a"), netnstest.New(t, "b")
		names = []string{a.Name, b.Name}
		aIf, bIf := netnstest.Link(t, a, netip.MustParsePrefix("172.30.9.1/24"), b, netip.MustParsePrefix("172.30.9.2/24"))
		if aIf != "v0-b" || bIf != "v0-a" {
			t.Errorf("interface names %q, %q; want v0-b, v0-a", aIf, bIf)
		}
		if out := a.MustRun(t, "ip", "-o", "addr", "show", "dev", aIf); !strings.Contains(out, "172.30.9.1/24") {
			t.Errorf("address missing on %s: %s", aIf, out)
		}
		server = b.Start(t, "server", "env", "NETNSTEST_HELPER=listen", "NETNSTEST_ADDR=172.30.9.2:7000", exe)
		server.WaitFor(t, regexp.MustCompile(`listening on 172\.30\.9\.2:7000`), time.Minute)
		out := a.MustRun(t, "env", "NETNSTEST_HELPER=dial", "NETNSTEST_ADDR=172.30.9.2:7000", exe)
		if !strings.HasPrefix(out, "hello 172.30.9.1:") {
			t.Errorf("server saw %q, want the client's address 172.30.9.1", out)
		}
		// A process left running in a namespace is killed by the cleanup.
		b.MustRun(t, "sh", "-c", "sleep 600 >/dev/null 2>&1 &")
	})
	select {
	case <-server.Exited():
	default:
		t.Error("server still running after its test ended")
	}
	left, err := netnstest.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if slices.Contains(left, n) {
			t.Errorf("namespace %s left behind", n)
		}
	}
}

func TestPollTimesOut(t *testing.T) {
	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		netnstest.Poll(ft, 100*time.Millisecond, "never", func() error { return fmt.Errorf("not yet") })
	}()
	<-done
	if !strings.Contains(ft.msg, "never") || !strings.Contains(ft.msg, "not yet") {
		t.Errorf("failure message %q should name what and the last error", ft.msg)
	}
}

// fakeT captures Fatalf; runtime.Goexit ends the goroutine like t.Fatalf.
type fakeT struct {
	testing.TB
	msg string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
