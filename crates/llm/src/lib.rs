//! `llm.chat@1.0` and `llm.complete@1.0` (M04, Contract §4.1–§4.2): a GGUF
//! model of the llama family run in-process on the CPU.
//!
//! The parts: [`gguf`] reads what the file says besides its weights (its
//! tokenizer, chat template and end-of-turn tokens); [`template`] renders
//! the chat template; [`generate`] is the generation loop, whichever
//! engine runs the weights (prompt in chunks, sampling, whole characters,
//! stop tokens and sequences, cancellation); [`engine`] chooses what runs
//! the weights: `llama_engine` (llama.cpp, feature `llama-cpp`) or
//! [`candle_engine`] (pure Rust).
//! [`LlmService`] offers one model on the bus: the model loads on the
//! first call (never at start), at most `max_concurrent` generations run
//! and as many wait their turn, further calls are refused by the bus with
//! `capacity_exceeded`; a caller who leaves stops its generation within a
//! forward pass.

pub mod candle_engine;
pub mod engine;
pub mod generate;
pub mod gguf;
#[cfg(feature = "llama-cpp")]
pub mod llama_engine;
pub mod template;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hearthnet_base::{ErrorCode, Stability};
use hearthnet_bus::{Call, CallError, Capability, CapabilityDescriptor, Service};
use hearthnet_config::LlmBackendKind;
use hearthnet_observability::doctor::{Check, DoctorContext, Outcome};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, Semaphore};

use crate::generate::{Engine, Finished, GenerateError, Request, Sampling, generate};
use crate::gguf::{GgufError, GgufModel};
use crate::template::{ChatTemplate, Message};

pub const LLM_CHAT: &str = "llm.chat";
pub const LLM_COMPLETE: &str = "llm.complete";

/// Bounds on a request, checked by its schema before any work.
const MAX_MESSAGES: usize = 256;
const MAX_MESSAGE_CHARS: usize = 64 * 1024;
const MAX_PROMPT_CHARS: usize = 256 * 1024;
const MAX_STOP_SEQUENCES: usize = 8;
const MAX_STOP_CHARS: usize = 64;
const MAX_TOKENS_LIMIT: u64 = 8192;
/// Contract §4.1 defaults.
const DEFAULT_MAX_TOKENS: usize = 1024;
const DEFAULT_TEMPERATURE: f64 = 0.7;
const DEFAULT_TOP_P: f64 = 0.95;
/// Calls that may wait for a free generation slot, per slot.
const WAITING_PER_SLOT: u32 = 1;

/// One GGUF model offered as `llm.chat` and `llm.complete`.
pub struct LlmService {
    /// The name callers ask for in `params.model`.
    name: String,
    path: PathBuf,
    context_length: usize,
    running: Arc<Semaphore>,
    slots: u32,
    loaded: OnceCell<Arc<Loaded>>,
}

struct Loaded {
    engine: Box<dyn Engine>,
    model: GgufModel,
    template: Option<ChatTemplate>,
}

impl LlmService {
    /// The model `name` at `path`; its header is read now (a file that
    /// cannot serve is refused here, so it is never offered), its weights
    /// on the first call.
    pub fn new(name: &str, path: &Path, max_concurrent: u32) -> Result<Self, GgufError> {
        let header = GgufModel::open(path)?;
        let slots = max_concurrent.max(1);
        Ok(Self {
            name: name.to_owned(),
            path: path.to_owned(),
            context_length: header.context_length,
            running: Arc::new(Semaphore::new(slots as usize)),
            slots,
            loaded: OnceCell::new(),
        })
    }

    async fn loaded(&self) -> Result<Arc<Loaded>, CallError> {
        self.loaded
            .get_or_try_init(|| async {
                let (path, slots) = (self.path.clone(), self.slots);
                let loaded = tokio::task::spawn_blocking(move || -> Result<Loaded, String> {
                    let (engine, model) = engine::load(&path, slots).map_err(|e| e.to_string())?;
                    let template = model
                        .chat_template
                        .as_deref()
                        .map(|t| ChatTemplate::new(t, model.bos.as_deref(), model.eos.as_deref()))
                        .transpose()
                        .map_err(|e| e.to_string())?;
                    Ok(Loaded {
                        engine,
                        model,
                        template,
                    })
                })
                .await
                .map_err(|e| internal(format!("loading the model stopped: {e}")))?;
                loaded.map(Arc::new).map_err(|e| {
                    CallError::new(
                        ErrorCode::NotImplemented,
                        format!("the model {} does not load: {e}", self.name),
                    )
                })
            })
            .await
            .cloned()
    }

