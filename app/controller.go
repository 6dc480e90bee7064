package app

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/app/viewmodel"
	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/client"
)

// Timing of the controller's background work.
const (
	// retryMin and retryMax bound the wait between attempts to reach the
	// daemon (doubling from min to max).
	retryMin = 250 * time.Millisecond
	retryMax = 3 * time.Second
	// callTimeout bounds one call made for the user.
	callTimeout = 30 * time.Second
	// gatewaysEvery refreshes the gateway list; gatewaysRetry retries a
	// failed fetch.
	gatewaysEvery = 2 * time.Minute
	gatewaysRetry = 5 * time.Second
)

// Controller owns the app's viewmodel.Model. The daemon's event stream is
// the only source of its state: a goroutine follows the stream (reopening it
// with back-off when the daemon goes away), another keeps the gateway list,
// and each call the user asks for runs in a goroutine of its own, so nothing
// the window does waits for the daemon. Observers hear of every change.
type Controller struct {
	client *client.Client
	log    *slog.Logger

	retry    chan struct{} // try the daemon now
	gateways chan struct{} // fetch the gateways now
	account  chan struct{} // look the account up now

	notifyMu  sync.Mutex // serializes observers, in the order of changes
	mu        sync.Mutex
	model     viewmodel.Model
	observers []func(prev, next viewmodel.Model)
	traffic   trafficSample
	calls     sync.WaitGroup
	// accountGen counts changes of the model's account, so a lookup that
	// started before a change does not undo it.
	accountGen uint64
}

// trafficSample is the last traffic counters seen and when, for the rate.
type trafficSample struct {
	at     time.Time
	tx, rx int64
}

// NewController returns a controller of the daemon at the client's socket.
func NewController(c *client.Client, log *slog.Logger) *Controller {
	return &Controller{
		client: c, log: log,
		retry:    make(chan struct{}, 1),
		gateways: make(chan struct{}, 1),
		account:  make(chan struct{}, 1),
		model:    viewmodel.Model{OS: runtime.GOOS, Socket: c.Socket(), Link: viewmodel.LinkStarting},
	}
}

// Model returns a copy of the current model.
func (c *Controller) Model() viewmodel.Model {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.model
}

// OnChange registers f to be called after every change, with the model
// before and after it; calls are serialized. f must return quickly.
func (c *Controller) OnChange(f func(prev, next viewmodel.Model)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observers = append(c.observers, f)
}

// update changes the model with f and tells the observers.
func (c *Controller) update(f func(m *viewmodel.Model)) {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	c.mu.Lock()
	prev := c.model
	f(&c.model)
	next := c.model
	obs := c.observers
	c.mu.Unlock()
	for _, o := range obs {
		o(prev, next)
	}
}

// Run follows the daemon until ctx ends, then waits for calls in flight.
func (c *Controller) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); c.follow(ctx) }()
	go func() { defer wg.Done(); c.keepGateways(ctx) }()
	go func() { defer wg.Done(); c.keepAccount(ctx) }()
	wg.Wait()
	c.calls.Wait()
}

// follow keeps the event stream open.
func (c *Controller) follow(ctx context.Context) {
	failures := 0
	settling := false
	for ctx.Err() == nil {
		start := time.Now()
		up, err := c.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		if up && time.Since(start) > time.Second {
			// The stream worked: reopen it at once (the daemon restarted, or
			// this client fell behind).
			c.log.Info("daemon event stream ended; reopening", "err", err)
			failures, settling = 0, true
			continue
		}
		problem := viewmodel.Classify(err)
		if settleFirst(settling, problem) {
			settling = false
			c.log.Debug("daemon event stream failed while the daemon may be stopping; trying again before saying so", "err", err)
			if !sleepCtx(ctx, retryMin) {
				return
			}
			continue
		}
		settling = false
		failures++
		wait := min(retryMin<<min(failures-1, 8), retryMax)
		c.update(func(m *viewmodel.Model) {
			if m.Link != viewmodel.LinkDown || m.Problem != problem {
				c.log.Info("daemon unreachable", "socket", c.client.Socket(), "err", err)
			}
			m.Link, m.Problem, m.LinkError = viewmodel.LinkDown, problem, err.Error()
			m.NextRetry = time.Now().Add(wait)
		})
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.retry:
			t.Stop()
		case <-t.C:
		}
	}
}

// settleFirst reports whether a failure to reopen the event stream should
// be retried once before the link is reported down: right after a working
// stream ended (settling), a daemon that is stopping may still take a
// connection and reset it — an unclassified error ("Can't reach the VPN
// service") a moment before its socket goes and the settled reason ("The
// VPN service isn't running") would be known. Only one notification goes
// out per outage, so it should be the settled one.
func settleFirst(settling bool, p viewmodel.Problem) bool {
	return settling && p == viewmodel.ProblemOther
}

