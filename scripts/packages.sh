#!/usr/bin/env bash
# Builds nymvpn's installers (`make packages`), into dist/:
#
#   bin/OS-ARCH/      nymvpnd and nymvpn for every target (no cgo), and
#                     nymvpn-app where its toolchain allows (below)
#   nymvpn_V_amd64.deb, nymvpn-V-1.x86_64.rpm     Linux (nfpm), also arm64
#   nymvpn-V-windows-amd64.msi                   Windows (wixl, msitools)
#   nymvpn-V-darwin-ARCH.pkg                     macOS, on a macOS host only;
#   nymvpn-V-darwin-ARCH.tar.gz                  elsewhere the binaries for it
#   SHA256SUMS
#
# Every binary carries VERSION (default: git describe), as `make build` does;
# `nymvpn version` and `nymvpnd version` print it.
#
# The app (Gio) needs cgo on Linux and macOS: it is built for linux/amd64 on
# a linux/amd64 host with its C libraries (scripts/deps.sh), for
# windows/amd64 without cgo, and for darwin/* on a macOS host only. The
# linux/arm64 packages carry the daemon and the command line without the app
# (building it needs an aarch64 C toolchain and arm64 GUI libraries).
#
# Knobs (environment):
#   TARGETS    OS/ARCH list (default: linux/amd64 linux/arm64 windows/amd64 darwin/amd64 darwin/arm64)
#   DIST       output directory (default: dist)
#   VERSION    the version stamped into the binaries (default: git describe --tags --always --dirty)
#   WINTUN_DLL WireGuard LLC's signed amd64 wintun.dll, put next to nymvpnd.exe by the MSI.
#              It cannot be fetched here: without it the MSI is built without the
#              driver and says so (docs/packaging.md: the release pipeline sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
GO=${GO:-go}
NFPM_VERSION=v2.45.2 # later ones need modules the module proxy here does not serve
TARGETS=${TARGETS:-linux/amd64 linux/arm64 windows/amd64 darwin/amd64 darwin/arm64}
DIST=${DIST:-dist}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
mkdir -p "$DIST"
DIST=$(cd "$DIST" && pwd)
LDFLAGS="-s -w -X github.com/nymvpn/nymvpn/version.Version=$VERSION"
hostos=$($GO env GOHOSTOS)
hostarch=$($GO env GOHOSTARCH)
notes=()
note() {
	notes+=("$*")
	echo "packages: note: $*" >&2
}

# Package versions. The packagers want numbers: vX.Y.Z is X.Y.Z; N commits
# after it X.Y.Z+gitN.SHA; without a tag 0.0.0+gitCOUNT.SHA (COUNT: commits
# in HEAD, so later builds sort later). The MSI takes three numbers only:
# X.Y.Z (same-version upgrades are allowed), or 0.0.COUNT without a tag.
pkg_versions() {
	local v=${VERSION#v} dirty=
	if [[ $v == *-dirty ]]; then
		dirty=.dirty
		v=${v%-dirty}
	fi
	local count sha
	count=$(git rev-list --count HEAD 2>/dev/null || echo 0)
	sha=$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
	if [[ $v =~ ^([0-9]+\.[0-9]+\.[0-9]+)(-([0-9]+)-g([0-9a-f]+))?$ ]]; then
		local base=${BASH_REMATCH[1]}
		if [[ -n ${BASH_REMATCH[2]} ]]; then
			PKG_VERSION=$base+git${BASH_REMATCH[3]}.${BASH_REMATCH[4]}$dirty
		elif [[ -n $dirty ]]; then
			PKG_VERSION=$base+dirty
		else
			PKG_VERSION=$base
		fi
		MSI_VERSION=$base
	else
		PKG_VERSION=0.0.0+git$count.$sha$dirty
		MSI_VERSION=0.0.$((count % 65536))
	fi
	PKG_VERSION=${PKG_VERSION_OVERRIDE:-$PKG_VERSION}
}
pkg_versions
echo "packages: version $VERSION (packages $PKG_VERSION, msi $MSI_VERSION) for $TARGETS"

# build OS ARCH CMD CGO [LDFLAGS...]: one binary into bin/OS-ARCH.
build() {
	local os=$1 arch=$2 cmd=$3 cgo=$4 ext=
	shift 4
	[[ $os == windows ]] && ext=.exe
	echo "packages: build $os/$arch $cmd"
	GOOS=$os GOARCH=$arch CGO_ENABLED=$cgo $GO build -trimpath -ldflags "$LDFLAGS $*" \
		-o "$DIST/bin/$os-$arch/$cmd$ext" "./cmd/$cmd"
}

app_cgo_ready() { # the app's C libraries for a native Linux build
	command -v pkg-config >/dev/null && pkg-config --exists wayland-client wayland-egl wayland-cursor egl xkbcommon-x11 x11-xcb xcursor xfixes
}

for t in $TARGETS; do
	os=${t%/*} arch=${t#*/}
	rm -rf "$DIST/bin/$os-$arch"
	build "$os" "$arch" nymvpnd 0
	build "$os" "$arch" nymvpn 0
	case $os in
	windows) build "$os" "$arch" nymvpn-app 0 -H windowsgui ;;
	linux)
		if [[ $hostos/$hostarch == "$t" ]] && app_cgo_ready; then
			build "$os" "$arch" nymvpn-app 1
		else
			note "no nymvpn-app for $t: Gio needs cgo, a C toolchain and the GUI libraries for $t (here: $hostos/$hostarch); its packages carry the daemon and the command line"
		fi
		;;
	darwin)
		if [[ $hostos == darwin ]]; then
			build "$os" "$arch" nymvpn-app 1
		else
			note "no nymvpn-app for $t: it needs a macOS host (cgo, Apple's SDK)"
		fi
		;;
	esac
