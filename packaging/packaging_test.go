package packaging

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nymvpn/nymvpn/daemon"
)

// repo is the repository's root, from this package's directory.
func repo(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The units the packages ship are the ones `nymvpnd install` writes, for
// the installed binary.
func TestSystemdUnitsForPackages(t *testing.T) {
	units, err := daemon.SystemdUnits("/usr/sbin/nymvpnd")
	if err != nil {
		t.Fatal(err)
	}
	if len(units) != len(daemon.SystemdUnitNames) {
		t.Fatalf("units %v, want %v", units, daemon.SystemdUnitNames)
	}
	want := map[string][]string{
		"nymvpnd.service": {
			"ConditionFileIsExecutable=/usr/sbin/nymvpnd",
			`ExecStart=/usr/sbin/nymvpnd "run"`,
			"ExecStopPost=/usr/sbin/nymvpnd cleanup",
			"StateDirectory=nymvpn", "RuntimeDirectory=nymvpn", "WantedBy=multi-user.target",
		},
		"nymvpnd-early.service": {
			"ExecStart=/usr/sbin/nymvpnd early-block",
			"Before=network-pre.target shutdown.target nymvpnd.service", "WantedBy=sysinit.target",
		},
	}
	for name, lines := range want {
		u := units[name]
		if strings.Contains(u, "{{") || strings.Contains(u, "}}") {
			t.Errorf("%s keeps a template action:\n%s", name, u)
		}
		for _, l := range lines {
			if !strings.Contains(u, "\n"+l+"\n") {
				t.Errorf("%s lacks %q:\n%s", name, l, u)
			}
		}
	}
	// Spaces are escaped as kardianos/service does for `nymvpnd install`.
	spaced, err := daemon.SystemdUnits("/opt/nym vpn/nymvpnd")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(spaced["nymvpnd.service"], `ExecStart=/opt/nym\x20vpn/nymvpnd "run"`) {
		t.Errorf("a path with a space:\n%s", spaced["nymvpnd.service"])
	}

	// `nymvpnd unit` prints the same.
	for _, name := range daemon.SystemdUnitNames {
		var out, errb bytes.Buffer
		if code := daemon.Main([]string{"unit", "--path", "/usr/sbin/nymvpnd", name}, &out, &errb); code != 0 || out.String() != units[name] {
			t.Errorf("nymvpnd unit %s: %d %q\n%s", name, code, errb.String(), out.String())
		}
	}
	var out, errb bytes.Buffer
	if code := daemon.Main([]string{"unit", "nymvpnd.socket"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "no unit") {
		t.Errorf("an unknown unit: %d %q", code, errb.String())
	}
}

// scriptsParse checks shell scripts' syntax.
func scriptsParse(t *testing.T, shell string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable", p)
		}
		if out, err := exec.Command(shell, "-n", p).CombinedOutput(); err != nil {
			t.Errorf("%s -n %s: %v\n%s", shell, p, err, out)
		}
	}
}

var nfpmLine = regexp.MustCompile(`^\s*-?\s*(src|dst|postinstall|preinstall|preremove|postremove):\s*(\S+)\s*$`)

