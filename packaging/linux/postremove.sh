#!/bin/sh
# nymvpn's post-removal script, for .deb (remove, purge, upgrade, ...) and
# .rpm (0 on a removal, 1 on an upgrade).
#
# /var/lib/nymvpn stays, even on a purge: it holds the wallet, whose tickets
# were paid for. The nymvpn group stays too (files may still name it).
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	;;
purge)
	rm -rf /run/nymvpn
	if [ -d /var/lib/nymvpn ]; then
		echo "nymvpn: kept /var/lib/nymvpn (settings, wallet and tickets); delete it by hand if you no longer need them"
	fi
	;;
esac
exit 0
