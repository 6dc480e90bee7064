package gateway

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
	"golang.zx2c4.com/wireguard/tun"
)

// chanTUN is a tun.Device whose Read serves packets pushed with inject and
// whose Write records packets with the offset they were written at.
type chanTUN struct {
	name    string
	batch   int
	in      chan []byte
	events  chan tun.Event
	closed  chan struct{}
	once    sync.Once
	mu      sync.Mutex
	written [][]byte
	offsets []int
}

func newChanTUN(name string, batch int) *chanTUN {
	return &chanTUN{name: name, batch: batch, in: make(chan []byte, 16), events: make(chan tun.Event, 1), closed: make(chan struct{})}
}

func (d *chanTUN) File() *os.File           { return nil }
func (d *chanTUN) MTU() (int, error)        { return 1420, nil }
func (d *chanTUN) Name() (string, error)    { return d.name, nil }
func (d *chanTUN) Events() <-chan tun.Event { return d.events }
func (d *chanTUN) BatchSize() int           { return d.batch }

func (d *chanTUN) Close() error {
	d.once.Do(func() { close(d.closed); close(d.events) })
	return nil
}

func (d *chanTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case p := <-d.in:
		sizes[0] = copy(bufs[0][offset:], p)
		n := 1
		for n < len(bufs) {
			select {
			case p := <-d.in:
				sizes[n] = copy(bufs[n][offset:], p)
				n++
				continue
			default:
			}
			break
		}
		return n, nil
	case <-d.closed:
		return 0, os.ErrClosed
	}
}

func (d *chanTUN) Write(bufs [][]byte, offset int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, b := range bufs {
		d.written = append(d.written, slices.Clone(b[offset:]))
		d.offsets = append(d.offsets, offset)
	}
	return len(bufs), nil
}

func (d *chanTUN) got() ([][]byte, []int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.written), slices.Clone(d.offsets)
}

// ipv4 builds a minimal IPv4 header (enough for routing decisions).
func ipv4(src, dst string, payload byte) []byte {
	p := make([]byte, 21)
	p[0] = 0x45
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	p[20] = payload
	return p
}

func ipv6(src, dst string) []byte {
	p := make([]byte, 40)
	p[0] = 0x60
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	return p
}

// withHeadroom returns pkt behind off bytes, as WireGuard hands it over.
func withHeadroom(pkt []byte, off int) []byte {
	return append(make([]byte, off), pkt...)
}

