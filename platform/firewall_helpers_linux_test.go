package platform

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// The firewall tests' helper processes (see TestMain in
// netns_linux_test.go), configured by fwHelper as JSON in fwConfigEnv:
//
//	fw         runs Ops on a Firewall: apply, remove, active, rules, broken;
//	           prints "FW <op> ok|error ..." and, with Hold, waits to be killed
//	fwserve    TCP and UDP echo servers on TCP and UDP ports of all
//	           addresses; prints "SERVING", then "ARRIVED ..." for each
//	fwprobe    runs Probes at once, then Barrier; prints "PROBE <id> pass|blocked <why>";
//	           with Flood, prints "FLOODING", sends until SIGTERM, then "FLOOD sent N refused M"
//	fwcapture  captures every packet on Iface (AF_PACKET, like tcpdump),
//	           prints "CAPTURING", then one "CAP ..." line per packet
const fwConfigEnv = "NYMVPN_FIREWALL_HELPER"

type fwHelper struct {
	Ops    []string
	Policy FirewallPolicy
	// BrokenAt is where op "broken" puts a rule the kernel refuses among
	// Policy's rules.
	BrokenAt int
	Hold     bool

	TCP, UDP []uint16

	Probes  []fwProbe
	Barrier *fwProbe
	// Flood sends the (UDP) probes' datagrams over and over, without
	// waiting for answers, until SIGTERM.
	Flood bool

	Iface string
}

// fwProbe is one attempt at traffic: a TCP connection that must echo a
// line, a UDP datagram that must be echoed, an ICMP echo that must be
// answered.
type fwProbe struct {
	ID    string
	Proto string         // "tcp", "udp" or "icmp" (ICMPv6 for IPv6)
	To    netip.AddrPort // the port is unused for icmp
	// Port is the source port, or the ICMP echo identifier, unique in the
	// test, so that captures and counters tell probes apart.
	Port uint16
	Mark uint32
	// Pass is what the test expects; it only decides how long the probe
	// waits for an answer.
	Pass bool
}

func (p fwProbe) String() string {
	if p.Proto == "icmp" {
		return fmt.Sprintf("%s (icmp to %s, id %d, mark %d)", p.ID, p.To.Addr(), p.Port, p.Mark)
	}
	return fmt.Sprintf("%s (%s from port %d to %s, mark %d)", p.ID, p.Proto, p.Port, p.To, p.Mark)
}

// How long a probe waits for its answer: long when it should pass (a slow
// machine must not fail it), short when it should not (then the capture
// and the counters, not the timeout, show whether anything got through).
const (
	fwPassWait  = 20 * time.Second
	fwBlockWait = 1500 * time.Millisecond
)

// fwArgs returns the `env` arguments that run the test binary as the
// firewall helper mode with cfg.
func fwArgs(t *testing.T, mode string, cfg fwHelper) []string {
	t.Helper()
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{helperEnv + "=" + mode, configEnv + "={}", fwConfigEnv + "=" + string(js), exe, "-test.run=^$"}
}

func firewallHelper(mode string) error {
	var cfg fwHelper
	if err := json.Unmarshal([]byte(os.Getenv(fwConfigEnv)), &cfg); err != nil {
		return fmt.Errorf("firewall helper config: %w", err)
	}
	switch mode {
	case "fw":
		return fwHelperFirewall(cfg)
	case "fwserve":
		return fwHelperServe(cfg)
	case "fwprobe":
		return fwHelperProbe(cfg)
	case "fwcapture":
		return fwHelperCapture(cfg)
	}
	return fmt.Errorf("unknown firewall helper mode %q", mode)
}

func fwHelperFirewall(cfg fwHelper) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f, err := NewFirewall(log)
	if err != nil {
		return err
	}
	for _, op := range cfg.Ops {
		var err error
		switch op {
		case "apply":
			err = f.Apply(cfg.Policy)
		case "remove":
			err = f.Remove()
		case "active":
			var ok bool
			if ok, err = f.Active(); err == nil {
				fmt.Printf("FW active %v\n", ok)
			}
		case "rules":
			var rs []AppliedFirewallRule
			if rs, err = f.Rules(); err == nil {
				js, _ := json.Marshal(rs)
				fmt.Printf("FW rules %s\n", js)
			}
		case "broken":
			err = fwApplyBroken(f, cfg.Policy, cfg.BrokenAt)
		default:
			err = fmt.Errorf("unknown op %q", op)
		}
		if err != nil {
			fmt.Printf("FW %s error: %s\n", op, strings.ReplaceAll(err.Error(), "\n", "; "))
		} else {
			fmt.Printf("FW %s ok\n", op)
		}
	}
	if cfg.Hold {
		fmt.Println("FW holding")
		select {}
	}
	return nil
}

