//! The in-process engine on llama.cpp (through `llama-cpp-sys-2`, which
//! compiles the sources it vendors): ggml's CPU kernels run the GGUF file's
//! weights as they are. Only the weights: the prompt's tokens come from our
//! own tokenizer (`gguf.rs`) and sampling stays in `generate.rs`, so both
//! engines see the same tokens and follow the same rules.
//!
//! The one module of the workspace with `unsafe`: llama.cpp's C API,
//! called directly because the safe wrapper (`llama-cpp-2`) does not let a
//! generation set llama.cpp's abort callback, and that callback is what
//! lets the whole prompt go in one forward pass (as fast as llama.cpp
//! reads it) while a cancel still stops it within milliseconds: ggml asks
//! it between the operations of a pass. Every pointer here is owned by one
//! of three types ([`Weights`], [`Context`], and a batch that borrows a
//! token slice for one call), each freed once, on drop.
#![allow(unsafe_code)]

use std::ffi::{CString, c_char, c_void};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::OnceLock;

use llama_cpp_sys_2 as sys;
use parking_lot::Mutex;

use crate::generate::{Cancelled, Decoder, Engine, GenerateError};
use crate::gguf::{GgufError, GgufModel};

/// Tokens llama.cpp computes at once inside one `llama_decode`; a longer
/// prompt goes in several such steps of the same call. A cancel waits for
/// the operation in flight, whose time grows in proportion to this (at
/// 128 a quarter of what it is at llama.cpp's default of 512), while each
/// step's fixed cost (about 8 ms on SmolLM2-135M) stays a small share of a
/// step's time (about 5.5 ms a token).
const MICRO_BATCH: u32 = 128;

pub struct LlamaEngine {
    weights: Weights,
    vocabulary: usize,
    context: usize,
    threads: i32,
    /// llama.cpp may write to the model while it makes a context, so two
    /// generations starting at once take turns.
    starting: Mutex<()>,
}

/// A model loaded by llama.cpp (its weights mapped from the file).
struct Weights(NonNull<sys::llama_model>);

// SAFETY: once loaded, llama.cpp only reads a model, from any thread,
// except while making a context, which `LlamaEngine::starting` serialises.
unsafe impl Send for Weights {}
// SAFETY: as for Send.
unsafe impl Sync for Weights {}

impl Drop for Weights {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `llama_model_load_from_file` and is
        // freed only here; every context made from it borrows the engine,
        // so all are freed before.
        unsafe { sys::llama_model_free(self.0.as_ptr()) }
    }
}

impl LlamaEngine {
    /// The weights of `path` (mapped, not copied) and what its header
    /// says; each generation computes on `threads` threads.
    pub fn load(path: &Path, threads: usize) -> Result<(Self, GgufModel), GgufError> {
        let header = GgufModel::open(path)?;
        let refused = |message: &str| GgufError::Unsupported {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        let c_path = path
            .to_str()
            .and_then(|p| CString::new(p).ok())
            .ok_or_else(|| refused("llama.cpp takes a path of UTF-8 without NUL bytes"))?;
        start_backend();
        // SAFETY: plain constructors of a parameter struct; the path is a
        // NUL-terminated string that outlives the call; a null result is
        // a refusal, handled below.
        let raw = unsafe {
            sys::llama_model_load_from_file(c_path.as_ptr(), sys::llama_model_default_params())
        };
        let weights = NonNull::new(raw)
            .map(Weights)
            .ok_or_else(|| refused("llama.cpp could not load the weights"))?;
        // SAFETY: the model is valid (just loaded); the vocabulary it
        // returns lives as long as the model.
        let vocabulary = unsafe {
            let vocab = sys::llama_model_get_vocab(weights.0.as_ptr());
            sys::llama_vocab_n_tokens(vocab)
        };
        let vocabulary = usize::try_from(vocabulary)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| refused("llama.cpp found no vocabulary"))?;
        let engine = Self {
            weights,
            vocabulary,
            context: header.context_length,
            threads: i32::try_from(threads.max(1)).unwrap_or(i32::MAX),
            starting: Mutex::new(()),
        };
        Ok((engine, header))
    }
}

/// llama.cpp's process-wide state, started once, its log lines silenced
/// (they would go to stderr).
fn start_backend() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        // SAFETY: called once per process (the OnceLock), before any model
        // is loaded; the log callback is a plain function that ignores its
        // arguments.
        unsafe {
            sys::llama_backend_init();
            sys::llama_log_set(Some(discard_log), std::ptr::null_mut());
        }
    });
}

unsafe extern "C" fn discard_log(
    _level: sys::ggml_log_level,
    _text: *const c_char,
    _: *mut c_void,
) {
}

