package packaging

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon"
)

// What the packages are built as in TestPackages: a version 4 commits after
// the tag v1.2.3, which scripts/packages.sh turns into package versions.
const (
	testVersion    = "v1.2.3-4-gabcdef0"
	testPkgVersion = "1.2.3+git4.abcdef0"
	testMSIVersion = "1.2.3"
)

// TestPackages builds the .deb, the .rpm and the .msi with
// scripts/packages.sh (linux/amd64 and windows/amd64 only: the full matrix
// is `make packages`), installs, upgrades, removes and purges the .deb in a
// throwaway root with and without systemd, and reads the RPM's and the
// MSI's contents. It needs root (mount and network namespaces, chroot) and
// the tools scripts/deps.sh installs.
func TestPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every package: not in -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: installs the .deb into an overlay of / in its own mount and network namespaces")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "unshare", "chroot", "wixl", "msibuild", "msiinfo", "rpm", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s (scripts/deps.sh installs it): %v", tool, err)
		}
	}
	root := repo(t)
	dist := t.TempDir()

	// A stand-in for wintun.dll: an x64 PE header is all the script checks.
	wintun := filepath.Join(t.TempDir(), "wintun.dll")
	pe := make([]byte, 512)
	copy(pe, "MZ")
	binary.LittleEndian.PutUint32(pe[0x3c:], 0x80)
	copy(pe[0x80:], "PE\x00\x00")
	binary.LittleEndian.PutUint16(pe[0x84:], 0x8664)
	if err := os.WriteFile(wintun, pe, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts/packages.sh"))
	cmd.Env = append(os.Environ(), "TARGETS=linux/amd64 windows/amd64", "DIST="+dist, "VERSION="+testVersion, "WINTUN_DLL="+wintun)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/packages.sh: %v\n%s", err, out)
	}
	t.Logf("scripts/packages.sh: %s", time.Since(start).Round(time.Second))

	deb := filepath.Join(dist, "nymvpn_"+testPkgVersion+"-1_amd64.deb")
	rpm := filepath.Join(dist, "nymvpn-"+testPkgVersion+"-1.x86_64.rpm")
	msi := filepath.Join(dist, "nymvpn-"+testPkgVersion+"-windows-amd64.msi")
	sums := readFile(t, filepath.Join(dist, "SHA256SUMS"))
	for _, f := range []string{deb, rpm, msi} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Logf("%s: %d bytes", filepath.Base(f), fi.Size())
		if !strings.Contains(sums, "  "+filepath.Base(f)+"\n") {
			t.Errorf("SHA256SUMS lacks %s:\n%s", filepath.Base(f), sums)
		}
	}

	t.Run("deb contents", func(t *testing.T) { checkDebContents(t, deb) })
	t.Run("deb install", func(t *testing.T) { checkDebInstall(t, deb) })
	t.Run("rpm", func(t *testing.T) { checkRPM(t, rpm) })
	t.Run("rpm install", func(t *testing.T) { checkRPMInstall(t, rpm) })
	t.Run("msi", func(t *testing.T) { checkMSI(t, msi) })
}

// linuxFiles are the files of the amd64 packages and their modes.
var linuxFiles = map[string]string{
	"/usr/sbin/nymvpnd":                                "-rwxr-xr-x",
	"/usr/bin/nymvpn":                                  "-rwxr-xr-x",
	"/usr/bin/nymvpn-app":                              "-rwxr-xr-x",
	"/usr/lib/systemd/system/nymvpnd.service":          "-rw-r--r--",
	"/usr/lib/systemd/system/nymvpnd-early.service":    "-rw-r--r--",
	"/usr/share/applications/nymvpn.desktop":           "-rw-r--r--",
	"/usr/share/icons/hicolor/256x256/apps/nymvpn.png": "-rw-r--r--",
	"/usr/share/doc/nymvpn/README.md":                  "-rw-r--r--",
}

