package wguapi

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	k1, k2 := strings.Repeat("01", 32), strings.Repeat("02", 32)
	st := Parse("private_key=ab\nlisten_port=51822\npublic_key=" + k1 +
		"\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=10\nrx_bytes=20\n" +
		"public_key=" + k2 + "\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=1\nrx_bytes=2\nerrno=0\n")
	if st.ListenPort != 51822 || len(st.Peers) != 2 {
		t.Fatalf("state %+v", st)
	}
	if p := st.Peers[0]; p.PublicKey[0] != 1 || !p.LastHandshake.Equal(time.Unix(1700000000, 5)) || p.TxBytes != 10 || p.RxBytes != 20 {
		t.Fatalf("peer 0 %+v", p)
	}
	if p := st.Peers[1]; p.PublicKey[0] != 2 || !p.LastHandshake.IsZero() {
		t.Fatalf("peer 1 %+v", p)
	}
	if tx, rx := st.Totals(); tx != 11 || rx != 22 {
		t.Fatalf("totals %d %d", tx, rx)
	}
}
