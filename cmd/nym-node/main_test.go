package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/metrics"
)

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type proc struct {
	cmd   *exec.Cmd
	lines chan string
}

// run starts the binary and returns its stdout lines; it is killed at the
// end of the test.
func run(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, lines: make(chan string, 64)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s %v log:\n%s", filepath.Base(bin), args[:2], b)
		}
	})
	return p
}

// waitLine waits for a stdout line with prefix and returns it.
func (p *proc) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("process exited before printing %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			t.Fatalf("no %q line within 60 s", prefix)
		}
	}
}

// TestMixnetProcesses runs a network of separate nym-node processes — a
// directory with a short epoch, an entry gateway that takes mixnet clients
// and one mix node per layer — and checks it with `nym-node probe`: exit 0
// with every route working, the mix nodes' /metrics counting the packets,
// and exit 1 once a mix node is gone.
func TestMixnetProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir, bin := buildNymNode(t)
	d := run(t, bin, "--role", "directory", "--data-dir", filepath.Join(dir, "dir"), "--listen", "127.0.0.1:0", "--open", "--epoch-length", "1m")
	dirURL := strings.TrimSpace(strings.TrimPrefix(d.waitLine(t, "directory:"), "directory:"))

	gwMetrics := freeAddr(t)
	run(t, bin, "--role", "gateway", "--data-dir", filepath.Join(dir, "gw"), "--id", "entry-1", "--country", "DE",
		"--gateway-roles", "entry", "--directory", dirURL, "--free-pass", "--metrics", gwMetrics,
		"--wireguard", "127.0.0.1:0", "--registration", "127.0.0.1:0", "--mix", "127.0.0.1:0", "--mix-client", "127.0.0.1:0")
	var mixes []*proc
	metricsAddr := make([]string, 3)
	for i := range 3 {
		metricsAddr[i] = freeAddr(t)
		m := run(t, bin, "--role", "mixnode", "--data-dir", filepath.Join(dir, fmt.Sprint("mix", i)), "--id", fmt.Sprint("mix-", i+1),
			"--country", "NL", "--directory", dirURL, "--mix", "127.0.0.1:0", "--metrics", metricsAddr[i])
		m.waitLine(t, "mixnode: sphinx")
		mixes = append(mixes, m)
	}
	// Ready: the directory lists three mix layers and the gateway, and
	// every node's copy of the topology (its /metrics says) has all four.
	client := &directory.Client{URL: dirURL}
	deadline := time.Now().Add(60 * time.Second)
	for {
		top, err := client.Fetch(context.Background())
		ready := err == nil && len(top.Layer(1)) == 1 && len(top.Layer(2)) == 1 && len(top.Layer(3)) == 1
		if gw, ok := top.Node("entry-1"); ready && (!ok || gw.MixClientAddr == "" || len(gw.SphinxKeys) == 0) {
			ready = false
		}
		for _, a := range append([]string{gwMetrics}, metricsAddr...) {
			if ready && scrape(t, a)["nym_mix_topology_nodes"] != 4 {
				ready = false
			}
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the network never became ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	out, err := exec.Command(bin, "probe", "--directory", dirURL, "--packets", "5", "--timeout", "30s").CombinedOutput()
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "total") || !strings.Contains(string(out), " 5     5 ") {
		t.Errorf("probe output:\n%s", out)
	}
	for i, a := range metricsAddr {
		if m := scrape(t, a); m["nym_mix_packets_processed_total"] != 5 || m["nym_mix_packets_forwarded_total"] != 5 {
			t.Errorf("mix %d metrics: processed %v, forwarded %v", i, m["nym_mix_packets_processed_total"], m["nym_mix_packets_forwarded_total"])
		}
	}

	// One mix node gone: every route is dead, the probe says so and exits 1.
	mixes[1].cmd.Process.Kill()
	mixes[1].cmd.Wait()
	cmd := exec.Command(bin, "probe", "--directory", dirURL, "--packets", "2", "--timeout", "2s")
	out, err = cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "lost all 2 packets") {
		t.Fatalf("probe with a mix down: %v\n%s", err, out)
	}
}

func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil // not listening yet
	}
	defer resp.Body.Close()
	m, err := metrics.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// buildNymNode builds this command into a new temporary directory and
// returns the directory and the binary's path.
func buildNymNode(t *testing.T) (dir, bin string) {
	t.Helper()
	dir = t.TempDir()
	bin = filepath.Join(dir, "nym-node")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return dir, bin
}
