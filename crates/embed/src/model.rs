//! A sentence-transformers model directory: what it declares
//! ([`ModelDir::inspect`], cheap, no weights read) and the loaded model
//! ([`SentenceModel`]) that turns texts into vectors the way
//! sentence-transformers does for the same directory: its tokenizer with
//! truncation at the model's `max_seq_length`, the BERT encoder, the
//! pooling its `1_Pooling/config.json` names, and L2 normalisation when
//! `modules.json` lists a `Normalize` module.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Texts per forward pass: padding is to the longest of a batch, and the
/// texts are sorted by length first, so a batch wastes little on padding.
pub const BATCH: usize = 32;

/// Why a model directory cannot be used, naming the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "{path}: {source} (a sentence-transformers model directory is needed: config.json, tokenizer.json, model.safetensors)"
    )]
    Missing {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Unsupported { path: PathBuf, message: String },
    #[error("{path}: the weights do not load: {message}")]
    Weights { path: PathBuf, message: String },
}

/// Why texts could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("tokenizing: {0}")]
    Tokenizer(String),
    #[error("running the model: {0}")]
    Model(#[from] candle_core::Error),
    #[error("cancelled")]
    Cancelled,
}

/// How token states become one vector (sentence-transformers' Pooling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of the states of the real (unpadded) tokens.
    Mean,
    /// The state of the first token (`[CLS]`).
    Cls,
}

/// What a model directory declares, read without its weights.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub path: PathBuf,
    pub pooling: Pooling,
    pub normalize: bool,
    /// Tokens per text; longer texts are cut, as sentence-transformers does.
    pub max_tokens: usize,
    pub lowercase: bool,
    pub dim: usize,
    bert: BertConfig,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

/// `1_Pooling/config.json`: one mode must be set; the ones we do not run
/// are refused by name.
#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize, Default)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Missing {
        path: path.to_owned(),
        source,
    })
}

fn parse<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, LoadError> {
    serde_json::from_slice(&read(path)?).map_err(|e| LoadError::Invalid {
        path: path.to_owned(),
        message: format!("not the expected JSON: {e}"),
    })
}

fn unsupported(path: &Path, message: impl Into<String>) -> LoadError {
    LoadError::Unsupported {
        path: path.to_owned(),
        message: message.into(),
    }
}

impl ModelDir {
    /// Read what `path` declares; the weights and the tokenizer are only
    /// checked to be there. A plain Hugging Face BERT directory without
    /// `modules.json` is read as sentence-transformers reads it: mean
    /// pooling, no normalisation.
    pub fn inspect(path: &Path) -> Result<Self, LoadError> {
        let config_path = path.join("config.json");
        let raw: serde_json::Value = parse(&config_path)?;
        let model_type = raw.get("model_type").and_then(|v| v.as_str());
        if model_type != Some("bert") {
            return Err(unsupported(
                &config_path,
                format!(
                    "model_type is {}; only BERT-family models (\"bert\") run here",
                    model_type.map_or("missing".to_owned(), |t| format!("{t:?}"))
                ),
            ));
        }
        let bert: BertConfig = serde_json::from_value(raw).map_err(|e| LoadError::Invalid {
            path: config_path.clone(),
            message: format!("not a BERT configuration: {e}"),
        })?;
        for file in ["tokenizer.json", "model.safetensors"] {
            let file = path.join(file);
            std::fs::metadata(&file).map_err(|source| LoadError::Missing { path: file, source })?;
        }

        let (pooling, normalize) = modules(path)?;
        let st_path = path.join("sentence_bert_config.json");
        let st: SentenceBertConfig = if st_path.exists() {
            parse(&st_path)?
        } else {
            SentenceBertConfig::default()
        };
        let max_tokens = st
            .max_seq_length
            .unwrap_or(bert.max_position_embeddings)
            .min(bert.max_position_embeddings);
        Ok(Self {
            path: path.to_owned(),
            pooling,
            normalize,
            max_tokens,
            lowercase: st.do_lower_case,
            dim: bert.hidden_size,
            bert,
        })
    }

    /// Load the tokenizer and the weights (about the size of
    /// `model.safetensors` in memory).
    pub fn load(&self) -> Result<SentenceModel, LoadError> {
        let tokenizer_path = self.path.join("tokenizer.json");
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| LoadError::Invalid {
                path: tokenizer_path.clone(),
                message: format!("not a tokenizer: {e}"),
            })?;
        // The file's own truncation and padding (often a fixed 128) are
        // ignored by sentence-transformers, which cuts at max_seq_length
        // and pads to the longest text of a batch: so do we.
        let padding = tokenizer.get_padding().cloned().unwrap_or(PaddingParams {
            pad_id: self.bert.pad_token_id as u32,
            ..PaddingParams::default()
        });
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_to_multiple_of: None,
            ..padding
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: self.max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| LoadError::Invalid {
                path: tokenizer_path,
                message: format!("cannot truncate at {} tokens: {e}", self.max_tokens),
            })?;

        let weights_path = self.path.join("model.safetensors");
        let weights = |e: candle_core::Error| LoadError::Weights {
            path: weights_path.clone(),
            message: e.to_string(),
        };
        let vb =
            VarBuilder::from_buffered_safetensors(read(&weights_path)?, DType::F32, &Device::Cpu)
                .map_err(weights)?;
        let bert = BertModel::load(vb, &self.bert).map_err(weights)?;
        Ok(SentenceModel {
            dir: self.clone(),
            tokenizer,
            bert,
        })
    }
}

