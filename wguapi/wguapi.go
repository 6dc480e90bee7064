// Package wguapi adapts wireguard-go to the rest of the project: it parses the
// state a device reports over its UAPI (IpcGet) and routes the device's logs
// to slog, so that clients and gateways read handshakes, counters and ports
// one way.
package wguapi

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/device"
)

// Peer is one peer's state.
type Peer struct {
	PublicKey        [32]byte
	LastHandshake    time.Time // zero: no handshake yet
	TxBytes, RxBytes int64
}

// State is a device's state.
type State struct {
	ListenPort uint16
	Peers      []Peer
}

// Getter is the part of a device that reports state.
type Getter interface {
	IpcGet() (string, error)
}

// Get reads and parses dev's state.
func Get(dev Getter) (State, error) {
	s, err := dev.IpcGet()
	if err != nil {
		return State{}, fmt.Errorf("wguapi: read WireGuard state: %w", err)
	}
	return Parse(s), nil
}

// Parse reads a UAPI "get" dump; unknown or malformed lines are ignored.
func Parse(dump string) State {
	var st State
	var cur *Peer
	var hsSec int64
	sc := bufio.NewScanner(strings.NewReader(dump))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "listen_port":
			st.ListenPort = uint16(n)
		case "public_key":
			st.Peers = append(st.Peers, Peer{})
			cur = &st.Peers[len(st.Peers)-1]
			if b, err := hex.DecodeString(v); err == nil && len(b) == 32 {
				copy(cur.PublicKey[:], b)
			}
		case "last_handshake_time_sec":
			hsSec = n
		case "last_handshake_time_nsec":
			if cur != nil && hsSec > 0 {
				cur.LastHandshake = time.Unix(hsSec, n)
			}
		case "tx_bytes":
			if cur != nil {
				cur.TxBytes = n
			}
		case "rx_bytes":
			if cur != nil {
				cur.RxBytes = n
			}
		}
	}
	return st
}

// Totals sums the peers' byte counters.
func (s State) Totals() (tx, rx int64) {
	for _, p := range s.Peers {
		tx += p.TxBytes
		rx += p.RxBytes
	}
	return tx, rx
}

// Logger routes wireguard-go's logs to l: verbose lines at debug, errors at warn.
func Logger(l *slog.Logger) *device.Logger {
	return &device.Logger{
		Verbosef: func(f string, a ...any) { l.Debug(fmt.Sprintf(f, a...), "component", "wireguard") },
		Errorf:   func(f string, a ...any) { l.Warn(fmt.Sprintf(f, a...), "component", "wireguard") },
	}
}