/// ggml's abort callback: `data` points at the generation's
/// `&Cancelled` for the length of one `llama_decode`.
unsafe extern "C" fn abort_requested(data: *mut c_void) -> bool {
    // SAFETY: `Context::decode` passes a pointer to a `&Cancelled` that
    // lives on its stack for the whole call and clears the callback before
    // returning; `Cancelled` is Sync, so asking it from ggml's threads is
    // sound.
    let cancelled = unsafe { &*data.cast::<&Cancelled<'_>>() };
    cancelled()
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
            .map_err(|e| failed("was asked for a context", e))?;
        // SAFETY: a plain constructor of a parameter struct.
        let mut params = unsafe { sys::llama_context_default_params() };
        // The whole prompt in one call (it is shorter than the context).
        params.n_ctx = n_ctx;
        params.n_batch = n_ctx;
        params.n_ubatch = n_ctx.min(MICRO_BATCH);
        params.n_threads = self.threads;
        params.n_threads_batch = self.threads;
        let raw = {
            let _turn = self.starting.lock();
            // SAFETY: the model is valid for the engine's life, which the
            // returned decoder borrows; a null result is handled below.
            unsafe { sys::llama_init_from_model(self.weights.0.as_ptr(), params) }
        };
        let context =
            NonNull::new(raw).ok_or_else(|| failed("made no context", "out of memory?"))?;
        Ok(Box::new(LlamaDecoder {
            context: Context(context),
            vocabulary: self.vocabulary,
            fed: 0,
            _weights: &self.weights,
        }))
    }

    fn context_length(&self) -> usize {
        self.context
    }
}

/// One generation's llama.cpp context (its KV cache).
struct Context(NonNull<sys::llama_context>);

// SAFETY: a context is used by one thread at a time: it is owned by one
// decoder, and every call takes it by `&mut`.
unsafe impl Send for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `llama_init_from_model` and is freed
        // only here, before the model (the decoder borrows the engine).
        unsafe { sys::llama_free(self.0.as_ptr()) }
    }
}

struct LlamaDecoder<'a> {
    context: Context,
    vocabulary: usize,
    /// Tokens in the context so far: llama.cpp places each batch after
    /// them, so a caller's `position` must agree.
    fed: usize,
    _weights: &'a Weights,
}

impl Decoder for LlamaDecoder<'_> {
    /// ggml asks `cancelled` between the operations of the pass.
    fn feed(
        &mut self,
        tokens: &[u32],
        position: usize,
        cancelled: &Cancelled<'_>,
    ) -> Result<Option<Vec<f32>>, GenerateError> {
        if tokens.is_empty() {
            return Err(failed("was fed", "no tokens"));
        }
        if position != self.fed {
            return Err(failed(
                "was fed",
                format!("position {position} after {} tokens", self.fed),
            ));
        }
        let mut ids = tokens
            .iter()
            .map(|&t| i32::try_from(t))
            .collect::<Result<Vec<i32>, _>>()
            .map_err(|e| failed("was fed a token", e))?;
        let count = i32::try_from(ids.len()).map_err(|e| failed("was fed", e))?;
        let ctx = self.context.0.as_ptr();
        let check: &Cancelled<'_> = cancelled;
        let data = std::ptr::from_ref(&check).cast_mut().cast::<c_void>();
        // SAFETY: `ids` outlives the call (the batch only points at it,
        // positions and sequence follow the context, logits for the last
        // token only); the callback's data is `check`, on this stack frame,
        // and the callback is cleared before the frame ends.
        let status = unsafe {
            sys::llama_set_abort_callback(ctx, Some(abort_requested), data);
            let status = sys::llama_decode(ctx, sys::llama_batch_get_one(ids.as_mut_ptr(), count));
            sys::llama_set_abort_callback(ctx, None, std::ptr::null_mut());
            status
        };
        match status {
            0 => {}
            // Aborted by the callback: the generation ends here.
            2 => return Ok(None),
            1 => return Err(failed("has no room left in the context", status)),
            _ => return Err(failed("failed to decode, status", status)),
        }
        self.fed += tokens.len();
        // SAFETY: after a successful decode the last token's logits are a
        // row of `vocabulary` floats owned by the context, read before the
        // next call can change them; null is handled.
        let logits = unsafe { sys::llama_get_logits_ith(ctx, -1) };
        if logits.is_null() {
            return Err(failed("returned no logits", "null"));
        }
        // SAFETY: as above: `vocabulary` valid floats at `logits`.
        Ok(Some(
            unsafe { std::slice::from_raw_parts(logits, self.vocabulary) }.to_vec(),
        ))
    }

    /// The whole prompt in one pass: ggml asks `cancelled` between its
    /// operations, so a cancel stops it within one of them.
    fn prefill(
        &mut self,
        prompt: &[u32],
        cancelled: &Cancelled<'_>,
    ) -> Result<Option<Vec<f32>>, GenerateError> {
        if cancelled() {
            return Ok(None);
        }
        self.feed(prompt, 0, cancelled)
    }
}