/// The pooling and whether a Normalize module follows, from `modules.json`.
fn modules(path: &Path) -> Result<(Pooling, bool), LoadError> {
    let modules_path = path.join("modules.json");
    if !modules_path.exists() {
        return Ok((Pooling::Mean, false));
    }
    let modules: Vec<Module> = parse(&modules_path)?;
    let mut pooling = None;
    let mut normalize = false;
    for (i, module) in modules.iter().enumerate() {
        let kind = module.kind.rsplit('.').next().unwrap_or_default();
        match (i, kind) {
            (0, "Transformer") => {}
            (1, "Pooling") => pooling = Some(pooling_of(&path.join(&module.path))?),
            (2, "Normalize") => normalize = true,
            _ => {
                return Err(unsupported(
                    &modules_path,
                    format!(
                        "module {i} is {}; only Transformer, Pooling and an optional Normalize, in that order, run here",
                        module.kind
                    ),
                ));
            }
        }
    }
    let pooling = pooling.ok_or_else(|| unsupported(&modules_path, "no Pooling module"))?;
    Ok((pooling, normalize))
}

fn pooling_of(dir: &Path) -> Result<Pooling, LoadError> {
    let path = dir.join("config.json");
    let config: PoolingConfig = parse(&path)?;
    let others = [
        ("pooling_mode_max_tokens", config.pooling_mode_max_tokens),
        (
            "pooling_mode_mean_sqrt_len_tokens",
            config.pooling_mode_mean_sqrt_len_tokens,
        ),
        (
            "pooling_mode_weightedmean_tokens",
            config.pooling_mode_weightedmean_tokens,
        ),
        ("pooling_mode_lasttoken", config.pooling_mode_lasttoken),
    ];
    if let Some((name, _)) = others.iter().find(|(_, on)| *on) {
        return Err(unsupported(
            &path,
            format!("{name} is not supported; mean or CLS pooling runs here"),
        ));
    }
    match (
        config.pooling_mode_mean_tokens,
        config.pooling_mode_cls_token,
    ) {
        (true, false) => Ok(Pooling::Mean),
        (false, true) => Ok(Pooling::Cls),
        _ => Err(unsupported(
            &path,
            "exactly one of pooling_mode_mean_tokens and pooling_mode_cls_token must be true",
        )),
    }
}

/// A loaded model: tokenizer and weights.
pub struct SentenceModel {
    dir: ModelDir,
    tokenizer: Tokenizer,
    bert: BertModel,
}

impl SentenceModel {
    pub fn dir(&self) -> &ModelDir {
        &self.dir
    }

    /// One vector per text, in order: the model's own pipeline, then
    /// (`normalize`) scaled to unit length. `cancelled` is asked between
    /// batches. Blocking: run it off the async runtime.
    pub fn embed(
        &self,
        texts: &[String],
        normalize: bool,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let prepared: Vec<String> = texts
            .iter()
            .map(|t| {
                if self.dir.lowercase {
                    t.to_lowercase()
                } else {
                    t.clone()
                }
            })
            .collect();
        // Longest first, so each batch pads to about its own length.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(prepared[i].len()));
        let mut out = vec![Vec::new(); texts.len()];
        for batch in order.chunks(BATCH) {
            if cancelled() {
                return Err(EmbedError::Cancelled);
            }
            let inputs: Vec<&str> = batch.iter().map(|&i| prepared[i].as_str()).collect();
            let vectors = self.embed_batch(&inputs, normalize)?;
            for (&i, vector) in batch.iter().zip(vectors) {
                out[i] = vector;
            }
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str], normalize: bool) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let flat = |get: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings
                .iter()
                .flat_map(|e| get(e).iter().copied())
                .collect()
        };
        let device = Device::Cpu;
        let ids = Tensor::from_vec(flat(&|e| e.get_ids()), (rows, width), &device)?;
        let types = Tensor::from_vec(flat(&|e| e.get_type_ids()), (rows, width), &device)?;
        let mask = Tensor::from_vec(flat(&|e| e.get_attention_mask()), (rows, width), &device)?;
        let states = self.bert.forward(&ids, &types, Some(&mask))?;
        let pooled = match self.dir.pooling {
            Pooling::Cls => states.i((.., 0))?,
            Pooling::Mean => {
                let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = states.broadcast_mul(&mask)?.sum(1)?;
                let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
                summed.broadcast_div(&counts)?
            }
        };
        let pooled = if self.dir.normalize || normalize {
            unit_length(&pooled)?
        } else {
            pooled
        };
        Ok(pooled.to_vec2::<f32>()?)
    }
}

/// Each row scaled to length 1 (a zero row stays zero), as
/// `torch.nn.functional.normalize` does.
fn unit_length(rows: &Tensor) -> candle_core::Result<Tensor> {
    let norms = rows.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    rows.broadcast_div(&norms)
}
