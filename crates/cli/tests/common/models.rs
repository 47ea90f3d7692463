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

/// An `llm.chat` body asking `model` the test question whose answer is
/// known (SmolLM2 says Paris), greedy, at most `max_tokens`.
pub fn france(model: &str, max_tokens: u32) -> serde_json::Value {
    serde_json::json!({
        "params": {"model": model},
        "input": {
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"}
            ],
            "temperature": 0,
            "max_tokens": max_tokens
        }
    })
}
