"""Drives a HearthNet node's OpenAI-compatible gateway with the official
`openai` client, as a user's program would: the base URL and the key come
from OPENAI_BASE_URL and OPENAI_API_KEY. Prints what it got as one JSON
document, which crates/cli/tests/gateway.rs judges.

Usage: openai_client.py CHAT_MODEL EMBEDDING_MODEL REFERENCE_JSON
"""

import json
import sys

import openai

chat_model, embedding_model, reference_path = sys.argv[1:4]
# No retries: a refusal must show as it is. The timeout is for a shared,
# loaded machine; the answers are short.
client = openai.OpenAI(max_retries=0, timeout=300)
report = {}

report["models"] = sorted(m.id for m in client.models.list())

ask = {
    "model": chat_model,
    "messages": [
        {
            "role": "system",
            "content": "You are a helpful assistant. Answer in one short sentence.",
        },
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "max_tokens": 24,
    "temperature": 0,
    "seed": 42,
}
answer = client.chat.completions.create(**ask)
report["chat"] = {
    "object": answer.object,
    "content": answer.choices[0].message.content,
    "role": answer.choices[0].message.role,
    "finish_reason": answer.choices[0].finish_reason,
    "usage": answer.usage.model_dump(),
    "request_id": answer._request_id,
}

chunks = list(
    client.chat.completions.create(
        **ask, stream=True, stream_options={"include_usage": True}
    )
)
pieces = [
    c.choices[0].delta.content
    for c in chunks
    if c.choices and c.choices[0].delta.content
]
report["stream"] = {
    "content_chunks": len(pieces),
    "text": "".join(pieces),
    "first_role": chunks[0].choices[0].delta.role,
    "finish_reason": [c.choices[0].finish_reason for c in chunks if c.choices][-1],
    "usage": chunks[-1].usage.model_dump() if chunks[-1].usage else None,
    "ids": len({c.id for c in chunks}),
}

with open(reference_path, encoding="utf-8") as f:
    sentences = json.load(f)["sentences"]
# The client asks for base64 unless told otherwise, and decodes it.
packed = client.embeddings.create(model=embedding_model, input=sentences)
floats = client.embeddings.create(
    model=embedding_model, input=sentences, encoding_format="float"
)
report["embeddings"] = {
    "base64": [d.embedding for d in packed.data],
    "float": [d.embedding for d in floats.data],
    "indices": [d.index for d in floats.data],
    "model": floats.model,
}

try:
    client.chat.completions.create(**{**ask, "model": "no-such-model"})
    report["unknown_model"] = "answered"
except openai.NotFoundError as e:
    report["unknown_model"] = {"status": e.status_code, "code": e.code}

try:
    openai.OpenAI(api_key="hn-not-the-key", max_retries=0).models.list()
    report["wrong_key"] = "answered"
except openai.AuthenticationError as e:
    report["wrong_key"] = {"status": e.status_code, "code": e.code}

print(json.dumps(report))
