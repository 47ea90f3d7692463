//! The in-process engine on candle: a GGUF model of the llama family run
//! on the CPU with candle's quantized kernels (chosen at run time for the
//! CPU, so any build gets the fast ones).

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::Path;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};

use crate::generate::{Cancelled, Decoder, Engine, GenerateError};
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
        let weights = if needs_requantizing(&content) {
            let mut requantized = requantize(&content, &mut reader).map_err(format)?;
            let content = gguf_file::Content::read(&mut requantized).map_err(format)?;
            ModelWeights::from_gguf(content, &mut requantized, &Device::Cpu)
        } else {
            ModelWeights::from_gguf(content, &mut reader, &Device::Cpu)
        }
        .map_err(format)?;
        let context = header.context_length.min(MAX_SEQ_LEN);
        Ok((Self { weights, context }, header))
    }
}

/// Block formats whose candle kernels have no SIMD path (a scalar loop,
/// several times slower): such tensors are converted at load to Q8_0,
/// which has one, at the cost of about twice their memory.
const SLOW_FORMATS: [GgmlDType; 4] = [
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_1,
];

fn needs_requantizing(content: &gguf_file::Content) -> bool {
    content
        .tensor_infos
        .values()
        .any(|t| SLOW_FORMATS.contains(&t.ggml_dtype))
}

/// The model as an in-memory GGUF whose slow-format tensors are Q8_0.
fn requantize(
    content: &gguf_file::Content,
    reader: &mut BufReader<File>,
) -> candle_core::Result<Cursor<Vec<u8>>> {
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let tensor = content.tensor(reader, name, &Device::Cpu)?;
        let tensor = if SLOW_FORMATS.contains(&tensor.dtype()) {
            QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &tensors)?;
    out.set_position(0);
    Ok(out)
}

impl Engine for CandleEngine {
    fn start(&self, _tokens: usize) -> Result<Box<dyn Decoder + '_>, GenerateError> {
        // The weights are shared (reference-counted); the clone's KV cache
        // is its own, and grows as tokens are fed.
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
    /// A pass runs to its end: candle has no way to stop inside one.
    fn feed(
        &mut self,
        tokens: &[u32],
        position: usize,
        _: &Cancelled<'_>,
    ) -> Result<Option<Vec<f32>>, GenerateError> {
        let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
        let logits = self.model.forward(&input, position)?;
        Ok(Some(logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1()?))
    }
}
