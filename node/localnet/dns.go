package localnet

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/dns/dnsmessage"
)

// Zone is the DNS zone the local network answers for.
const Zone = "localnet."

// DNSServer answers A and AAAA questions for names under Zone from a fixed
// table over UDP on loopback, and REFUSED for everything else: exit gateways
// of the local network use it as their upstream so that name resolution
// through the tunnel never leaves the machine.
type DNSServer struct {
	conn *net.UDPConn
	log  *slog.Logger

	mu      sync.RWMutex
	records map[string][]netip.Addr // lower-case FQDN → addresses

	Malformed atomic.Int64 // queries that did not parse
	wg        sync.WaitGroup
}

// StartDNS listens on addr (UDP) and serves until Close.
func StartDNS(addr netip.AddrPort, log *slog.Logger) (*DNSServer, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("localnet: DNS listener: %w", err)
	}
	s := &DNSServer{conn: c, log: log, records: map[string][]netip.Addr{}}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr is the server's address.
func (s *DNSServer) Addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Set maps name (relative to Zone, or absolute) to addrs.
func (s *DNSServer) Set(name string, addrs ...netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[fqdn(name)] = addrs
}

func fqdn(name string) string {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name != strings.TrimSuffix(Zone, ".") && !strings.HasSuffix(name, "."+strings.TrimSuffix(Zone, ".")) {
		name += "." + strings.TrimSuffix(Zone, ".")
	}
	return name + "."
}

// Close stops the server.
func (s *DNSServer) Close() error {
	err := s.conn.Close()
	s.wg.Wait()
	return err
}

func (s *DNSServer) serve() {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("localnet DNS read", "err", err)
			}
			return
		}
		reply, err := s.Answer(buf[:n])
		if err != nil {
			s.Malformed.Add(1)
			s.log.Debug("localnet DNS: dropped malformed query", "from", from, "err", err)
			continue
		}
		s.conn.WriteToUDPAddrPort(reply, from)
	}
}

// Answer builds the reply to one query message.
func (s *DNSServer) Answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if h.Response {
		return nil, errors.New("a response, not a query")
	}
	q, err := p.Question()
	if err != nil {
		return nil, fmt.Errorf("question: %w", err)
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	name := strings.ToLower(q.Name.String())
	s.mu.RLock()
	addrs, known := s.records[name]
	s.mu.RUnlock()
	switch {
	case q.Class != dnsmessage.ClassINET || !strings.HasSuffix(name, Zone):
		rh.RCode = dnsmessage.RCodeRefused
	case !known:
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	for _, a := range addrs {
		hdr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
		switch {
		case a.Is4() && q.Type == dnsmessage.TypeA:
			err = b.AResource(hdr, dnsmessage.AResource{A: a.As4()})
		case a.Is6() && q.Type == dnsmessage.TypeAAAA:
			err = b.AAAAResource(hdr, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		if err != nil {
			return nil, err
		}
	}
	return b.Finish()
}
