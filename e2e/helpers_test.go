package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// TestMain doubles as the "internet" host of the tests: with E2E_HELPER=inet
// the test binary, re-executed inside a namespace, serves HTTP on $E2E_HTTP
// (answering with the address the request came from) and DNS on $E2E_DNS
// (A records from $E2E_ZONE, "name=addr,...").
func TestMain(m *testing.M) {
	if os.Getenv("E2E_HELPER") == "inet" {
		if err := serveInet(os.Getenv("E2E_HTTP"), os.Getenv("E2E_DNS"), os.Getenv("E2E_ZONE")); err != nil {
			fmt.Fprintln(os.Stderr, "inet helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv("E2E_HELPER") == "wg" {
		if err := serveWireGuard(os.Getenv("E2E_WG_TUN"), os.Getenv("E2E_WG_UAPI")); err != nil {
			fmt.Fprintln(os.Stderr, "wg helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func serveInet(httpAddr, dnsAddr, zone string) error {
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fmt.Errorf("listen HTTP: %w", err)
	}
	pc, err := net.ListenPacket("udp", dnsAddr)
	if err != nil {
		return fmt.Errorf("listen DNS: %w", err)
	}
	records := map[string][4]byte{}
	for _, kv := range strings.Split(zone, ",") {
		name, addr, ok := strings.Cut(kv, "=")
		ip := net.ParseIP(addr).To4()
		if !ok || ip == nil {
			return fmt.Errorf("bad zone entry %q", kv)
		}
		records[strings.ToLower(strings.TrimSuffix(name, "."))+"."] = [4]byte(ip)
	}
	go serveDNS(pc, records)
	fmt.Printf("inet ready: http %s dns %s\n", ln.Addr(), pc.LocalAddr())
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("request from %s for %s\n", r.RemoteAddr, r.Host)
		fmt.Fprint(w, r.RemoteAddr)
	})
	// /bytes/N answers N bytes: bulk transfers exercise the TUN's
	// segmentation offloads.
	mux.HandleFunc("/bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
		if err != nil || n < 0 || n > 1<<30 {
			http.Error(w, "bad size", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		chunk := bytes.Repeat([]byte("nymvpn "), 8192)
		for n > 0 {
			k := min(n, int64(len(chunk)))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: mux}
	return srv.Serve(ln)
}

// serveDNS answers A questions from records; anything else gets NXDOMAIN.
func serveDNS(pc net.PacketConn, records map[string][4]byte) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		fmt.Printf("dns query from %s for %s\n", from, q.Name)
		rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RCode: dnsmessage.RCodeSuccess}
		a, found := records[strings.ToLower(q.Name.String())]
		if !found {
			rh.RCode = dnsmessage.RCodeNameError
		}
		b := dnsmessage.NewBuilder(nil, rh)
		b.EnableCompression()
		b.StartQuestions()
		b.Question(q)
		b.StartAnswers()
		if found && q.Type == dnsmessage.TypeA {
			b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: a})
		}
		if msg, err := b.Finish(); err == nil {
			pc.WriteTo(msg, from)
		}
	}
}

// buildBinaries builds the commands into a temporary directory and returns
// it.
func buildBinaries(t testing.TB, cmds ...string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir := t.TempDir()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, c := range cmds {
		args = append(args, "./cmd/"+c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir = ".." // the module root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return dir
}

// requireTUN skips when the kernel offers no TUN device.
func requireTUN(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/net/tun"); errors.Is(err, os.ErrNotExist) {
		t.Skip("needs /dev/net/tun for the kernel exit; CI has it")
	}
}