// sleepCtx waits d or until ctx ends, reporting whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// stream follows one event stream until it ends; up reports whether its
// first event arrived.
func (c *Controller) stream(ctx context.Context) (up bool, err error) {
	s, err := c.client.Events(ctx)
	if err != nil {
		return false, err
	}
	defer s.Close()
	for {
		e, err := s.Next()
		if err != nil {
			return up, err
		}
		first := !up
		up = true
		c.update(func(m *viewmodel.Model) {
			dirBefore := m.Status.Settings.DirectoryURL
			acctBefore := m.AccountExists()
			if first {
				if m.Link != viewmodel.LinkUp {
					c.log.Info("daemon reachable", "socket", c.client.Socket(), "version", statusOf(e).Daemon.Version)
				}
				m.Link, m.Problem, m.LinkError = viewmodel.LinkUp, viewmodel.ProblemNone, ""
				m.Status = api.Status{}
				c.traffic = trafficSample{}
				m.Rate = viewmodel.Rate{}
			}
			m.Status.Apply(e)
			if e.Traffic != nil || first {
				m.Rate = c.rate(m.Status.Traffic)
			}
			if first || m.Status.Settings.DirectoryURL != dirBefore {
				c.refreshGateways()
			}
			if first || m.AccountExists() != acctBefore {
				// Someone (this app, the CLI) created, imported or forgot
				// the account: look up its id and creation.
				c.refreshAccount()
			}
		})
	}
}

func statusOf(e api.Event) api.Status {
	if e.Status != nil {
		return *e.Status
	}
	return api.Status{}
}

// rate derives the throughput from the traffic counters.
func (c *Controller) rate(t *api.Traffic) viewmodel.Rate {
	now := time.Now()
	if t == nil {
		c.traffic = trafficSample{}
		return viewmodel.Rate{}
	}
	prev := c.traffic
	c.traffic = trafficSample{at: now, tx: t.TxBytes, rx: t.RxBytes}
	dt := now.Sub(prev.at).Seconds()
	if prev.at.IsZero() || dt <= 0 || t.TxBytes < prev.tx || t.RxBytes < prev.rx {
		return c.model.Rate
	}
	return viewmodel.Rate{Tx: float64(t.TxBytes-prev.tx) / dt, Rx: float64(t.RxBytes-prev.rx) / dt}
}

func (c *Controller) refreshGateways() {
	select {
	case c.gateways <- struct{}{}:
	default:
	}
}

// keepGateways fetches the gateway list when the daemon (or its directory)
// changes, and every so often.
func (c *Controller) keepGateways(ctx context.Context) {
	t := time.NewTimer(gatewaysEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.gateways:
		case <-t.C:
		}
		next := gatewaysEvery
		if c.Model().Link == viewmodel.LinkUp {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			entries, err := c.client.Gateways(cctx, "entry", "")
			var exits []api.Gateway
			if err == nil {
				exits, err = c.client.Gateways(cctx, "exit", "")
			}
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				c.log.Info("gateway list", "err", err)
				next = gatewaysRetry
			}
			c.update(func(m *viewmodel.Model) {
				if err != nil {
					m.GatewaysError = viewmodel.FailureOf(viewmodel.Intent{}, err)
					return
				}
				m.Entries, m.Exits, m.GatewaysLoaded, m.GatewaysError = entries, exits, true, nil
			})
		}
		t.Reset(next)
	}
}

func (c *Controller) refreshAccount() {
	select {
	case c.account <- struct{}{}:
	default:
	}
}

// keepAccount looks the account up (its id and creation time, which the
// event stream does not carry) when the daemon or its account changes,
// again after a failed lookup.
func (c *Controller) keepAccount(ctx context.Context) {
	var again <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.account:
		case <-again:
		}
		again = nil
		if c.Model().Link != viewmodel.LinkUp {
			continue
		}
		c.mu.Lock()
		gen := c.accountGen
		c.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		a, err := c.client.Account(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var f *viewmodel.Failure
		if err != nil {
			f = viewmodel.FailureOf(viewmodel.Intent{}, err)
			if f.Code != api.CodeNotSupported {
				c.log.Info("account lookup", "err", err)
				again = time.After(gatewaysRetry)
			}
		}
		c.update(func(m *viewmodel.Model) {
			if c.accountGen != gen {
				return // a call changed the account meanwhile
			}
			if f != nil {
				m.AccountError = f
				return
			}
			m.Account, m.AccountLoaded, m.AccountError = a, true, nil
		})
	}
}

// setAccount puts the account a call returned into the model.
func (c *Controller) setAccount(m *viewmodel.Model, a api.Account) {
	c.accountGen++
	m.Account, m.AccountLoaded, m.AccountError = a, true, nil
}

