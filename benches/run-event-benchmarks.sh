#!/usr/bin/env bash
# Reproduces the event-log figures of BENCHMARKS.md: append rate beside
# bare SQLite, and 100,000-event sync between two real nodes over loopback
# TLS by reconciliation (v2) and by the v1 fallback. Throw-away HOMEs only.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p hearthnet -p hearthnet-bench
./target/release/hearthnet-eventbench "$PWD/target/release/hearthnet"
