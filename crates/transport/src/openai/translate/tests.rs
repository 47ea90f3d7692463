use super::*;
use axum::http::StatusCode;
use hearthnet_base::{DeviceKey, Stability};

fn chat(body: Value) -> Result<ChatCall, GatewayError> {
    chat_call(body)
}

fn refused(body: Value) -> GatewayError {
    match chat(body.clone()) {
        Ok(call) => panic!("{body} was taken: {call:?}"),
        Err(e) => e,
    }
}

#[test]
fn a_chat_request_becomes_the_contract_call() {
    let call = chat(json!({
        "model": "smollm2",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Hello.", "name": "bot"},
            {"role": "user", "content": "Capital of France?"}
        ],
        "max_tokens": 64,
        "max_completion_tokens": 16,
        "temperature": 0,
        "top_p": 0.5,
        "stop": "\n",
        "seed": 7,
        "stream": true,
        "stream_options": {"include_usage": true},
        "n": 1,
        "user": "ignored",
        "metadata": {"also": "ignored"},
        "frequency_penalty": 0,
        "tools": [],
        "response_format": {"type": "text"}
    }))
    .unwrap();
    assert_eq!(call.model, "smollm2");
    assert!(call.stream && call.include_usage);
    assert_eq!(
        call.body,
        json!({
            "params": {"model": "smollm2"},
            "input": {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi\nthere"},
                    {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": "Capital of France?"}
                ],
                "max_tokens": 16,
                "temperature": 0.0,
                "top_p": 0.5,
                "stop": ["\n"],
                "seed": 7
            }
        })
    );

    let plain = chat(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b"], "max_tokens": 5})).unwrap();
    assert!(!plain.stream && !plain.include_usage);
    assert_eq!(
        plain.body["input"],
        json!({"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b"], "max_tokens": 5})
    );
}

#[test]
fn what_the_contract_cannot_honour_is_refused_naming_the_field() {
    let user = json!([{"role": "user", "content": "x"}]);
    let cases = [
        (json!({"messages": user}), None, "model"),
        (
            json!({"model": "", "messages": user}),
            Some("model"),
            "1 to 256",
        ),
        (
            json!({"model": "m".repeat(257), "messages": user}),
            Some("model"),
            "1 to 256",
        ),
        (
            json!({"model": "m", "messages": []}),
            Some("messages"),
            "1 to 1024",
        ),
        (
            json!({"model": "m", "messages": user, "n": 2}),
            Some("n"),
            "n must be 1",
        ),
        (
            json!({"model": "m", "messages": user, "tools": [{"type": "function"}]}),
            Some("tools"),
            "not supported",
        ),
        (
            json!({"model": "m", "messages": user, "response_format": {"type": "json_object"}}),
            Some("response_format"),
            "json_object",
        ),
        (
            json!({"model": "m", "messages": user, "logprobs": true}),
            Some("logprobs"),
            "not supported",
        ),
        (
            json!({"model": "m", "messages": user, "presence_penalty": 0.5}),
            Some("presence_penalty"),
            "not supported",
        ),
        (
            json!({"model": "m", "messages": user, "logit_bias": {"50256": -100}}),
            Some("logit_bias"),
            "not supported",
        ),
        (
            json!({"model": "m", "messages": user, "stop": ["a", "b", "c", "d", "e"]}),
            Some("stop"),
            "at most 4",
        ),
        (
            json!({"model": "m", "messages": user, "stop": [1]}),
            Some("stop"),
            "strings",
        ),
        (
            json!({"model": "m", "messages": user, "stream": "yes"}),
            None,
            "stream",
        ),
        (
            json!({"model": "m", "messages": user, "max_tokens": -1}),
            None,
            "max_tokens",
        ),
        (
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
            Some("messages[0]"),
            "no tools",
        ),
        (
            json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
            Some("messages[0]"),
            "robot",
        ),
        (
            json!({"model": "m", "messages": [{"content": "x"}]}),
            Some("messages[0]"),
            "role",
        ),
        (
            json!({"model": "m", "messages": [{"role": "assistant", "content": null}]}),
            Some("messages[0]"),
            "content is missing",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
            Some("messages[0]"),
            "string or an array",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:…"}}
            ]}]}),
            Some("messages[0]"),
            "content[1] is of type `image_url`",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
            Some("messages[0]"),
            "content[0].text",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": vec![json!({"type": "text", "text": "x"}); 257]}]}),
            Some("messages[0]"),
            "more than 256 parts",
        ),
    ];
    for (body, param, says) in cases {
        let e = refused(body.clone());
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}: {e:?}");
        assert_eq!(e.param.as_deref(), param, "{body}: {e:?}");
        assert!(e.message.contains(says), "{body}: {}", e.message);
    }
    let too_many: Vec<Value> = vec![json!({"role": "user", "content": "x"}); MAX_MESSAGES + 1];
    assert_eq!(
        refused(json!({"model": "m", "messages": too_many}))
            .param
            .as_deref(),
        Some("messages")
    );
}

