package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/nymvpn/nymvpn/credential/wallet"
	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/internal/netnstest"
)

// TestDaemonMixnetModePaid runs nymvpnd in mixnet mode against gateways
// that take tickets (no --free-pass) and three issuers: `connect --mode
// mixnet --wait` fetches a mixnet-entry and a mixnet-exit book, pays the
// entry's mixnet ingress and the exit's IP packet router (the exit ticket
// rides in the session's Open through the mixnet), and a download worth
// more than two exit tickets tops up at the exit on the way.
func TestDaemonMixnetModePaid(t *testing.T) {
	netnstest.RequireRoot(t)
	requireTUN(t)
	if testing.Short() {
		t.Skip("builds the binaries and a network of namespaces; skipped in -short")
	}
	var iss issuerSet
	d := newDaemonNet(t, withMixnet(), iss.paidNetwork())
	must := d.mustNymvpn(t)
	d.startDaemon(t, "nymvpnd")

	iss.importAccount(t, d, 200)

	out := must("connect", "--mode", "mixnet", "--profile", "fast", "--entry", "DE", "--exit", "gw-exit", "--wait", "--timeout", "3m")
	t.Logf("connect --mode mixnet:\n%s", out)
	if !strings.Contains(out, "fetching tickets from the issuers") || !strings.Contains(out, "Connected") {
		t.Errorf("connect output:\n%s", out)
	}
	checkThroughTunnel(t, d.client)
	before := tickets(t, must)
	if n := before.Left[api.TicketMixnetExit]; n > wallet.DefaultBookSize-1 || n < wallet.DefaultBookSize-3 {
		t.Fatalf("mixnet-exit tickets after connecting: %+v", before)
	}
	if n := before.Left[api.TicketMixnetEntry]; n > wallet.DefaultBookSize-1 {
		t.Fatalf("mixnet-entry tickets after connecting: %+v", before)
	}

	// Rate-limited, so the tunnel's top-ups (the entry's are counted each
	// second) keep ahead of what the download uses.
	const size = 5 * paidTicketBytes / 2
	got := d.client.MustRun(t, "curl", "-sS", "--max-time", "180", "--limit-rate", "200K", "-o", "/dev/null",
		"-w", "%{size_download}", fmt.Sprintf("http://%s/bytes/%d", inetAddr.Addr(), size))
	if strings.TrimSpace(got) != strconv.Itoa(size) {
		t.Fatalf("download through the paid mixnet tunnel got %s bytes, want %d", got, size)
	}
	after := tickets(t, must)
	t.Logf("tickets left before the download %v, after %v", before.Left, after.Left)
	if spent := before.Left[api.TicketMixnetExit] - after.Left[api.TicketMixnetExit]; spent < 2 {
		t.Errorf("%d mixnet-exit tickets spent on %d bytes of %d-byte tickets: want top-ups at the exit", spent, size, paidTicketBytes)
	}
	if st := status(t, must); st.State.Kind != api.Connected {
		t.Fatalf("state after the download: %+v", st.State)
	}
	must("disconnect", "--wait")
}
