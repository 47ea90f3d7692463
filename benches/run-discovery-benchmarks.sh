#!/usr/bin/env bash
# Reproduces the discovery and remote-call figures of BENCHMARKS.md on a LAN
# of network namespaces (three hosts on a bridge, 10.77.0.0/24), which it
# creates and removes. Needs root, iproute2, nftables, python3. Nothing is
# sent outside the namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p hearthnet -p hearthnet-bench
bin=$PWD/target/release/hearthnet
loadgen=$PWD/target/release/hearthnet-loadgen
p=hnb$$
work=$(mktemp -d)
pids=()
stop_nodes() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
cleanup() { stop_nodes; cat "$work"/node*.err 2>/dev/null | tail -5 >&2; for ns in $p-n0 $p-n1 $p-n2 $p-br; do ip netns del "$ns" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

ip netns add $p-br
ip -n $p-br link add br0 type bridge
ip -n $p-br link set br0 type bridge mcast_snooping 0
ip -n $p-br link set br0 up
for i in 0 1 2; do
  ns=$p-n$i
  ip netns add $ns
  ip link add p$i netns $p-br type veth peer name eth0 netns $ns
  ip -n $p-br link set p$i master br0 up
  ip -n $ns addr add 10.77.0.$((i + 1))/24 broadcast + dev eth0
  ip -n $ns link set eth0 up
  ip -n $ns link set lo up
  mkdir -p "$work/h$i"
done
# hn I CMD…: run CMD as host I (its namespace and its HOME).
hn() { local i=$1; shift; ip netns exec $p-n$i env HOME="$work/h$i" HEARTHNET_OBSERVABILITY_LOG_LEVEL=warn "$@"; }
start() { local i=$1; shift; ip netns exec $p-n$i env HOME="$work/h$i" HEARTHNET_OBSERVABILITY_LOG_LEVEL=warn "$@" "$bin" run --no-ui >/dev/null 2>>"$work/node$i.err" & pids+=($!); }
peers() { hn "$1" "$bin" status --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["peers"]))' 2>/dev/null || echo 0; }
lan_env=(HEARTHNET_TRANSPORT_PEER_HOST=0.0.0.0 HEARTHNET_DISCOVERY_STATIC_PEERS=[])

# A community: the founder on host 0 invites hosts 1 and 2.
hn 0 "$bin" init --non-interactive --name founder >/dev/null 2>&1
start 0 HEARTHNET_TRANSPORT_PEER_HOST=0.0.0.0 HEARTHNET_DISCOVERY_MDNS_ENABLED=false HEARTHNET_DISCOVERY_UDP_ENABLED=false HEARTHNET_EMERGENCY_ENABLED=false
until hn 0 "$bin" status >/dev/null 2>&1; do sleep 0.05; done
for i in 1 2; do
  card=$(printf 'member%s\n\njoin\n' "$i" | hn $i "$bin" init 2>/dev/null | grep -o 'hearthnet-id://[^ ]*' | head -1 || true)
  invite=$(hn 0 "$bin" invite create --node-id "$card" | grep -o 'hearthnet://v1/[^ ]*' | head -1)
  hn $i "$bin" invite redeem "$invite" >/dev/null 2>&1
done
stop_nodes

# Start three nodes; print the time until every node has verified both others.
meet() {
  local label=$1; shift
  local t0; t0=$(date +%s.%N)
  for i in 0 1 2; do start $i "${lan_env[@]}" "$@"; done
  for i in 0 1 2; do until [ "$(peers $i)" = 2 ]; do sleep 0.05; done; done
  echo "$label: start -> every peer visible on every node: $(python3 -c "print(f'{$(date +%s.%N) - $t0:.2f} s')")"
  stop_nodes
}
echo "== discovery latency (3 nodes) =="
for round in 1 2 3; do meet "mDNS only, round $round" HEARTHNET_DISCOVERY_UDP_ENABLED=false; done
printf '%s\n' 'table inet hnb {' \
  'chain out { type filter hook output priority 0; ip daddr 224.0.0.0/4 drop; }' \
  'chain in { type filter hook input priority 0; ip daddr 224.0.0.0/4 drop; }' '}' > "$work/drop.nft"
for i in 0 1 2; do ip netns exec $p-n$i nft -f "$work/drop.nft"; done
for round in 1 2 3; do meet "multicast dropped, UDP, round $round"; done

echo "== signed echo, one caller: on host 1 itself, and from host 0 (no echo of its own) across the veth link to host 1 =="
# A peer may call one capability of another node at most 100 times a
# second (X01 §7, RATE_LIMIT_HARD_RPS_PER_CAP), so remote throughput is the
# contract's, not ours: this measures latency, with sequential CLI calls
# (each including the CLI's own start, about 1 ms, and its signing).
start 0 "${lan_env[@]}" HEARTHNET_OBSERVABILITY_DIAGNOSTICS=false
start 1 "${lan_env[@]}"
until hn 0 "$bin" caps --remote-only --json 2>/dev/null | grep -q experimental.echo; do sleep 0.1; done
# Median wall time of N sequential calls, paced under the soft budget of
# 10 calls a second per peer and capability.
calls() {
  ip netns exec $p-n$1 env HOME="$work/h$1" python3 - "$bin" "${CALLS:-40}" <<'PY'
import statistics, subprocess, sys, time
bin, n = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(n):
    t0 = time.perf_counter()
    subprocess.run([bin, "call", "experimental.echo", "--body", '{"input":{"text":"hi"}}'], check=True, stdout=subprocess.DEVNULL)
    times.append((time.perf_counter() - t0) * 1000)
    time.sleep(0.15)
print(f"median {statistics.median(times):.2f} ms, max {max(times):.2f} ms per call over {n} calls")
PY
}
echo "local  (host 1 -> host 1): $(calls 1)"
echo "remote (host 0 -> host 1): $(calls 0)"

echo "== signed echo throughput, host 0 -> host 1 (remote) beside host 1 itself (local) =="
echo "   (a peer's calls are held to 10 per second and capability, X01 §7; refusals are counted, and honoured)"
echo "-- local (host 1)"
hn 1 "$loadgen" "${LOADGEN_SECONDS:-5}" 1 16
echo "-- remote (host 0 -> host 1)"
hn 0 "$loadgen" "${LOADGEN_SECONDS:-5}" 1 16
