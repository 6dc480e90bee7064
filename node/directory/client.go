package directory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultHTTPTimeout bounds a request when Client.HTTP is nil.
const DefaultHTTPTimeout = 30 * time.Second

var defaultHTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}

// Client fetches and verifies the topology from a directory.
type Client struct {
	// URL is the directory URL with the pinned key, see ParseURL.
	URL string
	// HTTP is the HTTP client; nil means one with DefaultHTTPTimeout.
	HTTP *http.Client
	// Now is the clock for the staleness check; nil means time.Now.
	Now func() time.Time
}

// APIError is an HTTP error answer from the directory, with the stable code
// and message of its JSON body {"code": …, "message": …} when there is one.
type APIError struct {
	StatusCode int
	Code       string
	Message    string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("directory answered HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// apiErrorFrom reads an error answer.
func apiErrorFrom(resp *http.Response) *APIError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	e := &APIError{StatusCode: resp.StatusCode}
	var j struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &j) == nil && (j.Code != "" || j.Message != "") {
		e.Code, e.Message = truncate(j.Code, 64), truncate(j.Message, 512)
		return e
	}
	msg := strings.TrimSpace(string(body))
	if !utf8.ValidString(msg) {
		msg = ""
	}
	e.Message = truncate(msg, 200)
	return e
}

// Fetch downloads the topology and verifies it against the pinned key.
// Errors say which directory failed and wrap ErrUnreachable (network),
// *APIError (HTTP status), ErrBadSignature and ErrKeyMismatch (wrong key),
// ErrStale, ErrUnsigned or ErrMalformed.
func (c *Client) Fetch(ctx context.Context) (*Topology, error) {
	base, key, err := ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("fetch topology: %w", err)
	}
	u := base + "/v1/topology"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch topology: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTPClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("fetch topology from %s: %w", base, err)
		}
		return nil, fmt.Errorf("fetch topology: %w: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch topology from %s: %w", base, apiErrorFrom(resp))
	}
	doc, err := io.ReadAll(io.LimitReader(resp.Body, MaxDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetch topology from %s: reading body: %w", base, err)
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	t, err := VerifyTopology(doc, key, now())
	if err != nil {
		return nil, fmt.Errorf("topology from %s: %w", base, err)
	}
	return t, nil
}

// IsUnreachable reports whether err means the directory could not be reached
// or answered with a server-side (5xx) error, i.e. retrying later may help.
func IsUnreachable(err error) bool {
	if errors.Is(err, ErrUnreachable) {
		return true
	}
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode >= 500
}