// The nfpm configuration names files that exist, scripts that parse, and
// the app's lines are marked so that packages without the app drop them.
func TestLinuxPackageSources(t *testing.T) {
	root := repo(t)
	cfg := readFile(t, filepath.Join(root, "packaging/linux/nfpm.yaml"))
	var dsts []string
	begin, end := 0, 0
	for _, l := range strings.Split(cfg, "\n") {
		switch strings.TrimSpace(l) {
		case "# app:begin":
			begin++
			if begin != end+1 {
				t.Errorf("app:begin without an app:end before it")
			}
		case "# app:end":
			end++
			if end != begin {
				t.Errorf("app:end without an app:begin")
			}
		}
		m := nfpmLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		switch m[1] {
		case "dst":
			dsts = append(dsts, m[2])
		default:
			if strings.Contains(m[2], "${") {
				continue // built by scripts/packages.sh
			}
			if _, err := os.Stat(filepath.Join(root, m[2])); err != nil {
				t.Errorf("nfpm.yaml: %s: %v", m[1], err)
			}
			if m[1] != "src" {
				scriptsParse(t, "sh", filepath.Join(root, m[2]))
			}
		}
	}
	if begin == 0 || begin != end {
		t.Errorf("app markers: %d begin, %d end", begin, end)
	}
	for _, want := range []string{"/usr/sbin/nymvpnd", "/usr/bin/nymvpn", "/usr/bin/nymvpn-app",
		"/usr/lib/systemd/system/nymvpnd.service", "/usr/lib/systemd/system/nymvpnd-early.service",
		"/usr/share/applications/nymvpn.desktop", "/usr/share/icons/hicolor/256x256/apps/nymvpn.png"} {
		if !slices.Contains(dsts, want) {
			t.Errorf("nfpm.yaml installs no %s (has %v)", want, dsts)
		}
	}

	// The desktop entry starts the installed app with the installed icon.
	entry := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(readFile(t, filepath.Join(root, "packaging/linux/nymvpn.desktop"))))
	group := ""
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "["):
			group = l
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || group != "[Desktop Entry]" {
				t.Errorf("desktop entry: line %q", l)
			}
			if _, dup := entry[k]; dup {
				t.Errorf("desktop entry: %s twice", k)
			}
			entry[k] = v
		}
	}
	if entry["Type"] != "Application" || entry["Name"] == "" || entry["Terminal"] != "false" ||
		!strings.HasSuffix(entry["Categories"], ";") {
		t.Errorf("desktop entry %v", entry)
	}
	if !slices.Contains(dsts, "/usr/bin/"+entry["Exec"]) {
		t.Errorf("desktop entry: Exec=%s is not installed in /usr/bin", entry["Exec"])
	}
	if !slices.Contains(dsts, "/usr/share/icons/hicolor/256x256/apps/"+entry["Icon"]+".png") {
		t.Errorf("desktop entry: Icon=%s is not installed", entry["Icon"])
	}
	if path, err := exec.LookPath("desktop-file-validate"); err == nil {
		if out, err := exec.Command(path, filepath.Join(root, "packaging/linux/nymvpn.desktop")).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("desktop-file-validate: %v\n%s", err, out)
		}
	}
}

