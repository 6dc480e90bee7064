package mixnode

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/sphinx"
)

// epochKey is the Sphinx key of one epoch with its replay filter.
type epochKey struct {
	epoch   uint64
	public  sphinx.PublicKey
	node    *sphinx.Node
	filter  *bloom
	expires time.Time // end of the epoch + grace: refused from then on
}

// keyRing holds the node's Sphinx keys: the current epoch's, the next one's
// (published ahead) and, for the grace period after their epoch ended, older
// ones. Keys live in memory only: a restarted node makes new keys, so no key
// outlives its replay filter and a deleted key is gone (forward secrecy).
type keyRing struct {
	length, grace time.Duration
	capacity      int
	rand          io.Reader

	mu   sync.RWMutex
	keys []*epochKey // by epoch
}

func epochEnd(epoch uint64, length time.Duration) time.Time {
	return directory.Genesis().Add(time.Duration(epoch+1) * length)
}

// rotate makes sure keys exist for the current and the next epoch at now
// and deletes those past their grace period. It reports whether the set of
// keys changed.
func (r *keyRing) rotate(now time.Time) (bool, error) {
	cur, _ := directory.EpochAt(now, r.length)
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	kept := r.keys[:0]
	for _, k := range r.keys {
		if now.Before(k.expires) {
			kept = append(kept, k)
		} else {
			changed = true
		}
	}
	clear(r.keys[len(kept):])
	r.keys = kept
	for _, e := range []uint64{cur, cur + 1} {
		if slices.ContainsFunc(r.keys, func(k *epochKey) bool { return k.epoch == e }) {
			continue
		}
		priv, err := sphinx.GenerateKey(r.rand)
		if err != nil {
			return changed, fmt.Errorf("mixnode: Sphinx key for epoch %d: %w", e, err)
		}
		node, err := sphinx.NewNode(priv)
		if err != nil {
			return changed, fmt.Errorf("mixnode: Sphinx key for epoch %d: %w", e, err)
		}
		r.keys = append(r.keys, &epochKey{
			epoch: e, public: priv.Public(), node: node,
			filter:  newBloom(r.capacity, ReplayFalsePositiveRate),
			expires: epochEnd(e, r.length).Add(r.grace),
		})
		changed = true
	}
	slices.SortFunc(r.keys, func(a, b *epochKey) int {
		switch {
		case a.epoch < b.epoch:
			return -1
		case a.epoch > b.epoch:
			return 1
		}
		return 0
	})
	return changed, nil
}

// lookup returns the key for epoch at now, or why there is none.
func (r *keyRing) lookup(epoch uint64, now time.Time) (*epochKey, DropReason) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, k := range r.keys {
		if k.epoch != epoch {
			continue
		}
		if !now.Before(k.expires) {
			return nil, DropExpiredKey
		}
		return k, DropNone
	}
	cur, _ := directory.EpochAt(now, r.length)
	if epoch < cur {
		return nil, DropExpiredKey
	}
	return nil, DropUnknownKey
}

// published returns the keys a node announces at now: the current epoch's
// and later ones (the directory keeps the current and the next).
func (r *keyRing) published(now time.Time) []directory.SphinxKey {
	cur, _ := directory.EpochAt(now, r.length)
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []directory.SphinxKey
	for _, k := range r.keys {
		if k.epoch >= cur {
			out = append(out, directory.SphinxKey{Epoch: k.epoch, PublicKey: directory.Key32(k.public)})
		}
	}
	return out
}

// snapshot returns the keys held, by epoch.
func (r *keyRing) snapshot() []*epochKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.keys)
}
