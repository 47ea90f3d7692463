#!/usr/bin/env bash
# Idle RSS of a node with the default models configured (all-MiniLM-L6-v2
# for embed.text, SmolLM2-135M for llm.chat, as `init
# --use-installed-models` writes them) before any call, then after one
# call to each: the models load on first use, never at start. Builds the
# release binary, uses a throw-away HOME, touches nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
models=$(scripts/models)
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p hearthnet
bin=$PWD/target/release/hearthnet
export HOME=$(mktemp -d)
trap 'kill $node 2>/dev/null || true; rm -rf "$HOME"' EXIT
HEARTHNET_MODELS_PATH=$models "$bin" init --non-interactive --use-installed-models --name bench >/dev/null 2>&1
export HEARTHNET_DISCOVERY_MDNS_ENABLED=false HEARTHNET_DISCOVERY_UDP_ENABLED=false HEARTHNET_EMERGENCY_ENABLED=false \
    HEARTHNET_TRANSPORT_API_PORT=0 HEARTHNET_TRANSPORT_PEER_PORT=0 HEARTHNET_TRANSPORT_PEER_HOST=127.0.0.1
"$bin" run --no-ui >/dev/null 2>&1 &
node=$!
for _ in $(seq 200); do "$bin" status >/dev/null 2>&1 && break; sleep 0.1; done
rss() { grep -E "VmRSS|VmHWM" /proc/$node/status | tr -s ' \t' ' ' | paste -sd, -; }
"$bin" status | grep -E '^models'
sleep "${IDLE_SECONDS:-60}"
echo "idle ${IDLE_SECONDS:-60} s, models configured, none used: $(rss)"
"$bin" call embed.text@1.0 --body '{"params":{"model":"all-minilm-l6-v2"},"input":{"texts":["hello"]}}' >/dev/null
echo "after one embed.text call:                      $(rss)"
"$bin" call llm.chat@1.0 --body '{"params":{"model":"smollm2-135m-instruct"},"input":{"messages":[{"role":"user","content":"Hi"}],"max_tokens":8}}' >/dev/null
echo "after one llm.chat call (8 tokens):             $(rss)"