func checkDebContents(t *testing.T, deb string) {
	out, err := exec.Command("dpkg-deb", "--contents", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || f[1] != "root/root" {
			t.Errorf("dpkg-deb --contents: %q: not root's", l)
			continue
		}
		if !strings.HasPrefix(f[0], "d") {
			got[strings.TrimPrefix(f[5], ".")] = f[0]
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(linuxFiles) {
		t.Errorf("the .deb's files:\n%v\nwant\n%v", got, linuxFiles)
	}
	for field, want := range map[string]string{"Package": "nymvpn", "Version": testPkgVersion + "-1", "Architecture": "amd64"} {
		if v, _ := exec.Command("dpkg-deb", "--field", deb, field).Output(); strings.TrimSpace(string(v)) != want {
			t.Errorf("%s: %q, want %q", field, v, want)
		}
	}
	if dep, _ := exec.Command("dpkg-deb", "--field", deb, "Depends").Output(); !strings.Contains(string(dep), "libegl1") {
		t.Errorf("Depends: %q lacks the app's libraries", dep)
	}

	// The units are the daemon's, for /usr/sbin/nymvpnd.
	x := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "--extract", deb, x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --extract: %v\n%s", err, out)
	}
	units, err := daemon.SystemdUnits("/usr/sbin/nymvpnd")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range units {
		if got := readFile(t, filepath.Join(x, "usr/lib/systemd/system", name)); got != want {
			t.Errorf("%s:\n%s\nwant\n%s", name, got, want)
		}
	}
}

// throwaway is a root file system for installing packages: an overlay of
// this machine's / whose changes land in dir/upper and nowhere else, used
// in a private mount namespace (and a fresh network namespace, so a
// firewall the scripts touch is not this machine's).
type throwaway struct {
	t        *testing.T
	dir, pkg string
}

func newThrowaway(t *testing.T, pkgDir string) *throwaway {
	dir := t.TempDir()
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r := &throwaway{t: t, dir: dir, pkg: pkgDir}
	if out, err := r.run(false, "true"); err != nil {
		t.Skipf("no overlay root here: %v\n%s", err, out)
	}
	return r
}

// run runs script with sh in the throwaway root, the package directory at
// /mnt; with systemd, /run/systemd/system says that systemd runs.
func (r *throwaway) run(systemd bool, script string) (string, error) {
	m := filepath.Join(r.dir, "merged")
	setup := fmt.Sprintf(`set -e
mount -t overlay overlay -o lowerdir=/,upperdir=%[1]s/upper,workdir=%[1]s/work %[2]s
mount -t proc proc %[2]s/proc
mount --bind /dev %[2]s/dev
mount -t tmpfs tmpfs %[2]s/run
mount -t tmpfs tmpfs %[2]s/tmp
mount --bind %[3]s %[2]s/mnt
`, r.dir, m, r.pkg)
	if systemd {
		setup += fmt.Sprintf("mkdir -p %s/run/systemd/system\n", m)
	}
	setup += fmt.Sprintf(`exec chroot %s /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 /bin/sh -c "$1"`, m)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "unshare", "--mount", "--net", "--propagation", "private",
		"sh", "-c", setup, "throwaway", script).CombinedOutput()
	return string(out), err
}

