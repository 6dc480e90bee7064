package app

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/app/viewmodel"
	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/control"
)

// stoppingListener serves the control API until stop; then it resets the
// next connection (as a daemon on its way down may), closes and removes
// its socket.
type stoppingListener struct {
	net.Listener
	path string

	mu       sync.Mutex
	stopping bool
	conns    []net.Conn
}

func (l *stoppingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		stopping := l.stopping
		if !stopping {
			l.conns = append(l.conns, c)
		}
		l.mu.Unlock()
		if !stopping {
			return c, nil
		}
		if uc, ok := c.(*net.UnixConn); ok {
			// Read the request, then drop the connection unanswered.
			uc.SetReadDeadline(time.Now().Add(time.Second))
			uc.Read(make([]byte, 4096))
		}
		c.Close()
		l.Listener.Close()
		os.Remove(l.path)
	}
}

// stop ends the streams in flight; the next connection is reset.
func (l *stoppingListener) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopping = true
	for _, c := range l.conns {
		c.Close()
	}
}

// TestDaemonStoppingNotifiesOnce: a daemon that resets the app's first
// reconnection on its way down and then is gone is announced by its
// settled reason — not running — not by the reset ("Can't reach the VPN
// service"): the first report of the link going down says not running.
func TestDaemonStoppingNotifiesOnce(t *testing.T) {
	path := t.TempDir() + "/nymvpnd.sock"
	hub := control.NewHub(api.Status{State: api.State{Kind: api.Disconnected}, Target: "disconnected",
		Settings: api.DefaultSettings(), Daemon: api.DaemonInfo{Version: "v-test"}})
	hub.SetTickets(noTickets())
	srv, err := control.New(control.Config{Backend: &backend{hub: hub}, Hub: hub,
		Authorizer: &control.Policy{OperatorUID: os.Geteuid()}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := control.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	sl := &stoppingListener{Listener: ln, path: path}
	go srv.Serve(sl)
	t.Cleanup(func() { srv.Close() })

	c := startController(t, path)
	var mu sync.Mutex
	var downs []viewmodel.Problem
	c.OnChange(func(prev, next viewmodel.Model) {
		if prev.Link != viewmodel.LinkDown && next.Link == viewmodel.LinkDown {
			mu.Lock()
			downs = append(downs, next.Problem)
			mu.Unlock()
		}
	})
	waitModel(t, c, "status", kind(api.Disconnected))
	// The controller reopens at once only a stream that lasted a second.
	time.Sleep(1100 * time.Millisecond)
	sl.stop()
	waitModel(t, c, "daemon gone", func(m viewmodel.Model) error {
		if m.Link != viewmodel.LinkDown || m.Problem != viewmodel.ProblemNotRunning {
			return fmt.Errorf("link %v problem %v", m.Link, m.Problem)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(downs) == 0 || downs[0] != viewmodel.ProblemNotRunning {
		t.Fatalf("the link went down as %v first, want not running (%v)", downs, viewmodel.ProblemNotRunning)
	}
}