fn completion() -> Completion {
    Completion {
        id: "chatcmpl-01J".into(),
        created: 1_700_000_000,
        model: "smollm2".into(),
    }
}

#[test]
fn an_answer_becomes_a_chat_completion_with_usage_and_finish_reason() {
    let answer = json!({
        "output": {"message": {"role": "assistant", "content": "Paris."}},
        "meta": {"model": "smollm2", "tokens_in": 30, "tokens_out": 3, "stop_reason": "end", "ms": 80}
    });
    assert_eq!(
        completion().answer(&answer).unwrap(),
        json!({
            "id": "chatcmpl-01J",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "smollm2",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Paris."},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 30, "completion_tokens": 3, "total_tokens": 33}
        })
    );
    assert_eq!(finish_reason(Some("max_tokens")), "length");
    assert_eq!(finish_reason(Some("stop_sequence")), "stop");
    assert_eq!(finish_reason(Some("cancelled")), "stop");
    assert_eq!(finish_reason(None), "stop");

    let broken = completion()
        .answer(&json!({"output": {"text": "x"}}))
        .unwrap_err();
    assert_eq!(broken.status, StatusCode::BAD_GATEWAY);
    assert!(broken.message.contains("output.message") || broken.message.contains("message"));
}

#[test]
fn a_stream_is_a_role_chunk_token_chunks_and_a_finish() {
    let c = completion();
    assert_eq!(
        c.first_chunk()["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let token = c.token_chunk(&json!({"text": "Par"})).unwrap();
    assert_eq!(token["object"], "chat.completion.chunk");
    assert_eq!(token["id"], "chatcmpl-01J");
    assert_eq!(
        token["choices"],
        json!([{"index": 0, "delta": {"content": "Par"}, "logprobs": null, "finish_reason": null}])
    );
    assert_eq!(c.token_chunk(&json!({"progress": 1})), None);

    let done = json!({"model": "smollm2", "tokens_in": 30, "tokens_out": 8, "stop_reason": "max_tokens", "ms": 5});
    let last = c.last_chunks(&done, true, false).unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["choices"][0]["finish_reason"], "length");
    assert_eq!(last[0]["choices"][0]["delta"], json!({}));

    let with_usage = c.last_chunks(&done, true, true).unwrap();
    assert_eq!(with_usage.len(), 2);
    assert_eq!(with_usage[1]["choices"], json!([]));
    assert_eq!(
        with_usage[1]["usage"],
        json!({"prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38})
    );

    // A provider that did not stream: its whole text in one chunk.
    let whole = json!({
        "output": {"message": {"role": "assistant", "content": "Paris."}},
        "meta": {"tokens_in": 1, "tokens_out": 2, "stop_reason": "end"}
    });
    let last = c.last_chunks(&whole, false, false).unwrap();
    assert_eq!(last[0]["choices"][0]["delta"], json!({"content": "Paris."}));
    assert_eq!(last[1]["choices"][0]["finish_reason"], "stop");
}

#[test]
fn an_embeddings_request_takes_texts_and_refuses_token_ids() {
    let one = embed_call(json!({"model": "minilm", "input": "hello"})).unwrap();
    assert_eq!(
        one,
        EmbedCall {
            model: "minilm".into(),
            texts: vec!["hello".into()],
            encoding: Encoding::Float,
            dimensions: None,
        }
    );
    let many = embed_call(json!({"model": "minilm", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 384, "user": "x"})).unwrap();
    assert_eq!(many.texts, ["a", "b"]);
    assert_eq!(many.encoding, Encoding::Base64);
    assert_eq!(many.dimensions, Some(384));
    assert_eq!(
        embed_body("minilm", &many.texts),
        json!({"params": {"model": "minilm"}, "input": {"texts": ["a", "b"]}})
    );

    for (body, says) in [
        (json!({"model": "minilm", "input": [1, 2, 3]}), "token ids"),
        (
            json!({"model": "minilm", "input": [[1, 2], [3]]}),
            "token ids",
        ),
        (json!({"model": "minilm", "input": []}), "1 to 2048"),
        (
            json!({"model": "minilm", "input": vec!["x"; MAX_EMBED_INPUTS + 1]}),
            "1 to 2048",
        ),
        (
            json!({"model": "minilm", "input": [null]}),
            "array of strings",
        ),
        (
            json!({"model": "minilm", "input": {"text": "x"}}),
            "array of strings",
        ),
        (
            json!({"model": "minilm", "input": "x", "encoding_format": "int8"}),
            "int8",
        ),
        (json!({"input": "x"}), "model"),
    ] {
        let e = embed_call(body.clone()).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(e.message.contains(says), "{body}: {}", e.message);
    }
    assert!(dimensions_fit(None, "minilm", 384).is_ok());
    assert!(dimensions_fit(Some(384), "minilm", 384).is_ok());
    let e = dimensions_fit(Some(256), "minilm", 384).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("dimensions"));
}

#[test]
fn vectors_go_back_as_floats_or_little_endian_base64() {
    let answer = json!({"output": {"embeddings": [[1.0, -2.5], [0.25, 0.0]], "dim": 2}, "meta": {"model": "m", "ms": 3}});
    let (vectors, tokens) = embed_answer(&answer, 2).unwrap();
    assert_eq!(vectors, vec![vec![1.0, -2.5], vec![0.25, 0.0]]);
    assert_eq!(tokens, 0, "the contract's meta counts no tokens");
    assert_eq!(
        embed_answer(&answer, 3).unwrap_err().status,
        StatusCode::BAD_GATEWAY
    );

    let floats = embedding_list("m", &vectors, Encoding::Float, 7);
    assert_eq!(
        floats,
        json!({
            "object": "list",
            "data": [
                {"object": "embedding", "index": 0, "embedding": [1.0, -2.5]},
                {"object": "embedding", "index": 1, "embedding": [0.25, 0.0]}
            ],
            "model": "m",
            "usage": {"prompt_tokens": 7, "total_tokens": 7}
        })
    );
    let packed = embedding_list("m", &vectors[..1], Encoding::Base64, 0);
    // 1.0f32 = 00 00 80 3f, -2.5f32 = 00 00 20 c0, little-endian.
    let bytes = [0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0];
    assert_eq!(
        packed["data"][0]["embedding"],
        data_encoding::BASE64.encode(&bytes)
    );
}

fn entry(name: &str, version: &str, params: Value) -> CapabilityEntry {
    CapabilityEntry {
        name: name.into(),
        version: version.into(),
        stability: Stability::Stable,
        node: DeviceKey::generate().node_id(),
        local: false,
        params,
        schema_hash: String::new(),
        success_rate: 1.0,
        p50_ms: 0.0,
        in_flight: 0,
        max_concurrent: 1,
        quarantined: false,
        streaming: true,
    }
}

#[test]
fn the_model_list_is_every_chat_and_embedding_model_once() {
    let entries = [
        entry(
            LLM_CHAT,
            "1.0",
            json!({"model": "smollm2", "models": ["smollm2", "qwen"], "ctx": 8192}),
        ),
        entry(
            LLM_COMPLETE_FOR_TESTS,
            "1.0",
            json!({"model": "completion-only"}),
        ),
        entry(LLM_CHAT, "1.2", json!({"model": "qwen"})),
        entry(LLM_CHAT, "2.0", json!({"model": "future"})),
        entry(EMBED_TEXT, "1.0", json!({"model": "minilm", "dim": 384})),
        entry("file.read", "1.0", json!({})),
    ];
    let list = model_list(&entries);
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["minilm", "qwen", "smollm2"]);
    assert_eq!(list["object"], "list");
    assert_eq!(
        list["data"][0],
        json!({"id": "minilm", "object": "model", "created": 0, "owned_by": "hearthnet"})
    );

    assert_eq!(
        find_offer(&entries, EMBED_TEXT, "minilm").unwrap()["dim"],
        384
    );
    assert!(find_offer(&entries, LLM_CHAT, "qwen").is_ok());
    let e = find_offer(&entries, LLM_CHAT, "minilm").unwrap_err();
    assert_eq!(e.status, StatusCode::NOT_FOUND);
    assert_eq!(e.code, Some("model_not_found"));
    assert!(
        e.message.contains("those that do: qwen, smollm2"),
        "{}",
        e.message
    );
    let e = find_offer(&[], EMBED_TEXT, "minilm").unwrap_err();
    assert!(e.message.contains("none now"), "{}", e.message);
}

const LLM_COMPLETE_FOR_TESTS: &str = "llm.complete";

#[test]
fn the_turns_of_one_conversation_share_a_session() {
    let turn = |messages: Value| {
        chat(json!({"model": "m", "messages": messages}))
            .unwrap()
            .session
    };
    let first = turn(json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"}
    ]));
    let second = turn(json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Spain?"}
    ]));
    assert!(first.is_some());
    assert_eq!(first, second);
    let other = turn(json!([{"role": "user", "content": "Capital of Italy?"}]));
    assert_ne!(first, other);
    let other_model = chat(json!({"model": "n", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"}
    ]}))
    .unwrap()
    .session;
    assert_ne!(first, other_model);
}
