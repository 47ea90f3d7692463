//! The OpenAI-compatible gateway through the local API's router, against
//! fake `llm.chat` and `embed.text` providers on the bus.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::http::HeaderValue;
use hearthnet_bus::{Capability, CapabilityDescriptor, Service};
use http_body_util::BodyExt;

use super::*;
use crate::GATEWAY_MAX_BODY_BYTES;

/// `llm.chat` for the models `tiny` (answers "Paris."), `slow` (streams
/// until its caller leaves) and `broken` (cannot serve).
#[derive(Default)]
struct FakeLlm {
    calls: AtomicUsize,
    /// The `input` of the last call, as the gateway translated it.
    last_input: parking_lot::Mutex<Value>,
    /// Set once a `slow` generation stopped, whether it returned or the
    /// bus dropped it.
    stopped: Arc<AtomicBool>,
}

/// Sets its flag when dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Service for FakeLlm {
    fn name(&self) -> &'static str {
        "fake-llm"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        let descriptor = CapabilityDescriptor {
            params: json!({"model": "tiny", "models": ["tiny", "slow", "broken"]}),
            stream_schema: Some(json!({"type": "object"})),
            ..CapabilityDescriptor::new("llm.chat", json!({"type": "object"}))
        };
        vec![Capability::new(descriptor, &self, Self::chat)]
    }
}

fn meta(tokens_out: u64, stop_reason: &str) -> Value {
    json!({"model": "tiny", "tokens_in": 12, "tokens_out": tokens_out, "stop_reason": stop_reason, "ms": 1})
}

impl FakeLlm {
    async fn chat(self: Arc<Self>, call: hearthnet_bus::Call) -> Result<Value, CallError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self.last_input.lock() = call.input.clone();
        match call.params["model"].as_str() {
            Some("broken") => Err(CallError::new(
                ErrorCode::NotImplemented,
                "the model broken does not load",
            )),
            Some("slow") => {
                let _stops = SetOnDrop(self.stopped.clone());
                while call
                    .frames
                    .send("token", json!({"text": "la "}))
                    .await
                    .is_ok()
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok(meta(0, "cancelled"))
            }
            _ if call.stream => {
                for piece in ["Par", "is."] {
                    let _ = call.frames.send("token", json!({"text": piece})).await;
                }
                Ok(meta(2, "max_tokens"))
            }
            _ => Ok(json!({
                "output": {"message": {"role": "assistant", "content": "Paris."}},
                "meta": meta(2, "end"),
            })),
        }
    }
}

/// `embed.text` for the model `vec` (2 dimensions): each text's vector is
/// `[its length, its position in the call]`.
#[derive(Default)]
struct FakeEmbed {
    calls: AtomicUsize,
}

impl Service for FakeEmbed {
    fn name(&self) -> &'static str {
        "fake-embed"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        let descriptor = CapabilityDescriptor {
            params: json!({"model": "vec", "dim": 2}),
            ..CapabilityDescriptor::new("embed.text", json!({"type": "object"}))
        };
        vec![Capability::new(descriptor, &self, Self::embed)]
    }
}

impl FakeEmbed {
    async fn embed(self: Arc<Self>, call: hearthnet_bus::Call) -> Result<Value, CallError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let texts = call.input["texts"].as_array().cloned().unwrap_or_default();
        assert!(texts.len() <= 256, "the contract's batch");
        let vectors: Vec<Value> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| json!([t.as_str().unwrap_or("").len(), i]))
            .collect();
        Ok(json!({"output": {"embeddings": vectors, "dim": 2}, "meta": {"model": "vec", "ms": 1}}))
    }
}

struct Gateway {
    node: Node,
    llm: Arc<FakeLlm>,
    embed: Arc<FakeEmbed>,
}

/// A node with both fakes, whose configured body limit is above the
/// gateway's, so the gateway's is the one met.
fn gateway() -> Gateway {
    let node = node_with_max(4 * GATEWAY_MAX_BODY_BYTES);
    let (llm, embed) = (Arc::new(FakeLlm::default()), Arc::new(FakeEmbed::default()));
    node.bus.register(llm.clone()).unwrap();
    node.bus.register(embed.clone()).unwrap();
    Gateway { node, llm, embed }
}

const PORT: u16 = 7080;

