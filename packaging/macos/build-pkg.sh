#!/usr/bin/env bash
# Builds the macOS installer OUT_DIR/nymvpn-VERSION-darwin-ARCH.pkg. It needs
# a macOS host: pkgbuild and productbuild are Apple's (scripts/packages.sh
# calls it there for every darwin target).
#
#   packaging/macos/build-pkg.sh VERSION ARCH BIN_DIR OUT_DIR
#
# BIN_DIR holds the darwin/ARCH binaries: nymvpnd, nymvpn and nymvpn-app (the
# app needs cgo, hence a macOS host; without it the .pkg has no app). The
# payload, owned by root:wheel:
#
#   /usr/local/bin/nymvpnd, /usr/local/bin/nymvpn
#   /usr/local/bin/nymvpn-uninstall        (uninstall.sh)
#   /Library/LaunchDaemons/nymvpnd.plist   (nymvpnd.plist: launchd runs `nymvpnd run`)
#   /Applications/NymVPN.app               (Info.plist, MacOS/nymvpn-app, Resources/nymvpn.icns)
#
# scripts/preinstall stops a running nymvpnd; scripts/postinstall creates the
# group nymvpn, adds the console user and starts nymvpnd.
#
# STAGE_ONLY=1 lays the payload out in OUT_DIR/macos-root-ARCH and stops:
# that part runs anywhere, and packaging's tests check the layout on Linux.
# PKG_SIGN_IDENTITY ("Developer ID Installer: ...") signs the product; notarize
# it afterwards (xcrun notarytool submit --wait, xcrun stapler staple).
set -euo pipefail
if (($# != 4)); then
	echo "usage: $0 VERSION ARCH BIN_DIR OUT_DIR" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
version=$1 arch=$2 bin=$3 out=$4
case $arch in
amd64) hostarch=x86_64 ;;
arm64) hostarch=arm64 ;;
*)
	echo "build-pkg: no macOS on $arch" >&2
	exit 2
	;;
esac
# Apple's bundle versions are numbers: 1.2.3 of 1.2.3+git4.abcdef0.
bundle_version=${version%%+*}

be32() { # a 32-bit big-endian number
	printf "\\$(printf %03o $(($1 >> 24 & 255)))\\$(printf %03o $(($1 >> 16 & 255)))\\$(printf %03o $(($1 >> 8 & 255)))\\$(printf %03o $(($1 & 255)))"
}
icns() { # a 256x256 PNG as an .icns of one ic08 entry
	local n
	n=$(wc -c <"$1")
	n=$((n + 0))
	printf icns
	be32 $((n + 16))
	printf ic08
	be32 $((n + 8))
	cat "$1"
}

mkdir -p "$out"
out=$(cd "$out" && pwd)
root=$out/macos-root-$arch
rm -rf "$root"
install -d "$root/usr/local/bin" "$root/Library/LaunchDaemons"
install -m 0755 "$bin/nymvpnd" "$root/usr/local/bin/nymvpnd"
install -m 0755 "$bin/nymvpn" "$root/usr/local/bin/nymvpn"
install -m 0755 "$here/uninstall.sh" "$root/usr/local/bin/nymvpn-uninstall"
install -m 0644 "$here/nymvpnd.plist" "$root/Library/LaunchDaemons/nymvpnd.plist"
app=no
if [[ -f $bin/nymvpn-app ]]; then
	app=yes
	contents=$root/Applications/NymVPN.app/Contents
	install -d "$contents/MacOS" "$contents/Resources"
	install -m 0755 "$bin/nymvpn-app" "$contents/MacOS/nymvpn-app"
	sed "s/@VERSION@/$bundle_version/g" "$here/Info.plist" >"$contents/Info.plist"
	icns "$repo/assets/app/nymvpn.png" >"$contents/Resources/nymvpn.icns"
	chmod 0644 "$contents/Info.plist" "$contents/Resources/nymvpn.icns"
else
	echo "build-pkg: no $bin/nymvpn-app: the .pkg has no app" >&2
fi
if [[ ${STAGE_ONLY:-} == 1 ]]; then
	echo "build-pkg: staged $root"
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkgbuild --analyze --root "$root" "$work/component.plist"
if [[ $app == yes ]]; then
	# Install the app in /Applications even if a copy was moved elsewhere.
	plutil -replace 0.BundleIsRelocatable -bool NO "$work/component.plist"
fi
pkgbuild --root "$root" --component-plist "$work/component.plist" --identifier net.nymvpn.nymvpn \
	--version "$version" --scripts "$here/scripts" --install-location / --ownership recommended \
	"$work/nymvpn.pkg"
sed -e "s/@VERSION@/$version/g" -e "s/@HOSTARCH@/$hostarch/g" "$here/distribution.xml" >"$work/distribution.xml"
sign=()
if [[ -n ${PKG_SIGN_IDENTITY:-} ]]; then
	sign=(--sign "$PKG_SIGN_IDENTITY")
fi
# ${a[@]+"${a[@]}"}: macOS's bash 3.2 calls an empty array unbound.
productbuild --distribution "$work/distribution.xml" --package-path "$work" ${sign[@]+"${sign[@]}"} \
	"$out/nymvpn-$version-darwin-$arch.pkg"
echo "build-pkg: created $out/nymvpn-$version-darwin-$arch.pkg"
