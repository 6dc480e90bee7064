// Package client is the Go client of nymvpnd's control API (see daemon/api),
// used by the nymvpn CLI and the tray app.
//
// Before it talks to a Unix socket, the client checks that the socket and
// the process serving it belong to root or to the current user: anyone else
// could be impersonating the daemon (a stale path in a world-writable
// directory, a socket left by another user). On Windows the pipe lives under
// \\.\pipe\ProtectedPrefix\Administrators\, where only administrators and
// SYSTEM can create pipes, which gives the same guarantee.
//
// Errors: the daemon's error bodies come back as *api.APIError; a socket
// that is missing or refuses connections gives an error matching
// ErrDaemonNotRunning, one the user may not open ErrPermission, and a socket
// owned by someone else ErrUntrustedSocket (use errors.Is).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// Errors of dialing the daemon, matched with errors.Is.
var (
	ErrDaemonNotRunning = errors.New("nymvpnd is not running")
	ErrPermission       = errors.New("permission denied on nymvpnd's control socket")
	ErrUntrustedSocket  = errors.New("the control socket does not belong to root or to you")
)

// ErrStreamEnded is returned by EventStream.Next when the daemon ended the
// stream: it shut down, or the client fell too far behind. Reconnect with
// Events to get a fresh full status.
var ErrStreamEnded = errors.New("the daemon ended the event stream")

// maxResponse bounds a response body (a long gateway list fits easily).
const maxResponse = 8 << 20

// maxEventLine bounds one line of the event stream.
const maxEventLine = 1 << 20

// DialError is a failure to reach the daemon. It matches its Kind
// (ErrDaemonNotRunning, ErrPermission, ErrUntrustedSocket or nil) and Err
// with errors.Is.
type DialError struct {
	Kind error
	Path string
	Err  error
}

func (e *DialError) Error() string {
	switch e.Kind {
	case ErrDaemonNotRunning:
		return fmt.Sprintf("cannot reach nymvpnd at %s (%v): is nymvpnd running? %s", e.Path, e.Err, startHint())
	case ErrPermission:
		return fmt.Sprintf("cannot open nymvpnd's control socket %s: %v", e.Path, e.Err)
	case ErrUntrustedSocket:
		return fmt.Sprintf("refusing to talk to %s: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("cannot reach nymvpnd at %s: %v", e.Path, e.Err)
}

func (e *DialError) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Err}
	}
	return []error{e.Kind, e.Err}
}

// startHint tells the user how to start the daemon on this OS.
func startHint() string {
	switch runtime.GOOS {
	case "linux":
		return "start it with `sudo systemctl start nymvpnd` or `sudo nymvpnd run`"
	case "windows":
		return "start it with `nymvpnd start` from an elevated prompt, or `nymvpnd run`"
	}
	return "start it with `sudo nymvpnd start` or `sudo nymvpnd run`"
}

// Client talks to nymvpnd. It is safe for concurrent use.
type Client struct {
	path string
	hc   *http.Client
}

// New returns a client of the daemon at socketPath; empty means
// api.DefaultSocket(). Nothing is dialed until a method is called.
func New(socketPath string) *Client {
	if socketPath == "" {
		socketPath = api.DefaultSocket()
	}
	c := &Client{path: socketPath}
	c.hc = &http.Client{Transport: &http.Transport{
		DialContext:           func(ctx context.Context, _, _ string) (net.Conn, error) { return c.dial(ctx) },
		MaxIdleConns:          2,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		DisableCompression:    true,
	}}
	return c
}

// Socket returns the socket path the client uses.
func (c *Client) Socket() string { return c.path }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// dial opens a checked connection to the daemon.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	if err := checkSocket(c.path); err != nil {
		return nil, err
	}
	conn, err := dialSocket(ctx, c.path)
	if err != nil {
		return nil, classify(c.path, err)
	}
	if err := checkPeer(conn); err != nil {
		conn.Close()
		return nil, &DialError{Kind: ErrUntrustedSocket, Path: c.path, Err: err}
	}
	return conn, nil
}

// classify turns a dial error into a DialError of the right kind.
func classify(path string, err error) error {
	var de *DialError
	if errors.As(err, &de) {
		return err
	}
	kind := error(nil)
	switch {
	case errors.Is(err, fs.ErrNotExist) || isRefused(err):
		kind = ErrDaemonNotRunning
	case errors.Is(err, fs.ErrPermission):
		kind = ErrPermission
	}
	return &DialError{Kind: kind, Path: path, Err: unwrapOp(err)}
}

// unwrapOp drops the layers of net and os errors that repeat the path and
// operation, keeping the cause (e.g. "connection refused").
func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) && se.Err != nil {
		err = se.Err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Err != nil {
		err = pe.Err
	}
	return err
}

