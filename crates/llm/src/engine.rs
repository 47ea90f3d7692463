//! Which engine runs a GGUF model: the one place that chooses. llama.cpp
//! when the build has it (feature `llama-cpp`, on by default) and the CPU
//! runs the kernels it was compiled for; candle otherwise (a pure-Rust
//! build, or an x86-64 CPU without AVX2). By measurement llama.cpp is the
//! faster (BENCHMARKS.md, "Generation engines").

use std::path::Path;

use crate::candle_engine::CandleEngine;
use crate::generate::Engine;
use crate::gguf::{GgufError, GgufModel};

/// The engine for the model at `path`, to run up to `concurrent`
/// generations at once, and what the file's header says.
pub fn load(path: &Path, concurrent: u32) -> Result<(Box<dyn Engine>, GgufModel), GgufError> {
    #[cfg(feature = "llama-cpp")]
    if crate::llama_engine::runs_here() {
        let (engine, model) = crate::llama_engine::LlamaEngine::load(path, threads(concurrent))?;
        return Ok((Box::new(engine), model));
    }
    // candle's generations share one thread pool per process (sized by
    // `RAYON_NUM_THREADS`), however many run at once.
    #[cfg(not(feature = "llama-cpp"))]
    let _ = concurrent;
    let (engine, model) = CandleEngine::load(path)?;
    Ok((Box::new(engine), model))
}

/// Threads per generation for llama.cpp: its share of the CPUs this
/// process may use, less one left to the rest of the node and the machine.
/// More threads than free CPUs is ruinous: ggml's threads wait for each
/// other after every operation, so one that is not running stalls the
/// token. Measured on 2 busy cores (load 10): a token took up to 5.7 s at
/// two threads, 70 ms at one (BENCHMARKS.md, "Generation engines").
#[cfg(feature = "llama-cpp")]
fn threads(concurrent: u32) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    (cpus.saturating_sub(1) / concurrent.max(1) as usize).max(1)
}
