package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// kernelWriteHeadroom is the headroom the kernel TUN needs in front of each
// packet written to it: wireguard-go's Linux TUN writes a virtio-net header
// (10 bytes) in front of the packet when offloads are on. The WireGuard device
// writes with 16 bytes (device.MessageTransportOffsetContent); a smaller offset
// makes splitDevice copy the packet into a buffer with room.
const kernelWriteHeadroom = 16

// splitDevice is the tun.Device a kernel-exit gateway gives WireGuard. Packets
// WireGuard writes (decrypted, from clients) go to the kernel TUN when toKernel
// says so (exit clients' traffic to the outside) and to the userspace stack
// otherwise (entry clients, DNS to the gateway's tunnel addresses). Read merges
// what both devices have for the tunnel.
type splitDevice struct {
	stack, kernel tun.Device
	toKernel      func(pkt []byte) bool
	log           *slog.Logger
	mtu           int

	batches chan *readBatch // filled batches from both readers
	done    chan struct{}
	readers sync.WaitGroup

	pending *readBatch // batch Read is consuming; only Read touches it

	closeOnce sync.Once
	closeErr  error

	kernelOut, kernelIn, readDropped atomic.Int64
}

// readBatch is one Read of an underlying device, handed to splitDevice.Read.
type readBatch struct {
	bufs  [][]byte
	sizes []int
	n     int // packets in the batch
	next  int // next packet to hand out
	free  chan *readBatch
}

// readBatchesPerDevice lets a reader fill one batch while Read drains another.
const readBatchesPerDevice = 2

func newSplitDevice(stack, kernel tun.Device, toKernel func([]byte) bool, log *slog.Logger) (*splitDevice, error) {
	mtu, err := stack.MTU()
	if err != nil {
		return nil, fmt.Errorf("gateway: MTU of the userspace stack: %w", err)
	}
	d := &splitDevice{
		stack: stack, kernel: kernel, toKernel: toKernel, log: log, mtu: mtu,
		batches: make(chan *readBatch, 2*readBatchesPerDevice),
		done:    make(chan struct{}),
	}
	// Packets are at most the MTU; the slack covers a TUN whose MTU an
	// operator raised by a little. Larger packets fail that read and are
	// counted, not fatal.
	bufSize := max(mtu, 1500) + 512
	for _, src := range []struct {
		dev   tun.Device
		count *atomic.Int64
	}{{stack, nil}, {kernel, &d.kernelIn}} {
		dev := src.dev
		free := make(chan *readBatch, readBatchesPerDevice)
		for range readBatchesPerDevice {
			b := &readBatch{bufs: make([][]byte, dev.BatchSize()), sizes: make([]int, dev.BatchSize()), free: free}
			for i := range b.bufs {
				b.bufs[i] = make([]byte, bufSize)
			}
			free <- b
		}
		d.readers.Add(1)
		go d.readLoop(dev, free, src.count)
	}
	// The kernel TUN reports link and MTU changes of its own interface; the
	// WireGuard device follows the userspace stack's events only.
	go func() {
		for range kernel.Events() {
		}
	}()
	return d, nil
}

