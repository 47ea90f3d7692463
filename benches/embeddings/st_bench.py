# sentence-transformers' side of the embedding comparison in BENCHMARKS.md:
#   python st_bench.py MODEL_DIR SENTENCES_FILE THREADS PASSES
# embeds the file's sentences (written by `embedbench write`) PASSES times
# after one warm-up pass, batch 32, normalised, on the CPU with THREADS
# threads, and prints each pass's rate, per second and per CPU-second
# (the process's user and system time). The model is loaded from the
# directory, never from a hub.
import os
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"
model_dir, sentences_file, threads, passes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

import torch
from sentence_transformers import SentenceTransformer

torch.set_num_threads(threads)
sentences = open(sentences_file, encoding="utf-8").read().splitlines()
model = SentenceTransformer(model_dir, device="cpu")
model.encode(sentences, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
for p in range(1, passes + 1):
    started, cpu = time.perf_counter(), time.process_time()
    vectors = model.encode(sentences, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    secs, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert len(vectors) == len(sentences)
    print(f"sentence-transformers {__import__('sentence_transformers').__version__} (torch {torch.__version__}) pass {p}: "
          f"{len(sentences)} sentences, batch 32, {torch.get_num_threads()} threads: {len(sentences) / secs:.1f} sentences/s, "
          f"{len(sentences) / cpu:.1f} sentences/CPU-s",
          flush=True)
