#!/usr/bin/env bash
# Signed-call figures of two builds in one run, alternating, so the machine's
# noise falls on both alike (the trust issue's "same run, before vs after").
#
#   bash benches/compare-signed-calls.sh BEFORE_DIR AFTER_DIR
#
# Each DIR is a checkout (e.g. a `git worktree add` of the older commit)
# whose `target/release` holds `hearthnet` and `hearthnet-loadgen`; build
# them with `cargo build --release -p hearthnet -p hearthnet-bench`.
# PASSES (default 2) alternations; each runs the load generator's rows with
# ROUNDS (default 2) rounds of LOADGEN_SECONDS (default 5) s at 1, 16 and 64
# callers. Uses throw-away HOMEs and loopback only.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_DIR AFTER_DIR" >&2; exit 2; }

run_one() {
    local label=$1 dir=$2
    local bin=$dir/target/release/hearthnet loadgen=$dir/target/release/hearthnet-loadgen
    [ -x "$bin" ] && [ -x "$loadgen" ] || { echo "no release build in $dir" >&2; exit 1; }
    local home
    home=$(mktemp -d)
    HOME=$home "$bin" init --non-interactive --name bench >/dev/null 2>&1
    HOME=$home HEARTHNET_DISCOVERY_MDNS_ENABLED=false HEARTHNET_DISCOVERY_UDP_ENABLED=false HEARTHNET_EMERGENCY_ENABLED=false \
        HEARTHNET_TRANSPORT_API_PORT=0 HEARTHNET_TRANSPORT_PEER_PORT=0 \
        HEARTHNET_TRANSPORT_PEER_HOST=127.0.0.1 HEARTHNET_OBSERVABILITY_LOG_LEVEL=warn \
        "$bin" run --no-ui >/dev/null 2>&1 &
    local node=$!
    for _ in $(seq 200); do [ -s "$home/.local/share/hearthnet/run/node.json" ] && break; sleep 0.05; done
    echo "== $label ($dir) =="
    HOME=$home ROUNDS=${ROUNDS:-2} "$loadgen" "${LOADGEN_SECONDS:-5}" 1 16 64
    kill "$node"; wait "$node" 2>/dev/null || true
    rm -rf "$home"
}

for _ in $(seq "${PASSES:-2}"); do
    run_one before "$1"
    run_one after "$2"
done
