//! `embed.text@1.0` (M11, Contract §4.3): sentence-embedding models of
//! the BERT family (all-MiniLM-L6-v2, bge-small, …) run in-process on the
//! CPU from a sentence-transformers directory (`config.json`,
//! `tokenizer.json`, `model.safetensors`, `modules.json`, the pooling
//! config), giving the vectors sentence-transformers gives for it.
//!
//! [`model`] reads a directory and runs it; [`EmbedService`] offers it on
//! the bus: one entry per model, named in `params.model`, the model loaded
//! on the first call (never at start, so an idle node stays small), texts
//! bounded by the request schema before any work, the work on a blocking
//! thread that stops between batches when the caller leaves.

pub mod model;

use std::sync::Arc;
use std::time::Instant;

use hearthnet_base::{ErrorCode, Stability};
use hearthnet_bus::{Call, CallError, Capability, CapabilityDescriptor, LoadedOnFirstUse, Service};
use hearthnet_observability::doctor::{Check, DoctorContext, Outcome};
use serde_json::{Value, json};

pub use model::{EmbedError, LoadError, ModelDir, Pooling, SentenceModel};

pub const EMBED_TEXT: &str = "embed.text";
/// Contract §4.3.
pub const MAX_TEXTS: usize = 256;
/// Contract §4.3, in characters (Unicode scalar values, as JSON Schema's
/// `maxLength` counts them).
pub const MAX_TEXT_CHARS: usize = 8192;
/// Calls at once: each keeps the CPU busy.
const MAX_CONCURRENT: u32 = 4;

/// One embedding model offered as `embed.text@1.0`.
pub struct EmbedService {
    /// The name callers ask for in `params.model`.
    name: String,
    dir: ModelDir,
    model: LoadedOnFirstUse<SentenceModel>,
}

impl EmbedService {
    /// The model `name` from `dir`, inspected now (a directory that cannot
    /// serve is refused here, so its capability is never offered) and
    /// loaded on the first call.
    pub fn new(name: &str, dir: &std::path::Path) -> Result<Self, LoadError> {
        Ok(Self {
            name: name.to_owned(),
            dir: ModelDir::inspect(dir)?,
            model: LoadedOnFirstUse::new(name),
        })
    }

    pub fn model_dir(&self) -> &ModelDir {
        &self.dir
    }

    async fn embed_text(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let started = Instant::now();
        let (texts, normalize) = parse(&call.input)?;
        let dir = self.dir.clone();
        let model = self.model.get(move || dir.load()).await?;
        let cancel = call.cancel.clone();
        let embedded = tokio::task::spawn_blocking(move || {
            model.embed(&texts, normalize, &|| cancel.is_cancelled())
        })
        .await
        .map_err(|e| internal(format!("embedding stopped: {e}")))?;
        let vectors = embedded.map_err(|e| match e {
            EmbedError::Cancelled => CallError::new(ErrorCode::Timeout, "cancelled"),
            e => internal(e.to_string()),
        })?;
        Ok(json!({
            "output": {"embeddings": vectors, "dim": self.dir.dim},
            "meta": {"model": self.name, "ms": started.elapsed().as_millis() as u64},
        }))
    }
}

fn internal(message: String) -> CallError {
    CallError::new(ErrorCode::InternalError, message)
}

/// The texts and `normalize` (default true). The schema has bounded them
/// already; checked again here because a handler must not trust that
/// someone else did.
fn parse(input: &Value) -> Result<(Vec<String>, bool), CallError> {
    let texts: Vec<String> = input
        .get("texts")
        .and_then(Value::as_array)
        .ok_or_else(|| CallError::bad_request("input.texts (an array of strings) is required"))?
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.as_str()
                .map(str::to_owned)
                .ok_or_else(|| CallError::bad_request(format!("input.texts[{i}] is not a string")))
        })
        .collect::<Result<_, _>>()?;
    if texts.is_empty() || texts.len() > MAX_TEXTS {
        return Err(CallError::bad_request(format!(
            "input.texts must hold 1 to {MAX_TEXTS} texts, not {}",
            texts.len()
        )));
    }
    if let Some(i) = texts
        .iter()
        .position(|t| t.chars().count() > MAX_TEXT_CHARS)
    {
        return Err(CallError::bad_request(format!(
            "input.texts[{i}] is over {MAX_TEXT_CHARS} characters: split it"
        )));
    }
    let normalize = match input.get("normalize") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(CallError::bad_request(
                "input.normalize must be true or false",
            ));
        }
    };
    Ok((texts, normalize))
}

