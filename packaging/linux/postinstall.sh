#!/bin/sh
# nymvpn's post-installation script, for .deb (configure [OLD-VERSION]) and
# .rpm (1 on an install, 2 or more on an upgrade).
#
# Creates the nymvpn group (its members may change the VPN's state), enables
# nymvpnd.service and nymvpnd-early.service and starts nymvpnd on an install,
# restarts it on an upgrade. Where systemd is not running (a chroot, a
# container, an image being built) nothing is started and nothing fails: the
# units are enabled for the next boot. /var/lib/nymvpn (settings, wallet and
# tickets) is never touched but for creating it.
set -e

action=install
case "$1" in
configure) [ -z "$2" ] || action=upgrade ;;
abort-upgrade | abort-remove | abort-deconfigure) action=upgrade ;;
[0-9]*) [ "$1" -le 1 ] || action=upgrade ;;
*) exit 0 ;;
esac

if ! getent group nymvpn >/dev/null 2>&1; then
	if command -v groupadd >/dev/null 2>&1; then
		groupadd --system nymvpn
	elif command -v addgroup >/dev/null 2>&1; then
		addgroup --system nymvpn
	else
		echo "nymvpn: no groupadd or addgroup: create the group nymvpn by hand" >&2
	fi
fi

mkdir -p /var/lib/nymvpn
chmod 0700 /var/lib/nymvpn

booted=no
[ -d /run/systemd/system ] && booted=yes

if [ "$booted" = yes ]; then
	systemctl daemon-reload || true
fi
if [ "$action" = install ] && command -v systemctl >/dev/null 2>&1; then
	# Works without a running systemd too: it only makes the links.
	systemctl enable nymvpnd.service nymvpnd-early.service ||
		echo "nymvpn: could not enable nymvpnd.service and nymvpnd-early.service" >&2
fi
if [ "$booted" = yes ]; then
	if [ "$action" = install ]; then
		systemctl start nymvpnd.service ||
			echo "nymvpn: nymvpnd did not start: journalctl -u nymvpnd says why" >&2
	else
		systemctl try-restart nymvpnd.service ||
			echo "nymvpn: nymvpnd did not restart: journalctl -u nymvpnd says why" >&2
	fi
else
	echo "nymvpn: systemd is not running here; nymvpnd starts at the next boot (or run it: nymvpnd run)"
fi
exit 0