// parsePlist decodes an XML property list into map[string]any, []any,
// string and bool (integers and reals as strings), strictly: unknown
// elements, keys without values and duplicate keys are errors.
func parsePlist(data []byte) (any, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	next := func() (xml.Token, error) {
		for {
			tok, err := d.Token()
			if err != nil {
				return nil, err
			}
			switch tk := tok.(type) {
			case xml.StartElement, xml.EndElement:
				return tok, nil
			case xml.CharData:
				if len(bytes.TrimSpace(tk)) > 0 {
					return nil, fmt.Errorf("stray text %q", tk)
				}
			}
		}
	}
	var value func(se xml.StartElement) (any, error)
	value = func(se xml.StartElement) (any, error) {
		switch se.Name.Local {
		case "string", "integer", "real", "date", "data":
			var s string
			if err := d.DecodeElement(&s, &se); err != nil {
				return nil, err
			}
			return s, nil
		case "true", "false":
			if err := d.Skip(); err != nil {
				return nil, err
			}
			return se.Name.Local == "true", nil
		case "array":
			arr := []any{}
			for {
				tok, err := next()
				if err != nil {
					return nil, err
				}
				if _, ok := tok.(xml.EndElement); ok {
					return arr, nil
				}
				v, err := value(tok.(xml.StartElement))
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
		case "dict":
			dict := map[string]any{}
			for {
				tok, err := next()
				if err != nil {
					return nil, err
				}
				if _, ok := tok.(xml.EndElement); ok {
					return dict, nil
				}
				ks := tok.(xml.StartElement)
				if ks.Name.Local != "key" {
					return nil, fmt.Errorf("<%s> where a <key> belongs", ks.Name.Local)
				}
				var k string
				if err := d.DecodeElement(&k, &ks); err != nil {
					return nil, err
				}
				if _, dup := dict[k]; dup {
					return nil, fmt.Errorf("key %q twice", k)
				}
				tok, err = next()
				if err != nil {
					return nil, err
				}
				vs, ok := tok.(xml.StartElement)
				if !ok {
					return nil, fmt.Errorf("key %q has no value", k)
				}
				if dict[k], err = value(vs); err != nil {
					return nil, fmt.Errorf("%s: %w", k, err)
				}
			}
		}
		return nil, fmt.Errorf("unknown element <%s>", se.Name.Local)
	}
	tok, err := next()
	if err != nil {
		return nil, err
	}
	if se, ok := tok.(xml.StartElement); !ok || se.Name.Local != "plist" {
		return nil, errors.New("no <plist>")
	}
	tok, err = next()
	if err != nil {
		return nil, err
	}
	se, ok := tok.(xml.StartElement)
	if !ok {
		return nil, errors.New("an empty <plist>")
	}
	v, err := value(se)
	if err != nil {
		return nil, err
	}
	if tok, err = next(); err != nil {
		return nil, err
	} else if ee, ok := tok.(xml.EndElement); !ok || ee.Name.Local != "plist" {
		return nil, errors.New("more than one value in <plist>")
	}
	if _, err := next(); err != io.EOF {
		return nil, fmt.Errorf("content after </plist>: %v", err)
	}
	return v, nil
}

func plistDict(t *testing.T, path string) map[string]any {
	t.Helper()
	v, err := parsePlist([]byte(readFile(t, path)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	d, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: not a dictionary: %T", path, v)
	}
	return d
}

// The macOS payload, laid out here by build-pkg.sh's first half: the
// launchd plist runs the installed daemon, the app bundle is whole, and
// every path the installer's scripts name is in the payload.
func TestMacOSLayout(t *testing.T) {
	root := repo(t)
	mac := filepath.Join(root, "packaging/macos")
	scriptsParse(t, "sh", filepath.Join(mac, "scripts/preinstall"), filepath.Join(mac, "scripts/postinstall"), filepath.Join(mac, "uninstall.sh"))
	scriptsParse(t, "bash", filepath.Join(mac, "build-pkg.sh"))

	plist := plistDict(t, filepath.Join(mac, "nymvpnd.plist"))
	args, _ := plist["ProgramArguments"].([]any)
	if plist["Label"] != "nymvpnd" || len(args) != 2 || args[1] != "run" ||
		plist["RunAtLoad"] != true || plist["KeepAlive"] != true || plist["Disabled"] != false {
		t.Errorf("nymvpnd.plist: %v", plist)
	}

	bin := t.TempDir()
	for _, b := range []string{"nymvpnd", "nymvpn", "nymvpn-app"} {
		if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(mac, "build-pkg.sh"), "1.2.3+git4.abcdef0", "arm64", bin, out)
	cmd.Env = append(os.Environ(), "STAGE_ONLY=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build-pkg.sh: %v\n%s", err, b)
	}
	staged := filepath.Join(out, "macos-root-arm64")
	modes := map[string]os.FileMode{
		"usr/local/bin/nymvpnd":                                  0o755,
		"usr/local/bin/nymvpn":                                   0o755,
		"usr/local/bin/nymvpn-uninstall":                         0o755,
		"Library/LaunchDaemons/nymvpnd.plist":                    0o644,
		"Applications/NymVPN.app/Contents/Info.plist":            0o644,
		"Applications/NymVPN.app/Contents/MacOS/nymvpn-app":      0o755,
		"Applications/NymVPN.app/Contents/Resources/nymvpn.icns": 0o644,
	}
	var got []string
	filepath.WalkDir(staged, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(staged, p)
			got = append(got, rel)
		}
		return err
	})
	for p, mode := range modes {
		fi, err := os.Stat(filepath.Join(staged, p))
		if err != nil {
			t.Errorf("payload: %v", err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("payload: %s is %v, want %v", p, fi.Mode().Perm(), mode)
		}
	}
	if len(got) != len(modes) {
		t.Errorf("payload %v, want %d files", got, len(modes))
	}
	if len(args) > 0 {
		if p, _ := args[0].(string); modes[strings.TrimPrefix(p, "/")] != 0o755 {
			t.Errorf("launchd runs %v, which the payload does not install", args[0])
		}
	}

	info := plistDict(t, filepath.Join(staged, "Applications/NymVPN.app/Contents/Info.plist"))
	contents := filepath.Join(staged, "Applications/NymVPN.app/Contents")
	if _, err := os.Stat(filepath.Join(contents, "MacOS", fmt.Sprint(info["CFBundleExecutable"]))); err != nil {
		t.Errorf("Info.plist: CFBundleExecutable: %v", err)
	}
	icns, err := os.ReadFile(filepath.Join(contents, "Resources", fmt.Sprint(info["CFBundleIconFile"])+".icns"))
	if err != nil {
		t.Errorf("Info.plist: CFBundleIconFile: %v", err)
	} else if len(icns) < 24 || string(icns[:4]) != "icns" || int(binary.BigEndian.Uint32(icns[4:])) != len(icns) ||
		string(icns[8:12]) != "ic08" || int(binary.BigEndian.Uint32(icns[12:])) != len(icns)-8 || string(icns[17:20]) != "PNG" {
		t.Errorf("nymvpn.icns is not a 256x256 PNG icon: % x", icns[:min(len(icns), 24)])
	}
	if info["CFBundleShortVersionString"] != "1.2.3" || info["CFBundlePackageType"] != "APPL" {
		t.Errorf("Info.plist: %v", info)
	}

	// Every payload path the scripts name is in the payload.
	payloadPath := regexp.MustCompile(`/(usr/local/bin|Library/LaunchDaemons|Applications)/[A-Za-z0-9._-]+`)
	for _, s := range []string{"scripts/preinstall", "scripts/postinstall", "uninstall.sh", "nymvpnd.plist"} {
		for _, p := range payloadPath.FindAllString(readFile(t, filepath.Join(mac, s)), -1) {
			if _, err := os.Stat(filepath.Join(staged, p)); err != nil {
				t.Errorf("%s names %s: %v", s, p, err)
			}
		}
	}

	// productbuild's distribution is well-formed and names the component
	// package that build-pkg.sh makes.
	dist := readFile(t, filepath.Join(mac, "distribution.xml"))
	dist = strings.NewReplacer("@VERSION@", "1.2.3", "@HOSTARCH@", "arm64").Replace(dist)
	var doc struct {
		XMLName xml.Name `xml:"installer-gui-script"`
		PkgRefs []struct {
			ID   string `xml:"id,attr"`
			File string `xml:",chardata"`
		} `xml:"pkg-ref"`
	}
	if err := xml.Unmarshal([]byte(dist), &doc); err != nil {
		t.Fatalf("distribution.xml: %v", err)
	}
	build := readFile(t, filepath.Join(mac, "build-pkg.sh"))
	if len(doc.PkgRefs) != 1 || !strings.Contains(build, "--identifier "+doc.PkgRefs[0].ID+" ") ||
		!strings.Contains(build, `"$work/`+doc.PkgRefs[0].File+`"`) {
		t.Errorf("distribution.xml's pkg-ref %+v is not what build-pkg.sh builds", doc.PkgRefs)
	}
}

