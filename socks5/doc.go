// Package socks5 implements a SOCKS version 5 server (RFC 1928) with optional
// username/password authentication (RFC 1929), plus a small client used by
// tests and demos.
//
// The server is transport-agnostic: it never touches the host network stack
// for upstream traffic. Outgoing TCP connections, name resolution and the
// tunnel-side UDP socket are supplied as functions (Server.Dial,
// Server.Resolve, Server.ListenPacket), which nymvpn wires to the userspace
// netstack of the VPN tunnel. Host names sent by clients (socks5h) are
// therefore resolved remotely, through the tunnel, never locally.
//
// Supported commands are CONNECT and UDP ASSOCIATE; BIND is answered with
// "command not supported". Every parser is bounded: a client can make the
// server allocate at most a few hundred bytes per request and one fixed-size
// datagram buffer per direction of a UDP association.
package socks5
