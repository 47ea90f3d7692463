//! The Ask and Files pages through the router: what they refuse before
//! any work, and an answer streamed from a stand-in model.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use hearthnet_bus::{Call, CallError, Capability, CapabilityDescriptor, Service, Trust};
use serde_json::{Value, json};

use super::*;
use crate::text::TEXT;

/// A stand-in for the AI services: one collection `water` and a model
/// `stand-in` that answers "Boil it." in three tokens.
struct StandIn;

impl Service for StandIn {
    fn name(&self) -> &'static str {
        "stand-in"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        let corpora = CapabilityDescriptor {
            trust: Trust::Level(hearthnet_base::TrustLevel::Unknown),
            ..CapabilityDescriptor::new("rag.list_corpora", json!({"type": "object"}))
        };
        let chat = CapabilityDescriptor {
            stream_schema: Some(json!({"type": "object"})),
            params: json!({"model": "stand-in"}),
            max_concurrent: 16,
            trust: Trust::Level(hearthnet_base::TrustLevel::Unknown),
            ..CapabilityDescriptor::new("llm.chat", json!({"type": "object"}))
        };
        vec![
            Capability::new(corpora, &self, |_, _: Call| async {
                Ok::<Value, CallError>(
                    json!({"output": {"corpora": [{"name": "water", "docs": 1, "chunks": 3}]}}),
                )
            }),
            Capability::new(chat, &self, |_, call: Call| async move {
                for piece in ["Boil", " it", "."] {
                    let _ = call.frames.send("token", json!({"text": piece})).await;
                }
                Ok(json!({"finish_reason": "stop"}))
            }),
        ]
    }
}

fn with_stand_in() -> Ui {
    let metrics = Arc::new(hearthnet_observability::metrics::Metrics::new());
    let id = hearthnet_wire::local::samples::node_id(1);
    let bus = Arc::new(Bus::new(id, Default::default(), metrics));
    bus.register(Arc::new(StandIn)).unwrap();
    ui_on(bus)
}