/// A request to the gateway as a local client sends it: loopback `Host`,
/// on the local API, with the node's key; `body` as JSON (`None`: a GET).
fn local(g: &Gateway, path: &str, body: Option<Value>) -> Request<Body> {
    let key = format!("Bearer {}", g.node.api_key.as_str());
    let req = match body {
        None => Request::get(path).body(Body::empty()),
        Some(body) => Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
    };
    let mut req = req.unwrap();
    on_local_api(&mut req);
    req.headers_mut()
        .insert(header::AUTHORIZATION, key.parse().unwrap());
    req
}

fn on_local_api(req: &mut Request<Body>) {
    req.headers_mut()
        .insert(header::HOST, HeaderValue::from_static("127.0.0.1:7080"));
    req.extensions_mut()
        .insert(crate::server::LocalApi { port: PORT });
}

/// The status, headers and body text of the answer.
async fn exchange(router: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn json_answer(g: &Gateway, req: Request<Body>) -> (StatusCode, Value) {
    let (status, _, text) = exchange(&g.node.local, req).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// An OpenAI error body with `status`, whose message says `says`.
fn assert_openai_error(status: StatusCode, body: &Value, want: StatusCode, says: &str) {
    assert_eq!(status, want, "{body}");
    let error = &body["error"];
    assert!(error["type"].is_string(), "OpenAI's shape: {body}");
    assert!(error["message"].as_str().unwrap().contains(says), "{body}");
}

/// The `data:` payloads of an SSE body.
fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn models_are_listed_from_the_bus_for_a_key_holder_on_the_local_api_only() {
    let g = gateway();
    let (status, body) = json_answer(&g, local(&g, "/v1/models", None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["broken", "slow", "tiny", "vec"]);
    let (status, body) = json_answer(&g, local(&g, "/v1/models/vec", None)).await;
    assert_eq!((status, &body["id"]), (StatusCode::OK, &json!("vec")));
    let (status, body) = json_answer(&g, local(&g, "/v1/models/gpt-4", None)).await;
    assert_openai_error(status, &body, StatusCode::NOT_FOUND, "gpt-4");
    assert_eq!(body["error"]["code"], "model_not_found");

    // The peer port has no gateway: its answer is the contract's, and
    // so is the local router's should it ever serve another listener.
    for router in [&g.node.router, &g.node.local] {
        let mut elsewhere = local(&g, "/v1/models", None);
        elsewhere
            .extensions_mut()
            .remove::<crate::server::LocalApi>();
        let (status, body, _) = answer(router, elsewhere).await;
        assert_eq!(
            (status, &body["error"]),
            (StatusCode::NOT_FOUND, &json!("not_found"))
        );
    }

    // Unknown paths and methods under /v1/ are refused in OpenAI's shape.
    let (status, body) = json_answer(&g, local(&g, "/v1/completions", Some(json!({})))).await;
    assert_openai_error(status, &body, StatusCode::NOT_FOUND, "/v1/chat/completions");
    let (status, body) = json_answer(&g, local(&g, "/v1/chat/completions", None)).await;
    assert_openai_error(status, &body, StatusCode::NOT_FOUND, "method");
}

#[tokio::test]
async fn the_key_is_required_and_opens_nothing_but_the_gateway() {
    let g = gateway();
    let mut none = local(&g, "/v1/models", None);
    none.headers_mut().remove(header::AUTHORIZATION);
    let (status, body) = json_answer(&g, none).await;
    assert_openai_error(status, &body, StatusCode::UNAUTHORIZED, "hearthnet api-key");
    assert_eq!(body["error"]["code"], "invalid_api_key");

    for presented in [
        "Bearer hn-wrong".to_owned(),
        format!("Basic {}", g.node.api_key.as_str()),
        format!("Bearer {}x", g.node.api_key.as_str()),
        "Bearer ".to_owned(),
    ] {
        let mut req = local(&g, "/v1/models", None);
        req.headers_mut()
            .insert(header::AUTHORIZATION, presented.parse().unwrap());
        let (status, body) = json_answer(&g, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{presented}: {body}");
    }
    let mut lower = local(&g, "/v1/models", None);
    let key = format!("bearer {}", g.node.api_key.as_str());
    lower
        .headers_mut()
        .insert(header::AUTHORIZATION, key.parse().unwrap());
    assert_eq!(json_answer(&g, lower).await.0, StatusCode::OK);

    // With the key and no signature, every other endpoint still refuses.
    for (path, body) in [
        ("/local/v1/status", None),
        ("/local/v1/caps", None),
        ("/metrics", None),
        ("/trace/recent", None),
        (
            "/bus/v1/call",
            Some(json!({"params": {"model": "tiny"}, "input": {"messages": []}})),
        ),
    ] {
        let (status, body, _) = answer(&g.node.local, local(&g, path, body)).await;
        assert_eq!(
            (status, &body["error"]),
            (StatusCode::UNAUTHORIZED, &json!("unauthorized")),
            "{path}"
        );
    }
    assert_eq!(g.llm.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_web_page_cannot_use_the_gateway_through_dns_rebinding() {
    let g = gateway();
    // The page's browser sends its own domain as Host (and could never
    // send the key: Authorization needs a preflight nobody answers).
    let mut req = local(
        &g,
        "/v1/chat/completions",
        Some(json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})),
    );
    req.headers_mut()
        .insert(header::HOST, HeaderValue::from_static("evil.example:7080"));
    let (status, body) = json_answer(&g, req).await;
    assert_openai_error(status, &body, StatusCode::UNAUTHORIZED, "Host");
    let mut preflight = local(&g, "/v1/chat/completions", None);
    *preflight.method_mut() = Method::OPTIONS;
    let (status, headers, _) = exchange(&g.node.local, preflight).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(headers.get("access-control-allow-origin").is_none());
    assert_eq!(g.llm.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_chat_completion_is_answered_through_the_bus() {
    let g = gateway();
    let req = local(
        &g,
        "/v1/chat/completions",
        Some(json!({
            "model": "tiny",
            "messages": [
                {"role": "system", "content": "Answer in one short sentence."},
                {"role": "user", "content": "What is the capital of France?"}
            ],
            "max_tokens": 16,
            "temperature": 0,
            "seed": 1
        })),
    );
    let (status, headers, text) = exchange(&g.node.local, req).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "tiny");
    assert_eq!(body["choices"][0]["message"]["content"], "Paris.");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14})
    );
    let request_id = headers["x-request-id"].to_str().unwrap();
    assert_eq!(body["id"], format!("chatcmpl-{request_id}"));
    assert_eq!(
        *g.llm.last_input.lock(),
        json!({
            "messages": [
                {"role": "system", "content": "Answer in one short sentence."},
                {"role": "user", "content": "What is the capital of France?"}
            ],
            "max_tokens": 16,
            "temperature": 0.0,
            "seed": 1
        })
    );
    // The call is in the trace ring under the id the client saw.
    let traced = g.node.bus.recent_traces(10, Some("llm.chat"));
    assert!(traced.iter().any(|t| t.trace_id == request_id));
}

#[tokio::test]
async fn a_streamed_chat_is_chunks_then_done() {
    let g = gateway();
    let ask = json!({
        "model": "tiny",
        "messages": [{"role": "user", "content": "Capital of France?"}],
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    let (status, headers, text) =
        exchange(&g.node.local, local(&g, "/v1/chat/completions", Some(ask))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    let events = events(&text);
    assert_eq!(events.last().unwrap(), "[DONE]", "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Paris.");
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(chunks[4]["usage"]["completion_tokens"], 2);
    assert_eq!(chunks.len(), 5, "role, two tokens, finish, usage");
}

#[tokio::test]
async fn a_client_that_leaves_a_stream_stops_the_generation() {
    let g = gateway();
    let ask = json!({"model": "slow", "messages": [{"role": "user", "content": "Sing."}], "stream": true});
    let resp = g
        .node
        .local
        .clone()
        .oneshot(local(&g, "/v1/chat/completions", Some(ask)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    for _ in 0..3 {
        let frame = body.frame().await.unwrap().unwrap();
        assert!(frame.is_data());
    }
    assert_eq!(g.node.bus.in_flight_total(), 1, "it generates");
    drop(body);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !g.llm.stopped.load(Ordering::SeqCst) || g.node.bus.in_flight_total() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the generation goes on"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn provider_failures_get_the_status_openai_clients_expect() {
    let g = gateway();
    let chat = |model: &str, stream: bool| json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream});
    for stream in [false, true] {
        let req = local(&g, "/v1/chat/completions", Some(chat("broken", stream)));
        let (status, body) = json_answer(&g, req).await;
        assert_openai_error(status, &body, StatusCode::BAD_GATEWAY, "does not load");
        assert_eq!(body["error"]["code"], "not_implemented");
    }
    let req = local(&g, "/v1/chat/completions", Some(chat("vec", false)));
    let (status, body) = json_answer(&g, req).await;
    assert_openai_error(
        status,
        &body,
        StatusCode::NOT_FOUND,
        "those that do: broken, slow, tiny",
    );
    let req = local(
        &g,
        "/v1/embeddings",
        Some(json!({"model": "tiny", "input": "x"})),
    );
    let (status, body) = json_answer(&g, req).await;
    assert_openai_error(status, &body, StatusCode::NOT_FOUND, "those that do: vec");
}

#[tokio::test]
async fn every_hostile_request_is_refused_before_any_work() {
    let g = gateway();
    let user = json!([{"role": "user", "content": "hi"}]);
    let post = |body: Body, content_type: Option<&str>, length: Option<usize>| {
        let mut req = Request::post("/v1/chat/completions");
        if let Some(t) = content_type {
            req = req.header(header::CONTENT_TYPE, t);
        }
        if let Some(n) = length {
            req = req.header(header::CONTENT_LENGTH, n);
        }
        let mut req = req
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", g.node.api_key.as_str()),
            )
            .body(body)
            .unwrap();
        on_local_api(&mut req);
        req
    };
    let over = GATEWAY_MAX_BODY_BYTES + 1;
    let padding = "x".repeat(over);
    let huge =
        json!({"model": "tiny", "messages": [{"role": "user", "content": padding}]}).to_string();
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        // Declared too large: refused before a byte is read.
        (
            post(Body::empty(), Some("application/json"), Some(over)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than 4194304 bytes",
        ),
        // Sent chunked, without a length: cut off at the limit.
        (
            post(
                Body::from_stream(futures_util::stream::iter(
                    huge.into_bytes()
                        .chunks(64 * 1024)
                        .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                        .collect::<Vec<_>>(),
                )),
                Some("application/json"),
                None,
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than",
        ),
        (
            post(Body::from("{\"model\": "), Some("application/json"), None),
            StatusCode::BAD_REQUEST,
            "not JSON",
        ),
        (
            post(
                Body::from(json!({"model": "tiny", "messages": user}).to_string()),
                None,
                None,
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            post(
                Body::from(json!({"model": "tiny", "messages": user}).to_string()),
                Some("text/plain"),
                None,
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "text/plain",
        ),
        (
            post(
                Body::from(json!({"model": "tiny", "messages": user, "n": 2}).to_string()),
                Some("application/json; charset=utf-8"),
                None,
            ),
            StatusCode::BAD_REQUEST,
            "n must be 1",
        ),
    ];
    for (req, want, says) in cases {
        let (status, body) = json_answer(&g, req).await;
        assert_openai_error(status, &body, want, says);
    }
    let tokens = local(
        &g,
        "/v1/embeddings",
        Some(json!({"model": "vec", "input": [[101, 2023]]})),
    );
    let (status, body) = json_answer(&g, tokens).await;
    assert_openai_error(status, &body, StatusCode::BAD_REQUEST, "token ids");
    assert_eq!(body["error"]["param"], "input");

    assert_eq!(g.llm.calls.load(Ordering::SeqCst), 0, "no generation ran");
    assert_eq!(
        g.embed.calls.load(Ordering::SeqCst),
        0,
        "nothing was embedded"
    );
    assert_eq!(
        g.node.state.body_budget.used(),
        0,
        "every body's share came back"
    );
}

#[tokio::test]
async fn embeddings_are_batched_in_order_as_floats_or_base64() {
    let g = gateway();
    let texts: Vec<String> = (0..300).map(|i| "x".repeat(i % 7)).collect();
    let req = local(
        &g,
        "/v1/embeddings",
        Some(json!({"model": "vec", "input": texts})),
    );
    let (status, body) = json_answer(&g, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(g.embed.calls.load(Ordering::SeqCst), 2, "256 texts a call");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 300);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["index"], i);
        assert_eq!(item["embedding"][0], (i % 7) as f64, "in order");
        assert_eq!(item["embedding"][1], (i % 256) as f64);
    }
    assert_eq!(body["model"], "vec");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 0, "total_tokens": 0})
    );

    let req = local(
        &g,
        "/v1/embeddings",
        Some(json!({"model": "vec", "input": "abc", "encoding_format": "base64"})),
    );
    let (status, body) = json_answer(&g, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let packed = data_encoding::BASE64
        .decode(body["data"][0]["embedding"].as_str().unwrap().as_bytes())
        .unwrap();
    let floats: Vec<f32> = packed
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(floats, [3.0, 0.0]);

    let req = local(
        &g,
        "/v1/embeddings",
        Some(json!({"model": "vec", "input": "abc", "dimensions": 3})),
    );
    let (status, body) = json_answer(&g, req).await;
    assert_openai_error(status, &body, StatusCode::BAD_REQUEST, "2 dimensions");
    assert_eq!(
        g.embed.calls.load(Ordering::SeqCst),
        3,
        "refused before a call"
    );
}
