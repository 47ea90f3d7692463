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

/// What a node needs to know of a GGUF file to offer it, read without
/// the vocabulary: a node with a model configured stays small until the
/// model is first used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufSummary {
    pub architecture: String,
    /// Tokens of context the model was trained for.
    pub context_length: usize,
}

/// Refuses an architecture the in-process engine does not run.
fn runnable(path: &Path, architecture: &str) -> Result<(), GgufError> {
    if ARCHITECTURES.contains(&architecture) {
        return Ok(());
    }
    Err(GgufError::Unsupported {
        path: path.to_owned(),
        message: format!(
            "architecture {architecture:?}; the in-process engine runs {} (serve others through an OpenAI-compatible server)",
            ARCHITECTURES.join(", ")
        ),
    })
}

/// Most metadata entries a header may hold; real files hold a few dozen.
const MAX_METADATA_ENTRIES: u64 = 100_000;
/// The longest key or kept string value.
const MAX_SUMMARY_STRING: u64 = 4096;

impl GgufSummary {
    /// Walk the header's metadata, keeping the architecture and the
    /// context length and skipping everything else (the vocabulary's
    /// arrays by seeking), so nothing large is ever allocated.
    pub fn read(path: &Path) -> Result<Self, GgufError> {
        use std::io::{Read, Seek, SeekFrom};
        let format = |message: String| GgufError::Format {
            path: path.to_owned(),
            message,
        };
        let io = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let mut r = BufReader::new(File::open(path).map_err(io)?);
        let word = |r: &mut BufReader<File>, n: usize| -> Result<u64, GgufError> {
            let mut b = [0u8; 8];
            r.read_exact(&mut b[..n])
                .map_err(|e| format(format!("the header ends early ({e})")))?;
            Ok(u64::from_le_bytes(b))
        };
        if word(&mut r, 4)? != u64::from(u32::from_le_bytes(*b"GGUF")) {
            return Err(format("it does not start with GGUF".into()));
        }
        let version = word(&mut r, 4)?;
        if !(2..=3).contains(&version) {
            return Err(format(format!("GGUF version {version} (2 and 3 are read)")));
        }
        let _tensors = word(&mut r, 8)?;
        let entries = word(&mut r, 8)?;
        if entries > MAX_METADATA_ENTRIES {
            return Err(format(format!("{entries} metadata entries")));
        }
        let string = |r: &mut BufReader<File>, keep: bool| -> Result<Option<String>, GgufError> {
            let len = word(r, 8)?;
            if !keep || len > MAX_SUMMARY_STRING {
                let skip =
                    i64::try_from(len).map_err(|_| format(format!("a string of {len} bytes")))?;
                r.seek(SeekFrom::Current(skip)).map_err(io)?;
                return Ok(None);
            }
            let mut bytes = vec![0u8; len as usize];
            r.read_exact(&mut bytes)
                .map_err(|e| format(format!("the header ends early ({e})")))?;
            Ok(String::from_utf8(bytes).ok())
        };
        // Value types of the GGUF spec: their sizes, 0 for strings (8)
        // and arrays (9).
        const SIZES: [u8; 13] = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8];
        let size_of = |kind: u64| {
            SIZES
                .get(kind as usize)
                .copied()
                .ok_or_else(|| format(format!("unknown value type {kind}")))
        };
        let (mut architecture, mut lengths) = (None, Vec::new());
        for _ in 0..entries {
            let key = string(&mut r, true)?.unwrap_or_default();
            let kind = word(&mut r, 4)?;
            match (kind, size_of(kind)?) {
                (8, _) => {
                    let value = string(&mut r, key == "general.architecture")?;
                    if key == "general.architecture" {
                        architecture = value;
                    }
                }
                (9, _) => {
                    let element = word(&mut r, 4)?;
                    let count = word(&mut r, 8)?;
                    match size_of(element)? {
                        0 if element == 8 => {
                            for _ in 0..count {
                                string(&mut r, false)?;
                            }
                        }
                        0 => return Err(format("an array of arrays".into())),
                        size => {
                            let skip = count
                                .checked_mul(u64::from(size))
                                .and_then(|n| i64::try_from(n).ok())
                                .ok_or_else(|| format(format!("an array of {count} values")))?;
                            r.seek(SeekFrom::Current(skip)).map_err(io)?;
                        }
                    }
                }
                (_, size) => {
                    let value = word(&mut r, usize::from(size))?;
                    if key.ends_with(".context_length") {
                        lengths.push((key, value));
                    }
                }
            }
        }
        let architecture =
            architecture.ok_or_else(|| format("general.architecture is missing".into()))?;
        runnable(path, &architecture)?;
        let own = format!("{architecture}.context_length");
        let context_length = lengths
            .into_iter()
            .find(|(k, _)| *k == own)
            .map_or(2048, |(_, n)| n as usize);
        Ok(Self {
            architecture,
            context_length,
        })
    }
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
        runnable(path, &architecture)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 header with `entries` (key, type, value bytes).
    fn header(entries: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(0u64.to_le_bytes());
        out.extend((entries.len() as u64).to_le_bytes());
        for (key, kind, value) in entries {
            out.extend((key.len() as u64).to_le_bytes());
            out.extend(key.as_bytes());
            out.extend(kind.to_le_bytes());
            out.extend(value);
        }
        out
    }

    fn text(s: &str) -> Vec<u8> {
        [
            (s.len() as u64).to_le_bytes().to_vec(),
            s.as_bytes().to_vec(),
        ]
        .concat()
    }

    fn summary_of(bytes: &[u8]) -> Result<GgufSummary, GgufError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        GgufSummary::read(file.path())
    }

    #[test]
    fn the_summary_skips_what_it_does_not_keep_and_refuses_what_is_malformed() {
        let vocab: Vec<u8> = [
            8u32.to_le_bytes().to_vec(),
            2u64.to_le_bytes().to_vec(),
            text("a"),
            text("bb"),
        ]
        .concat();
        let scores: Vec<u8> = [
            6u32.to_le_bytes().to_vec(),
            3u64.to_le_bytes().to_vec(),
            vec![0; 12],
        ]
        .concat();
        let good = header(&[
            ("tokenizer.ggml.tokens", 9, vocab.clone()),
            ("general.architecture", 8, text("llama")),
            ("tokenizer.ggml.scores", 9, scores),
            ("llama.context_length", 4, 8192u32.to_le_bytes().to_vec()),
            ("general.name", 8, text("x")),
        ]);
        assert_eq!(
            summary_of(&good).unwrap(),
            GgufSummary {
                architecture: "llama".into(),
                context_length: 8192
            }
        );
        let other = header(&[("general.architecture", 8, text("mamba"))]);
        assert!(matches!(
            summary_of(&other),
            Err(GgufError::Unsupported { .. })
        ));
        let huge_array = [4u32.to_le_bytes().to_vec(), u64::MAX.to_le_bytes().to_vec()].concat();
        for bad in [
            b"GGML".to_vec(),
            good[..good.len() - 3].to_vec(),
            header(&[("general.architecture", 13, vec![])]),
            header(&[("general.name", 8, text("no architecture"))]),
            header(&[("x", 9, huge_array)]),
        ] {
            assert!(
                matches!(summary_of(&bad), Err(GgufError::Format { .. })),
                "{bad:?}"
            );
        }
    }
}
