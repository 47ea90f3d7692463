//! What a GGUF file says besides its weights: the architecture, the
//! tokenizer (vocabulary, merges, pre-tokenizer, special tokens), the chat
//! template and the end-of-turn tokens. Read once from the file's header,
//! so the tokenizer and the template are the model's own, whichever engine
//! runs the weights.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

/// Architectures whose weights the in-process engine runs.
const ARCHITECTURES: [&str; 1] = ["llama"];

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a GGUF file this engine reads: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Unsupported { path: PathBuf, message: String },
}

/// The header of a GGUF model, without its weights.
pub struct GgufModel {
    pub path: PathBuf,
    pub architecture: String,
    pub tokenizer: Tokenizer,
    /// The Jinja chat template, when the file carries one.
    pub chat_template: Option<String>,
    pub bos: Option<String>,
    pub eos: Option<String>,
    /// Tokens that end generation: the end-of-sequence token and
    /// end-of-turn markers such as `<|im_end|>` or `<|eot_id|>`.
    pub stop_ids: Vec<u32>,
    /// Tokens of context the model was trained for.
    pub context_length: usize,
}

impl GgufModel {
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let mut reader = BufReader::new(File::open(path).map_err(io)?);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| GgufError::Format {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::from_content(path, &content)
    }

    pub(crate) fn from_content(
        path: &Path,
        content: &gguf_file::Content,
    ) -> Result<Self, GgufError> {
        let meta = Metadata {
            path,
            values: &content.metadata,
        };
        let architecture = meta.string("general.architecture")?.to_owned();
        if !ARCHITECTURES.contains(&architecture.as_str()) {
            return Err(GgufError::Unsupported {
                path: path.to_owned(),
                message: format!(
                    "architecture {architecture:?}; the in-process engine runs {} (serve others through an OpenAI-compatible server)",
                    ARCHITECTURES.join(", ")
                ),
            });
        }
        let kind = meta.string("tokenizer.ggml.model")?;
        if kind != "gpt2" {
            return Err(GgufError::Unsupported {
                path: path.to_owned(),
                message: format!(
                    "tokenizer {kind:?}; byte-level BPE (\"gpt2\", as Llama 3, Qwen 2.5 and SmolLM use) is read here"
                ),
            });
        }
        let tokens = meta.strings("tokenizer.ggml.tokens")?;
        let types = match content.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => meta.u32s("tokenizer.ggml.token_type", v)?,
            None => Vec::new(),
        };
        let merges = meta
            .strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| meta.format(format!("the merge {m:?} is not two tokens")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pre = meta
            .optional_string("tokenizer.ggml.pre")
            .unwrap_or("default");
        let tokenizer =
            build_tokenizer(&tokens, &types, merges, pre).map_err(|e| meta.format(e))?;

        let token = |key: &str| {
            meta.optional_u32(key)
                .and_then(|id| tokens.get(id as usize).cloned())
        };
        let eos_id = meta.optional_u32("tokenizer.ggml.eos_token_id");
        let mut stop_ids: Vec<u32> = eos_id.into_iter().collect();
        stop_ids.extend(meta.optional_u32("tokenizer.ggml.eot_token_id"));
        for marker in [
            "<|im_end|>",
            "<|eot_id|>",
            "<|end_of_text|>",
            "<|endoftext|>",
        ] {
            if let Some(id) = tokenizer.token_to_id(marker) {
                stop_ids.push(id);
            }
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();
        let context_length = meta
            .optional_u32(&format!("{architecture}.context_length"))
            .map_or(2048, |n| n as usize);
        Ok(Self {
            path: path.to_owned(),
            chat_template: meta
                .optional_string("tokenizer.chat_template")
                .map(str::to_owned),
            bos: token("tokenizer.ggml.bos_token_id"),
            eos: token("tokenizer.ggml.eos_token_id"),
            architecture,
            tokenizer,
            stop_ids,
            context_length,
        })
    }
}

/// A byte-level BPE tokenizer as llama.cpp builds it for `pre`: the
/// pre-tokenizer decides how text is cut before merging (digits one by
/// one for SmolLM, at most three for Llama 3, …), so numbers tokenize as
/// the model was trained. Control and user-defined tokens (types 3 and 4)
/// are matched whole, never merged from pieces.
fn build_tokenizer(
    tokens: &[String],
    types: &[u32],
    merges: Vec<(String, String)>,
    pre: &str,
) -> Result<Tokenizer, String> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.clone(), id as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| format!("the vocabulary and merges do not make a tokenizer: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let split = |regex: &str| -> Result<PreTokenizerWrapper, String> {
        let split = Split::new(
            SplitPattern::Regex(regex.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| e.to_string())?;
        Ok(Sequence::new(vec![
            split.into(),
            ByteLevel::new(false, false, false).into(),
        ])
        .into())
    };
    let pre_tokenizer: PreTokenizerWrapper = match pre {
        "smollm" => Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])
        .into(),
        "llama3" | "llama-bpe" | "smaug-bpe" => split(LLAMA3)?,
        "qwen2" => split(QWEN2)?,
        _ => ByteLevel::new(false, true, true).into(),
    };
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .filter(|(_, kind)| matches!(kind, 3 | 4))
        .map(|(token, _)| AddedToken::from(token.clone(), true))
        .collect();
    tokenizer
        .add_special_tokens(specials)
        .map_err(|e| format!("the special tokens do not fit the vocabulary: {e}"))?;
    Ok(tokenizer)
}

struct Metadata<'a> {
    path: &'a Path,
    values: &'a HashMap<String, Value>,
}

impl Metadata<'_> {
    fn format(&self, message: impl Into<String>) -> GgufError {
        GgufError::Format {
            path: self.path.to_owned(),
            message: message.into(),
        }
    }

    fn get(&self, key: &str) -> Result<&Value, GgufError> {
        self.values
            .get(key)
            .ok_or_else(|| self.format(format!("no {key} in its metadata")))
    }

    fn string(&self, key: &str) -> Result<&str, GgufError> {
        self.get(key)?
            .to_string()
            .map(String::as_str)
            .map_err(|_| self.format(format!("{key} is not text")))
    }

    fn optional_string(&self, key: &str) -> Option<&str> {
        self.values.get(key)?.to_string().ok().map(String::as_str)
    }

    fn optional_u32(&self, key: &str) -> Option<u32> {
        self.values.get(key)?.to_u32().ok()
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, GgufError> {
        self.get(key)?
            .to_vec()
            .map_err(|_| self.format(format!("{key} is not a list")))?
            .iter()
            .map(|v| {
                v.to_string()
                    .cloned()
                    .map_err(|_| self.format(format!("{key} holds something other than text")))
            })
            .collect()
    }

    fn u32s(&self, key: &str, value: &Value) -> Result<Vec<u32>, GgufError> {
        value
            .to_vec()
            .map_err(|_| self.format(format!("{key} is not a list")))?
            .iter()
            .map(|v| match v {
                Value::I32(n) => {
                    u32::try_from(*n).map_err(|_| self.format(format!("{key} holds {n}")))
                }
                other => other
                    .to_u32()
                    .map_err(|_| self.format(format!("{key} holds something other than numbers"))),
            })
            .collect()
    }
}