// must runs script and fails the test if it fails.
func (r *throwaway) must(systemd bool, script string) string {
	r.t.Helper()
	out, err := r.run(systemd, script)
	if err != nil {
		r.t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return out
}

// fakeSystemctl, run in a throwaway root only, replaces its systemctl by
// one that records its calls in /var/log/systemctl.log: with
// /run/systemd/system it stands in for a running systemd. (In place: rpm
// runs its scripts with a PATH of its own.)
const fakeSystemctl = `printf '#!/bin/sh\necho "$*" >>/var/log/systemctl.log\n' >/usr/bin/systemctl.fake &&
chmod 0755 /usr/bin/systemctl.fake && mv /usr/bin/systemctl.fake /usr/bin/systemctl`

func checkDebInstall(t *testing.T, deb string) {
	r := newThrowaway(t, filepath.Dir(deb))
	pkg := "/mnt/" + filepath.Base(deb)

	// 1. Installed where systemd is not running (a chroot, a container):
	// nothing fails, the group is made, the units are enabled for the
	// next boot and the binaries carry the version.
	out := r.must(false, "dpkg -i "+pkg)
	if !strings.Contains(out, "systemd is not running here") {
		t.Errorf("dpkg -i without systemd:\n%s", out)
	}
	out = r.must(false, `getent group nymvpn; stat -c '%a %U' /var/lib/nymvpn
readlink /etc/systemd/system/multi-user.target.wants/nymvpnd.service /etc/systemd/system/sysinit.target.wants/nymvpnd-early.service
nymvpn version; nymvpnd version
for f in /usr/sbin/nymvpnd /usr/bin/nymvpn /usr/bin/nymvpn-app /usr/lib/systemd/system/nymvpnd.service /usr/lib/systemd/system/nymvpnd-early.service; do stat -c '%A %U:%G %n' $f; done`)
	for _, want := range []string{
		"nymvpn:x:", "700 root",
		"/nymvpnd.service\n", "/nymvpnd-early.service\n",
		"nymvpn " + testVersion, "nymvpnd not running", "nymvpnd " + testVersion,
		"-rwxr-xr-x root:root /usr/sbin/nymvpnd", "-rwxr-xr-x root:root /usr/bin/nymvpn\n",
		"-rwxr-xr-x root:root /usr/bin/nymvpn-app", "-rw-r--r-- root:root /usr/lib/systemd/system/nymvpnd.service",
		"-rw-r--r-- root:root /usr/lib/systemd/system/nymvpnd-early.service",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("installed without systemd: no %q in\n%s", want, out)
		}
	}
	if out, err := r.run(false, "systemd-analyze verify /usr/lib/systemd/system/nymvpnd.service /usr/lib/systemd/system/nymvpnd-early.service"); err != nil {
		if _, lerr := exec.LookPath("systemd-analyze"); lerr == nil {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	}

	// 2. An upgrade (the same package again: prerm upgrade, postinst
	// configure OLD) while systemd runs: the daemon is restarted, not
	// stopped or re-enabled, and the settings and the wallet stay.
	r.must(false, fakeSystemctl+`
mkdir -p /var/lib/nymvpn/wallet && echo '{"mode":"fast"}' >/var/lib/nymvpn/settings.json && echo ticket >/var/lib/nymvpn/wallet/book`)
	r.must(true, "dpkg -i "+pkg)
	out = r.must(true, "cat /var/log/systemctl.log; cat /var/lib/nymvpn/settings.json /var/lib/nymvpn/wallet/book")
	if !regexp.MustCompile(`^daemon-reload\ntry-restart nymvpnd.service\n`).MatchString(out) || !strings.Contains(out, `{"mode":"fast"}`+"\nticket\n") {
		t.Errorf("upgrade with systemd:\n%s", out)
	}

	// 3. Removed while systemd runs, with the kill switch's table in place:
	// the daemon is stopped and disabled, the table is gone, the state and
	// the group stay.
	r.must(true, ": >/var/log/systemctl.log")
	out = r.must(true, `nft add table inet nymvpn && dpkg -r nymvpn && echo "tables: $(nft list tables)"`)
	if !strings.Contains(out, "the kill switch's firewall is removed") || !strings.Contains(out, "tables: \n") {
		t.Errorf("dpkg -r:\n%s", out)
	}
	out = r.must(true, `cat /var/log/systemctl.log
for f in /usr/sbin/nymvpnd /usr/lib/systemd/system/nymvpnd.service; do test -e $f || echo "$f: gone"; done
cat /var/lib/nymvpn/settings.json; getent group nymvpn`)
	for _, want := range []string{
		"stop nymvpnd.service nymvpnd-early.service\ndisable nymvpnd.service nymvpnd-early.service\ndaemon-reload\n",
		"/usr/sbin/nymvpnd: gone", "/usr/lib/systemd/system/nymvpnd.service: gone", `{"mode":"fast"}`, "nymvpn:x:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("after dpkg -r: no %q in\n%s", want, out)
		}
	}

	// 4. Purged: the wallet still stays (its tickets were paid for).
	out = r.must(true, "dpkg -P nymvpn && cat /var/lib/nymvpn/wallet/book")
	if !strings.Contains(out, "kept /var/lib/nymvpn") || !strings.Contains(out, "ticket\n") {
		t.Errorf("dpkg -P:\n%s", out)
	}

	// 5. Installed afresh while systemd runs: enabled and started.
	r.must(true, ": >/var/log/systemctl.log")
	r.must(true, "dpkg -i "+pkg)
	if out := r.must(true, "cat /var/log/systemctl.log"); out != "daemon-reload\nenable nymvpnd.service nymvpnd-early.service\nstart nymvpnd.service\n" {
		t.Errorf("install with systemd: systemctl calls:\n%s", out)
	}
}

func checkRPM(t *testing.T, rpm string) {
	out, err := exec.Command("rpm", "-qlpv", rpm).Output()
	if err != nil {
		t.Fatalf("rpm -qlpv: %v", err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) < 9 || f[2] != "root" || f[3] != "root" {
			t.Errorf("rpm -qlpv: %q: not root's", l)
			continue
		}
		got[f[len(f)-1]] = f[0]
	}
	if fmt.Sprint(got) != fmt.Sprint(linuxFiles) {
		t.Errorf("the .rpm's files:\n%v\nwant\n%v", got, linuxFiles)
	}
	if out, _ := exec.Command("rpm", "-qp", "--qf", "%{NAME} %{VERSION}-%{RELEASE} %{ARCH}", rpm).Output(); string(out) != "nymvpn "+testPkgVersion+"-1 x86_64" {
		t.Errorf("rpm: %q", out)
	}
	if out, _ := exec.Command("rpm", "-qpR", rpm).Output(); !strings.Contains(string(out), "libEGL.so.1()(64bit)") {
		t.Errorf("rpm requires:\n%s", out)
	}
	scripts, _ := exec.Command("rpm", "-qp", "--scripts", rpm).Output()
	for _, want := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet", "nymvpnd cleanup --firewall"} {
		if !strings.Contains(string(scripts), want) {
			t.Errorf("rpm scripts lack %q", want)
		}
	}
}

