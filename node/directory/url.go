package directory

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ParseURL splits a directory URL, http(s)://host:port/[path]?key=<key>, into
// the base URL (scheme, host and path without the trailing slash, no query) and
// the pinned directory key (base64url without padding; padded or standard
// base64 is accepted too).
func ParseURL(s string) (baseURL string, key ed25519.PublicKey, err error) {
	u, q, err := parseBase(s)
	if err != nil {
		return "", nil, err
	}
	ks, ok := q["key"]
	if !ok || len(ks) == 0 || ks[0] == "" {
		return "", nil, fmt.Errorf("directory URL %q has no ?key=<directory public key>; ask the directory operator for the full URL", s)
	}
	if len(ks) > 1 {
		return "", nil, fmt.Errorf("directory URL %q has more than one key parameter", s)
	}
	// A '+' of standard base64 arrives as a space after query unescaping.
	b, err := decodeBase64(strings.ReplaceAll(ks[0], " ", "+"))
	if err != nil {
		return "", nil, fmt.Errorf("directory URL %q: key is not base64url: %w", s, err)
	}
	if len(b) != ed25519.PublicKeySize {
		return "", nil, fmt.Errorf("directory URL %q: key is %d bytes, want %d", s, len(b), ed25519.PublicKeySize)
	}
	return u, ed25519.PublicKey(b), nil
}

// parseBase returns the base URL and query of a directory URL, which need not
// carry a key.
func parseBase(s string) (string, url.Values, error) {
	if s == "" {
		return "", nil, errors.New("directory URL is empty")
	}
	if !strings.Contains(s, "://") {
		return "", nil, fmt.Errorf("directory URL %q: want http://host:port/?key=<key> (scheme missing)", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", nil, fmt.Errorf("directory URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", nil, fmt.Errorf("directory URL %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return "", nil, fmt.Errorf("directory URL %q has no host", s)
	}
	if u.User != nil {
		return "", nil, fmt.Errorf("directory URL %q: user info is not supported", s)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", nil, fmt.Errorf("directory URL %q: query: %w", s, err)
	}
	base := url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimRight(u.Path, "/")}
	return base.String(), q, nil
}

// FormatURL returns the directory URL for baseURL with key pinned:
// baseURL + "/?key=" + base64url(key) without padding. Any query or trailing
// slash of baseURL is dropped.
func FormatURL(baseURL string, key ed25519.PublicKey) string {
	if i := strings.IndexAny(baseURL, "?#"); i >= 0 {
		baseURL = baseURL[:i]
	}
	return strings.TrimRight(baseURL, "/") + "/?key=" + base64.RawURLEncoding.EncodeToString(key)
}
