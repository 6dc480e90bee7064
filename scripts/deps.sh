#!/usr/bin/env bash
# Installs what `make demo` and `make test` need on a Debian machine: the C
# libraries and tools from apt (only those missing, only when we can), and the
# Go modules through the module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
want=(curl iproute2 nftables iperf3 dnsutils iputils-ping util-linux dbus-daemon tcpdump)
# nymvpn-app (Gio, cgo): its C libraries, and Xvfb, xdotool and ImageMagick for its
# tests under a virtual display.
want+=(libwayland-dev libxkbcommon-x11-dev libgles2-mesa-dev libegl1-mesa-dev libffi-dev
  libxcursor-dev libvulkan-dev libx11-xcb-dev pkg-config xvfb xdotool imagemagick)
# make packages: wixl and msibuild (msitools) build the MSI; rpm and msiinfo
# check the RPM and the MSI in packaging's tests.
want+=(wixl msitools rpm)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "deps: missing ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
  fi
fi
if ! command -v go >/dev/null; then
  [[ -x /usr/local/go/bin/go ]] && export PATH=$PATH:/usr/local/go/bin
fi
go mod download
