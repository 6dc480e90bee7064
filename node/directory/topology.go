package directory

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// GenesisUnix is the start of epoch 0, 2024-01-01T00:00:00Z, in Unix seconds.
// It is fixed for the life of the network: every directory and node computes
// the same epoch numbers from it.
const GenesisUnix = 1704067200

// Genesis returns the start of epoch 0 (2024-01-01T00:00:00Z).
func Genesis() time.Time { return time.Unix(GenesisUnix, 0).UTC() }

// EpochAt returns the epoch containing now, floor((now − Genesis)/length), and
// the time it started. Times before Genesis are in epoch 0. length must be
// positive.
func EpochAt(now time.Time, length time.Duration) (epoch uint64, start time.Time) {
	g := Genesis()
	if length <= 0 || !now.After(g) {
		return 0, g
	}
	since := now.Sub(g) // saturates ~292 years after Genesis
	epoch = uint64(since / length)
	return epoch, g.Add(time.Duration(epoch) * length)
}

// Duration is a time.Duration that reads from JSON as a number of seconds or
// a Go duration string ("1h", "90s") and is written as a number of seconds.
type Duration time.Duration

// MarshalJSON writes d as a number of seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	s := time.Duration(d).Seconds()
	if time.Duration(d)%time.Second == 0 {
		return strconv.AppendInt(nil, int64(time.Duration(d)/time.Second), 10), nil
	}
	return strconv.AppendFloat(nil, s, 'f', -1, 64), nil
}

// UnmarshalJSON reads seconds (a JSON number) or a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("duration: %w", err)
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", truncate(s, 32), err)
		}
		*d = Duration(v)
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("duration %q: want seconds or a string such as \"1h\"", truncate(string(b), 32))
	}
	ns := f * float64(time.Second)
	if math.IsNaN(ns) || ns > math.MaxInt64 || ns < math.MinInt64 {
		return fmt.Errorf("duration %q out of range", truncate(string(b), 32))
	}
	*d = Duration(int64(ns))
	return nil
}

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// Topology is the directory's view of the network for one epoch.
type Topology struct {
	// Epoch is the current epoch number, see EpochAt.
	Epoch       uint64    `json:"epoch"`
	EpochStart  time.Time `json:"epoch_start"`
	EpochLength Duration  `json:"epoch_length"`
	// Issued and Expires bound the validity of the signed document.
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
	// Nodes, sorted by ID.
	Nodes []Node `json:"nodes"`
}

// Node returns the node with the given id.
func (t *Topology) Node(id string) (*Node, bool) {
	for i := range t.Nodes {
		if t.Nodes[i].ID == id {
			return &t.Nodes[i], true
		}
	}
	return nil, false
}

// WithRole returns the nodes that have role r, in document order.
func (t *Topology) WithRole(r Role) []Node {
	var out []Node
	for i := range t.Nodes {
		if t.Nodes[i].Has(r) {
			out = append(out, t.Nodes[i])
		}
	}
	return out
}

// Gateways returns the nodes with role r (RoleEntry or RoleExit) in country
// (case-insensitive; "" means any country), in document order.
func (t *Topology) Gateways(r Role, country string) []Node {
	var out []Node
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if n.Has(r) && (country == "" || strings.EqualFold(n.Country, country)) {
			out = append(out, *n)
		}
	}
	return out
}

// Countries returns the sorted distinct countries of the nodes with role r.
func (t *Topology) Countries(r Role) []string {
	var out []string
	for i := range t.Nodes {
		if t.Nodes[i].Has(r) && !slices.Contains(out, t.Nodes[i].Country) {
			out = append(out, t.Nodes[i].Country)
		}
	}
	slices.Sort(out)
	return out
}

// Validate checks the topology's shape: epoch fields, validity window, node
// count and every node (unknown roles are tolerated so a newer directory can
// add roles), ids unique.
func (t *Topology) Validate() error { return t.validate(true) }

func (t *Topology) validate(allowUnknownRoles bool) error {
	if t.EpochLength <= 0 {
		return fmt.Errorf("epoch_length %v is not positive", t.EpochLength)
	}
	if t.Issued.IsZero() || t.Expires.IsZero() {
		return fmt.Errorf("issued or expires missing")
	}
	if !t.Expires.After(t.Issued) {
		return fmt.Errorf("expires %v is not after issued %v", t.Expires, t.Issued)
	}
	if len(t.Nodes) > MaxNodes {
		return fmt.Errorf("%d nodes, at most %d", len(t.Nodes), MaxNodes)
	}
	seen := make(map[string]struct{}, len(t.Nodes))
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if err := n.validate(allowUnknownRoles); err != nil {
			return err
		}
		if _, dup := seen[n.ID]; dup {
			return fmt.Errorf("node %q listed twice", n.ID)
		}
		seen[n.ID] = struct{}{}
	}
	return nil
}

// sortNodes sorts t.Nodes by id, so the document is deterministic.
func (t *Topology) sortNodes() {
	slices.SortFunc(t.Nodes, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
}

// clone returns a deep copy of t.
func (t *Topology) clone() *Topology {
	c := *t
	c.Nodes = make([]Node, len(t.Nodes))
	for i := range t.Nodes {
		c.Nodes[i] = t.Nodes[i].clone()
	}
	return &c
}
