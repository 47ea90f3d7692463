#!/usr/bin/env bash
# The web UI's benchmarks (issue 16): the idle RSS of a node serving the
# UI (no browser open, then after the page loads), and the first page
# load in headless Chromium with a cold cache (hearthnet-uibench, RUNS
# fresh profiles). Release build, a throw-away HOME, loopback only;
# needs Debian's chromium and chromium-driver. MODELS=1 configures the
# default models (init --use-installed-models) as the idle-RSS figure of
# the AI issue did.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p hearthnet -p hearthnet-bench
bin=$PWD/target/release/hearthnet
export HOME=$(mktemp -d)
trap 'kill $node 2>/dev/null || true; rm -rf "$HOME"' EXIT
if [ -n "${MODELS:-}" ]; then
    HEARTHNET_MODELS_PATH=$(scripts/models) "$bin" init --non-interactive --use-installed-models --name bench >/dev/null 2>&1
else
    "$bin" init --non-interactive --name bench >/dev/null 2>&1
fi
export HEARTHNET_DISCOVERY_MDNS_ENABLED=false HEARTHNET_DISCOVERY_UDP_ENABLED=false HEARTHNET_EMERGENCY_ENABLED=false \
    HEARTHNET_TRANSPORT_API_PORT=0 HEARTHNET_TRANSPORT_PEER_PORT=0 HEARTHNET_TRANSPORT_PEER_HOST=127.0.0.1 \
    HEARTHNET_UI_PORT=0
"$bin" run >/dev/null 2>&1 &
node=$!
for _ in $(seq 200); do "$bin" status >/dev/null 2>&1 && break; sleep 0.1; done
rss() { grep -E "VmRSS|VmHWM" /proc/$node/status | tr -s ' \t' ' ' | paste -sd, -; }
sleep "${IDLE_SECONDS:-60}"
echo "idle ${IDLE_SECONDS:-60} s with the UI on, no browser: $(rss)"
target/release/hearthnet-uibench "$bin" "${RUNS:-20}"
sleep 5
echo "after the page loads, idle 5 s:                $(rss)"
