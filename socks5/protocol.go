package socks5

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// Protocol constants from RFC 1928 and RFC 1929.
const (
	socksVersion = 0x05
	authVersion  = 0x01 // RFC 1929 subnegotiation version

	methodNoAuth       = 0x00
	methodUserPass     = 0x02
	methodNoAcceptable = 0xFF

	cmdConnect      = 0x01
	cmdBind         = 0x02
	cmdUDPAssociate = 0x03

	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04

	authSuccess = 0x00
	authFailure = 0x01

	// maxAddrLen is the longest encoded address: ATYP, name length, a
	// 255-byte name and the port.
	maxAddrLen = 1 + 1 + 255 + 2
	// maxRequestLen is the longest request or reply: VER, CMD/REP, RSV and
	// an address.
	maxRequestLen = 3 + maxAddrLen
	// maxUDPHeaderLen is the longest UDP request header: RSV(2), FRAG and
	// an address.
	maxUDPHeaderLen = 3 + maxAddrLen
	// maxIPUDPHeaderLen is the longest UDP header carrying an IP address,
	// which is all the server ever writes.
	maxIPUDPHeaderLen = 3 + 1 + 16 + 2
)

// ReplyCode is the REP field of a SOCKS5 reply.
type ReplyCode byte

// Reply codes defined by RFC 1928, section 6.
const (
	ReplySucceeded           ReplyCode = 0x00
	ReplyGeneralFailure      ReplyCode = 0x01
	ReplyNotAllowed          ReplyCode = 0x02
	ReplyNetworkUnreachable  ReplyCode = 0x03
	ReplyHostUnreachable     ReplyCode = 0x04
	ReplyConnectionRefused   ReplyCode = 0x05
	ReplyTTLExpired          ReplyCode = 0x06
	ReplyCommandNotSupported ReplyCode = 0x07
	ReplyAddressNotSupported ReplyCode = 0x08
)

func (c ReplyCode) String() string {
	switch c {
	case ReplySucceeded:
		return "succeeded"
	case ReplyGeneralFailure:
		return "general SOCKS server failure"
	case ReplyNotAllowed:
		return "connection not allowed by ruleset"
	case ReplyNetworkUnreachable:
		return "network unreachable"
	case ReplyHostUnreachable:
		return "host unreachable"
	case ReplyConnectionRefused:
		return "connection refused"
	case ReplyTTLExpired:
		return "TTL expired"
	case ReplyCommandNotSupported:
		return "command not supported"
	case ReplyAddressNotSupported:
		return "address type not supported"
	}
	return "unknown reply code 0x" + strconv.FormatUint(uint64(c), 16)
}

// ReplyError is returned by the client when the server answers a request
// with a non-success reply code.
type ReplyError struct {
	Code ReplyCode
}

func (e *ReplyError) Error() string {
	return "socks5: server replied: " + e.Code.String()
}

// Addr is a SOCKS5 address: either an IP address or a domain name, plus a
// port. Exactly one of IP and Name is set.
type Addr struct {
	IP   netip.Addr
	Name string
	Port uint16
}

// ParseAddr parses "host:port" where host is an IP literal or a domain name
// of at most 255 bytes. Zones and service names are rejected.
func ParseAddr(s string) (Addr, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Addr{}, fmt.Errorf("socks5: parse address %q: %w", s, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return Addr{}, fmt.Errorf("socks5: parse port of %q: %w", s, err)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return Addr{}, fmt.Errorf("socks5: address %q: zones cannot be sent to a proxy", s)
		}
		return Addr{IP: ip, Port: uint16(p)}, nil
	}
	if len(host) == 0 || len(host) > 255 {
		return Addr{}, fmt.Errorf("socks5: host name in %q must be 1-255 bytes long", s)
	}
	return Addr{Name: host, Port: uint16(p)}, nil
}

// AddrFromAddrPort returns the SOCKS address of an IP and port.
func AddrFromAddrPort(ap netip.AddrPort) Addr {
	return Addr{IP: ap.Addr(), Port: ap.Port()}
}

// String returns "host:port".
func (a Addr) String() string {
	if a.IP.IsValid() {
		return netip.AddrPortFrom(a.IP, a.Port).String()
	}
	return net.JoinHostPort(a.Name, strconv.Itoa(int(a.Port)))
}