// Do carries out what the user asked for. It returns at once: a call to the
// daemon runs in a goroutine (one at a time; the view disables the controls
// meanwhile) and its failure lands in the model.
func (c *Controller) Do(in viewmodel.Intent) {
	switch in.Kind {
	case viewmodel.IntentRetry:
		select {
		case c.retry <- struct{}{}:
		default:
		}
		return
	case viewmodel.IntentDismiss:
		c.update(func(m *viewmodel.Model) { m.Failure = nil })
		return
	case viewmodel.IntentAskForget, viewmodel.IntentCancelForget:
		c.update(func(m *viewmodel.Model) { m.ConfirmForget = in.Kind == viewmodel.IntentAskForget })
		return
	case viewmodel.IntentPhraseDone:
		c.update(func(m *viewmodel.Model) { m.NewPhrase = "" })
		c.log.Info("the new account's recovery phrase is no longer shown")
		return
	case viewmodel.IntentConnect, viewmodel.IntentDisconnect, viewmodel.IntentMode,
		viewmodel.IntentEntry, viewmodel.IntentExit, viewmodel.IntentSetting,
		viewmodel.IntentCreateAccount, viewmodel.IntentImportAccount, viewmodel.IntentForgetAccount:
	default:
		return
	}
	// The recovery phrase goes to the daemon and nowhere else: not into
	// the log, nor into the model (Busy, Failure).
	secret := in.Secret
	in.Secret = ""
	var snapshot viewmodel.Model
	busy := false
	c.update(func(m *viewmodel.Model) {
		if m.Busy.Kind != "" || m.Link != viewmodel.LinkUp {
			busy = true
			return
		}
		m.Busy, m.Failure = in, nil
		if in.Kind == viewmodel.IntentForgetAccount {
			m.ConfirmForget = false
		}
		snapshot = *m
	})
	if busy {
		c.log.Debug("ignored while another call is in flight or the daemon is away", "intent", in.Kind)
		return
	}
	c.calls.Add(1)
	go func() {
		defer c.calls.Done()
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		apply, err := c.call(ctx, in, secret, snapshot)
		if err != nil {
			c.log.Info("call failed", "intent", in.Kind, "key", in.Key, "value", in.Value, "err", err)
		} else {
			c.log.Info("call done", "intent", in.Kind, "key", in.Key, "value", in.Value)
		}
		c.update(func(m *viewmodel.Model) {
			m.Busy = viewmodel.Intent{}
			if err != nil {
				m.Failure = viewmodel.FailureOf(in, err)
			}
			if apply != nil {
				apply(m)
			}
		})
	}()
}

// call makes the daemon call for in. A new mode or gateway choice while
// the tunnel is up (or coming up) goes with a connect request, so the daemon
// reconnects with it; otherwise it is saved to the settings. An account
// call returns what to put into the model (apply, run with the call's
// end); secret is the phrase of an import.
func (c *Controller) call(ctx context.Context, in viewmodel.Intent, secret string, m viewmodel.Model) (apply func(*viewmodel.Model), err error) {
	switch in.Kind {
	case viewmodel.IntentConnect:
		_, err = c.client.Connect(ctx, api.ConnectRequest{})
	case viewmodel.IntentDisconnect:
		_, err = c.client.Disconnect(ctx)
	case viewmodel.IntentMode, viewmodel.IntentEntry, viewmodel.IntentExit:
		v := in.Value
		if m.Active() {
			req := api.ConnectRequest{}
			p := map[viewmodel.IntentKind]*string{viewmodel.IntentMode: &req.Mode, viewmodel.IntentEntry: &req.Entry, viewmodel.IntentExit: &req.Exit}[in.Kind]
			*p = v
			_, err = c.client.Connect(ctx, req)
		} else {
			var p api.SettingsPatch
			switch in.Kind {
			case viewmodel.IntentMode:
				p.Mode = &v
			case viewmodel.IntentEntry:
				p.Entry = &v
			default:
				p.Exit = &v
			}
			_, err = c.client.UpdateSettings(ctx, p)
		}
	case viewmodel.IntentSetting:
		p, perr := viewmodel.PatchFor(in.Key, in.Value)
		if perr != nil {
			return nil, &api.APIError{Code: api.CodeInvalidSetting, Message: perr.Error()}
		}
		_, err = c.client.UpdateSettings(ctx, p)
	case viewmodel.IntentCreateAccount:
		created, cerr := c.client.CreateAccount(ctx)
		if cerr != nil {
			return nil, cerr
		}
		return func(m *viewmodel.Model) {
			c.setAccount(m, created.Account)
			m.NewPhrase = created.Phrase
		}, nil
	case viewmodel.IntentImportAccount:
		if strings.TrimSpace(secret) == "" {
			return nil, &api.APIError{Code: api.CodeBadPhrase, Message: "no recovery phrase given"}
		}
		a, ierr := c.client.ImportAccount(ctx, secret)
		if ierr != nil {
			return nil, ierr
		}
		return func(m *viewmodel.Model) { c.setAccount(m, a) }, nil
	case viewmodel.IntentForgetAccount:
		a, ferr := c.client.ForgetAccount(ctx)
		if ferr != nil {
			return nil, ferr
		}
		return func(m *viewmodel.Model) {
			c.setAccount(m, a)
			m.ConfirmForget = false
		}, nil
	default:
		return nil, errors.New("nothing to do")
	}
	return nil, err
}