// readLoop reads batches from dev until it or the splitDevice closes,
// adding the packets read to count if set.
func (d *splitDevice) readLoop(dev tun.Device, free chan *readBatch, count *atomic.Int64) {
	defer d.readers.Done()
	name, _ := dev.Name()
	failures := 0
	for {
		var b *readBatch
		select {
		case b = <-free:
		case <-d.done:
			return
		}
		n, err := dev.Read(b.bufs, b.sizes, 0)
		if n > 0 {
			failures = 0
			if count != nil {
				count.Add(int64(n))
			}
			b.n, b.next = n, 0
			select {
			case d.batches <- b:
			case <-d.done:
				return
			}
		} else {
			free <- b
		}
		switch {
		case err == nil, errors.Is(err, tun.ErrTooManySegments):
		case errors.Is(err, os.ErrClosed):
			select {
			case <-d.done:
			default:
				d.log.Error("tunnel device closed under the gateway", "device", name)
			}
			return
		default:
			// One bad packet (oversized, unsupported offload) must not stop
			// the tunnel; a device that keeps failing is reported once.
			d.readDropped.Add(1)
			failures++
			switch {
			case failures < 100:
				d.log.Debug("tunnel device read", "device", name, "err", err)
			case failures == 100:
				d.log.Error("tunnel device keeps failing reads", "device", name, "err", err)
			default:
				// Do not spin on a device that fails every read.
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

// Read implements tun.Device: it returns packets from either device, copied
// into bufs[i][offset:]. WireGuard calls it from one goroutine.
func (d *splitDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for n == 0 {
		if d.pending == nil {
			select {
			case d.pending = <-d.batches:
			case <-d.done:
				return 0, os.ErrClosed
			}
		}
		b := d.pending
		for b.next < b.n && n < len(bufs) {
			size := b.sizes[b.next]
			if offset < 0 || size > len(bufs[n])-offset {
				d.readDropped.Add(1)
			} else {
				sizes[n] = copy(bufs[n][offset:], b.bufs[b.next][:size])
				n++
			}
			b.next++
		}
		if b.next == b.n {
			d.pending = nil
			b.free <- b
		}
	}
	return n, nil
}

// Write implements tun.Device. WireGuard calls it concurrently, once per
// peer, with offset = 16.
func (d *splitDevice) Write(bufs [][]byte, offset int) (int, error) {
	var toStack, toKernel [][]byte
	for _, b := range bufs {
		if offset >= 0 && offset < len(b) && d.toKernel(b[offset:]) {
			toKernel = append(toKernel, b)
		} else {
			toStack = append(toStack, b)
		}
	}
	var errs error
	if len(toStack) > 0 {
		if _, err := d.stack.Write(toStack, offset); err != nil {
			errs = fmt.Errorf("gateway: write to the userspace stack: %w", err)
		}
	}
	if len(toKernel) > 0 {
		koff := offset
		if koff < kernelWriteHeadroom {
			for i, b := range toKernel {
				nb := make([]byte, kernelWriteHeadroom+len(b)-offset)
				copy(nb[kernelWriteHeadroom:], b[offset:])
				toKernel[i] = nb
			}
			koff = kernelWriteHeadroom
		}
		if _, err := d.kernel.Write(toKernel, koff); err != nil {
			errs = errors.Join(errs, fmt.Errorf("gateway: write to the kernel TUN: %w", err))
		}
		d.kernelOut.Add(int64(len(toKernel)))
	}
	if errs != nil {
		return 0, errs
	}
	return len(bufs), nil
}

// File implements tun.Device; the split device has no single file.
func (d *splitDevice) File() *os.File { return nil }

// MTU implements tun.Device: the tunnel's MTU (both devices have it).
func (d *splitDevice) MTU() (int, error) { return d.mtu, nil }

// Name implements tun.Device.
func (d *splitDevice) Name() (string, error) {
	k, err := d.kernel.Name()
	if err != nil {
		return "", fmt.Errorf("gateway: name of the kernel TUN: %w", err)
	}
	return "netstack+" + k, nil
}

// Events implements tun.Device: the userspace stack's events.
func (d *splitDevice) Events() <-chan tun.Event { return d.stack.Events() }

// BatchSize implements tun.Device.
func (d *splitDevice) BatchSize() int { return max(d.stack.BatchSize(), d.kernel.BatchSize()) }

// Close implements tun.Device: it closes both devices and waits for the
// readers.
func (d *splitDevice) Close() error {
	d.closeOnce.Do(func() {
		close(d.done)
		d.closeErr = errors.Join(d.stack.Close(), d.kernel.Close())
		d.readers.Wait()
	})
	return d.closeErr
}

// stats returns the packets written to and read from the kernel TUN, and the
// packets dropped on the way to WireGuard.
func (d *splitDevice) stats() (out, in, dropped int64) {
	return d.kernelOut.Load(), d.kernelIn.Load(), d.readDropped.Load()
}