// fwApplyBroken applies p's rules with one the kernel refuses (a jump to a
// chain that does not exist) inserted at index at, the way Apply would.
func fwApplyBroken(f *Firewall, p FirewallPolicy, at int) error {
	rules, err := PlanFirewall(p)
	if err != nil {
		return err
	}
	var nrules []nftRule
	for _, r := range rules {
		nr, err := nftRuleOf(r)
		if err != nil {
			return err
		}
		nrules = append(nrules, nr)
	}
	bad := nftRule{chain: ChainOutput, text: "jump nowhere", exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: "nowhere"}}}
	nrules = append(nrules[:at:at], append([]nftRule{bad}, nrules[at:]...)...)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.commit(nrules, true); err != nil {
		return f.diagnose(nrules, err)
	}
	return nil
}

var fwStdoutMu sync.Mutex

func fwSay(format string, args ...any) {
	fwStdoutMu.Lock()
	defer fwStdoutMu.Unlock()
	fmt.Printf(format+"\n", args...)
}

func fwHelperServe(cfg fwHelper) error {
	for _, port := range cfg.TCP {
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(time.Minute))
					line, err := bufio.NewReader(c).ReadString('\n')
					if err != nil {
						return
					}
					fwSay("ARRIVED tcp %s from %s %s", c.LocalAddr(), c.RemoteAddr(), strings.TrimSpace(line))
					fmt.Fprintf(c, "echo %s", line)
				}()
			}
		}()
	}
	for _, port := range cfg.UDP {
		pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		if err != nil {
			return err
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				fwSay("ARRIVED udp %d from %s %s", port, from, buf[:n])
				pc.WriteTo(append([]byte("echo "), buf[:n]...), from)
			}
		}()
	}
	fwSay("SERVING")
	select {}
}

func fwHelperProbe(cfg fwHelper) error {
	if cfg.Flood {
		return fwFlood(cfg.Probes)
	}
	var wg sync.WaitGroup
	for _, p := range cfg.Probes {
		wg.Go(func() { fwReportProbe(p) })
	}
	wg.Wait()
	if cfg.Barrier != nil {
		fwReportProbe(*cfg.Barrier)
	}
	return nil
}

func fwFlood(probes []fwProbe) error {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	var conns []net.PacketConn
	for _, p := range probes {
		if p.Proto != "udp" {
			return fmt.Errorf("flood of %s: only UDP", p)
		}
		pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", p.Port))
		if err != nil {
			return err
		}
		defer pc.Close()
		conns = append(conns, pc)
	}
	fwSay("FLOODING")
	var sent, refused int
	for {
		select {
		case <-stop:
			fwSay("FLOOD sent %d refused %d", sent, refused)
			return nil
		default:
		}
		for i, p := range probes {
			if _, err := conns[i].WriteTo([]byte(p.ID), net.UDPAddrFromAddrPort(p.To)); err != nil {
				refused++
			} else {
				sent++
			}
		}
	}
}

func fwReportProbe(p fwProbe) {
	wait := fwBlockWait
	if p.Pass {
		wait = fwPassWait
	}
	var err error
	switch p.Proto {
	case "tcp":
		err = fwProbeTCP(p, wait)
	case "udp":
		err = fwProbeUDP(p, wait)
	case "icmp":
		err = fwProbeICMP(p, wait)
	default:
		err = fmt.Errorf("unknown protocol %q", p.Proto)
	}
	if err != nil {
		fwSay("PROBE %s blocked %s", p.ID, strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	fwSay("PROBE %s pass", p.ID)
}

func fwMarkControl(mark uint32) func(string, string, syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		if mark == 0 {
			return nil
		}
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		return serr
	}
}

func fwProbeTCP(p fwProbe, wait time.Duration) error {
	d := net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{Port: int(p.Port)}, Control: fwMarkControl(p.Mark)}
	c, err := d.Dial("tcp", p.To.String())
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := fmt.Fprintf(c, "%s\n", p.ID); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("connected, but no answer: %w", err)
	}
	if line != "echo "+p.ID+"\n" {
		return fmt.Errorf("wrong answer %q", line)
	}
	return nil
}

func fwProbeUDP(p fwProbe, wait time.Duration) error {
	network := "udp4"
	if p.To.Addr().Is6() {
		network = "udp6"
	}
	lc := net.ListenConfig{Control: fwMarkControl(p.Mark)}
	pc, err := lc.ListenPacket(context.Background(), network, fmt.Sprintf(":%d", p.Port))
	if err != nil {
		return fmt.Errorf("probe socket: %w", err)
	}
	defer pc.Close()
	if _, err := pc.WriteTo([]byte(p.ID), net.UDPAddrFromAddrPort(p.To)); err != nil {
		return err
	}
	pc.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("sent, but no answer: %w", err)
		}
		if string(buf[:n]) == "echo "+p.ID {
			return nil
		}
	}
}

