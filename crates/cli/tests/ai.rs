//! The community's AI through a real node: `embed.text` served from a
//! model directory, and what happens when the directory cannot serve.

mod common;

use common::{Sandbox, models};
use serde_json::{Value, json};

fn embedding_node(model_dir: &std::path::Path) -> (Sandbox, common::RunningNode) {
    let sb = Sandbox::new();
    sb.init_non_interactive("embedder");
    let dir = model_dir.display().to_string();
    let node = sb.start_node(&[
        ("HEARTHNET_EMBEDDING_MODEL", "all-minilm-l6-v2"),
        ("HEARTHNET_EMBEDDING_MODEL_DIR", &dir),
    ]);
    (sb, node)
}

fn embed(sb: &Sandbox, body: &Value) -> common::Run {
    sb.run(
        &["call", "embed.text@1.0", "--body", &body.to_string()],
        None,
    )
}

#[test]
fn embed_text_serves_the_vectors_of_sentence_transformers() {
    let (sb, _node) = embedding_node(&models::minilm());
    let reference = models::minilm_reference();
    let sentences = &reference["sentences"];
    let run = embed(
        &sb,
        &json!({"params": {"model": "all-minilm-l6-v2"}, "input": {"texts": sentences}}),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer["output"]["dim"], 384);
    assert_eq!(answer["meta"]["model"], "all-minilm-l6-v2");
    let got: Vec<Vec<f64>> =
        serde_json::from_value(answer["output"]["embeddings"].clone()).unwrap();
    let want: Vec<Vec<f64>> = serde_json::from_value(reference["vectors"].clone()).unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let c = models::cosine(g, w);
        assert!(c > 1.0 - 1e-4, "sentence {i}: cosine {c}");
    }

    // The caps list the model; a model nobody serves, too many texts and
    // too long a text are refused before any work.
    let caps = sb.run(&["caps", "--json"], None);
    assert!(caps.stdout.contains("all-minilm-l6-v2"), "{caps:?}");
    let other = embed(
        &sb,
        &json!({"params": {"model": "bge-small-en-v1.5"}, "input": {"texts": ["x"]}}),
    );
    assert_ne!(other.code, 0, "{other:?}");
    let many = embed(
        &sb,
        &json!({"params": {"model": "all-minilm-l6-v2"}, "input": {"texts": vec!["x"; 257]}}),
    );
    assert_eq!(many.code, 2, "{many:?}");
    assert!(many.stderr.contains("schema_mismatch"), "{many:?}");
    let long = embed(
        &sb,
        &json!({"params": {"model": "all-minilm-l6-v2"}, "input": {"texts": ["x".repeat(8193)]}}),
    );
    assert_eq!(long.code, 2, "{long:?}");
}

#[test]
fn a_model_directory_that_cannot_serve_is_not_offered_and_doctor_says_why() {
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("config.json"),
        r#"{"model_type": "llama"}"#,
    )
    .unwrap();
    let (sb, _node) = embedding_node(broken.path());
    let caps = sb.run(&["caps", "--json"], None);
    assert_eq!(caps.code, 0, "{caps:?}");
    assert!(!caps.stdout.contains("embed.text"), "{caps:?}");

    let dir = broken.path().display().to_string();
    let doctor = sb.run_with_env(
        &["doctor", "--check", "embedding_model"],
        &[("HEARTHNET_EMBEDDING_MODEL_DIR", &dir)],
    );
    assert_eq!(doctor.code, 1, "{doctor:?}");
    assert!(
        doctor.stdout.contains("only BERT-family models"),
        "{doctor:?}"
    );
    assert!(doctor.stdout.contains("fix:"), "{doctor:?}");

    // Pointed at the real model, the same check passes and says what it loaded.
    let dir = models::minilm().display().to_string();
    let doctor = sb.run_with_env(
        &["doctor", "--check", "embedding_model"],
        &[("HEARTHNET_EMBEDDING_MODEL_DIR", &dir)],
    );
    assert_eq!(doctor.code, 0, "{doctor:?}");
    assert!(doctor.stdout.contains("384 dimensions"), "{doctor:?}");
}