done

# Host tools: nymvpnd renders the systemd units (the ones `nymvpnd install`
# writes, for /usr/sbin/nymvpnd); nfpm, pinned, through the module proxy.
mkdir -p "$DIST/tools"
need_linux=no
for t in $TARGETS; do [[ $t == linux/* ]] && need_linux=yes; done
if [[ $need_linux == yes ]]; then
	$GO build -o "$DIST/tools/nymvpnd" ./cmd/nymvpnd
	rm -rf "$DIST/units" && mkdir -p "$DIST/units"
	for u in nymvpnd.service nymvpnd-early.service; do
		"$DIST/tools/nymvpnd" unit --path /usr/sbin/nymvpnd "$u" >"$DIST/units/$u"
	done
	if [[ ! -x $DIST/tools/nfpm-$NFPM_VERSION ]]; then
		echo "packages: nfpm $NFPM_VERSION"
		GOBIN=$DIST/tools GOFLAGS= $GO install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION"
		mv "$DIST/tools/nfpm" "$DIST/tools/nfpm-$NFPM_VERSION"
	fi
fi
NFPM=$DIST/tools/nfpm-$NFPM_VERSION

artefacts=()

linux_packages() { # ARCH
	local arch=$1 cfg=$DIST/nfpm-linux-$1.yaml
	if [[ -x $DIST/bin/linux-$arch/nymvpn-app ]]; then
		cp packaging/linux/nfpm.yaml "$cfg"
	else
		sed '/# app:begin/,/# app:end/d' packaging/linux/nfpm.yaml >"$cfg"
	fi
	local f
	for f in deb rpm; do
		PKG_VERSION=$PKG_VERSION PKG_ARCH=$arch BIN_DIR=$DIST/bin/linux-$arch UNIT_DIR=$DIST/units \
			"$NFPM" package --config "$cfg" --packager "$f" --target "$DIST/" | tee "$DIST/nfpm.log"
		artefacts+=("$(sed -n 's/.*created package: //p' "$DIST/nfpm.log")")
	done
}

windows_msi() { # ARCH
	local arch=$1 stage=$DIST/msi-stage
	[[ $arch == amd64 ]] || {
		note "no MSI for windows/$arch: packaging/windows/nymvpn.wxs is for x64"
		return
	}
	if ! command -v wixl >/dev/null || ! command -v msibuild >/dev/null; then
		note "no MSI: wixl and msibuild are missing (apt-get install wixl msitools; scripts/deps.sh does)"
		return
	fi
	# wixl takes relative sources only: stage them.
	rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/assets/app"
	cp "$DIST/bin/windows-$arch/"*.exe "$stage/bin/"
	cp assets/app/nymvpn.ico "$stage/assets/app/"
	local wintun=()
	if [[ -n ${WINTUN_DLL:-} ]]; then
		# A PE image for x64 (machine 0x8664).
		local pe
		pe=$(od -An -tu4 -j60 -N4 "$WINTUN_DLL" | tr -d ' ')
		if [[ $(head -c2 "$WINTUN_DLL") != MZ || $(od -An -tx1 -j$((pe + 4)) -N2 "$WINTUN_DLL" | tr -d ' ') != 6486 ]]; then
			echo "packages: $WINTUN_DLL is not an x64 DLL" >&2
			exit 1
		fi
		cp "$WINTUN_DLL" "$stage/wintun.dll"
		wintun=(-D WintunDll=wintun.dll)
	else
		note "the MSI has no wintun.dll (it cannot be downloaded here): set WINTUN_DLL to WireGuard LLC's signed amd64 build; see docs/packaging.md"
	fi
	local msi=$DIST/nymvpn-$PKG_VERSION-windows-$arch.msi wxs
	wxs=$(pwd)/packaging/windows/nymvpn.wxs
	(cd "$stage" && wixl -a x64 -D Version="$MSI_VERSION" -D BinDir=bin -D AssetsDir=assets ${wintun[@]+"${wintun[@]}"} -o "$msi" "$wxs")
	# What wixl cannot write: the install directory appended to the system
	# PATH (the Environment table; removed on uninstall), and the rollback
	# flags of DaemonInstallRollback (wixl 0.101 drops Execute="rollback":
	# 3410 = exe from an installed file 18 + continue 0x40 + rollback 0x100
	# + in-script 0x400 + no impersonation 0x800).
	msibuild "$msi" \
		-q "UPDATE \`CustomAction\` SET \`Type\` = 3410 WHERE \`Action\` = 'DaemonInstallRollback'" \
		-q 'CREATE TABLE `Environment` (`Environment` CHAR(72) NOT NULL, `Name` CHAR(255) NOT NULL LOCALIZABLE, `Value` CHAR(255) LOCALIZABLE, `Component_` CHAR(72) NOT NULL PRIMARY KEY `Environment`)' \
		-q "INSERT INTO \`Environment\` (\`Environment\`, \`Name\`, \`Value\`, \`Component_\`) VALUES ('PATH', '=-*PATH', '[~];[INSTALLDIR]', 'CLI')" \
		-q "INSERT INTO \`InstallExecuteSequence\` (\`Action\`, \`Sequence\`) VALUES ('RemoveEnvironmentStrings', 3300)" \
		-q "INSERT INTO \`InstallExecuteSequence\` (\`Action\`, \`Sequence\`) VALUES ('WriteEnvironmentStrings', 5200)"
	rm -rf "$stage"
	echo "packages: created $msi"
	artefacts+=("$msi")
}

darwin_package() { # ARCH
	local arch=$1
	if [[ $hostos == darwin ]]; then
		packaging/macos/build-pkg.sh "$PKG_VERSION" "$arch" "$DIST/bin/darwin-$arch" "$DIST"
		artefacts+=("$DIST/nymvpn-$PKG_VERSION-darwin-$arch.pkg")
	else
		local tgz=$DIST/nymvpn-$PKG_VERSION-darwin-$arch.tar.gz
		tar -C "$DIST/bin/darwin-$arch" -czf "$tgz" .
		artefacts+=("$tgz")
		note "no .pkg for darwin/$arch: pkgbuild and productbuild need a macOS host; there: packaging/macos/build-pkg.sh (docs/packaging.md); $tgz has the binaries"
	fi
}

for t in $TARGETS; do
	os=${t%/*} arch=${t#*/}
	case $os in
	linux) linux_packages "$arch" ;;
	windows) windows_msi "$arch" ;;
	darwin) darwin_package "$arch" ;;
	esac
done

if ((${#artefacts[@]} == 0)); then
	echo "packages: nothing to package for $TARGETS" >&2
	exit 1
fi
sha256() { if command -v sha256sum >/dev/null; then sha256sum "$@"; else shasum -a 256 "$@"; fi; }
(cd "$DIST" && sha256 "${artefacts[@]##*/}" >SHA256SUMS)
echo
echo "packages: $VERSION in $DIST:"
(cd "$DIST" && ls -l "${artefacts[@]##*/}" SHA256SUMS)
# ${a[@]+"${a[@]}"}: macOS's bash 3.2 calls an empty array unbound.
for n in ${notes[@]+"${notes[@]}"}; do echo "  note: $n"; done
