#!/usr/bin/env bash
# Reproduces the figures of BENCHMARKS.md for the running node: CLI cold
# start, signed-call load, idle RSS. Builds release binaries, uses a
# throw-away HOME, touches nothing else. Needs: hyperfine, GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release -q -p hearthnet -p hearthnet-bench
bin=$PWD/target/release/hearthnet
loadgen=$PWD/target/release/hearthnet-loadgen
export HOME=$(mktemp -d)
trap 'kill $node 2>/dev/null || true; rm -rf "$HOME"' EXIT
"$bin" init --non-interactive --name bench >/dev/null 2>&1

echo "== cold start (no node running) =="
hyperfine -N --warmup 20 --runs 300 -i "$bin status" "$bin version" 2>/dev/null | grep -E "Benchmark|Time|Range"
for cmd in status version; do
  /usr/bin/time -f "%M" -o "$HOME/rss" "$bin" $cmd >/dev/null 2>&1 || true
  echo "peak RSS of 'hearthnet $cmd': $(tail -1 "$HOME/rss") KiB"
done

echo "== signed calls on loopback =="
HEARTHNET_DISCOVERY_MDNS_ENABLED=false HEARTHNET_DISCOVERY_UDP_ENABLED=false HEARTHNET_EMERGENCY_ENABLED=false HEARTHNET_TRANSPORT_API_PORT=0 HEARTHNET_TRANSPORT_PEER_PORT=0 HEARTHNET_TRANSPORT_PEER_HOST=127.0.0.1 HEARTHNET_OBSERVABILITY_LOG_LEVEL=warn "$bin" run --no-ui >/dev/null 2>&1 &
node=$!
for _ in $(seq 100); do [ -s "$HOME/.local/share/hearthnet/run/node.json" ] && break; sleep 0.05; done
"$loadgen" "${LOADGEN_SECONDS:-5}"

echo "== idle RSS of 'hearthnet run --no-ui' after 60 s =="
kill "$node"; wait "$node" 2>/dev/null || true
HEARTHNET_DISCOVERY_MDNS_ENABLED=false HEARTHNET_DISCOVERY_UDP_ENABLED=false HEARTHNET_EMERGENCY_ENABLED=false HEARTHNET_TRANSPORT_API_PORT=0 HEARTHNET_TRANSPORT_PEER_PORT=0 HEARTHNET_TRANSPORT_PEER_HOST=127.0.0.1 "$bin" run --no-ui >/dev/null 2>&1 &
node=$!
sleep 60
grep -E "VmRSS|VmHWM" /proc/$node/status
