#!/usr/bin/env bash
# Reproduces the file-transfer figures of BENCHMARKS.md: `file add` beside
# b3sum of the same file, and 1 GiB from one node to another over loopback
# TLS beside curl fetching it from a plain static server (python3's
# http.server), with each node's peak RSS. Throw-away HOMEs; touches
# nothing else. Needs: b3sum, curl, python3 (installs b3sum if missing).
#
# ROUNDS rounds (default 3) alternate curl and the nodes, each on a blob
# of its own (nothing is deleted between rounds, so no round pays for an
# earlier one's clean-up); the medians are printed. SIZE_MIB (default
# 1024) sets the blob size; BENCH_DIR the parent of the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v b3sum >/dev/null || { apt-get update -qq && apt-get install -y -qq b3sum; }
cargo build --release -q -p hearthnet
bin=$PWD/target/release/hearthnet
work=$(mktemp -d "${BENCH_DIR:-/tmp}/hearthnet-bench.XXXXXX")
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
size_mib=${SIZE_MIB:-1024}
rounds=${ROUNDS:-3}
quiet=(HEARTHNET_DISCOVERY_MDNS_ENABLED=false HEARTHNET_DISCOVERY_UDP_ENABLED=false HEARTHNET_EMERGENCY_ENABLED=false
       HEARTHNET_TRANSPORT_API_PORT=0 HEARTHNET_TRANSPORT_PEER_PORT=0 HEARTHNET_TRANSPORT_PEER_HOST=127.0.0.1
       HEARTHNET_OBSERVABILITY_LOG_LEVEL=warn)
hn() { local who=$1; shift; env HOME="$work/$who" "${quiet[@]}" "$bin" "$@"; }
start() { local who=$1; shift; env HOME="$work/$who" "${quiet[@]}" "$@" "$bin" run --no-ui >/dev/null 2>&1 & pids+=($!); until hn "$who" status >/dev/null 2>&1; do sleep 0.05; done; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$@"; }
rate() { python3 -c "import sys; print(f'{$size_mib / float(sys.argv[1]):.0f} MiB/s')" "$1"; }
median() { python3 -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" "$@"; }
percent() { python3 -c "import sys; print(f'{100 * float(sys.argv[1]) / float(sys.argv[2]):.0f}')" "$1" "$2"; }

mkdir -p "$work/a" "$work/b" "$work/www"
hn a init --non-interactive --name a >/dev/null 2>&1
start a
card=$(printf 'b\n\njoin\n' | hn b init 2>/dev/null | grep -o 'hearthnet-id://[^ ]*' | head -1 || true)
invite=$(hn a invite create --node-id "$card" | grep -o 'hearthnet://v1/[^ ]*' | head -1)
hn b invite redeem "$invite" >/dev/null 2>&1
start b
node_a=${pids[0]} node_b=${pids[1]}

echo "== $rounds blobs of $size_mib MiB of random bytes =="
for i in $(seq "$rounds"); do head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/www/blob$i"; done
sync

echo "== the disk: durable writes (dd conv=fdatasync) =="
dd if=/dev/zero of="$work/dd" bs=1M count="$size_mib" conv=fdatasync 2>&1 | tail -1
rm -f "$work/dd"

echo "== hash and store: 'hearthnet file add' beside 'b3sum' =="
cids=()
for i in $(seq "$rounds"); do
  t0=$(now); b3sum "$work/www/blob$i" >/dev/null; t1=$(now)
  b3=$(elapsed "$t0" "$t1")
  t0=$(now); cids+=("$(hn a file add "$work/www/blob$i" 2>/dev/null)"); t1=$(now)
  add=$(elapsed "$t0" "$t1")
  echo "blob $i: b3sum $b3 s ($(rate "$b3")), hearthnet file add $add s ($(rate "$add"))"
done

echo "== node to node over loopback TLS, beside curl from a static server =="
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$work/www" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) & pids+=($!)
until curl -sfo /dev/null "http://127.0.0.1:$port/"; do sleep 0.05; done
# Let B learn that A holds them (sync).
hn b sync >/dev/null 2>&1 || true
curls=() fetches=() outs=()
for i in $(seq "$rounds"); do
  t0=$(now); curl -sfo "$work/curl$i.out" "http://127.0.0.1:$port/blob$i"; t1=$(now)
  curls+=("$(elapsed "$t0" "$t1")")
  # `file pin` fetches the blob into B's store: the transfer itself.
  t0=$(now); hn b file pin "${cids[$((i - 1))]}" 2>/dev/null; t1=$(now)
  fetches+=("$(elapsed "$t0" "$t1")")
  # Writing it out as a file of its own is a second copy on disk.
  t0=$(now); hn b file get "${cids[$((i - 1))]}" --out "$work/b$i.out" >/dev/null 2>&1; t1=$(now)
  outs+=("$(elapsed "$t0" "$t1")")
  cmp -s "$work/www/blob$i" "$work/b$i.out" || { echo "blob $i: the copy differs" >&2; exit 1; }
  echo "round $i: curl ${curls[-1]} s, node to node ${fetches[-1]} s, write out ${outs[-1]} s"
done
curl_s=$(median "${curls[@]}") fetch_s=$(median "${fetches[@]}") out_s=$(median "${outs[@]}")
both_s=$(python3 -c "print(f'{$fetch_s + $out_s:.2f}')")
echo "median curl from python3 http.server:      $curl_s s ($(rate "$curl_s"))"
echo "median node to node (file pin on B):       $fetch_s s ($(rate "$fetch_s")), $(percent "$curl_s" "$fetch_s") % of curl's rate"
echo "median write out (file get --out on B):    $out_s s"
echo "node to node, then written out:            $both_s s ($(rate "$both_s")), $(percent "$curl_s" "$both_s") % of curl's rate"
echo "bytes identical in every round"
for who in a b; do
  pid=$([ "$who" = a ] && echo "$node_a" || echo "$node_b")
  echo "node $who peak RSS: $(grep VmHWM /proc/"$pid"/status | awk '{print $2, $3}')"
done
