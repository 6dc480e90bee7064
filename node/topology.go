package node

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nymvpn/nymvpn/node/directory"
)

// topologyRefresh is how often a node fetches the topology; a node that
// misses a peer in its copy also asks for one at once (Kick).
const topologyRefresh = 5 * time.Second

// topoSource is a node's copy of the directory's topology.
type topoSource struct {
	dir *directory.Client
	log *slog.Logger
	ctx context.Context
	cur atomic.Pointer[directory.Topology]

	mu       sync.Mutex
	fetching bool
	last     time.Time
}

func newTopoSource(ctx context.Context, dirURL string, log *slog.Logger) *topoSource {
	return &topoSource{dir: &directory.Client{URL: dirURL}, log: log, ctx: ctx}
}

// Load returns the current copy (nil before the first fetch).
func (s *topoSource) Load() *directory.Topology { return s.cur.Load() }

// Fetch fetches the topology now.
func (s *topoSource) Fetch() error {
	ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
	defer cancel()
	t, err := s.dir.Fetch(ctx)
	if err == nil {
		s.cur.Store(t)
	}
	return err
}

// Kick fetches in the background, unless a fetch is under way or one
// started less than a second ago. It never blocks.
func (s *topoSource) Kick() {
	s.mu.Lock()
	if s.fetching || time.Since(s.last) < time.Second {
		s.mu.Unlock()
		return
	}
	s.fetching, s.last = true, time.Now()
	s.mu.Unlock()
	go func() {
		if err := s.Fetch(); err != nil && s.ctx.Err() == nil {
			s.log.Debug("topology fetch on a lookup miss", "err", err)
		}
		s.mu.Lock()
		s.fetching = false
		s.mu.Unlock()
	}()
}

// Until fetches, retrying with back-off until it succeeds or the context
// ends.
func (s *topoSource) Until() (*directory.Topology, error) {
	t, err := fetchUntil(s.ctx, s.dir, s.log)
	if err == nil {
		s.cur.Store(t)
	}
	return t, err
}
