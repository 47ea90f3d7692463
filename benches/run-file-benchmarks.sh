#!/usr/bin/env bash
# Reproduces the file-transfer figures of BENCHMARKS.md: `file add` beside
# b3sum of the same file, and 1 GiB from one node to another over loopback
# TLS beside curl fetching it from a plain static server (python3's
# http.server), with each node's peak RSS. Throw-away HOMEs; touches
# nothing else. Needs: b3sum, curl, python3 (installs b3sum if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v b3sum >/dev/null || { apt-get update -qq && apt-get install -y -qq b3sum; }
cargo build --release -q -p hearthnet
bin=$PWD/target/release/hearthnet
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
size_mib=${SIZE_MIB:-1024}
quiet=(HEARTHNET_DISCOVERY_MDNS_ENABLED=false HEARTHNET_DISCOVERY_UDP_ENABLED=false
       HEARTHNET_TRANSPORT_API_PORT=0 HEARTHNET_TRANSPORT_PEER_PORT=0 HEARTHNET_TRANSPORT_PEER_HOST=127.0.0.1
       HEARTHNET_OBSERVABILITY_LOG_LEVEL=warn)
hn() { local who=$1; shift; env HOME="$work/$who" "${quiet[@]}" "$bin" "$@"; }
start() { local who=$1; shift; env HOME="$work/$who" "${quiet[@]}" "$@" "$bin" run --no-ui >/dev/null 2>&1 & pids+=($!); until hn "$who" status >/dev/null 2>&1; do sleep 0.05; done; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$@"; }
rate() { python3 -c "import sys; print(f'{$size_mib / float(sys.argv[1]):.0f} MiB/s')" "$1"; }

mkdir -p "$work/a" "$work/b" "$work/www"
hn a init --non-interactive --name a >/dev/null 2>&1
start a
card=$(printf 'b\n\njoin\n' | hn b init 2>/dev/null | grep -o 'hearthnet-id://[^ ]*' | head -1 || true)
invite=$(hn a invite create --node-id "$card" | grep -o 'hearthnet://v1/[^ ]*' | head -1)
hn b invite redeem "$invite" >/dev/null 2>&1
start b
node_a=${pids[0]} node_b=${pids[1]}

echo "== $size_mib MiB of random bytes =="
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/www/blob"
sync

echo "== the disk: durable writes (dd conv=fdatasync) =="
dd if=/dev/zero of="$work/dd" bs=1M count="$size_mib" conv=fdatasync 2>&1 | tail -1
rm -f "$work/dd"

echo "== hash and store: 'hearthnet file add' beside 'b3sum' =="
t0=$(date +%s.%N); b3sum "$work/www/blob" >/dev/null; t1=$(date +%s.%N)
echo "b3sum:               $(elapsed "$t0" "$t1") s ($(rate "$(elapsed "$t0" "$t1")"))"
t0=$(date +%s.%N); cid=$(hn a file add "$work/www/blob"); t1=$(date +%s.%N)
echo "hearthnet file add:  $(elapsed "$t0" "$t1") s ($(rate "$(elapsed "$t0" "$t1")"))"

echo "== node to node over loopback TLS, beside curl from a static server =="
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work/www" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) & pids+=($!)
until curl -sfo /dev/null "http://127.0.0.1:$port/"; do sleep 0.05; done
t0=$(date +%s.%N); curl -sfo "$work/curl.out" "http://127.0.0.1:$port/blob"; t1=$(date +%s.%N)
curl_s=$(elapsed "$t0" "$t1")
echo "curl from python3 http.server:   $curl_s s ($(rate "$curl_s"))"
rm -f "$work/curl.out"
# Let B learn that A holds it (sync), then fetch and write it out.
hn b sync >/dev/null 2>&1 || true
t0=$(date +%s.%N); hn b file get "$cid" --out "$work/b.out" >/dev/null; t1=$(date +%s.%N)
get_s=$(elapsed "$t0" "$t1")
echo "hearthnet file get (fetch + write out): $get_s s ($(rate "$get_s")), $(python3 -c "print(f'{100 * $curl_s / $get_s:.0f}')") % of curl's rate"
cmp -s "$work/www/blob" "$work/b.out" && echo "bytes identical"
for who in a b; do
  pid=$([ "$who" = a ] && echo "$node_a" || echo "$node_b")
  echo "node $who peak RSS: $(grep VmHWM /proc/"$pid"/status | awk '{print $2, $3}')"
done