#[tokio::test]
async fn an_upload_over_the_bound_is_refused_before_it_is_read() {
    let ui = ui();
    let cookie = logged_in(&ui).await;
    let csrf = csrf(&ui, &cookie).await;
    let too_large = (crate::pages::MAX_UPLOAD_BYTES + 1).to_string();
    for path in ["/files/upload", "/ask/ingest?corpus=water"] {
        // The body never ends: only refusing on the declared length
        // answers at all.
        let endless = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
        let req = post_request(path, &cookie, &csrf)
            .header(header::CONTENT_LENGTH, &too_large)
            .body(Body::from_stream(endless))
            .unwrap();
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), send(&ui, req))
            .await
            .expect("refused without reading the body");
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
    }
    // The token must be in the header: the gate does not read an upload.
    let req = page_post("/files/upload", &cookie)
        .body(Body::from(format!("csrf={csrf}")))
        .unwrap();
    assert_eq!(send(&ui, req).await.status, StatusCode::FORBIDDEN);
    // From another site: refused, token or not.
    let req = Request::post("/files/upload")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, "http://evil.example")
        .header(header::COOKIE, &cookie)
        .header(crate::access::CSRF_HEADER, &csrf)
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(send(&ui, req).await.status, StatusCode::FORBIDDEN);
    // Other forms keep the small bound.
    let big = "a".repeat(crate::MAX_BODY_BYTES + 1);
    let answer = send(&ui, form_request("/files/fetch", &cookie, &csrf, &big)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn an_empty_upload_and_a_bad_collection_are_refused_in_plain_words() {
    let ui = ui();
    let cookie = logged_in(&ui).await;
    let csrf = csrf(&ui, &cookie).await;
    let req = post_request("/files/upload", &cookie, &csrf)
        .body(Body::empty())
        .unwrap();
    let answer = send(&ui, req).await;
    assert!(
        answer.body.contains(TEXT.files.empty_upload),
        "{}",
        answer.body
    );
    let req = post_request("/ask/ingest?corpus=Not%20a%20name", &cookie, &csrf)
        .body(Body::from("text"))
        .unwrap();
    let answer = send(&ui, req).await;
    assert!(answer.body.contains(TEXT.ask.bad_corpus), "{}", answer.body);
}

#[tokio::test]
async fn a_malformed_cid_is_refused_before_any_call() {
    let ui = ui();
    let cookie = logged_in(&ui).await;
    let csrf = csrf(&ui, &cookie).await;
    for cid in ["blake3%3A00", "", "sha256%3Aab", "%3Cscript%3E"] {
        let answer = send(
            &ui,
            form_request("/files/fetch", &cookie, &csrf, &format!("cid={cid}")),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.body.contains(TEXT.files.bad_cid), "{}", answer.body);
        assert!(!answer.body.contains("<script>"));
        let answer = send(
            &ui,
            form_request(
                "/files/pin",
                &cookie,
                &csrf,
                &format!("cid={cid}&pinned=true"),
            ),
        )
        .await;
        assert!(answer.body.contains(TEXT.files.bad_cid), "{}", answer.body);
    }
    assert_eq!(ui.state.running.len(), 0, "no fetch started");
    let answer = send(
        &ui,
        get("/files/blob/blake3:00")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_unknown_collection_a_bad_question_or_model_ask_nothing() {
    let ui = with_stand_in();
    let cookie = logged_in(&ui).await;
    let csrf = csrf(&ui, &cookie).await;
    let cases = [
        ("question=%20&model=stand-in", TEXT.ask.bad_question),
        (
            &*format!("question={}&model=stand-in", "a".repeat(2049)),
            TEXT.ask.bad_question,
        ),
        (
            "question=Why&model=stand-in&corpus=nosuch",
            TEXT.ask.bad_corpus,
        ),
        (
            "question=Why&model=stand-in&corpus=Bad%21",
            TEXT.ask.bad_corpus,
        ),
        (
            "question=Why&model=other&corpus=water",
            TEXT.ask.unknown_model,
        ),
    ];
    for (body, words) in cases {
        let answer = send(&ui, form_request("/ask", &cookie, &csrf, body)).await;
        assert!(answer.body.contains(words), "{body}: {}", answer.body);
    }
    assert_eq!(ui.state.running.len(), 0, "no call started");
}

#[tokio::test]
async fn an_answer_streams_token_by_token_to_the_session_that_asked_only() {
    let ui = with_stand_in();
    let cookie = logged_in(&ui).await;
    let csrf = csrf(&ui, &cookie).await;
    let page = send(
        &ui,
        get("/ask")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(
        page.body.contains(r#"<option value="stand-in">"#),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(r#"<option value="water">"#),
        "{}",
        page.body
    );

    let answer = send(
        &ui,
        form_request("/ask", &cookie, &csrf, "question=What%3F&model=stand-in"),
    )
    .await;
    let at = answer.body.find(r#"sse-connect=""#).expect(&answer.body) + 13;
    let stream = answer.body[at..].split('"').next().unwrap().to_owned();
    assert!(stream.starts_with("/running/"), "{stream}");

    // Another session cannot take it.
    let other = logged_in(&ui).await;
    let taken = open_page(&ui, &other, &stream).await;
    assert!(taken.body.contains(TEXT.ask.stream_gone), "{}", taken.body);
    assert!(!taken.body.contains("Boil"));

    let events = open_page(&ui, &cookie, &stream).await;
    assert_eq!(
        events.headers[header::CONTENT_TYPE],
        "text/event-stream",
        "{}",
        events.body
    );
    let tokens: Vec<&str> = events
        .body
        .split("\n\n")
        .filter(|e| e.starts_with("event: token\n"))
        .collect();
    assert_eq!(
        tokens,
        [
            "event: token\ndata: <span>Boil</span>",
            "event: token\ndata: <span> it</span>",
            "event: token\ndata: <span>.</span>"
        ]
    );
    assert!(events.body.contains("event: end\n"), "{}", events.body);
    assert!(
        events.body.contains(TEXT.ask.answered_by),
        "{}",
        events.body
    );
    // Claimed once.
    let again = open_page(&ui, &cookie, &stream).await;
    assert!(again.body.contains(TEXT.ask.stream_gone), "{}", again.body);
}

#[tokio::test]
async fn started_calls_are_bounded_per_session() {
    let ui = with_stand_in();
    let cookie = logged_in(&ui).await;
    let csrf = csrf(&ui, &cookie).await;
    for _ in 0..crate::pages::PER_SESSION + 3 {
        let answer = send(
            &ui,
            form_request("/ask", &cookie, &csrf, "question=Hi&model=stand-in"),
        )
        .await;
        assert!(answer.body.contains("sse-connect"), "{}", answer.body);
    }
    assert_eq!(ui.state.running.len(), crate::pages::PER_SESSION);
}

/// A stand-in file service whose `file.local.get` writes `BLOB` where it
/// is asked to.
struct Blobs;

const BLOB: &[u8] = b"<html><script>alert(1)</script></html>";

impl Service for Blobs {
    fn name(&self) -> &'static str {
        "blobs"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        let get = CapabilityDescriptor {
            trust: Trust::SelfOnly,
            ..CapabilityDescriptor::new("file.local.get", json!({"type": "object"}))
        };
        vec![Capability::new(get, &self, |_, call: Call| async move {
            let out = call.input["out"].as_str().unwrap_or_default().to_owned();
            std::fs::write(&out, BLOB).map_err(|e| CallError::bad_request(e.to_string()))?;
            Ok(json!({"cid": call.input["cid"], "size_bytes": BLOB.len(), "from": []}))
        })]
    }
}

#[tokio::test]
async fn a_download_is_an_attachment_under_a_safe_name_never_a_page() {
    let metrics = Arc::new(hearthnet_observability::metrics::Metrics::new());
    let id = hearthnet_wire::local::samples::node_id(1);
    let bus = Arc::new(Bus::new(id, Default::default(), metrics));
    bus.register(Arc::new(Blobs)).unwrap();
    let ui = ui_on(bus);
    let cookie = logged_in(&ui).await;
    let cid = format!("blake3:{}", "ab".repeat(32));
    let answer = send(
        &ui,
        get(&format!("/files/blob/{cid}?name=..%2Fevil%22x.html"))
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body.as_bytes(), BLOB);
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    assert_eq!(
        answer.headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"_evil_x.html\""
    );
    assert_eq!(answer.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
}
