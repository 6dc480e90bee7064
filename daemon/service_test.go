package daemon

import (
	"bytes"
	"strings"
	"testing"
)

func TestSystemdUnit(t *testing.T) {
	for _, want := range []string{
		"ExecStart={{Path | cmdEscape}}{{range Arguments}} {{. | cmd}}{{end}}",
		"ExecStopPost={{Path | cmdEscape}} cleanup",
		"Restart=always", "RestartSec=1",
		"RuntimeDirectory=nymvpn", "StateDirectory=nymvpn", "StateDirectoryMode=0700",
		"WantedBy=multi-user.target",
	} {
		if !strings.Contains(SystemdUnit, want+"\n") {
			t.Errorf("unit lacks %q", want)
		}
	}
	cfg := serviceConfig([]string{"--directory", "http://x/?key=y"})
	if got := strings.Join(cfg.Arguments, " "); got != "run --directory http://x/?key=y" {
		t.Errorf("service arguments %q", got)
	}
	if cfg.Option["SystemdScript"] != SystemdUnit || cfg.Option["OnFailure"] != "restart" || cfg.Option["KeepAlive"] != true {
		t.Errorf("service options %v", cfg.Option)
	}
}

func TestMainCommands(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "nymvpnd ") {
		t.Errorf("version: %d %q", code, out.String())
	}
	out.Reset()
	if code := Main([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Errorf("unknown command: %d %q", code, errb.String())
	}
	errb.Reset()
	if code := Main([]string{"run", "--dns", "carrier-pigeon"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--dns must be") {
		t.Errorf("bad --dns: %d %q", code, errb.String())
	}
	errb.Reset()
	out.Reset()
	// cleanup with nothing left behind says so and succeeds.
	if code := Main([]string{"cleanup", "--state-dir", t.TempDir()}, &out, &errb); code != 0 || !strings.Contains(out.String(), "no system changes left") {
		t.Errorf("cleanup: %d %q %q", code, out.String(), errb.String())
	}
}

func TestEarlyUnit(t *testing.T) {
	for _, want := range []string{"DefaultDependencies=no", "Before=network-pre.target shutdown.target nymvpnd.service",
		"ExecStart={{Path}} early-block", "Type=oneshot", "WantedBy=sysinit.target"} {
		if !strings.Contains(SystemdEarlyUnit, want+"\n") {
			t.Errorf("early unit lacks %q", want)
		}
	}
}
