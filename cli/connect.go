package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/client"
)

const (
	defaultConnectTimeout    = 2 * time.Minute
	defaultDisconnectTimeout = time.Minute
)

func (r *runner) connect(ctx context.Context, args []string) error {
	fs := r.newFlags("connect")
	mode := fs.String("mode", "", "tunnel mode: fast or mixnet (default: the saved setting)")
	profile := fs.String("profile", "", "mixnet privacy profile: max (NymVPN's delays and cover traffic) or fast (default: the saved setting)")
	entry := fs.String("entry", "", "entry gateway: auto, a country code such as DE, or a gateway id (default: the saved setting)")
	exit := fs.String("exit", "", "exit gateway: auto, a country code, or a gateway id (default: the saved setting)")
	wait := fs.Bool("wait", false, "wait until connected, printing progress")
	timeout := fs.Duration("timeout", defaultConnectTimeout, "with --wait, how long to wait")
	pos, err := r.parseFlags(fs, "[--mode fast|mixnet] [--profile max|fast] [--entry CC|ID] [--exit CC|ID] [--wait] [--timeout D]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("connect takes no arguments, got %q (choose gateways with --entry and --exit)", pos[0])
	}
	if *timeout <= 0 {
		return usagef("connect: --timeout must be positive")
	}
	req := api.ConnectRequest{Mode: *mode, PrivacyProfile: *profile, Entry: *entry, Exit: *exit}
	if !*wait {
		rctx, cancel := request(ctx)
		defer cancel()
		st, err := r.c.Connect(rctx, req)
		if err != nil {
			return err
		}
		if st.Kind == api.Connected {
			fmt.Fprintln(r.stdout, describeState(st, time.Now()))
			return nil
		}
		fmt.Fprintln(r.stdout, "Connecting; follow it with `nymvpn watch` or `nymvpn status`.")
		return nil
	}
	w := &waiter{r: r, want: api.Connected, target: "connected", timeout: *timeout}
	return w.run(ctx, func(ctx context.Context) (api.State, error) { return r.c.Connect(ctx, req) })
}

func (r *runner) disconnect(ctx context.Context, args []string) error {
	fs := r.newFlags("disconnect")
	wait := fs.Bool("wait", false, "wait until disconnected")
	timeout := fs.Duration("timeout", defaultDisconnectTimeout, "with --wait, how long to wait")
	pos, err := r.parseFlags(fs, "[--wait] [--timeout D]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("disconnect takes no arguments, got %q", pos[0])
	}
	if *timeout <= 0 {
		return usagef("disconnect: --timeout must be positive")
	}
	if !*wait {
		rctx, cancel := request(ctx)
		defer cancel()
		st, err := r.c.Disconnect(rctx)
		if err != nil {
			return err
		}
		if st.Kind == api.Disconnected {
			fmt.Fprintln(r.stdout, "Disconnected")
		} else {
			fmt.Fprintln(r.stdout, "Disconnecting.")
		}
		return nil
	}
	w := &waiter{r: r, want: api.Disconnected, target: "disconnected", timeout: *timeout}
	return w.run(ctx, r.c.Disconnect)
}

// waiter asks for a change and follows the event stream until the state is
// want, printing each new state on the way.
type waiter struct {
	r       *runner
	want    api.StateKind
	target  string // the target the request sets
	timeout time.Duration

	last  string    // the last line printed
	start time.Time // when the request was sent
	// ours is set once the stream shows the target the request set: states
	// before it may belong to an earlier request.
	ours bool
}

