//! The real models the AI tests use (`hearthnet-test-models` finds them),
//! and how a node is configured to serve them.

// Each test binary uses a part of it.
#[allow(unused_imports)]
pub use hearthnet_test_models::{cosine, minilm, minilm_reference, smollm};

/// `llm.backends` serving `path` in-process as `model`, as an environment
/// override.
pub fn gguf_backend(model: &str, path: &std::path::Path, max_concurrent: u32) -> String {
    format!(
        r#"[{{name = "local", kind = "gguf", model = "{model}", model_path = "{}", max_concurrent = {max_concurrent}}}]"#,
        path.display()
    )
}