// checkRPMInstall runs the RPM's scripts with RPM's arguments (1 on an
// install, 2 on an upgrade, 0 on an erase) under a running systemd. Debian's
// rpm wants --force-debian, and nothing here provides the libraries.
func checkRPMInstall(t *testing.T, rpm string) {
	r := newThrowaway(t, filepath.Dir(rpm))
	pkg := "/mnt/" + filepath.Base(rpm)
	const flags = " --nodeps --force-debian "
	r.must(false, fakeSystemctl)
	steps := []struct{ cmd, calls string }{
		{"rpm -i" + flags + pkg, "daemon-reload\nenable nymvpnd.service nymvpnd-early.service\nstart nymvpnd.service\n"},
		{"rpm -U --replacepkgs" + flags + pkg, "daemon-reload\ntry-restart nymvpnd.service\n"},
		{"rpm -e --nodeps nymvpn", "stop nymvpnd.service nymvpnd-early.service\ndisable nymvpnd.service nymvpnd-early.service\ndaemon-reload\n"},
	}
	for _, s := range steps {
		out := r.must(true, ": >/var/log/systemctl.log && "+s.cmd+" && echo OK")
		if calls := r.must(true, "cat /var/log/systemctl.log"); calls != s.calls || !strings.Contains(out, "OK") {
			t.Errorf("%s: systemctl calls:\n%s\nwant\n%s\noutput:\n%s", s.cmd, calls, s.calls, out)
		}
	}
	if out := r.must(false, "getent group nymvpn; test -e /usr/sbin/nymvpnd || echo gone"); !strings.Contains(out, "nymvpn:x:") || !strings.Contains(out, "gone") {
		t.Errorf("after rpm -e:\n%s", out)
	}
}

