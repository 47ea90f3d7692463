"""Medians over the rounds of run-bench.sh's lines, and our engines as a
share of llama.cpp's speed (decode tok/s; time to first token, where less
is better, as llama.cpp's time divided by ours)."""
import collections
import re
import statistics
import sys

runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = re.search(r"program=(\S+) threads=(\d+) load=([\d.]+)->([\d.]+) (.*)", line)
    if m:
        fields = {k: float(v) for k, v in (kv.split("=") for kv in m.group(5).split())}
        fields["load"] = (float(m.group(3)) + float(m.group(4))) / 2
        runs[(m.group(1), int(m.group(2)))].append(fields)

def spread(xs):
    return f"{statistics.median(xs):.1f} [{min(xs):.1f}–{max(xs):.1f}]"

print("| program | threads | n | decode tok/s | time to first token ms | load |")
print("|---|---|---|---|---|---|")
for (program, threads), rs in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    loads = [r["load"] for r in rs]
    print(f"| {program} | {threads} | {len(rs)} | {spread([r['decode'] for r in rs])} "
          f"| {spread([r['ttft_ms'] for r in rs])} | {min(loads):.1f}–{max(loads):.1f} |")
print()
for (program, threads), rs in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    ref = runs.get(("llama-ref", threads))
    if program == "llama-ref" or not ref:
        continue
    decode = statistics.median(r["decode"] for r in rs) / statistics.median(r["decode"] for r in ref)
    ttft = statistics.median(r["ttft_ms"] for r in ref) / statistics.median(r["ttft_ms"] for r in rs)
    print(f"{program} at {threads} thread(s): decode {decode:.0%} of llama.cpp's, time to first token {ttft:.0%}")
