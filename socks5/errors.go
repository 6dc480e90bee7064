package socks5

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
)

// mapDialError maps an error from Dial (or ListenPacket) to the closest
// SOCKS5 reply code. It understands syscall errors from the host stack and
// the plain-text errors that userspace netstacks such as gVisor's gonet
// wrap in *net.OpError ("connection was refused", "no route to host"...).
func mapDialError(err error) ReplyCode {
	if err == nil {
		return ReplySucceeded
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReplyConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return ReplyNetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EHOSTDOWN):
		return ReplyHostUnreachable
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return ReplyNotAllowed
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsTimeout {
			return ReplyTTLExpired
		}
		return ReplyHostUnreachable
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "refused"):
		return ReplyConnectionRefused
	case strings.Contains(msg, "network is unreachable"),
		strings.Contains(msg, "unreachable network"):
		return ReplyNetworkUnreachable
	case strings.Contains(msg, "no route to host"),
		strings.Contains(msg, "host is unreachable"),
		strings.Contains(msg, "unreachable host"),
		strings.Contains(msg, "host is down"):
		return ReplyHostUnreachable
	}
	if isTimeout(err) {
		return ReplyTTLExpired
	}
	return ReplyGeneralFailure
}

// isTimeout reports whether err is a timeout of any kind.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, syscall.ETIMEDOUT) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "timed out") || strings.Contains(msg, "timeout")
}
