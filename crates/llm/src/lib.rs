//! `llm.chat@1.0` and `llm.complete@1.0` (M04, Contract §4.1–§4.2), served
//! by one of two kinds of [`Backend`]: a GGUF model of the llama family run
//! in-process on the CPU ([`in_process`]), or an OpenAI-compatible server
//! such as llama.cpp server, Ollama, vLLM or LM Studio
//! ([`openai_compatible`]).
//!
//! The parts: [`gguf`] reads what the file says besides its weights (its
//! tokenizer, chat template and end-of-turn tokens); [`template`] renders
//! the chat template; [`generate`] is the generation loop, whichever
//! engine runs the weights (prompt in chunks, sampling, whole characters,
//! stop tokens and sequences, cancellation); [`engine`] chooses what runs
//! the weights in-process: `llama_engine` (llama.cpp, feature `llama-cpp`)
//! or [`candle_engine`] (pure Rust).
//! [`LlmService`] offers one model of one backend on the bus, the same way
//! for both kinds: the request's options are read once, at most
//! `max_concurrent` generations run and as many wait their turn, further
//! calls are refused by the bus with `capacity_exceeded`; a caller who
//! leaves stops its generation (within a forward pass, or by the server's
//! connection being closed); every generation is counted on `/metrics` by
//! model.

pub mod candle_engine;
pub mod engine;
pub mod generate;
pub mod gguf;
pub mod in_process;
#[cfg(feature = "llama-cpp")]
pub mod llama_engine;
pub mod openai_compatible;
pub mod template;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearthnet_base::{ErrorCode, Stability};
use hearthnet_bus::{Call, CallError, Capability, CapabilityDescriptor, Service};
use hearthnet_config::{LlmBackendConfig, LlmBackendKind};
use hearthnet_observability::doctor::{Check, DoctorContext, Outcome};
use hearthnet_observability::metrics::{Generation, LlmLabels, Metrics};
use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::generate::{Finished, Sampling};
use crate::gguf::GgufModel;
use crate::template::Message;

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

/// What a caller asked the model for.
pub enum Prompt {
    /// `llm.chat`: the conversation, laid out by whoever runs the model.
    Chat(Vec<Message>),
    /// `llm.complete`: the text to continue, as it is.
    Complete(String),
}

/// One generation handed to a backend once a slot is free.
pub struct Job<P> {
    pub prepared: P,
    pub options: Options,
    /// Held for as long as the generation runs: dropping it frees the
    /// slot for the next caller.
    pub slot: OwnedSemaphorePermit,
    /// Cancelled when nobody listens any more: stop generating.
    pub stop: CancellationToken,
    /// The answer's text as it becomes final, stop sequences cut.
    pub pieces: mpsc::Sender<String>,
}

/// What runs the model behind an [`LlmService`].
pub trait Backend: Send + Sync + 'static {
    /// What a request becomes before it waits for a slot (work that
    /// needs no slot, and refusals that should not wait for one).
    type Prepared: Send + 'static;

    fn kind(&self) -> LlmBackendKind;
    /// The descriptor's params besides `model`, `models`, `backend` and
    /// `requires_internet` (e.g. the context length, when known).
    fn params(&self) -> Map<String, Value>;
    fn requires_internet(&self) -> bool;
    /// The descriptor's deadline.
    fn timeout(&self) -> Duration;
    fn prepare(
        &self,
        prompt: Prompt,
    ) -> impl Future<Output = Result<Self::Prepared, CallError>> + Send;
    /// Generate, sending the text to `job.pieces` as it becomes final.
    fn generate(
        &self,
        job: Job<Self::Prepared>,
    ) -> impl Future<Output = Result<Finished, CallError>> + Send;
}

/// One model of one backend, offered as `llm.chat` and `llm.complete`.
pub struct LlmService<B> {
    /// The name callers ask for in `params.model`.
    name: String,
    backend: B,
    running: Arc<Semaphore>,
    slots: u32,
    metrics: Arc<Metrics>,
    labels: LlmLabels,
}

impl<B: Backend> LlmService<B> {
    /// Offer `backend` as the model `name`, running at most
    /// `max_concurrent` generations at once.
    pub fn new(name: &str, backend: B, max_concurrent: u32, metrics: Arc<Metrics>) -> Self {
        let slots = max_concurrent.max(1);
        Self {
            name: name.to_owned(),
            labels: LlmLabels {
                model: name.to_owned(),
                backend: backend.kind().as_str().to_owned(),
            },
            backend,
            running: Arc::new(Semaphore::new(slots as usize)),
            slots,
            metrics,
        }
    }

