#!/bin/sh
# nymvpn's pre-removal script, for .deb (remove, upgrade, ...) and .rpm (0 on
# a removal, 1 on an upgrade).
#
# On a removal: stops nymvpnd (its unit then runs `nymvpnd cleanup`),
# disables the units, and runs `nymvpnd cleanup --firewall`, which undoes
# routes and DNS a dead daemon left and removes the kill switch's firewall
# (a stopped daemon keeps blocking on purpose; with the package gone nothing
# would ever lift it). On an upgrade nothing happens here: the new version's
# post-installation script restarts the daemon, and the kill switch holds
# meanwhile. Never fails: a removal must go through.
case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl stop nymvpnd.service nymvpnd-early.service ||
		echo "nymvpn: could not stop nymvpnd" >&2
fi
if command -v systemctl >/dev/null 2>&1; then
	systemctl disable nymvpnd.service nymvpnd-early.service >/dev/null 2>&1 || true
fi
if [ -x /usr/sbin/nymvpnd ]; then
	/usr/sbin/nymvpnd cleanup --firewall ||
		echo "nymvpn: nymvpnd cleanup --firewall failed: check routes, DNS and \`nft list table inet nymvpn\`" >&2
fi
exit 0