func fwProbeICMP(p fwProbe, wait time.Duration) error {
	if p.Mark != 0 {
		return errors.New("marked ICMP probes are not implemented")
	}
	network, laddr, proto := "ip4:icmp", "0.0.0.0", 1
	var req, reply icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if p.To.Addr().Is6() {
		network, laddr, proto = "ip6:ipv6-icmp", "::", 58
		req, reply = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	c, err := icmp.ListenPacket(network, laddr)
	if err != nil {
		return fmt.Errorf("probe socket: %w", err)
	}
	defer c.Close()
	// For ICMPv6 the kernel computes the checksum.
	b, err := (&icmp.Message{Type: req, Body: &icmp.Echo{ID: int(p.Port), Seq: 1, Data: []byte(p.ID)}}).Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(b, &net.IPAddr{IP: p.To.Addr().AsSlice()}); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("sent, but no answer: %w", err)
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != reply {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == int(p.Port) && string(e.Data) == p.ID {
			return nil
		}
	}
}

// fwHelperCapture prints every packet on the interface, in both directions,
// as "CAP <in|out> <arp|ipv4|ipv6|other> <proto> <src> <sport|echo id> <dst> <dport|icmp type>".
// The capture sits where tcpdump's does: outgoing packets are seen after
// netfilter's output and postrouting hooks, so a packet the firewall drops
// never shows.
func fwHelperCapture(cfg fwHelper) error {
	ifi, err := net.InterfaceByName(cfg.Iface)
	if err != nil {
		return err
	}
	// Protocol 0 receives nothing until the bind, so no packet of another
	// interface slips in.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	all := fwHtons(unix.ETH_P_ALL)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: all, Ifindex: ifi.Index}); err != nil {
		return fmt.Errorf("bind packet socket: %w", err)
	}
	fwSay("CAPTURING %s", cfg.Iface)
	buf := make([]byte, 65536)
	for {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("capture: %w", err)
		}
		dir := "in"
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			dir = "out"
		}
		fwSay("CAP %s %s", dir, fwDescribeFrame(buf[:n]))
	}
}

func fwHtons(v uint16) uint16 { return v<<8 | v>>8 }

// fwDescribeFrame summarises an Ethernet frame for fwHelperCapture.
func fwDescribeFrame(b []byte) string {
	if len(b) < 14 {
		return "other short - 0 - 0"
	}
	et, l3 := binary.BigEndian.Uint16(b[12:14]), b[14:]
	var src, dst netip.Addr
	var proto byte
	var l4 []byte
	switch et {
	case unix.ETH_P_ARP:
		return "arp arp - 0 - 0"
	case unix.ETH_P_IP:
		if len(l3) < 20 {
			return "ipv4 short - 0 - 0"
		}
		ihl := int(l3[0]&0x0f) * 4
		src, _ = netip.AddrFromSlice(l3[12:16])
		dst, _ = netip.AddrFromSlice(l3[16:20])
		proto = l3[9]
		if len(l3) >= ihl {
			l4 = l3[ihl:]
		}
	case unix.ETH_P_IPV6:
		if len(l3) < 40 {
			return "ipv6 short - 0 - 0"
		}
		src, _ = netip.AddrFromSlice(l3[8:24])
		dst, _ = netip.AddrFromSlice(l3[24:40])
		proto, l4 = l3[6], l3[40:]
		// Hop-by-hop (MLD), routing and destination options headers.
		for (proto == 0 || proto == 43 || proto == 60) && len(l4) >= 2 {
			n := (int(l4[1]) + 1) * 8
			if len(l4) < n {
				break
			}
			proto, l4 = l4[0], l4[n:]
		}
	default:
		return fmt.Sprintf("other 0x%04x - 0 - 0", et)
	}
	fam := "ipv4"
	if et == unix.ETH_P_IPV6 {
		fam = "ipv6"
	}
	var name string
	var a, b2 int
	switch {
	case (proto == unix.IPPROTO_TCP || proto == unix.IPPROTO_UDP) && len(l4) >= 4:
		name = map[byte]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp"}[proto]
		a, b2 = int(binary.BigEndian.Uint16(l4[0:2])), int(binary.BigEndian.Uint16(l4[2:4]))
	case (proto == unix.IPPROTO_ICMP || proto == unix.IPPROTO_ICMPV6) && len(l4) >= 8:
		name = "icmp"
		if proto == unix.IPPROTO_ICMPV6 {
			name = "icmpv6"
		}
		b2 = int(l4[0])
		if echo := (proto == unix.IPPROTO_ICMP && (l4[0] == 8 || l4[0] == 0)) || (proto == unix.IPPROTO_ICMPV6 && (l4[0] == 128 || l4[0] == 129)); echo {
			a = int(binary.BigEndian.Uint16(l4[4:6]))
		}
	default:
		name = fmt.Sprintf("proto%d", proto)
	}
	return fmt.Sprintf("%s %s %s %d %s %d", fam, name, src, a, dst, b2)
}