    async fn chat(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let messages = messages(&call.input)?;
        let (finished, ms) = self.run(&call, Prompt::Chat(messages)).await?;
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
        let (finished, ms) = self.run(&call, Prompt::Complete(prompt)).await?;
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

    /// Prepare, wait for a slot, then generate, streaming `token` frames
    /// when the caller asked for a stream, and count the generation.
    async fn run(&self, call: &Call, prompt: Prompt) -> Result<(Finished, u64), CallError> {
        let arrived = Instant::now();
        let options = Options::parse(&call.input)?;
        let prepared = self.backend.prepare(prompt).await?;
        let slot = tokio::select! {
            slot = self.running.clone().acquire_owned() => slot.map_err(|_| internal("the model is shutting down".into()))?,
            () = call.cancel.cancelled() => return Err(CallError::new(ErrorCode::Timeout, "cancelled while waiting for the model")),
        };
        let stop = call.cancel.child_token();
        let (pieces, mut arriving) = mpsc::channel::<String>(64);
        let job = Job {
            prepared,
            options,
            slot,
            stop: stop.clone(),
            pieces,
        };
        let mut first_text = None;
        // The backend drops its sender when it is done, which ends the
        // forwarding.
        let forward = async {
            while let Some(piece) = arriving.recv().await {
                first_text.get_or_insert_with(Instant::now);
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
        };
        let (finished, ()) = tokio::join!(self.backend.generate(job), forward);
        let finished = finished?;
        self.count(&finished, arrived, first_text);
        Ok((finished, arrived.elapsed().as_millis() as u64))
    }

    /// `/metrics`: tokens both ways, the wait for the first text, and the
    /// rate of the tokens after it.
    fn count(&self, finished: &Finished, arrived: Instant, first_text: Option<Instant>) {
        let tokens_per_second = first_text
            .filter(|_| finished.tokens_out > 1)
            .map(|first| (finished.tokens_out - 1) as f64 / first.elapsed().as_secs_f64())
            .filter(|rate| rate.is_finite());
        self.metrics.record_generation(
            &self.labels,
            &Generation {
                tokens_in: finished.tokens_in as u64,
                tokens_out: finished.tokens_out as u64,
                time_to_first_token: first_text.map(|first| first - arrived),
                tokens_per_second,
            },
        );
    }

    fn descriptor(&self, name: &str, input: Value) -> CapabilityDescriptor {
        let mut params = self.backend.params();
        params.insert("model".into(), json!(self.name));
        params.insert("models".into(), json!([self.name]));
        params.insert("backend".into(), json!(self.backend.kind().as_str()));
        params.insert(
            "requires_internet".into(),
            json!(self.backend.requires_internet()),
        );
        CapabilityDescriptor {
            stability: Stability::Stable,
            params: Value::Object(params),
            stream_schema: Some(json!({
                "type": "object",
                "properties": {"text": {"type": "string"}}
            })),
            max_concurrent: self.slots * (1 + WAITING_PER_SLOT),
            idempotent: false,
            timeout: self.backend.timeout(),
            needs_internet: self.backend.requires_internet(),
            ..CapabilityDescriptor::new(name, input)
        }
    }
}

fn internal(message: String) -> CallError {
    CallError::new(ErrorCode::InternalError, message)
}

/// The sampling settings and limits of a request (Contract §4.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub max_tokens: usize,
    pub sampling: Sampling,
    pub stop: Vec<String>,
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

impl<B: Backend> Service for LlmService<B> {
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

/// Why a configured backend is not offered.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("its model file cannot serve: {0}")]
    Gguf(#[from] gguf::GgufError),
    #[error("kind = \"gguf\" needs a model_path")]
    NoModelPath,
    #[error(transparent)]
    Server(#[from] openai_compatible::SetupError),
}

/// The service offering the model `config` describes, of either kind.
pub fn offer(
    config: &LlmBackendConfig,
    metrics: Arc<Metrics>,
) -> Result<Arc<dyn Service>, OfferError> {
    let (model, slots) = (config.model.as_str(), config.max_concurrent);
    Ok(match config.kind {
        LlmBackendKind::Gguf => {
            let path = config
                .model_path
                .as_deref()
                .ok_or(OfferError::NoModelPath)?;
            let backend = in_process::InProcess::open(model, path, slots)?;
            Arc::new(LlmService::new(model, backend, slots, metrics))
        }
        LlmBackendKind::OpenaiCompatible => {
            let backend = openai_compatible::OpenAiCompatible::new(config)?;
            Arc::new(LlmService::new(model, backend, slots, metrics))
        }
    })
}

/// `doctor`'s `llm_backend_reachable`: every configured backend can
/// serve: a GGUF file's header reads and names a model this engine runs;
/// an OpenAI-compatible server answers `GET {base_url}/models` within
/// 3 s and lists the model.
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
        let checked = match backend.kind {
            LlmBackendKind::Gguf => match &backend.model_path {
                Some(path) => GgufModel::open(path)
                    .map(|_| backend.model.clone())
                    .map_err(|e| e.to_string()),
                None => Err("no model_path".into()),
            }
            .map_err(|problem| {
                (problem, "point model_path at a GGUF file of the llama family (README, \"Models\"), or remove the backend".to_owned())
            }),
            LlmBackendKind::OpenaiCompatible => openai_compatible::check(backend),
        };
        match checked {
            Ok(what) => {
                let internet = if backend.requires_internet() {
                    ", needs the internet"
                } else {
                    ""
                };
                fine.push(format!("{} ({what}{internet})", backend.name));
            }
            Err((problem, fix)) => {
                return Outcome::Fail {
                    detail: format!("llm.backends {:?} cannot serve: {problem}", backend.name),
                    fix,
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
