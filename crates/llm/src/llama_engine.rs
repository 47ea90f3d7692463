//! The in-process engine on llama.cpp (through `llama-cpp-2`, compiled
//! from the sources it vendors): ggml's CPU kernels run the GGUF file's
//! weights as they are. Only the weights: the prompt's tokens come from our
//! own tokenizer (`gguf.rs`) and sampling stays in `generate.rs`, so both
//! engines see the same tokens and follow the same rules.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use parking_lot::Mutex;

use crate::generate::{Decoder, Engine, GenerateError, PREFILL_CHUNK};
use crate::gguf::{GgufError, GgufModel};

pub struct LlamaEngine {
    backend: &'static LlamaBackend,
    model: LlamaModel,
    context: usize,
    threads: i32,
    /// llama.cpp may write to the model while it makes a context, so two
    /// generations starting at once take turns (llama-cpp-2 says so at
    /// `LlamaModel::new_context`).
    starting: Mutex<()>,
}

impl LlamaEngine {
    /// The weights of `path` (mapped, not copied) and what its header
    /// says; each generation computes on `threads` threads.
    pub fn load(path: &Path, threads: usize) -> Result<(Self, GgufModel), GgufError> {
        let header = GgufModel::open(path)?;
        let refused = |message: String| GgufError::Unsupported {
            path: path.to_owned(),
            message,
        };
        let backend = backend().map_err(|e| refused(format!("llama.cpp did not start: {e}")))?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| refused(format!("llama.cpp could not load the weights: {e}")))?;
        let engine = Self {
            backend,
            model,
            context: header.context_length,
            threads: i32::try_from(threads.max(1)).unwrap_or(i32::MAX),
            starting: Mutex::new(()),
        };
        Ok((engine, header))
    }
}

/// llama.cpp's process-wide state: started once (a second start is an
/// error), its log lines silenced (they would go to stderr).
fn backend() -> Result<&'static LlamaBackend, &'static str> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            backend.void_logs();
            Ok(backend)
        })
        .as_ref()
        .map_err(String::as_str)
}

/// Whether this CPU runs the llama.cpp compiled in. On x86-64 its kernels
/// are built for AVX2, FMA, F16C and BMI2 whatever machine builds them
/// (llama-cpp-sys-2 turns ggml's `GGML_NATIVE` off, and ggml then enables
/// that set), so on an older CPU they would stop the process with SIGILL;
/// there candle, which picks its kernels at run time, runs the model.
pub fn runs_here() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
            && std::arch::is_x86_feature_detected!("bmi2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        true
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> GenerateError {
    GenerateError::Engine(format!("llama.cpp {what}: {e}"))
}

impl Engine for LlamaEngine {
    fn start(&self, tokens: usize) -> Result<Box<dyn Decoder + '_>, GenerateError> {
        let n_ctx = u32::try_from(tokens.min(self.context).max(1))
            .ok()
            .and_then(NonZeroU32::new);
        // The generation loop feeds at most PREFILL_CHUNK tokens at once,
        // and llama.cpp takes at most n_batch per call.
        let batch = PREFILL_CHUNK as u32;
        let params = LlamaContextParams::default()
            .with_n_ctx(n_ctx)
            .with_n_batch(batch)
            .with_n_ubatch(batch)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let context = {
            let _turn = self.starting.lock();
            self.model.new_context(self.backend, params)
        }
        .map_err(|e| failed("made no context", e))?;
        Ok(Box::new(LlamaDecoder {
            context,
            batch: LlamaBatch::new(PREFILL_CHUNK, 1),
        }))
    }

    fn context_length(&self) -> usize {
        self.context
    }
}

struct LlamaDecoder<'a> {
    context: LlamaContext<'a>,
    batch: LlamaBatch<'static>,
}

impl Decoder for LlamaDecoder<'_> {
    fn feed(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>, GenerateError> {
        let Some(last) = tokens.len().checked_sub(1) else {
            return Err(failed("was fed", "no tokens"));
        };
        self.batch.clear();
        for (i, &token) in tokens.iter().enumerate() {
            let token = i32::try_from(token).map_err(|e| failed("was fed a token", e))?;
            let at = i32::try_from(position + i).map_err(|e| failed("was fed a position", e))?;
            // Logits only for the last token: the one whose successor is
            // sampled.
            self.batch
                .add(LlamaToken::new(token), at, &[0], i == last)
                .map_err(|e| failed("was fed", e))?;
        }
        self.context
            .decode(&mut self.batch)
            .map_err(|e| failed("failed to decode", e))?;
        Ok(self
            .context
            .get_logits_ith(self.batch.n_tokens() - 1)
            .to_vec())
    }
}