// appendTo appends the wire encoding ATYP, DST.ADDR, DST.PORT. An Addr with
// neither IP nor Name is encoded as 0.0.0.0. Names longer than 255 bytes
// are truncated; ParseAddr never produces them.
func (a Addr) appendTo(b []byte) []byte {
	switch {
	case a.IP.Is4():
		ip := a.IP.As4()
		b = append(b, atypIPv4)
		b = append(b, ip[:]...)
	case a.IP.Is6():
		ip := a.IP.As16()
		b = append(b, atypIPv6)
		b = append(b, ip[:]...)
	case a.Name != "":
		name := a.Name
		if len(name) > 255 {
			name = name[:255]
		}
		b = append(b, atypDomain, byte(len(name)))
		b = append(b, name...)
	default:
		b = append(b, atypIPv4, 0, 0, 0, 0)
	}
	return binary.BigEndian.AppendUint16(b, a.Port)
}

// protoError is a protocol violation together with the reply code that
// tells the client about it.
type protoError struct {
	code ReplyCode
	msg  string
}

func (e *protoError) Error() string { return e.msg }

var (
	errBadVersion     = errors.New("unsupported SOCKS version")
	errBadAuthVersion = errors.New("unsupported username/password subnegotiation version")
	errNoMethods      = errors.New("greeting offers no authentication methods")
	errEmptyName      = errors.New("empty domain name")
	errShortDatagram  = errors.New("UDP datagram shorter than its SOCKS header")
	errReservedUDP    = errors.New("UDP header reserved field is not zero")
)

