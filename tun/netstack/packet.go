package netstack

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

const (
	protoICMPv4 = 1
	protoICMPv6 = 58

	icmpv4EchoRequest = 8
	icmpv4EchoReply   = 0
	icmpv6EchoRequest = 128
	icmpv6EchoReply   = 129

	ipv4MinHeader = 20
	ipv6Header    = 40
	icmpHeader    = 8
	replyTTL      = 64
)

// pktInfo is what Write learns about a packet before handing it on.
type pktInfo struct {
	v6       bool
	totalLen int // length of the IP packet proper; bytes beyond it are padding
	src, dst netip.Addr
	// isICMP: the upper-layer protocol is ICMP (IPv4) or ICMPv6 (IPv6).
	isICMP bool
	// fragment: the packet is (part of) a fragmented datagram.
	fragment bool
	// l4off is the offset of the upper-layer header when known.
	l4off int
}

// parsePacket validates the IP header of pkt: version, header length, total
// length against the buffer and, for IPv4, the header checksum. It does not
// trust any length field before checking it against len(pkt).
func parsePacket(pkt []byte) (pktInfo, bool) {
	if len(pkt) == 0 {
		return pktInfo{}, false
	}
	switch pkt[0] >> 4 {
	case 4:
		return parseIPv4(pkt)
	case 6:
		return parseIPv6(pkt)
	}
	return pktInfo{}, false
}

func parseIPv4(pkt []byte) (pktInfo, bool) {
	if len(pkt) < ipv4MinHeader {
		return pktInfo{}, false
	}
	ihl := int(pkt[0]&0x0f) * 4
	if ihl < ipv4MinHeader || ihl > len(pkt) {
		return pktInfo{}, false
	}
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	if total < ihl || total > len(pkt) {
		return pktInfo{}, false
	}
	if checksum.Checksum(pkt[:ihl], 0) != 0xffff {
		return pktInfo{}, false
	}
	info := pktInfo{
		totalLen: total,
		src:      netip.AddrFrom4([4]byte(pkt[12:16])),
		dst:      netip.AddrFrom4([4]byte(pkt[16:20])),
		l4off:    ihl,
	}
	flagsFrag := binary.BigEndian.Uint16(pkt[6:8])
	info.fragment = flagsFrag&0x2000 != 0 || flagsFrag&0x1fff != 0
	info.isICMP = pkt[9] == protoICMPv4
	return info, true
}

func parseIPv6(pkt []byte) (pktInfo, bool) {
	if len(pkt) < ipv6Header {
		return pktInfo{}, false
	}
	payload := int(binary.BigEndian.Uint16(pkt[4:6]))
	total := ipv6Header + payload
	// A zero payload length means a jumbogram, which a tunnel cannot carry.
	if payload == 0 || total > len(pkt) {
		return pktInfo{}, false
	}
	info := pktInfo{
		v6:       true,
		totalLen: total,
		src:      netip.AddrFrom16([16]byte(pkt[8:24])),
		dst:      netip.AddrFrom16([16]byte(pkt[24:40])),
	}
	// Walk the extension headers to find the upper-layer protocol. A chain
	// that runs past the packet is left for gVisor to reject; each header is
	// at least 8 bytes, so the loop terminates.
	next, off := pkt[6], ipv6Header
	for {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if off+8 > total {
				return info, true
			}
			next = pkt[off]
			off += (int(pkt[off+1]) + 1) * 8
		case 44: // fragment
			if off+8 > total {
				return info, true
			}
			info.fragment = true
			next = pkt[off]
			off += 8
		case protoICMPv6:
			info.isICMP = true
			info.l4off = off
			return info, true
		default:
			info.l4off = off
			return info, true
		}
	}
}

// echoRequest reports whether the ICMP message of pkt is a well-formed, unfragmented
// echo request with a valid checksum, and returns the ICMP message.
func echoRequest(pkt []byte, info pktInfo) ([]byte, bool) {
	if !info.isICMP || info.fragment || info.l4off <= 0 || info.l4off+icmpHeader > info.totalLen {
		return nil, false
	}
	msg := pkt[info.l4off:info.totalLen]
	if info.v6 {
		if msg[0] != icmpv6EchoRequest || msg[1] != 0 {
			return nil, false
		}
		if checksum.Checksum(msg, pseudoSum6(info.src, info.dst, len(msg))) != 0xffff {
			return nil, false
		}
		return msg, true
	}
	if msg[0] != icmpv4EchoRequest || msg[1] != 0 {
		return nil, false
	}
	if checksum.Checksum(msg, 0) != 0xffff {
		return nil, false
	}
	return msg, true
}

// pseudoSum6 is the partial checksum of the IPv6 pseudo-header for ICMPv6.
func pseudoSum6(src, dst netip.Addr, length int) uint16 {
	var ph [40]byte
	s16, d16 := src.As16(), dst.As16()
	copy(ph[0:16], s16[:])
	copy(ph[16:32], d16[:])
	binary.BigEndian.PutUint32(ph[32:36], uint32(length))
	ph[39] = protoICMPv6
	return checksum.Checksum(ph[:], 0)
}

// echoReply builds the IP packet answering the echo request msg that info
// describes: addresses swapped, same identifier, sequence and data.
func echoReply(info pktInfo, msg []byte) []byte {
	if info.v6 {
		out := make([]byte, ipv6Header+len(msg))
		out[0] = 0x60
		binary.BigEndian.PutUint16(out[4:6], uint16(len(msg)))
		out[6] = protoICMPv6
		out[7] = replyTTL
		d16, s16 := info.dst.As16(), info.src.As16()
		copy(out[8:24], d16[:])
		copy(out[24:40], s16[:])
		icmp := out[ipv6Header:]
		copy(icmp, msg)
		icmp[0], icmp[1], icmp[2], icmp[3] = icmpv6EchoReply, 0, 0, 0
		binary.BigEndian.PutUint16(icmp[2:4], ^checksum.Checksum(icmp, pseudoSum6(info.dst, info.src, len(icmp))))
		return out
	}
	out := make([]byte, ipv4MinHeader+len(msg))
	out[0] = 0x45
	binary.BigEndian.PutUint16(out[2:4], uint16(len(out)))
	out[8] = replyTTL
	out[9] = protoICMPv4
	d4, s4 := info.dst.As4(), info.src.As4()
	copy(out[12:16], d4[:])
	copy(out[16:20], s4[:])
	binary.BigEndian.PutUint16(out[10:12], ^checksum.Checksum(out[:ipv4MinHeader], 0))
	icmp := out[ipv4MinHeader:]
	copy(icmp, msg)
	icmp[0], icmp[1], icmp[2], icmp[3] = icmpv4EchoReply, 0, 0, 0
	binary.BigEndian.PutUint16(icmp[2:4], ^checksum.Checksum(icmp, 0))
	return out
}

// forwardable reports whether a destination can be the target of a forwarded
// flow: unicast, not unspecified.
func forwardable(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// PacketAddrs returns an IPv4 or IPv6 packet's source and destination,
// checking only that the fixed header is there: for routing decisions on
// packets whose other fields are checked later, or not at all.
func PacketAddrs(pkt []byte) (src, dst netip.Addr, ok bool) {
	if len(pkt) == 0 {
		return
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < ipv4MinHeader {
			return
		}
		return netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20])), true
	case 6:
		if len(pkt) < ipv6Header {
			return
		}
		return netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40])), true
	}
	return
}
