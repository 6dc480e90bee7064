package sphinx

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

const (
	cmdRelay   = 0x01
	cmdDeliver = 0x02
	flagReply  = 0x01

	maxDelayMicros = math.MaxInt64 / int64(time.Microsecond)
)

// routingCommand is one decrypted hop slot (see the package doc).
type routingCommand struct {
	deliver bool
	reply   bool
	delay   time.Duration
	addr    [NodeIDLength]byte // next hop, or recipient when deliver
	tail    [MACLength]byte    // next gamma, or SURB id when deliver
}

func encodeDelay(d time.Duration) (uint64, error) {
	if d < 0 {
		return 0, fmt.Errorf("%w: negative delay %v", ErrInvalidRoute, d)
	}
	return uint64(d / time.Microsecond), nil
}

// encode writes the slot into dst (PerHopRoutingInfoLength bytes).
func (c *routingCommand) encode(dst []byte) error {
	_ = dst[PerHopRoutingInfoLength-1]
	us, err := encodeDelay(c.delay)
	if err != nil {
		return err
	}
	dst[0] = cmdRelay
	dst[1] = 0
	if c.deliver {
		dst[0] = cmdDeliver
		if c.reply {
			dst[1] = flagReply
		}
	}
	dst[2], dst[3] = 0, 0
	binary.BigEndian.PutUint64(dst[4:12], us)
	copy(dst[12:44], c.addr[:])
	copy(dst[44:60], c.tail[:])
	return nil
}

// decode parses a slot; it rejects unknown commands, flags and reserved
// bits, and delays that overflow time.Duration.
func (c *routingCommand) decode(src []byte) error {
	if len(src) < PerHopRoutingInfoLength {
		return fmt.Errorf("%w: routing command of %d bytes, want %d", ErrInvalidPacket, len(src), PerHopRoutingInfoLength)
	}
	switch src[0] {
	case cmdRelay:
		if src[1] != 0 {
			return fmt.Errorf("%w: relay command with flags %#02x", ErrInvalidPacket, src[1])
		}
		c.deliver, c.reply = false, false
	case cmdDeliver:
		if src[1]&^flagReply != 0 {
			return fmt.Errorf("%w: deliver command with unknown flags %#02x", ErrInvalidPacket, src[1])
		}
		c.deliver, c.reply = true, src[1]&flagReply != 0
	default:
		return fmt.Errorf("%w: unknown routing command %#02x", ErrInvalidPacket, src[0])
	}
	if src[2] != 0 || src[3] != 0 {
		return fmt.Errorf("%w: reserved routing bytes set", ErrInvalidPacket)
	}
	us := binary.BigEndian.Uint64(src[4:12])
	if us > uint64(maxDelayMicros) {
		return fmt.Errorf("%w: delay of %d µs overflows", ErrInvalidPacket, us)
	}
	c.delay = time.Duration(us) * time.Microsecond
	copy(c.addr[:], src[12:44])
	copy(c.tail[:], src[44:60])
	return nil
}