// run subscribes, then sends the request (so no state after it can be
// missed), then waits.
func (w *waiter) run(ctx context.Context, send func(context.Context) (api.State, error)) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	es, first, err := w.subscribe(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if es != nil {
			es.Close()
		}
	}()
	w.start = time.Now()
	rctx, rcancel := request(ctx)
	st, err := send(rctx)
	rcancel()
	if err != nil {
		return err
	}
	if done, err := w.immediate(st); done {
		return err
	}
	// The answer is the state right after the request: newer than the
	// snapshot (which may show the tunnel the request replaces).
	status := first
	status.State, status.Target, w.ours = st, w.target, true
	for {
		if done, err := w.check(status); done {
			return err
		}
		e, err := es.Next()
		if err == nil {
			status.Apply(e)
			continue
		}
		if ctx.Err() != nil {
			return w.interrupted(ctx, status)
		}
		if !errors.Is(err, client.ErrStreamEnded) {
			return err
		}
		// Dropped (we were slow) or the daemon restarted: start over from
		// a fresh status.
		es.Close()
		if es, status, err = w.resubscribe(ctx); err != nil {
			if ctx.Err() != nil {
				return w.interrupted(ctx, status)
			}
			return err
		}
		w.ours = status.Target == w.target
	}
}

func (w *waiter) subscribe(ctx context.Context) (*client.EventStream, api.Status, error) {
	es, err := w.r.c.Events(ctx)
	if err != nil {
		return nil, api.Status{}, err
	}
	e, err := es.Next()
	if err != nil {
		es.Close()
		return nil, api.Status{}, err
	}
	var st api.Status
	st.Apply(e)
	return es, st, nil
}

// resubscribe retries subscribe while the daemon restarts.
func (w *waiter) resubscribe(ctx context.Context) (*client.EventStream, api.Status, error) {
	for {
		es, st, err := w.subscribe(ctx)
		if err == nil || !errors.Is(err, client.ErrDaemonNotRunning) && !errors.Is(err, client.ErrStreamEnded) {
			return es, st, err
		}
		select {
		case <-ctx.Done():
			return nil, api.Status{}, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// immediate handles a request whose answer is already final.
func (w *waiter) immediate(st api.State) (bool, error) {
	switch st.Kind {
	case w.want:
		w.print(st)
		return true, nil
	case api.Error:
		return true, &exitError{describeState(st, time.Now()), ExitFailure}
	}
	return false, nil
}

// check prints status's state if new and says whether the wait is over.
func (w *waiter) check(status api.Status) (bool, error) {
	if status.Target != w.target {
		if w.ours {
			return true, &exitError{fmt.Sprintf("stopped waiting: someone else asked nymvpnd to be %s", status.Target), ExitFailure}
		}
		return false, nil // not yet our request's effect
	}
	w.ours = true
	st := status.State
	// The state the request leaves (disconnected when connecting and vice
	// versa) is not news.
	leaving := w.want == api.Connected && st.Kind == api.Disconnected ||
		w.want == api.Disconnected && st.Kind == api.Connected
	// A connection older than the request is the one it replaces, seen
	// in an event sent before the request took effect.
	stale := st.Kind == api.Connected && st.Since != nil && st.Since.Before(w.start)
	if !leaving && !stale {
		w.print(st)
	}
	if stale {
		return false, nil
	}
	switch st.Kind {
	case w.want:
		return true, nil
	case api.Error:
		msg := describeState(st, time.Now())
		if st.ErrorCode != "" {
			msg += " (" + st.ErrorCode + ")"
		}
		return true, &exitError{msg, ExitFailure}
	}
	return false, nil
}

// print writes st's line unless it is the same as the last one.
func (w *waiter) print(st api.State) {
	line := describeState(st, time.Now())
	if line == w.last {
		return
	}
	w.last = line
	fmt.Fprintln(w.r.stdout, line)
}

// interrupted explains why waiting stopped before the state was reached.
func (w *waiter) interrupted(ctx context.Context, status api.Status) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		if w.want == api.Connected {
			return &exitError{fmt.Sprintf("not connected after %s (%s); nymvpnd keeps trying: see `nymvpn status`, or `nymvpn disconnect` to stop",
				w.timeout, describeState(status.State, time.Now())), ExitFailure}
		}
		return &exitError{fmt.Sprintf("not disconnected after %s (%s)", w.timeout, describeState(status.State, time.Now())), ExitFailure}
	}
	what := "connecting"
	if w.want == api.Disconnected {
		what = "disconnecting"
	}
	return &exitError{"stopped waiting; nymvpnd goes on " + what, ExitFailure}
}