// readFull is io.ReadFull that reports a clean EOF only when nothing at all
// was read in the whole message (started tells whether earlier parts of the
// message were already consumed).
func readFull(r io.Reader, b []byte, started bool) error {
	_, err := io.ReadFull(r, b)
	if started && errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readGreeting reads the version identifier/method selection message and
// returns the offered methods (a slice of buf, which must hold 255 bytes).
// A clean EOF before the first byte is returned as io.EOF.
func readGreeting(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [2]byte
	if err := readFull(r, hdr[:], false); err != nil {
		return nil, err
	}
	if hdr[0] != socksVersion {
		return nil, fmt.Errorf("greeting version %#x: %w", hdr[0], errBadVersion)
	}
	n := int(hdr[1])
	if n == 0 {
		return nil, errNoMethods
	}
	methods := buf[:n]
	if err := readFull(r, methods, true); err != nil {
		return nil, fmt.Errorf("greeting methods: %w", err)
	}
	return methods, nil
}

// readUserPass reads an RFC 1929 username/password request. Both fields are
// at most 255 bytes.
func readUserPass(r io.Reader) (user, pass string, err error) {
	var hdr [2]byte
	if err := readFull(r, hdr[:], false); err != nil {
		return "", "", err
	}
	if hdr[0] != authVersion {
		return "", "", fmt.Errorf("auth version %#x: %w", hdr[0], errBadAuthVersion)
	}
	var buf [255]byte
	u := buf[:hdr[1]]
	if err := readFull(r, u, true); err != nil {
		return "", "", fmt.Errorf("auth username: %w", err)
	}
	user = string(u)
	var plen [1]byte
	if err := readFull(r, plen[:], true); err != nil {
		return "", "", fmt.Errorf("auth password length: %w", err)
	}
	p := buf[:plen[0]]
	if err := readFull(r, p, true); err != nil {
		return "", "", fmt.Errorf("auth password: %w", err)
	}
	return user, string(p), nil
}

// request is a parsed SOCKS5 request.
type request struct {
	Cmd byte
	Dst Addr
}

// readMessage reads the common request/reply layout VER, CMD/REP, RSV,
// ATYP, ADDR, PORT. It returns the second byte and the address. Errors are
// *protoError when the message itself is invalid.
func readMessage(r io.Reader) (byte, Addr, error) {
	var hdr [4]byte
	if err := readFull(r, hdr[:], false); err != nil {
		return 0, Addr{}, err
	}
	if hdr[0] != socksVersion {
		return 0, Addr{}, &protoError{ReplyGeneralFailure, fmt.Sprintf("request version %#x: %v", hdr[0], errBadVersion)}
	}
	if hdr[2] != 0 {
		return 0, Addr{}, &protoError{ReplyGeneralFailure, fmt.Sprintf("reserved byte is %#x, not zero", hdr[2])}
	}
	a, err := readAddrBody(r, hdr[3])
	return hdr[1], a, err
}

// readAddrBody reads DST.ADDR and DST.PORT for the given ATYP.
func readAddrBody(r io.Reader, atyp byte) (Addr, error) {
	var buf [255 + 2]byte
	switch atyp {
	case atypIPv4:
		b := buf[:4+2]
		if err := readFull(r, b, true); err != nil {
			return Addr{}, fmt.Errorf("IPv4 address: %w", err)
		}
		return Addr{IP: netip.AddrFrom4([4]byte(b[:4])), Port: binary.BigEndian.Uint16(b[4:])}, nil
	case atypIPv6:
		b := buf[:16+2]
		if err := readFull(r, b, true); err != nil {
			return Addr{}, fmt.Errorf("IPv6 address: %w", err)
		}
		return Addr{IP: netip.AddrFrom16([16]byte(b[:16])), Port: binary.BigEndian.Uint16(b[16:])}, nil
	case atypDomain:
		var l [1]byte
		if err := readFull(r, l[:], true); err != nil {
			return Addr{}, fmt.Errorf("domain name length: %w", err)
		}
		b := buf[:int(l[0])+2]
		if err := readFull(r, b, true); err != nil {
			return Addr{}, fmt.Errorf("domain name: %w", err)
		}
		if l[0] == 0 {
			return Addr{}, &protoError{ReplyGeneralFailure, errEmptyName.Error()}
		}
		return Addr{Name: string(b[:l[0]]), Port: binary.BigEndian.Uint16(b[l[0]:])}, nil
	}
	return Addr{}, &protoError{ReplyAddressNotSupported, fmt.Sprintf("address type %#x", atyp)}
}

// readRequest reads a SOCKS5 request. It never reads past the request, so
// data the client pipelines after it stays in the connection.
func readRequest(r io.Reader) (request, error) {
	cmd, dst, err := readMessage(r)
	if err != nil {
		return request{}, err
	}
	return request{Cmd: cmd, Dst: dst}, nil
}

// readReply reads a SOCKS5 reply (client side).
func readReply(r io.Reader) (ReplyCode, Addr, error) {
	rep, bnd, err := readMessage(r)
	return ReplyCode(rep), bnd, err
}

// appendMessage appends a request or reply.
func appendMessage(b []byte, second byte, a Addr) []byte {
	b = append(b, socksVersion, second, 0)
	return a.appendTo(b)
}

// parseAddr parses ATYP, ADDR, PORT from b and returns the number of bytes
// consumed.
func parseAddr(b []byte) (Addr, int, error) {
	if len(b) < 1 {
		return Addr{}, 0, errShortDatagram
	}
	switch b[0] {
	case atypIPv4:
		if len(b) < 1+4+2 {
			return Addr{}, 0, errShortDatagram
		}
		return Addr{IP: netip.AddrFrom4([4]byte(b[1:5])), Port: binary.BigEndian.Uint16(b[5:7])}, 7, nil
	case atypIPv6:
		if len(b) < 1+16+2 {
			return Addr{}, 0, errShortDatagram
		}
		return Addr{IP: netip.AddrFrom16([16]byte(b[1:17])), Port: binary.BigEndian.Uint16(b[17:19])}, 19, nil
	case atypDomain:
		if len(b) < 2 {
			return Addr{}, 0, errShortDatagram
		}
		l := int(b[1])
		if l == 0 {
			return Addr{}, 0, errEmptyName
		}
		if len(b) < 2+l+2 {
			return Addr{}, 0, errShortDatagram
		}
		return Addr{Name: string(b[2 : 2+l]), Port: binary.BigEndian.Uint16(b[2+l:])}, 2 + l + 2, nil
	}
	return Addr{}, 0, fmt.Errorf("address type %#x not supported", b[0])
}

// parseUDPDatagram parses the header of a SOCKS5 UDP request (RSV, FRAG,
// ATYP, DST.ADDR, DST.PORT) and returns the fragment number, the
// destination and the payload, which aliases b.
func parseUDPDatagram(b []byte) (frag byte, dst Addr, payload []byte, err error) {
	if len(b) < 3 {
		return 0, Addr{}, nil, errShortDatagram
	}
	if b[0] != 0 || b[1] != 0 {
		return 0, Addr{}, nil, errReservedUDP
	}
	dst, n, err := parseAddr(b[3:])
	if err != nil {
		return 0, Addr{}, nil, err
	}
	return b[2], dst, b[3+n:], nil
}

// appendUDPHeader appends a SOCKS5 UDP header with FRAG 0 for dst.
func appendUDPHeader(b []byte, dst Addr) []byte {
	b = append(b, 0, 0, 0)
	return dst.appendTo(b)
}

// udpHeaderLen is the length of the UDP header appendUDPHeader writes for
// an IP address.
func udpHeaderLen(ip netip.Addr) int {
	if ip.Is4() {
		return 3 + 1 + 4 + 2
	}
	return 3 + 1 + 16 + 2
}

// validName reports whether a domain name is acceptable to pass to the
// resolver: printable ASCII without spaces.
func validName(name string) bool {
	if name == "" || len(name) > 255 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
