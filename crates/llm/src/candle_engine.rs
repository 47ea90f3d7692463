//! The in-process engine on candle: a GGUF model of the llama family run
//! on the CPU with candle's quantized kernels (chosen at run time for the
//! CPU, so any build gets the fast ones).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};

use crate::generate::{Decoder, Engine, GenerateError};
use crate::gguf::{GgufError, GgufModel};

pub struct CandleEngine {
    weights: ModelWeights,
    context: usize,
}

impl CandleEngine {
    /// The weights of `path` and what its header says.
    pub fn load(path: &Path) -> Result<(Self, GgufModel), GgufError> {
        let io = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let format = |e: candle_core::Error| GgufError::Format {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let mut reader = BufReader::new(File::open(path).map_err(io)?);
        let content = gguf_file::Content::read(&mut reader).map_err(format)?;
        let header = GgufModel::from_content(path, &content)?;
        let weights =
            ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).map_err(format)?;
        let context = header.context_length.min(MAX_SEQ_LEN);
        Ok((Self { weights, context }, header))
    }
}

impl Engine for CandleEngine {
    fn start(&self) -> Result<Box<dyn Decoder>, GenerateError> {
        // The weights are shared (reference-counted); the clone's KV cache
        // is its own.
        let mut model = self.weights.clone();
        model.clear_kv_cache();
        Ok(Box::new(CandleDecoder { model }))
    }

    fn context_length(&self) -> usize {
        self.context
    }
}

struct CandleDecoder {
    model: ModelWeights,
}

impl Decoder for CandleDecoder {
    fn feed(&mut self, tokens: &[u32], position: usize) -> Result<Vec<f32>, GenerateError> {
        let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
        let logits = self.model.forward(&input, position)?;
        Ok(logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1()?)
    }
}
