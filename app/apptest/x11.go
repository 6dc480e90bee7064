package apptest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// CloseWindow asks the window to close as a window manager's close button
// does: a WM_DELETE_WINDOW client message (xdotool has no such command; it
// can only destroy windows). It speaks the X11 protocol itself.
func (d *Display) CloseWindow(t testing.TB, window string) {
	t.Helper()
	if err := d.closeWindow(window); err != nil {
		t.Fatalf("close window %s: %v", window, err)
	}
}

func (d *Display) closeWindow(window string) error {
	wid, err := strconv.ParseUint(window, 10, 32)
	if err != nil {
		return fmt.Errorf("window id %q: %w", window, err)
	}
	c, err := net.DialTimeout("unix", "/tmp/.X11-unix/X"+strings.TrimPrefix(d.Name, ":"), 5*time.Second)
	if err != nil {
		return fmt.Errorf("connect to the X server: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	le := binary.LittleEndian
	// Connection setup, no authorization (Xvfb without -auth).
	setup := []byte{'l', 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if _, err := c.Write(setup); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	head := make([]byte, 8)
	if _, err := io.ReadFull(c, head); err != nil {
		return fmt.Errorf("setup reply: %w", err)
	}
	rest := make([]byte, 4*int(le.Uint16(head[6:])))
	if _, err := io.ReadFull(c, rest); err != nil {
		return fmt.Errorf("setup reply: %w", err)
	}
	if head[0] != 1 {
		return fmt.Errorf("the X server refused the connection: %q", rest)
	}
	// reply reads 32-byte packets until a reply, failing on an error.
	reply := func() ([]byte, error) {
		for {
			p := make([]byte, 32)
			if _, err := io.ReadFull(c, p); err != nil {
				return nil, err
			}
			switch p[0] {
			case 0:
				return nil, fmt.Errorf("X error %d (major opcode %d)", p[1], p[10])
			case 1:
				extra := make([]byte, 4*int(le.Uint32(p[4:])))
				if _, err := io.ReadFull(c, extra); err != nil {
					return nil, err
				}
				return p, nil
			}
		}
	}
	atom := func(name string) (uint32, error) {
		n := len(name)
		req := make([]byte, 8+(n+3)/4*4)
		req[0] = 16 // InternAtom
		le.PutUint16(req[2:], uint16(len(req)/4))
		le.PutUint16(req[4:], uint16(n))
		copy(req[8:], name)
		if _, err := c.Write(req); err != nil {
			return 0, err
		}
		p, err := reply()
		if err != nil {
			return 0, fmt.Errorf("intern %s: %w", name, err)
		}
		return le.Uint32(p[8:]), nil
	}
	protocols, err := atom("WM_PROTOCOLS")
	if err != nil {
		return err
	}
	del, err := atom("WM_DELETE_WINDOW")
	if err != nil {
		return err
	}
	req := make([]byte, 44)
	req[0] = 25 // SendEvent, no propagation, no event mask: to the window's owner
	le.PutUint16(req[2:], 11)
	le.PutUint32(req[4:], uint32(wid))
	ev := req[12:]
	ev[0], ev[1] = 33, 32 // ClientMessage, format 32
	le.PutUint32(ev[4:], uint32(wid))
	le.PutUint32(ev[8:], protocols)
	le.PutUint32(ev[12:], del) // data[0]; data[1] = CurrentTime (0)
	// GetInputFocus after it: its reply means the event went out.
	req = append(req, 43, 0, 1, 0)
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if _, err := reply(); err != nil {
		return fmt.Errorf("send WM_DELETE_WINDOW: %w", err)
	}
	return nil
}