// msiTable reads a table of the MSI as rows of column → value.
func msiTable(t *testing.T, msi, table string) []map[string]string {
	t.Helper()
	out, err := exec.Command("msiinfo", "export", msi, table).Output()
	if err != nil {
		t.Fatalf("msiinfo export %s: %v", table, err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\r\n"), "\n")
	if len(lines) < 3 {
		t.Fatalf("msiinfo export %s: %q", table, out)
	}
	cols := strings.Split(strings.TrimRight(lines[0], "\r"), "\t")
	var rows []map[string]string
	for _, l := range lines[3:] {
		vals := strings.Split(strings.TrimRight(l, "\r"), "\t")
		row := map[string]string{}
		for i, c := range cols {
			if i < len(vals) {
				row[c] = vals[i]
			}
		}
		rows = append(rows, row)
	}
	return rows
}

func rowsBy(rows []map[string]string, key string) map[string]map[string]string {
	m := map[string]map[string]string{}
	for _, r := range rows {
		m[r[key]] = r
	}
	return m
}

func checkMSI(t *testing.T, msi string) {
	tables, err := exec.Command("msiinfo", "tables", msi).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"File", "Component", "CustomAction", "InstallExecuteSequence", "Shortcut", "Environment", "Upgrade"} {
		if !regexp.MustCompile(`(?m)^` + want + `$`).Match(tables) {
			t.Errorf("no %s table in\n%s", want, tables)
		}
	}
	props := rowsBy(msiTable(t, msi, "Property"), "Property")
	if props["ProductVersion"]["Value"] != testMSIVersion || props["ProductName"]["Value"] != "NymVPN" ||
		props["UpgradeCode"]["Value"] != "{F8C8A326-6179-4884-BCBF-D115DF5689BC}" || props["ALLUSERS"]["Value"] != "1" {
		t.Errorf("properties: %v", props)
	}

	// The files, each in a 64-bit component in "Program Files\NymVPN".
	files := rowsBy(msiTable(t, msi, "File"), "File")
	comps := rowsBy(msiTable(t, msi, "Component"), "Component")
	dirs := rowsBy(msiTable(t, msi, "Directory"), "Directory")
	if d := dirs["INSTALLDIR"]; d["Directory_Parent"] != "ProgramFiles64Folder" || d["DefaultDir"] != "NymVPN" {
		t.Errorf("INSTALLDIR: %v", d)
	}
	for _, name := range []string{"nymvpnd.exe", "nymvpn.exe", "nymvpn-app.exe", "wintun.dll"} {
		var f map[string]string
		for _, r := range files {
			if r["FileName"] == name {
				f = r
			}
		}
		if f == nil {
			t.Errorf("no file %s in %v", name, files)
			continue
		}
		c := comps[f["Component_"]]
		if c["Directory_"] != "INSTALLDIR" || c["Attributes"] != "256" || c["KeyPath"] != f["File"] {
			t.Errorf("%s's component: %v", name, c)
		}
	}
	if list, err := exec.Command("msiextract", "--list", msi).Output(); err == nil {
		for _, want := range []string{"NymVPN/nymvpnd.exe", "NymVPN/nymvpn.exe", "NymVPN/nymvpn-app.exe", "NymVPN/wintun.dll"} {
			if !strings.Contains(string(list), want+"\n") {
				t.Errorf("msiextract --list lacks %s:\n%s", want, list)
			}
		}
	}

	// The service through nymvpnd's own commands, deferred, as
	// LocalSystem (in-script 0x400, no impersonation 0x800); type 18: an
	// installed file.
	cas := rowsBy(msiTable(t, msi, "CustomAction"), "Action")
	seq := rowsBy(msiTable(t, msi, "InstallExecuteSequence"), "Action")
	number := func(action string) int {
		var n int
		fmt.Sscan(seq[action]["Sequence"], &n)
		return n
	}
	for action, want := range map[string]struct {
		target, condition string
		rollback          bool
	}{
		"DaemonInstall":         {"install", "NOT Installed", false},
		"DaemonInstallRollback": {"uninstall", "NOT Installed", true},
		"DaemonStart":           {"start", "NOT Installed", false},
		"DaemonStop":            {"stop", `REMOVE~="ALL"`, false},
		"DaemonCleanup":         {"cleanup --firewall", `REMOVE~="ALL" AND NOT UPGRADINGPRODUCTCODE`, false},
		"DaemonUninstall":       {"uninstall", `REMOVE~="ALL"`, false},
	} {
		ca := cas[action]
		var typ int
		fmt.Sscan(ca["Type"], &typ)
		if ca["Source"] != "nymvpnd.exe" || ca["Target"] != want.target || typ&0x3f != 18 || typ&0xc00 != 0xc00 ||
			(typ&0x100 != 0) != want.rollback {
			t.Errorf("custom action %s: %v (type %#x)", action, ca, typ)
		}
		if seq[action]["Condition"] != want.condition {
			t.Errorf("%s runs on %q", action, seq[action]["Condition"])
		}
	}
	if !(number("InstallFiles") < number("DaemonInstallRollback") && number("DaemonInstallRollback") < number("DaemonInstall") &&
		number("DaemonInstall") < number("DaemonStart") && number("DaemonStart") < number("InstallFinalize")) {
		t.Errorf("install actions out of order: %v", seq)
	}
	if !(number("InstallInitialize") < number("DaemonStop") && number("DaemonStop") < number("DaemonCleanup") &&
		number("DaemonCleanup") < number("DaemonUninstall") && number("DaemonUninstall") < number("RemoveFiles")) {
		t.Errorf("removal actions out of order: %v", seq)
	}
	if c := cas["GroupCreate"]; c["Source"] != "NETEXE" || !strings.HasPrefix(c["Target"], "localgroup nymvpn /add") {
		t.Errorf("GroupCreate: %v", c)
	}
	if c := cas["SetNetExe"]; c["Target"] != `[System64Folder]net.exe` || number("SetNetExe") >= number("InstallInitialize") {
		t.Errorf("SetNetExe: %v at %d", c, number("SetNetExe"))
	}

	// The Start menu entry starts the app; the CLI is on the PATH.
	sc := msiTable(t, msi, "Shortcut")
	if len(sc) != 1 || sc[0]["Directory_"] != "ProgramMenuFolder" || sc[0]["Name"] != "NymVPN" ||
		sc[0]["Target"] != "[INSTALLDIR]nymvpn-app.exe" || sc[0]["Icon_"] != "nymvpn.ico" {
		t.Errorf("shortcuts: %v", sc)
	}
	env := msiTable(t, msi, "Environment")
	if len(env) != 1 || env[0]["Name"] != "=-*PATH" || env[0]["Value"] != "[~];[INSTALLDIR]" || env[0]["Component_"] != "CLI" {
		t.Errorf("environment: %v", env)
	}
	if number("WriteEnvironmentStrings") == 0 || number("RemoveEnvironmentStrings") == 0 {
		t.Errorf("the environment actions are not sequenced: %v", seq)
	}
}