// do sends a request and decodes a 2xx body into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if len(body) > maxResponse {
		return fmt.Errorf("%s %s: answer larger than %d bytes", method, path, maxResponse)
	}
	if resp.StatusCode >= 300 {
		return apiError(resp.StatusCode, body)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// send sends a request with in (if not nil) as its JSON body.
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://nymvpnd"+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "nymvpn-client")
	resp, err := c.hc.Do(req)
	if err != nil {
		var de *DialError
		if errors.As(err, &de) {
			return nil, de
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp, nil
}

// apiError decodes an error body; a body that is not one still gives an
// *api.APIError with the HTTP status.
func apiError(status int, body []byte) error {
	var eb api.ErrorBody
	if err := json.Unmarshal(body, &eb); err == nil && eb.Error.Code != "" {
		return &api.APIError{Status: status, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &api.APIError{Status: status, Code: api.CodeInternal, Message: fmt.Sprintf("unexpected answer from the daemon (HTTP %d): %s", status, msg)}
}

// Status returns the daemon's full status, including what the daemon knows
// of this caller.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	var st api.Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Connect asks the daemon to connect; set fields of req are saved to the
// settings first. It returns at once with the state the request led to;
// follow Events for progress.
func (c *Client) Connect(ctx context.Context, req api.ConnectRequest) (api.State, error) {
	var st api.State
	err := c.do(ctx, http.MethodPost, "/v1/connect", req, &st)
	return st, err
}

// Disconnect asks the daemon to disconnect and returns the state it led to.
func (c *Client) Disconnect(ctx context.Context) (api.State, error) {
	var st api.State
	err := c.do(ctx, http.MethodPost, "/v1/disconnect", struct{}{}, &st)
	return st, err
}

// Gateways lists the network's gateways, optionally of one role ("entry",
// "exit") and one country (two letters).
func (c *Client) Gateways(ctx context.Context, role, country string) ([]api.Gateway, error) {
	q := url.Values{}
	if role != "" {
		q.Set("role", role)
	}
	if country != "" {
		q.Set("country", country)
	}
	path := "/v1/gateways"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var gws []api.Gateway
	err := c.do(ctx, http.MethodGet, path, nil, &gws)
	return gws, err
}

// Settings returns the user's settings.
func (c *Client) Settings(ctx context.Context) (api.Settings, error) {
	var s api.Settings
	err := c.do(ctx, http.MethodGet, "/v1/settings", nil, &s)
	return s, err
}

// UpdateSettings changes the settings set in p and returns the result.
func (c *Client) UpdateSettings(ctx context.Context, p api.SettingsPatch) (api.Settings, error) {
	var s api.Settings
	err := c.do(ctx, http.MethodPatch, "/v1/settings", p, &s)
	return s, err
}

// EventStream is an open GET /v1/events. It is not safe for concurrent use.
type EventStream struct {
	body io.ReadCloser
	dec  *json.Decoder
	seq  uint64
}

// Events opens the event stream. The first event carries the full Status;
// fold later ones into it with api.Status.Apply. The stream lasts until ctx
// ends, Close, or the daemon ends it (Next returns ErrStreamEnded).
func (c *Client) Events(ctx context.Context) (*EventStream, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v1/events", nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		return nil, apiError(resp.StatusCode, body)
	}
	return &EventStream{body: resp.Body, dec: json.NewDecoder(&lineLimiter{r: resp.Body})}, nil
}

// Next returns the next event. After an error the stream is unusable.
func (s *EventStream) Next() (api.Event, error) {
	var e api.Event
	if err := s.dec.Decode(&e); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return e, ErrStreamEnded
		}
		return e, fmt.Errorf("event stream: %w", err)
	}
	if s.seq == 0 && e.Status == nil {
		return e, errors.New("event stream: the first event carries no status")
	}
	if e.Seq != s.seq+1 {
		return e, fmt.Errorf("event stream: event %d after %d", e.Seq, s.seq)
	}
	s.seq = e.Seq
	return e, nil
}

// Close ends the stream.
func (s *EventStream) Close() error { return s.body.Close() }

// lineLimiter fails reads once a line grows past maxEventLine, so a broken
// daemon cannot make the client buffer without end.
type lineLimiter struct {
	r    io.Reader
	line int
}

func (l *lineLimiter) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for _, b := range p[:n] {
		if b == '\n' {
			l.line = 0
			continue
		}
		l.line++
		if l.line > maxEventLine {
			return 0, fmt.Errorf("an event line is longer than %d bytes", maxEventLine)
		}
	}
	return n, err
}
