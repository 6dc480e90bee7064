package daemon

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/template"

	"github.com/kardianos/service"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/settings"
	"github.com/nymvpn/nymvpn/daemon/tunnelstate"
	"github.com/nymvpn/nymvpn/platform"
	"github.com/nymvpn/nymvpn/version"
)

// SystemdUnit is nymvpnd's own systemd unit: restart within a second of a
// crash, a runtime directory for the socket, a state directory for the
// settings, and a cleanup step after every stop that undoes any routes and
// DNS a killed daemon left behind. {{Path | cmdEscape}} is the binary.
//
//go:embed nymvpnd.service
var SystemdUnit string

// SystemdEarlyUnit blocks traffic at boot before any network is configured
// when the user wanted to be connected or lockdown is on (the ordering of
// Debian's nftables.service).
//
//go:embed nymvpnd-early.service
var SystemdEarlyUnit string

const serviceName = "nymvpnd"

// SystemdUnitNames are the files SystemdUnits renders.
var SystemdUnitNames = []string{"nymvpnd.service", "nymvpnd-early.service"}

// SystemdUnits renders nymvpnd's systemd units for the binary at path, by
// name (SystemdUnitNames), as `nymvpnd install` writes them: the same
// templates, arguments and escaping (kardianos/service's cmd and cmdEscape).
// Packages ship them as files: `nymvpnd unit --path /usr/sbin/nymvpnd NAME`.
func SystemdUnits(path string) (map[string]string, error) {
	funcs := template.FuncMap{
		"Path":      func() string { return path },
		"Arguments": func() []string { return serviceConfig(nil).Arguments },
		"cmd":       func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` },
		"cmdEscape": func(s string) string { return strings.ReplaceAll(s, " ", `\x20`) },
	}
	units := map[string]string{}
	for i, text := range []string{SystemdUnit, SystemdEarlyUnit} {
		t, err := template.New(SystemdUnitNames[i]).Funcs(funcs).Parse(text)
		if err != nil {
			return nil, fmt.Errorf("unit %s: %w", SystemdUnitNames[i], err)
		}
		var b strings.Builder
		if err := t.Execute(&b, nil); err != nil {
			return nil, fmt.Errorf("unit %s: %w", SystemdUnitNames[i], err)
		}
		units[SystemdUnitNames[i]] = b.String()
	}
	return units, nil
}

// serviceConfig describes the service to kardianos/service for every OS.
func serviceConfig(args []string) *service.Config {
	return &service.Config{
		Name:        serviceName,
		DisplayName: "nymvpn daemon",
		Description: "nymvpn: the VPN tunnel service (fast and mixnet modes)",
		Arguments:   append([]string{"run"}, args...),
		Option: service.KeyValue{
			// Linux: our own unit.
			"SystemdScript": SystemdUnit,
			// macOS: launchd starts it at boot and restarts it if it dies.
			"KeepAlive": true,
			"RunAtLoad": true,
			// Windows: start at boot, restart a second after a failure.
			"StartType":              "automatic",
			"OnFailure":              "restart",
			"OnFailureDelayDuration": "1s",
			"OnFailureResetPeriod":   60,
		},
	}
}

// program adapts Run to kardianos/service.
type program struct {
	cfg    Config
	cancel context.CancelFunc
	done   chan error
}

func (p *program) Start(service.Service) error {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.done = make(chan error, 1)
	ready := make(chan struct{})
	var once sync.Once
	p.cfg.Ready = func() { once.Do(func() { close(ready) }) }
	go func() { p.done <- Run(ctx, p.cfg) }()
	select {
	case <-ready:
		return nil
	case err := <-p.done:
		p.done <- err
		return err
	}
}

func (p *program) Stop(service.Service) error {
	p.cancel()
	return <-p.done
}

const usage = `usage: nymvpnd <command> [flags]

commands:
  run         run the daemon in the foreground (what the service runs)
  install     install nymvpnd as a system service (flags after it are passed to run)
  uninstall   remove the service
  start       start the installed service
  stop        stop the service
  status      print whether the service is running
  cleanup     undo routes and DNS left behind by a daemon that died (the service runs it after every stop);
              --firewall also removes the kill switch's firewall (the packages do when they are removed)
  early-block at boot, before the network comes up: block all traffic if the user wanted to be
              connected (kill switch) or lockdown is on (nymvpnd-early.service runs it)
  unit        print a systemd unit for packages: unit [--path /usr/sbin/nymvpnd] nymvpnd.service|nymvpnd-early.service
  version     print the version

run flags:
`

// Main is nymvpnd's command line; it returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprint(stderr, usage)
		f := runFlags(stderr)
		f.fs.PrintDefaults()
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version", "--version":
		fmt.Fprintln(stdout, "nymvpnd", version.String())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		f := runFlags(stdout)
		f.fs.PrintDefaults()
		return 0
	case "unit":
		return printUnit(rest, stdout, stderr)
	case "run", "cleanup", "install", "early-block":
		f := runFlags(stderr)
		var firewall bool
		if cmd == "cleanup" {
			f.fs.BoolVar(&firewall, "firewall", false, "cleanup: also remove the kill switch's firewall, so nothing is blocked any more")
		}
		if err := f.fs.Parse(rest); err != nil {
			return 2
		}
		cfg, err := f.config()
		if err != nil {
			fmt.Fprintln(stderr, "nymvpnd:", err)
			return 2
		}
		switch cmd {
		case "run":
			return runService(cfg, stderr)
		case "cleanup":
			return cleanup(cfg, firewall, stdout, stderr)
		case "early-block":
			return earlyBlock(cfg, stdout, stderr)
		default:
			return serviceControl(cmd, rest, stdout, stderr)
		}
	case "uninstall", "start", "stop", "status":
		return serviceControl(cmd, nil, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "nymvpnd: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

type flags struct {
	fs                                     *flag.FlagSet
	socket, stateDir, directory, iface     string
	group, operator, dnsBackend, resolv, l string
}

func runFlags(out io.Writer) *flags {
	f := &flags{fs: flag.NewFlagSet("nymvpnd run", flag.ContinueOnError)}
	f.fs.SetOutput(out)
	f.fs.StringVar(&f.socket, "socket", api.DefaultSocket(), "control socket path")
	f.fs.StringVar(&f.stateDir, "state-dir", DefaultStateDir(), "directory for settings, target and the system-change journal (0700)")
	f.fs.StringVar(&f.directory, "directory", os.Getenv("NYMVPN_DIRECTORY"), "network directory URL with its pinned key, used when the settings name none")
	f.fs.StringVar(&f.iface, "interface", DefaultInterface, "name of the TUN device")
	f.fs.StringVar(&f.group, "group", "nymvpn", "members of this group may change the VPN's state")
	f.fs.StringVar(&f.operator, "operator", "", "a user (name or uid) who may change the VPN's state")
	f.fs.StringVar(&f.dnsBackend, "dns", "auto", "how to set DNS: auto, resolved (systemd-resolved) or resolvconf")
	f.fs.StringVar(&f.resolv, "resolv-conf", platform.DefaultResolvConf, "resolv.conf to manage when systemd-resolved is not used")
	f.fs.StringVar(&f.l, "log-level", "info", "debug, info, warn or error")
	return f
}

func (f *flags) config() (Config, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.l)); err != nil {
		return Config{}, fmt.Errorf("--log-level: %w", err)
	}
	backend := platform.DNSBackend(f.dnsBackend)
	switch backend {
	case platform.DNSAuto, platform.DNSResolved, platform.DNSResolvConf:
	default:
		return Config{}, fmt.Errorf("--dns must be auto, resolved or resolvconf, not %q", f.dnsBackend)
	}
	cfg := Config{
		Socket: f.socket, StateDir: f.stateDir, DirectoryURL: f.directory, Interface: f.iface,
		Group: f.group, DNSBackend: backend, ResolvConf: f.resolv,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})),
	}
	if f.operator != "" {
		uid, err := lookupUID(f.operator)
		if err != nil {
			return Config{}, fmt.Errorf("--operator: %w", err)
		}
		cfg.OperatorUID = uid
	}
	return cfg, nil
}

func lookupUID(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n, nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(u.Uid)
}

func runService(cfg Config, stderr io.Writer) int {
	p := &program{cfg: cfg}
	s, err := service.New(p, serviceConfig(nil))
	if err != nil {
		fmt.Fprintln(stderr, "nymvpnd:", err)
		return 1
	}
	if err := s.Run(); err != nil {
		fmt.Fprintln(stderr, "nymvpnd:", err)
		return 1
	}
	return 0
}

// earlyBlock applies the blocking firewall at boot, before any network is
// configured, when the persisted target or lockdown asks for it; the
// daemon, starting later, takes the firewall over.
func earlyBlock(cfg Config, stdout, stderr io.Writer) int {
	s, err := settings.Load(filepath.Join(cfg.StateDir, "settings.json"))
	if err != nil {
		fmt.Fprintln(stderr, "nymvpnd early-block: settings:", err) // defaults apply: kill switch on
	}
	target, err := tunnelstate.FileTarget{Path: filepath.Join(cfg.StateDir, "target.json")}.Load()
	if err != nil {
		fmt.Fprintln(stderr, "nymvpnd early-block: target:", err)
	}
	if !s.Lockdown && !(s.KillSwitch && target) {
		fmt.Fprintln(stdout, "nymvpnd: nothing to block at boot")
		return 0
	}
	fw, err := platform.NewFirewall(cfg.Logger)
	if err != nil {
		fmt.Fprintln(stderr, "nymvpnd early-block:", err)
		return 1
	}
	if err := fw.Apply(platform.FirewallPolicy{Block: true, AllowLAN: s.AllowLAN}); err != nil {
		fmt.Fprintln(stderr, "nymvpnd early-block:", err)
		return 1
	}
	fmt.Fprintln(stdout, "nymvpnd: blocking all traffic until the tunnel is up")
	return 0
}

// printUnit prints one of SystemdUnits.
func printUnit(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nymvpnd unit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("path", "", "the installed nymvpnd (default: this executable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "usage: nymvpnd unit [--path PATH] %s\n", strings.Join(SystemdUnitNames, "|"))
		return 2
	}
	if *path == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(stderr, "nymvpnd unit:", err)
			return 1
		}
		*path = exe
	}
	units, err := SystemdUnits(*path)
	if err != nil {
		fmt.Fprintln(stderr, "nymvpnd unit:", err)
		return 1
	}
	u, ok := units[fs.Arg(0)]
	if !ok {
		fmt.Fprintf(stderr, "nymvpnd unit: no unit %q (%s)\n", fs.Arg(0), strings.Join(SystemdUnitNames, ", "))
		return 2
	}
	fmt.Fprint(stdout, u)
	return 0
}

// cleanup undoes what a daemon that died left behind, without starting one;
// with firewall it also removes the kill switch's firewall, which a stopped
// daemon leaves blocking on purpose (package removal).
func cleanup(cfg Config, firewall bool, stdout, stderr io.Writer) int {
	code := 0
	sys, err := platform.New(platform.Options{StateDir: platformDir(cfg.StateDir), ResolvConf: cfg.ResolvConf, DNSBackend: cfg.DNSBackend, Logger: cfg.Logger})
	if err == nil {
		err = sys.Recover(context.Background())
		sys.Close()
	}
	if err != nil {
		fmt.Fprintln(stderr, "nymvpnd cleanup:", err)
		code = 1
	} else {
		fmt.Fprintln(stdout, "nymvpnd: no system changes left behind")
	}
	if firewall { // even when the rest failed: nothing else would lift it
		fw, err := platform.NewFirewall(cfg.Logger)
		if err == nil {
			err = fw.Remove()
		}
		switch {
		case errors.Is(err, errors.ErrUnsupported): // no kill switch here
		case err != nil:
			fmt.Fprintln(stderr, "nymvpnd cleanup:", err)
			code = 1
		default:
			fmt.Fprintln(stdout, "nymvpnd: the kill switch's firewall is removed")
		}
	}
	return code
}

func serviceControl(cmd string, runArgs []string, stdout, stderr io.Writer) int {
	s, err := service.New(&program{}, serviceConfig(runArgs))
	if err != nil {
		fmt.Fprintln(stderr, "nymvpnd:", err)
		return 1
	}
	if cmd == "status" {
		st, err := s.Status()
		if err != nil {
			if errors.Is(err, service.ErrNotInstalled) {
				fmt.Fprintln(stdout, "nymvpnd: not installed")
				return 3
			}
			fmt.Fprintln(stderr, "nymvpnd:", err)
			return 1
		}
		names := map[service.Status]string{service.StatusRunning: "running", service.StatusStopped: "stopped"}
		name, ok := names[st]
		if !ok {
			name = "unknown"
		}
		fmt.Fprintln(stdout, "nymvpnd:", name)
		if st != service.StatusRunning {
			return 3
		}
		return 0
	}
	if cmd == "uninstall" {
		if err := uninstallEarly(); err != nil {
			fmt.Fprintln(stderr, "nymvpnd uninstall:", err)
		}
	}
	if err := service.Control(s, cmd); err != nil {
		msg := err.Error()
		if strings.Contains(msg, "ermission") || strings.Contains(msg, "denied") {
			msg += " (run it as root / an administrator)"
		}
		fmt.Fprintf(stderr, "nymvpnd %s: %s\n", cmd, msg)
		return 1
	}
	if cmd == "install" && service.Platform() == "linux-systemd" {
		exe, err := os.Executable()
		if err == nil {
			err = installEarly(exe)
		}
		if err != nil {
			fmt.Fprintln(stderr, "nymvpnd install: the boot-time kill switch:", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "nymvpnd: %s done\n", cmd)
	return 0
}