    async fn chat(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let messages = messages(&call.input)?;
        let loaded = self.loaded().await?;
        let template = loaded.template.as_ref().ok_or_else(|| {
            CallError::new(
                ErrorCode::NotImplemented,
                format!(
                    "the model {} carries no chat template: use llm.complete",
                    self.name
                ),
            )
        })?;
        let prompt = template
            .render(&messages)
            .map_err(|e| CallError::bad_request(e.to_string()))?;
        let (finished, ms) = self.run(&call, &loaded, &prompt).await?;
        let meta = self.meta(&finished, ms);
        if call.stream {
            return Ok(meta);
        }
        Ok(json!({
            "output": {"message": {"role": "assistant", "content": finished.text}},
            "meta": meta,
        }))
    }

    async fn complete(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let prompt = call
            .input
            .get("prompt")
            .and_then(Value::as_str)
            .ok_or_else(|| CallError::bad_request("input.prompt (text) is required"))?
            .to_owned();
        let loaded = self.loaded().await?;
        let (finished, ms) = self.run(&call, &loaded, &prompt).await?;
        let meta = self.meta(&finished, ms);
        if call.stream {
            return Ok(meta);
        }
        Ok(json!({"output": {"text": finished.text}, "meta": meta}))
    }

    fn meta(&self, finished: &Finished, ms: u64) -> Value {
        json!({
            "model": self.name,
            "tokens_in": finished.tokens_in,
            "tokens_out": finished.tokens_out,
            "stop_reason": finished.stop_reason.as_str(),
            "ms": ms,
        })
    }

    /// Wait for a slot, then generate for `prompt` on a blocking thread,
    /// streaming `token` frames when the caller asked for a stream.
    async fn run(
        &self,
        call: &Call,
        loaded: &Arc<Loaded>,
        prompt: &str,
    ) -> Result<(Finished, u64), CallError> {
        let started = Instant::now();
        let options = Options::parse(&call.input)?;
        // The slot goes to the generating thread, so it is free only once
        // the generation has stopped, not when a caller who left is
        // forgotten.
        let slot = tokio::select! {
            slot = self.running.clone().acquire_owned() => slot.map_err(|_| internal("the model is shutting down".into()))?,
            () = call.cancel.cancelled() => return Err(CallError::new(ErrorCode::Timeout, "cancelled while waiting for the model")),
        };
        let tokens = loaded
            .model
            .tokenizer
            .encode(prompt, false)
            .map_err(|e| internal(format!("tokenizing the prompt: {e}")))?
            .get_ids()
            .to_vec();
        let stop = call.cancel.child_token();
        let (pieces, mut arriving) = tokio::sync::mpsc::channel::<String>(64);
        let worker = {
            let (loaded, stop) = (loaded.clone(), stop.clone());
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                let request = Request {
                    prompt: &tokens,
                    max_tokens: options.max_tokens,
                    sampling: options.sampling,
                    stop: &options.stop,
                };
                generate(
                    &*loaded.engine,
                    &loaded.model.tokenizer,
                    &loaded.model.stop_ids,
                    &request,
                    &|| stop.is_cancelled(),
                    &mut |piece| pieces.blocking_send(piece.to_owned()).is_ok(),
                )
            })
        };
        while let Some(piece) = arriving.recv().await {
            if call.stream
                && call
                    .frames
                    .send("token", json!({"text": piece}))
                    .await
                    .is_err()
            {
                stop.cancel();
            }
        }
        let finished = worker
            .await
            .map_err(|e| internal(format!("generation stopped: {e}")))?
            .map_err(|e| match e {
                GenerateError::PromptTooLong { .. } => CallError::bad_request(e.to_string()),
                e => internal(e.to_string()),
            })?;
        Ok((finished, started.elapsed().as_millis() as u64))
    }

    fn descriptor(&self, name: &str, input: Value) -> CapabilityDescriptor {
        CapabilityDescriptor {
            stability: Stability::Stable,
            params: json!({"model": self.name, "models": [self.name], "ctx": self.context_length}),
            stream_schema: Some(json!({
                "type": "object",
                "properties": {"text": {"type": "string"}}
            })),
            max_concurrent: self.slots * (1 + WAITING_PER_SLOT),
            idempotent: false,
            timeout: std::time::Duration::from_secs(300),
            ..CapabilityDescriptor::new(name, input)
        }
    }
}