// splitGateway returns a gateway with one entry and one exit client
// registered, and a splitDevice routing with its toKernel.
func splitGateway(t *testing.T) (*Gateway, *splitDevice, *chanTUN, *chanTUN, *peer, *peer) {
	t.Helper()
	pt, err := newPeerTable(&fakeDevice{}, DefaultPool4, DefaultPool6, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	reg := func(role string) *peer {
		k, _ := transport.GenerateKey()
		p, err := pt.register(registration.Peer{Role: role, WireGuardKey: k})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	entry, exit := reg(registration.RoleEntry), reg(registration.RoleExit)
	g := &Gateway{peers: pt}
	stack, kernel := newChanTUN("stack", 4), newChanTUN("nymx0", 8)
	d, err := newSplitDevice(stack, kernel, g.toKernel, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return g, d, stack, kernel, entry, exit
}

func TestSplitDeviceRoutesByRoleAndDestination(t *testing.T) {
	g, d, stack, kernel, entry, exit := splitGateway(t)
	outside := ipv4(exit.v4.String(), "198.51.100.7", 1)
	outside6 := ipv6(exit.v6.String(), "2001:db8::7")
	dns := ipv4(exit.v4.String(), g.peers.gw4.String(), 2)
	dns6 := ipv6(exit.v6.String(), g.peers.gw6.String())
	entryPkt := ipv4(entry.v4.String(), "198.51.100.7", 3)
	unknown := ipv4("10.1.200.200", "198.51.100.7", 4)
	garbage := []byte{0x45, 1, 2}
	pkts := [][]byte{outside, dns, entryPkt, outside6, dns6, unknown, garbage}
	var bufs [][]byte
	for _, p := range pkts {
		bufs = append(bufs, withHeadroom(p, 16))
	}
	if n, err := d.Write(bufs, 16); err != nil || n != len(pkts) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	kw, koff := kernel.got()
	sw, _ := stack.got()
	if want := [][]byte{outside, outside6}; !slices.EqualFunc(kw, want, bytes.Equal) {
		t.Errorf("kernel got %x, want the exit client's packets to the outside %x", kw, want)
	}
	if want := [][]byte{dns, entryPkt, dns6, unknown, garbage}; !slices.EqualFunc(sw, want, bytes.Equal) {
		t.Errorf("stack got %x, want DNS to the gateway, entry, unknown and malformed packets %x", sw, want)
	}
	for _, o := range koff {
		if o != 16 {
			t.Errorf("kernel written at offset %d, want WireGuard's 16 passed through", o)
		}
	}
	if out, _, _ := d.stats(); out != 2 {
		t.Errorf("kernelOut = %d, want 2", out)
	}
}

// A small offset leaves the kernel TUN no room for its virtio header: the
// packet is copied behind enough headroom.
func TestSplitDeviceSmallOffsetGetsHeadroom(t *testing.T) {
	_, d, _, kernel, _, exit := splitGateway(t)
	pkt := ipv4(exit.v4.String(), "198.51.100.7", 9)
	if _, err := d.Write([][]byte{withHeadroom(pkt, 2)}, 2); err != nil {
		t.Fatal(err)
	}
	kw, koff := kernel.got()
	if len(kw) != 1 || !bytes.Equal(kw[0], pkt) || koff[0] < kernelWriteHeadroom {
		t.Fatalf("kernel got %x at offsets %v, want %x at ≥%d", kw, koff, pkt, kernelWriteHeadroom)
	}
}

func TestSplitDeviceReadMergesBoth(t *testing.T) {
	_, d, stack, kernel, _, _ := splitGateway(t)
	want := map[byte]bool{}
	for i := range byte(10) {
		want[i] = true
		p := ipv4("198.51.100.7", "10.1.0.2", i)
		if i%2 == 0 {
			kernel.in <- p
		} else {
			stack.in <- p
		}
	}
	const offset = 16
	bufs := make([][]byte, 3) // smaller than either batch: Read must split batches
	for i := range bufs {
		bufs[i] = make([]byte, 2000)
	}
	sizes := make([]int, len(bufs))
	for len(want) > 0 {
		n, err := d.Read(bufs, sizes, offset)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			p := bufs[i][offset : offset+sizes[i]]
			if sizes[i] != 21 || !want[p[20]] {
				t.Fatalf("unexpected packet %x", p)
			}
			delete(want, p[20])
		}
	}
	if _, in, _ := d.stats(); in != 5 {
		t.Errorf("kernelIn = %d, want 5", in)
	}
	d.Close()
	if _, err := d.Read(bufs, sizes, offset); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Close = %v, want os.ErrClosed", err)
	}
}

func TestSplitDeviceDropsWhatDoesNotFit(t *testing.T) {
	_, d, stack, _, _, _ := splitGateway(t)
	stack.in <- make([]byte, 100)
	stack.in <- ipv4("198.51.100.7", "10.1.0.2", 7)
	bufs := [][]byte{make([]byte, 16+50)}
	sizes := make([]int, 1)
	n, err := d.Read(bufs, sizes, 16)
	if err != nil || n != 1 || sizes[0] != 21 {
		t.Fatalf("Read = %d %v sizes %v; want the 21-byte packet after dropping the 100-byte one", n, err, sizes)
	}
	if _, _, dropped := d.stats(); dropped != 1 {
		t.Errorf("dropped = %d, want 1", dropped)
	}
}

func TestKernelExitUndoRunsInReverse(t *testing.T) {
	var order []string
	k := &kernelExit{}
	for _, s := range []string{"tun", "firewall", "sysctl"} {
		k.onClose(s, func() error {
			order = append(order, s)
			if s == "firewall" {
				return errors.New("firewall undo failed")
			}
			return nil
		})
	}
	err := k.Close()
	if !slices.Equal(order, []string{"sysctl", "firewall", "tun"}) {
		t.Errorf("undo order %v, want last change first", order)
	}
	if err == nil || err.Error() != "firewall undo failed" {
		t.Errorf("Close = %v, want the failed step's error after running every step", err)
	}
	order = nil
	if err := k.Close(); err != nil || order != nil {
		t.Errorf("second Close ran %v, %v; want nothing", order, err)
	}
}