// element is any element of a WiX source, flattened.
type element struct {
	Name  string
	Attrs map[string]string
	Text  string
}

func wixElements(t *testing.T, path string) []element {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(readFile(t, path)))
	var els []element
	var open []int
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			e := element{Name: tk.Name.Local, Attrs: map[string]string{}}
			for _, a := range tk.Attr {
				e.Attrs[a.Name.Local] = a.Value
			}
			open = append(open, len(els))
			els = append(els, e)
		case xml.EndElement:
			open = open[:len(open)-1]
		case xml.CharData:
			if len(open) > 0 {
				els[open[len(open)-1]].Text += strings.TrimSpace(string(tk))
			}
		}
	}
	return els
}

// The WiX source hangs together: custom actions run files it installs,
// sit where deferred actions may, and every component is in the feature.
func TestWindowsInstallerSource(t *testing.T) {
	wxs := filepath.Join(repo(t), "packaging/windows/nymvpn.wxs")
	els := wixElements(t, wxs)
	ids := map[string]map[string]element{}
	for _, e := range els {
		if id := e.Attrs["Id"]; id != "" {
			if ids[e.Name] == nil {
				ids[e.Name] = map[string]element{}
			}
			ids[e.Name][id] = e
		}
	}
	for _, f := range []string{"nymvpnd.exe", "nymvpn.exe", "nymvpn_app.exe", "wintun.dll"} {
		if _, ok := ids["File"][f]; !ok {
			t.Errorf("no File %s", f)
		}
	}
	refs := map[string]bool{}
	for _, e := range els {
		if e.Name == "ComponentRef" {
			refs[e.Attrs["Id"]] = true
		}
	}
	for id := range ids["Component"] {
		if !refs[id] {
			t.Errorf("component %s is in no feature", id)
		}
	}
	seq := map[string]int{}
	for _, e := range els {
		if e.Name != "Custom" {
			continue
		}
		a := e.Attrs["Action"]
		ca, ok := ids["CustomAction"][a]
		if !ok {
			t.Errorf("sequence runs an unknown action %s", a)
			continue
		}
		n, err := strconv.Atoi(e.Attrs["Sequence"])
		if err != nil {
			t.Errorf("%s: no Sequence number (wixl misplaces After=): %v", a, err)
			continue
		}
		seq[a] = n
		if fk := ca.Attrs["FileKey"]; fk != "" {
			if _, ok := ids["File"][fk]; !ok {
				t.Errorf("%s runs an unknown file %s", a, fk)
			}
		}
		const installInitialize, removeFiles, installFiles, installFinalize = 1500, 3500, 4000, 6600
		switch ex := ca.Attrs["Execute"]; {
		case ex != "deferred" && ex != "rollback":
		case strings.Contains(e.Text, `REMOVE~="ALL"`):
			// Before the files go, while nymvpnd.exe is there to run.
			if n <= installInitialize || n >= removeFiles {
				t.Errorf("%s at %d: not between InstallInitialize and RemoveFiles", a, n)
			}
		default:
			if n <= installFiles || n >= installFinalize {
				t.Errorf("%s at %d: not between InstallFiles and InstallFinalize", a, n)
			}
		}
		if ca.Attrs["Execute"] == "deferred" && ca.Attrs["Impersonate"] != "no" {
			t.Errorf("%s would run as the user, not as LocalSystem", a)
		}
	}
	cmds := map[string]string{}
	for a := range seq {
		cmds[ids["CustomAction"][a].Attrs["ExeCommand"]] = a
	}
	for _, c := range []string{"install", "start", "stop", "uninstall", "cleanup --firewall"} {
		if _, ok := cmds[c]; !ok {
			t.Errorf("no action runs nymvpnd %s", c)
		}
	}
	if !(seq["DaemonStop"] < seq["DaemonCleanup"] && seq["DaemonCleanup"] < seq["DaemonUninstall"] &&
		seq["DaemonInstallRollback"] < seq["DaemonInstall"] && seq["DaemonInstall"] < seq["DaemonStart"]) {
		t.Errorf("the daemon's actions are out of order: %v", seq)
	}

	// wixl's preprocessor keeps wintun.dll only when it is given.
	if _, err := exec.LookPath("wixl"); err != nil {
		t.Log("no wixl: the preprocessor is not checked")
		return
	}
	for _, define := range [][]string{nil, {"-D", "WintunDll=wintun.dll"}} {
		args := append([]string{"-E", "-a", "x64", "-D", "Version=1.2.3", "-D", "BinDir=bin", "-D", "AssetsDir=assets"}, define...)
		out, err := exec.Command("wixl", append(args, wxs)...).Output()
		if err != nil {
			t.Fatalf("wixl -E: %v", err)
		}
		if got := strings.Contains(string(out), `Id="wintun.dll"`); got != (define != nil) {
			t.Errorf("wixl -E %v: wintun.dll present: %v", define, got)
		}
	}
}