fn internal(message: String) -> CallError {
    CallError::new(ErrorCode::InternalError, message)
}

/// The sampling settings and limits of a request (Contract §4.1).
struct Options {
    max_tokens: usize,
    sampling: Sampling,
    stop: Vec<String>,
}

impl Options {
    fn parse(input: &Value) -> Result<Self, CallError> {
        let number = |key: &str, default: f64| match input.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| CallError::bad_request(format!("input.{key} must be a number"))),
        };
        let max_tokens = match input.get("max_tokens") {
            None | Some(Value::Null) => DEFAULT_MAX_TOKENS,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=MAX_TOKENS_LIMIT).contains(n))
                .ok_or_else(|| {
                    CallError::bad_request(format!(
                        "input.max_tokens must be a whole number from 1 to {MAX_TOKENS_LIMIT}"
                    ))
                })? as usize,
        };
        let temperature = number("temperature", DEFAULT_TEMPERATURE)?;
        let top_p = number("top_p", DEFAULT_TOP_P)?;
        if !((0.0..=2.0).contains(&temperature) && top_p > 0.0 && top_p <= 1.0) {
            return Err(CallError::bad_request(
                "input.temperature must be from 0 to 2 and input.top_p above 0 and at most 1",
            ));
        }
        let seed = match input.get("seed") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                CallError::bad_request("input.seed must be a whole number of at least 0")
            })?),
        };
        let stop = match input.get("stop") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => serde_json::from_value::<Vec<String>>(v.clone())
                .ok()
                .filter(|s| {
                    s.len() <= MAX_STOP_SEQUENCES
                        && s.iter().all(|t| !t.is_empty() && t.chars().count() <= MAX_STOP_CHARS)
                })
                .ok_or_else(|| {
                    CallError::bad_request(format!(
                        "input.stop must be at most {MAX_STOP_SEQUENCES} texts of 1 to {MAX_STOP_CHARS} characters"
                    ))
                })?,
        };
        Ok(Self {
            max_tokens,
            sampling: Sampling {
                temperature,
                top_p,
                seed,
            },
            stop,
        })
    }
}

/// The conversation: at least one user message, roles from the contract.
fn messages(input: &Value) -> Result<Vec<Message>, CallError> {
    let messages: Vec<Message> = input
        .get("messages")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| CallError::bad_request(format!("input.messages: {e}")))?
        .ok_or_else(|| CallError::bad_request("input.messages is required"))?;
    if let Some(m) = messages
        .iter()
        .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
    {
        return Err(CallError::bad_request(format!(
            "the role {:?} is not one of system, user, assistant",
            m.role
        )));
    }
    if !messages.iter().any(|m| m.role == "user") {
        return Err(CallError::bad_request(
            "the conversation needs a user message",
        ));
    }
    Ok(messages)
}

/// The sampling fields both capabilities take.
fn sampling_schema() -> serde_json::Map<String, Value> {
    let Value::Object(fields) = json!({
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS_LIMIT},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "stop": {
            "type": "array",
            "maxItems": MAX_STOP_SEQUENCES,
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}
        },
        "seed": {"type": ["integer", "null"], "minimum": 0},
        "stream": {"type": "boolean"}
    }) else {
        return serde_json::Map::new();
    };
    fields
}

