package daemon

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

const earlyUnitPath = "/etc/systemd/system/nymvpnd-early.service"

// installEarly installs and enables the boot-time blocking unit next to the
// service, for the binary at path.
func installEarly(path string) error {
	unit := strings.ReplaceAll(SystemdEarlyUnit, "{{Path}}", path)
	if err := os.WriteFile(earlyUnitPath, []byte(unit), 0o644); err != nil {
		return fmt.Errorf("install %s: %w", earlyUnitPath, err)
	}
	if out, err := exec.Command("systemctl", "enable", "nymvpnd-early.service").CombinedOutput(); err != nil {
		return fmt.Errorf("systemctl enable nymvpnd-early.service: %w: %s", err, out)
	}
	return nil
}

// uninstallEarly removes it again.
func uninstallEarly() error {
	exec.Command("systemctl", "disable", "nymvpnd-early.service").Run()
	if err := os.Remove(earlyUnitPath); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove %s: %w", earlyUnitPath, err)
	}
	return nil
}
