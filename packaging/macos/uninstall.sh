#!/bin/sh
# Removes what the NymVPN .pkg installed: sudo nymvpn-uninstall
# The settings and the wallet (/Library/Application Support/nymvpn) and the
# group nymvpn stay; --purge removes the settings and the wallet too.
set -e
if [ "$(id -u)" != 0 ]; then
	echo "nymvpn-uninstall: run it as root: sudo nymvpn-uninstall" >&2
	exit 1
fi
launchctl bootout system/nymvpnd 2>/dev/null || true
/usr/local/bin/nymvpnd cleanup --firewall || true
rm -f /Library/LaunchDaemons/nymvpnd.plist /usr/local/bin/nymvpnd /usr/local/bin/nymvpn
rm -rf /Applications/NymVPN.app
if [ "${1:-}" = --purge ]; then
	rm -rf "/Library/Application Support/nymvpn"
fi
pkgutil --forget net.nymvpn.nymvpn >/dev/null 2>&1 || true
rm -f /usr/local/bin/nymvpn-uninstall
echo "nymvpn: removed"
