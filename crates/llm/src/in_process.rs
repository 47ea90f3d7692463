//! The in-process backend: a GGUF model whose header is read when the
//! backend is made (a file that cannot serve is never offered) and whose
//! weights load on the first call. Owns what the model itself decides:
//! the prompt laid out by its chat template and cut into tokens by its
//! tokenizer, and the generation loop run on a blocking thread that holds
//! the slot until it stops.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hearthnet_base::ErrorCode;
use hearthnet_bus::{CallError, LoadedOnFirstUse};
use hearthnet_config::LlmBackendKind;
use serde_json::{Map, Value, json};

use crate::engine;
use crate::generate::{Engine, Finished, GenerateError, Request, generate};
use crate::gguf::{GgufError, GgufModel, GgufSummary};
use crate::template::ChatTemplate;
use crate::{Backend, Job, Prompt, internal};

/// A GGUF model of the llama family, run on this machine's CPU.
pub struct InProcess {
    /// The name callers ask for, in error messages.
    name: String,
    path: PathBuf,
    context_length: usize,
    /// Generations that may run at once (the engine divides the CPUs).
    concurrent: u32,
    loaded: LoadedOnFirstUse<Loaded>,
}

struct Loaded {
    engine: Box<dyn Engine>,
    model: GgufModel,
    template: Option<ChatTemplate>,
}

/// A prompt ready for the loop: the model, and the prompt's tokens.
pub struct Tokens {
    loaded: Arc<Loaded>,
    tokens: Vec<u32>,
}

impl InProcess {
    /// The model `name` at `path`: a summary of its header is read now
    /// (a file of an architecture we do not run is refused, never
    /// offered), its tokenizer and weights on the first call, for at most
    /// `concurrent` generations at once.
    pub fn open(name: &str, path: &Path, concurrent: u32) -> Result<Self, GgufError> {
        let header = GgufSummary::read(path)?;
        Ok(Self {
            name: name.to_owned(),
            path: path.to_owned(),
            context_length: header.context_length,
            concurrent: concurrent.max(1),
            loaded: LoadedOnFirstUse::new(name),
        })
    }

    /// The weights, the tokenizer and the chat template, loaded by the
    /// first call.
    async fn loaded(&self) -> Result<Arc<Loaded>, CallError> {
        let (path, concurrent) = (self.path.clone(), self.concurrent);
        self.loaded
            .get(move || -> Result<Loaded, String> {
                let (engine, model) = engine::load(&path, concurrent).map_err(|e| e.to_string())?;
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
    }
}

impl Backend for InProcess {
    type Prepared = Tokens;

    fn kind(&self) -> LlmBackendKind {
        LlmBackendKind::Gguf
    }

    fn params(&self) -> Map<String, Value> {
        let mut params = Map::new();
        params.insert("ctx".into(), json!(self.context_length));
        params
    }

    fn requires_internet(&self) -> bool {
        false
    }

    fn timeout(&self) -> Duration {
        hearthnet_config::LLM_MAX_CALL_TIMEOUT
    }

    async fn prepare(&self, prompt: Prompt) -> Result<Tokens, CallError> {
        let loaded = self.loaded().await?;
        let text = match prompt {
            Prompt::Complete(text) => text,
            Prompt::Chat(messages) => {
                let template = loaded.template.as_ref().ok_or_else(|| {
                    CallError::new(
                        ErrorCode::NotImplemented,
                        format!(
                            "the model {} carries no chat template: use llm.complete",
                            self.name
                        ),
                    )
                })?;
                template
                    .render(&messages)
                    .map_err(|e| CallError::bad_request(e.to_string()))?
            }
        };
        let tokens = loaded
            .model
            .tokenizer
            .encode(text, false)
            .map_err(|e| internal(format!("tokenizing the prompt: {e}")))?
            .get_ids()
            .to_vec();
        Ok(Tokens { loaded, tokens })
    }

    async fn generate(&self, job: Job<Tokens>) -> Result<Finished, CallError> {
        let Job {
            prepared: Tokens { loaded, tokens },
            options,
            slot,
            stop,
            pieces,
        } = job;
        // The slot goes to the generating thread, so it is free only once
        // the generation has stopped, not when a caller who left is
        // forgotten.
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
        .await
        .map_err(|e| internal(format!("generation stopped: {e}")))?
        .map_err(|e| match e {
            GenerateError::PromptTooLong { .. } => CallError::bad_request(e.to_string()),
            e => internal(e.to_string()),
        })
    }
}