impl Service for LlmService {
    fn name(&self) -> &'static str {
        "llm"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        let mut chat = sampling_schema();
        chat.insert(
            "messages".into(),
            json!({
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_MESSAGES,
                "items": {
                    "type": "object",
                    "required": ["role", "content"],
                    "properties": {
                        "role": {"enum": ["system", "user", "assistant"]},
                        "content": {"type": "string", "maxLength": MAX_MESSAGE_CHARS}
                    }
                }
            }),
        );
        let mut complete = sampling_schema();
        complete.insert(
            "prompt".into(),
            json!({"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS}),
        );
        vec![
            Capability::new(
                self.descriptor(
                    LLM_CHAT,
                    json!({"type": "object", "required": ["messages"], "properties": chat}),
                ),
                &self,
                Self::chat,
            ),
            Capability::new(
                self.descriptor(
                    LLM_COMPLETE,
                    json!({"type": "object", "required": ["prompt"], "properties": complete}),
                ),
                &self,
                Self::complete,
            ),
        ]
    }
}

/// `doctor`'s `llm_backend_reachable`: every configured backend can
/// serve: a GGUF file's header reads and names a model this engine runs.
pub const DOCTOR_CHECK: Check = Check {
    name: "llm_backend_reachable",
    run: llm_backends,
};

fn llm_backends(ctx: &DoctorContext) -> Outcome {
    let backends = &ctx.config.llm.backends;
    if backends.is_empty() {
        return Outcome::Pass(
            "no LLM backend configured: this node offers no llm.chat (neighbours' models serve its calls)".into(),
        );
    }
    let mut fine = Vec::new();
    for backend in backends {
        let problem = match (backend.kind, &backend.model_path) {
            (LlmBackendKind::Gguf, Some(path)) => {
                GgufModel::open(path).err().map(|e| e.to_string())
            }
            (LlmBackendKind::Gguf, None) => Some("no model_path".into()),
            (LlmBackendKind::OpenaiCompatible, _) => {
                Some("OpenAI-compatible servers are not served by this version yet".into())
            }
        };
        match problem {
            None => fine.push(format!("{} ({})", backend.name, backend.model)),
            Some(problem) => {
                return Outcome::Fail {
                    detail: format!("llm.backends {:?} cannot serve: {problem}", backend.name),
                    fix: "point model_path at a GGUF file of the llama family (README, \"Models\"), or remove the backend".into(),
                };
            }
        }
    }
    Outcome::Pass(format!("serving {}", fine.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_take_the_contract_defaults_and_refuse_what_is_out_of_range() {
        let options = Options::parse(&json!({})).unwrap();
        assert_eq!(options.max_tokens, DEFAULT_MAX_TOKENS);
        assert_eq!(options.sampling.temperature, DEFAULT_TEMPERATURE);
        assert_eq!(options.sampling.top_p, DEFAULT_TOP_P);
        assert_eq!(options.sampling.seed, None);
        let options =
            Options::parse(&json!({"max_tokens": 5, "temperature": 0, "seed": 7, "stop": ["\n"]}))
                .unwrap();
        assert_eq!((options.max_tokens, options.sampling.seed), (5, Some(7)));
        assert_eq!(options.stop, vec!["\n".to_owned()]);
        for bad in [
            json!({"max_tokens": 0}),
            json!({"max_tokens": MAX_TOKENS_LIMIT + 1}),
            json!({"temperature": 3}),
            json!({"top_p": 0}),
            json!({"seed": -1}),
            json!({"stop": [""]}),
            json!({"stop": vec!["x"; MAX_STOP_SEQUENCES + 1]}),
            json!({"stop": ["x".repeat(MAX_STOP_CHARS + 1)]}),
        ] {
            assert!(Options::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_conversation_needs_a_user_and_known_roles() {
        assert!(messages(&json!({"messages": [{"role": "user", "content": "hi"}]})).is_ok());
        for bad in [
            json!({}),
            json!({"messages": [{"role": "system", "content": "x"}]}),
            json!({"messages": [{"role": "tool", "content": "x"}, {"role": "user", "content": "y"}]}),
            json!({"messages": [{"role": "user"}]}),
        ] {
            assert!(messages(&bad).is_err(), "{bad}");
        }
    }
}
