#!/usr/bin/env bash
# The README's first command: start the local network, fetch a web page through
# the two-hop fast-mode tunnel with `nymvpn proxy`, then through mixnet mode,
# show the routes and what the web server saw, and stop everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-bin}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# wait_for FILE PATTERN SECONDS: wait until FILE contains PATTERN.
wait_for() {
  local deadline=$((SECONDS + $3))
  until grep -q "$2" "$1" 2>/dev/null; do
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "demo: the process writing $1 exited:" >&2
      cat "$1" "${1%.out}.log" >&2 || true
      exit 1
    fi
    if ((SECONDS > deadline)); then
      echo "demo: timed out waiting for '$2' in $1:" >&2
      cat "$1" "${1%.out}.log" >&2 || true
      exit 1
    fi
    sleep 0.1
  done
}
field() { sed -n "s/.*\"$2\": *\"\([^\"]*\)\".*/\1/p" "$1" | head -n1; }

echo "== starting the local network (directory, 2 entry + 2 exit gateways, 3 issuers, DNS, web.localnet)"
"$bin/nym-localnet" --dir "$work" >"$work/localnet.out" 2>"$work/localnet.log" &
pids+=($!)
wait_for "$work/localnet.out" "^ready" 30
cat "$work/localnet.out"
dir_url=$(field "$work/localnet.json" directory_url)
web_url=$(field "$work/localnet.json" web_url)
# The gateways take zk-nym tickets: the proxy pays with the demo account.
wallet_dir=$(field "$work/localnet.json" wallet_dir)

echo
echo "== nymvpn proxy --mode fast --entry DE --exit CH"
NYMVPN_WALLET_DIR="$wallet_dir" "$bin/nymvpn" proxy --mode fast --directory "$dir_url" --entry DE --exit CH --listen 127.0.0.1:0 >"$work/proxy.out" 2>"$work/proxy.log" &
pids+=($!)
wait_for "$work/proxy.out" "SOCKS5 proxy on" 60
cat "$work/proxy.out"
socks=$(sed -n 's/.*SOCKS5 proxy on \([^ ]*\).*/\1/p' "$work/proxy.out")

echo
echo "== curl --socks5-hostname $socks $web_url   (the name resolves at the exit)"
start=$(date +%s%N)
curl -sS --max-time 30 --socks5-hostname "$socks" "$web_url"
echo "   ($(( ($(date +%s%N) - start) / 1000000 )) ms)"
echo
echo "The web server saw the exit gateway's address, not yours: the entry knew who you are,"
echo "the exit knew where you went, neither knew both."

# Mixnet mode: the same request through entry → 3 mix layers → exit, in
# Sphinx packets with cover traffic. One process at a time uses the wallet:
# stop the fast-mode proxy first.
kill "${pids[-1]}" 2>/dev/null || true
wait "${pids[-1]}" 2>/dev/null || true
unset 'pids[-1]'
echo
echo "== nymvpn proxy --mode mixnet --profile max --entry DE --exit CH"
NYMVPN_WALLET_DIR="$wallet_dir" "$bin/nymvpn" proxy --mode mixnet --profile max --directory "$dir_url" --entry DE --exit CH --listen 127.0.0.1:0 >"$work/mixproxy.out" 2>"$work/mixproxy.log" &
pids+=($!)
wait_for "$work/mixproxy.out" "SOCKS5 proxy on" 60
cat "$work/mixproxy.out"
socks=$(sed -n 's/.*SOCKS5 proxy on \([^ ]*\).*/\1/p' "$work/mixproxy.out")

echo
echo "== curl --socks5-hostname $socks $web_url   (through the mixnet)"
start=$(date +%s%N)
curl -sS --max-time 60 --socks5-hostname "$socks" "$web_url"
echo "   ($(( ($(date +%s%N) - start) / 1000000 )) ms: every packet waited 15 ms on average at each mix)"
echo
echo "Through the mixnet the web server again saw only the exit; the mixes delayed and"
echo "reordered every packet among everyone's cover traffic, so not even an observer of"
echo "the whole network can link you to it."