impl Service for EmbedService {
    fn name(&self) -> &'static str {
        "embedding"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        let descriptor = CapabilityDescriptor {
            stability: Stability::Stable,
            params: json!({"model": self.name, "dim": self.dir.dim}),
            response_schema: Some(json!({
                "type": "object",
                "required": ["output", "meta"],
                "properties": {
                    "output": {
                        "type": "object",
                        "required": ["embeddings", "dim"],
                        "properties": {
                            "embeddings": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                            "dim": {"type": "integer"}
                        }
                    },
                    "meta": {"type": "object", "required": ["model", "ms"]}
                }
            })),
            max_concurrent: MAX_CONCURRENT,
            ..CapabilityDescriptor::new(
                EMBED_TEXT,
                json!({
                    "type": "object",
                    "required": ["texts"],
                    "properties": {
                        "texts": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_TEXTS,
                            "items": {"type": "string", "maxLength": MAX_TEXT_CHARS}
                        },
                        "normalize": {"type": "boolean"}
                    }
                }),
            )
        };
        vec![Capability::new(descriptor, &self, Self::embed_text)]
    }
}

/// `doctor`'s `embedding_model`: the configured model directory loads
/// (weights included), or why not and what to do. No directory
/// configured is not a failure: the node then offers no `embed.text`, and
/// neighbours' models serve its calls.
pub const DOCTOR_CHECK: Check = Check {
    name: "embedding_model",
    run: embedding_model,
};

fn embedding_model(ctx: &DoctorContext) -> Outcome {
    let config = &ctx.config.embedding;
    if !config.enabled {
        return Outcome::Pass("embeddings are off (embedding.enabled = false)".into());
    }
    let Some(path) = &config.model_dir else {
        return Outcome::Pass(format!(
            "no model directory configured: this node offers no embed.text (to serve {}, set embedding.model_dir)",
            config.model
        ));
    };
    match ModelDir::inspect(path).and_then(|dir| dir.load().map(|_| dir)) {
        Ok(dir) => Outcome::Pass(format!(
            "{} loads from {}: {} dimensions, {} pooling{}, up to {} tokens a text",
            config.model,
            path.display(),
            dir.dim,
            match dir.pooling {
                Pooling::Mean => "mean",
                Pooling::Cls => "CLS",
            },
            if dir.normalize { ", normalised" } else { "" },
            dir.max_tokens
        )),
        Err(e) => Outcome::Fail {
            detail: format!("embed.text is not offered: {e}"),
            fix: "point embedding.model_dir at a sentence-transformers directory of a BERT-family model (README, \"Models\"), or set embedding.enabled = false".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_bounded_and_normalize_defaults_to_true() {
        let ok = parse(&json!({"texts": ["a", "b"]})).unwrap();
        assert_eq!(ok, (vec!["a".to_owned(), "b".to_owned()], true));
        assert!(
            !parse(&json!({"texts": ["a"], "normalize": false}))
                .unwrap()
                .1
        );
        for bad in [
            json!({}),
            json!({"texts": []}),
            json!({"texts": [1]}),
            json!({"texts": vec!["x"; MAX_TEXTS + 1]}),
            json!({"texts": ["é".repeat(MAX_TEXT_CHARS + 1)]}),
            json!({"texts": ["a"], "normalize": "yes"}),
        ] {
            let e = parse(&bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{bad}");
        }
        // Characters, not bytes: 8192 two-byte characters pass.
        assert!(parse(&json!({"texts": ["é".repeat(MAX_TEXT_CHARS)]})).is_ok());
    }
}
