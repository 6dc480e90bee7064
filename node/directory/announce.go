package directory

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// DefaultAnnounceInterval is used by Announce when every is not positive; it
// leaves three chances within DefaultDescriptorTTL.
const DefaultAnnounceInterval = time.Minute

// Announce announces n to the directory at dirURL (with or without ?key=)
// now and then every `every` until ctx is done, and returns ctx.Err(). A failed
// announcement is retried with exponential back-off from 1s up to `every`; the
// first failure of a run is logged as a warning, repeats at debug level, and
// recovery at info level. Invalid arguments are reported at once.
func Announce(ctx context.Context, dirURL string, n *Node, key ed25519.PrivateKey, every time.Duration, logger *slog.Logger) error {
	node := n.clone()
	return AnnounceFunc(ctx, dirURL, func() Node { return node }, key, every, nil, logger)
}

// AnnounceFunc is Announce for a node whose record changes (a node rotating
// its Sphinx keys): each announcement signs what get returns then, and a
// value received on changed announces at once instead of waiting for the
// next interval. get must be safe to call from another goroutine.
func AnnounceFunc(ctx context.Context, dirURL string, get func() Node, key ed25519.PrivateKey, every time.Duration, changed <-chan struct{}, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if every <= 0 {
		every = DefaultAnnounceInterval
	}
	// Fail fast on what retrying cannot fix.
	if _, _, err := parseBase(dirURL); err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	first := get()
	if _, err := SignDescriptor(&first, key, time.Now()); err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	log := logger.With("id", first.ID, "directory", dirURL)
	const minBackoff = time.Second
	backoff := minBackoff
	failures := 0
	announced := false
	warnedTTL := false
	for {
		node := get()
		ans, err := announceOnce(ctx, dirURL, &node, key, nil)
		wait := every
		if err == nil && ans.TTL > 0 && every > time.Duration(ans.TTL)*2/3 {
			// The directory would drop the node between announcements.
			wait = time.Duration(ans.TTL) / 3
			if !warnedTTL {
				log.Warn("directory: announce interval exceeds the directory's descriptor TTL; announcing more often",
					"every", every, "ttl", time.Duration(ans.TTL), "now_every", wait)
				warnedTTL = true
			}
		}
		switch {
		case err == nil && failures > 0:
			log.Info("directory: announcement succeeded again", "after_failures", failures)
		case err == nil && !announced:
			log.Info("directory: announced")
		case err == nil:
			log.Debug("directory: announced")
		case ctx.Err() != nil:
			return ctx.Err()
		case failures == 0:
			log.Warn("directory: announcement failed; retrying with back-off", "err", err)
		default:
			log.Debug("directory: announcement failed again", "failures", failures+1, "err", err)
		}
		if err == nil {
			failures, backoff, announced = 0, minBackoff, true
		} else {
			failures++
			wait = min(backoff, wait)
			backoff *= 2
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		case <-changed:
			t.Stop()
		}
	}
}

// AnnounceOnce signs n's descriptor now and posts it to the directory at
// dirURL. hc nil means a client with DefaultHTTPTimeout. A refusal is an
// *APIError wrapped with context.
func AnnounceOnce(ctx context.Context, dirURL string, n *Node, key ed25519.PrivateKey, hc *http.Client) error {
	_, err := announceOnce(ctx, dirURL, n, key, hc)
	return err
}

func announceOnce(ctx context.Context, dirURL string, n *Node, key ed25519.PrivateKey, hc *http.Client) (*announceAnswer, error) {
	base, _, err := parseBase(dirURL)
	if err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	desc, err := SignDescriptor(n, key, time.Now())
	if err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/nodes", bytes.NewReader(desc))
	if err != nil {
		return nil, fmt.Errorf("announce %q: %w", n.ID, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if hc == nil {
		hc = defaultHTTPClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("announce %q to %s: %w", n.ID, base, err)
		}
		return nil, fmt.Errorf("announce %q: %w: %w", n.ID, ErrUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("announce %q to %s: %w", n.ID, base, apiErrorFrom(resp))
	}
	var ans announceAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&ans); err != nil {
		return nil, fmt.Errorf("announce %q to %s: unexpected answer (is this a nymvpn directory?): %w", n.ID, base, err)
	}
	if ans.ID != n.ID {
		return nil, fmt.Errorf("announce %q to %s: answer names node %q (is this a nymvpn directory?)", n.ID, base, truncate(ans.ID, MaxIDLength))
	}
	return &ans, nil
}
