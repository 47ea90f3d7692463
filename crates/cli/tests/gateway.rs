//! The OpenAI-compatible gateway of a real node: the key as
//! `hearthnet api-key` shows it, and the official `openai` Python client
//! chatting with SmolLM2 and embedding with MiniLM through it, unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Sandbox, models, python};
use serde_json::Value;

const SMOLLM: &str = "smollm2-135m";
const MINILM: &str = "all-minilm-l6-v2";

/// `hearthnet api-key` (with `extra` flags): the key it printed.
fn api_key(sb: &Sandbox, extra: &[&str]) -> (String, common::Run) {
    let run = sb.run(&[&["api-key"], extra].concat(), None);
    assert_eq!(run.code, 0, "{run:?}");
    (run.stdout.trim().to_owned(), run)
}

/// `GET /v1/models` on `api` with `key` (if any): status and body.
fn models_with(api: std::net::SocketAddr, key: Option<&str>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(format!("http://{api}/v1/models"));
    if let Some(key) = key {
        req = req.header("Authorization", format!("Bearer {key}"));
    }
    let mut resp = req.call().unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap())
}

#[test]
fn the_key_is_made_once_kept_private_and_rotated_under_a_running_node() {
    let sb = Sandbox::new();
    sb.init_non_interactive("keeper");
    let node = sb.start_node(&[]);

    // Before anyone asked for a key there is none, and the refusal says
    // how to get one.
    let (status, body) = models_with(node.api, Some("hn-guess"));
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("hearthnet api-key"),
        "{body}"
    );

    let (key, run) = api_key(&sb, &[]);
    assert!(key.starts_with("hn-") && key.len() == 55, "{run:?}");
    assert!(run.stderr.contains("made the local API key"), "{run:?}");
    let file = sb.data_dir().join("keys/local-api.key");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (again, run) = api_key(&sb, &[]);
    assert_eq!(again, key, "shown again, not replaced");
    assert!(run.stderr.is_empty(), "{run:?}");

    let (status, body) = models_with(node.api, Some(&key));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    let (status, body) = models_with(node.api, None);
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &"invalid_api_key".into())
    );

    // A rotation takes effect at the next request, without a restart.
    let (rotated, run) = api_key(&sb, &["--rotate"]);
    assert_ne!(rotated, key);
    assert!(run.stderr.contains("refused from now on"), "{run:?}");
    assert_eq!(models_with(node.api, Some(&key)).0, 401);
    assert_eq!(models_with(node.api, Some(&rotated)).0, 200);

    // A key file others can read is refused by both, with the fix.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = sb.run(&["api-key"], None);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("--rotate"), "{run:?}");
    let (status, body) = models_with(node.api, Some(&rotated));
    assert_eq!(status, 500, "{body}");
    let (fixed, _) = api_key(&sb, &["--rotate"]);
    assert_eq!(models_with(node.api, Some(&fixed)).0, 200);
}

#[test]
fn the_official_openai_client_chats_streams_and_embeds_through_the_gateway() {
    let sb = Sandbox::new();
    sb.init_non_interactive("gateway");
    let (key, _) = api_key(&sb, &[]);
    let backends = models::gguf_backend(SMOLLM, &models::smollm(), 1);
    let minilm = models::minilm().display().to_string();
    let node = sb.start_node(&[
        ("HEARTHNET_LLM_BACKENDS", &backends),
        ("HEARTHNET_EMBEDDING_MODEL", MINILM),
        ("HEARTHNET_EMBEDDING_MODEL_DIR", &minilm),
    ]);

    // The two lines the README gives a user, and nothing else.
    let reference = python::testdata("embed/all-minilm-l6-v2.reference.json");
    let out = python::command("gateway/openai_client.py")
        .args([SMOLLM, MINILM, reference.to_str().unwrap()])
        .env("OPENAI_BASE_URL", format!("http://{}/v1", node.api))
        .env("OPENAI_API_KEY", &key)
        .output()
        .unwrap();
    let run = common::Run::from(out);
    assert_eq!(run.code, 0, "{run:?}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();

    assert_eq!(report["models"], serde_json::json!([MINILM, SMOLLM]));

    let chat = &report["chat"];
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["role"], "assistant");
    let content = chat["content"].as_str().unwrap();
    assert!(content.contains("Paris"), "{report}");
    assert_eq!(chat["finish_reason"], "stop", "{report}");
    let usage = &chat["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 10, "{usage}");
    assert!(usage["completion_tokens"].as_u64().unwrap() > 1, "{usage}");
    // The id the client kept names the call in the node's traces.
    let request_id = chat["request_id"].as_str().unwrap();
    let traces = sb.run(&["trace", "recent", "--json"], None);
    assert!(traces.stdout.contains(request_id), "{traces:?}");

    // Streamed, token by token, the same words as the seeded answer.
    let stream = &report["stream"];
    assert!(stream["content_chunks"].as_u64().unwrap() > 1, "{stream}");
    assert_eq!(stream["text"], content, "{report}");
    assert_eq!(stream["first_role"], "assistant");
    assert_eq!(stream["finish_reason"], "stop");
    assert_eq!(stream["usage"], *usage);
    assert_eq!(stream["ids"], 1, "one id for every chunk");

    // Embeddings, as base64 (the client's default) and as floats, are
    // sentence-transformers' vectors.
    let want: Vec<Vec<f64>> =
        serde_json::from_value(models::minilm_reference()["vectors"].clone()).unwrap();
    let embeddings = &report["embeddings"];
    assert_eq!(embeddings["model"], MINILM);
    for format in ["base64", "float"] {
        let got: Vec<Vec<f64>> = serde_json::from_value(embeddings[format].clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{format}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.len(), 384);
            let c = models::cosine(g, w);
            assert!(c > 1.0 - 1e-4, "{format} sentence {i}: cosine {c}");
        }
    }

    // Refusals reach the client as the exceptions it knows.
    assert_eq!(
        report["unknown_model"],
        serde_json::json!({"status": 404, "code": "model_not_found"})
    );
    assert_eq!(
        report["wrong_key"],
        serde_json::json!({"status": 401, "code": "invalid_api_key"})
    );
}
