//! M05, Contract §4.4–§4.6: retrieval over the community's documents.
//!
//! Owns the corpora: one SQLite file per corpus under the corpora
//! directory (`store`), documents read from the blob store by their CID,
//! turned into text (`extract`: plain text, Markdown, HTML, PDF with a
//! text layer), cut into overlapping chunks (`chunk`), indexed in FTS5 and
//! as vectors, and searched hybrid: BM25 and cosine, fused by Reciprocal
//! Rank Fusion (`fuse`). [`RagService`] offers `rag.query`, `rag.ingest`
//! (trusted members; announced by a `rag.document.ingested` event) and
//! `rag.list_corpora` on the bus, and to this node's own key
//! `rag.reindex`: a corpus's vectors made again, by another embedding
//! model or the same one, beside the ones in use, which keep answering
//! until the new ones cover every chunk.
//!
//! Architecture invariants: vectors come only through the bus
//! (`embed.text@1.0`, this node's or a neighbour's: `embedder`), never
//! from a model linked in; when no provider answers, a query falls back to
//! BM25 alone and says so (`meta.retrieval`). The `personal` corpus
//! answers only to this node's own key and is never announced; `system`
//! is read-only. Every input is bounded before work is done.

pub mod chunk;
pub mod embedder;
pub mod error;
pub mod extract;
pub mod fuse;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hearthnet_base::{Blake3Id, DeviceKey, ErrorCode, NodeId, Stability, TrustLevel};
use hearthnet_blobs::BlobStore;
use hearthnet_bus::{Bus, Call, CallError, Capability, CapabilityDescriptor, Service, Trust};
use hearthnet_events::EventLog;
use parking_lot::Mutex;
use serde_json::{Value, json};

pub use error::RagError;
use store::{Corpus, Filter, NewDocument};

pub const QUERY: &str = "rag.query";
pub const INGEST: &str = "rag.ingest";
pub const LIST_CORPORA: &str = "rag.list_corpora";
pub const REINDEX: &str = "rag.reindex";
pub const INGESTED_EVENT: &str = "rag.document.ingested";

/// Contract §4.4.
pub const DEFAULT_K: usize = 5;
pub const MAX_K: usize = 20;
/// M05 §4.2: `[a-z0-9-]+`, at most 64.
pub const MAX_CORPUS_NAME: usize = 64;
/// Only this node's own key may use it, and it is never announced.
pub const PERSONAL: &str = "personal";
/// Ships with HearthNet; never written through `rag.ingest`.
pub const SYSTEM: &str = "system";
pub const MAX_QUERY_CHARS: usize = 2048;
/// Query words given to FTS5.
pub const MAX_QUERY_WORDS: usize = 48;
/// Candidates each method hands to the fusion.
const CANDIDATES: usize = 50;
pub const MAX_CORPORA: usize = 256;
/// The largest document ingested, in bytes of the blob.
pub const MAX_DOC_BYTES: u64 = 32 * 1024 * 1024;
pub const MAX_DOC_CHUNKS: usize = 20_000;
pub const MAX_TITLE_CHARS: usize = 512;
pub const MAX_METADATA_BYTES: usize = 4096;
const MAX_HINT_CHARS: usize = 255;
const MAX_LANGUAGE_CHARS: usize = 35;
/// How long a query waits for its embedding before going on with BM25.
const QUERY_EMBED_BUDGET: Duration = Duration::from_secs(5);
/// The longest embedding model name we ask for or accept, in bytes.
pub const MAX_MODEL_NAME: usize = 256;
/// Chunks a reindex embeds and stores per transaction: a process killed
/// mid-way loses at most this much work.
const REINDEX_BATCH: usize = 256;

/// How a query ranks: the default fuses both; the single methods are for
/// callers that want to compare (and for our quality tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retrieval {
    Hybrid,
    Bm25,
    Vector,
}

impl Retrieval {
    fn name(self) -> &'static str {
        match self {
            Retrieval::Hybrid => "hybrid",
            Retrieval::Bm25 => "bm25",
            Retrieval::Vector => "vector",
        }
    }
}

/// The RAG service of one node.
pub struct RagService {
    corpora_dir: PathBuf,
    blobs: Arc<BlobStore>,
    log: EventLog,
    key: DeviceKey,
    /// To reach `embed.text` (weak: the bus owns this service).
    bus: Weak<Bus>,
    open: Mutex<HashMap<String, Arc<Corpus>>>,
    /// One ingest at a time: each is CPU-heavy (extraction, embedding) on
    /// a small machine, and it makes "already there?" and the insert one
    /// step, which idempotency needs. A reindex holds it for its last
    /// step, so no ingest is embedding with the old model when the
    /// corpus's model changes.
    ingesting: tokio::sync::Mutex<()>,
    /// The corpora being reindexed: one reindex per corpus at a time.
    reindexing: Mutex<HashSet<String>>,
}

/// Corpus `name` marked as being reindexed, until dropped.
struct Reindexing<'a> {
    running: &'a Mutex<HashSet<String>>,
    name: String,
}

impl Drop for Reindexing<'_> {
    fn drop(&mut self) {
        self.running.lock().remove(&self.name);
    }
}

/// How far a reindex is: chunks with a new vector, of all chunks.
#[derive(Debug, Clone, Copy)]
struct Progress {
    done: usize,
    total: usize,
}

fn corpus_name(params: &Value) -> Result<String, CallError> {
    let name = params
        .get("corpus")
        .and_then(Value::as_str)
        .ok_or_else(|| CallError::bad_request("params.corpus (a corpus name) is required"))?;
    let valid = !name.is_empty()
        && name.len() <= MAX_CORPUS_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(CallError::bad_request(format!(
            "params.corpus must be [a-z0-9-], 1 to {MAX_CORPUS_NAME} characters"
        )));
    }
    Ok(name.to_owned())
}

/// An optional string of `input`, at most `max` characters.
fn optional_str<'a>(input: &'a Value, key: &str, max: usize) -> Result<Option<&'a str>, CallError> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s)),
        Some(_) => Err(CallError::bad_request(format!(
            "input.{key} must be a string of at most {max} characters"
        ))),
    }
}

fn language(input: &Value) -> Result<Option<String>, CallError> {
    let Some(tag) = optional_str(input, "language", MAX_LANGUAGE_CHARS)? else {
        return Ok(None);
    };
    // BCP 47 in outline: a 2–3 letter language, then subtags.
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or_default();
    let valid = (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && parts
            .all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !valid {
        return Err(CallError::bad_request(
            "input.language must be a language tag such as \"de\" or \"en-GB\"",
        ));
    }
    Ok(Some(tag.to_ascii_lowercase()))
}

/// `input.embedding_model`: a model name as `embed.text` offers them.
fn model_name(input: &Value) -> Result<Option<String>, CallError> {
    let bad = || {
        CallError::bad_request(format!(
            "input.embedding_model must be a model name of 1 to {MAX_MODEL_NAME} bytes without control characters"
        ))
    };
    match optional_str(input, "embedding_model", MAX_MODEL_NAME).map_err(|_| bad())? {
        None => Ok(None),
        Some(m)
            if !m.is_empty() && m.len() <= MAX_MODEL_NAME && !m.chars().any(char::is_control) =>
        {
            Ok(Some(m.to_owned()))
        }
        Some(_) => Err(bad()),
    }
}

struct QueryRequest {
    corpus: String,
    query: String,
    k: usize,
    filter: Filter,
    include_text: bool,
    retrieval: Retrieval,
}

fn query_request(params: &Value, input: &Value) -> Result<QueryRequest, CallError> {
    let corpus = corpus_name(params)?;
    let query = optional_str(input, "query", MAX_QUERY_CHARS)?
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .ok_or_else(|| {
            CallError::bad_request(format!(
                "input.query must be text of 1 to {MAX_QUERY_CHARS} characters"
            ))
        })?
        .to_owned();
    let k = match input.get("k") {
        None | Some(Value::Null) => DEFAULT_K,
        Some(k) => k
            .as_u64()
            .filter(|k| (1..=MAX_K as u64).contains(k))
            .map(|k| k as usize)
            .ok_or_else(|| CallError::bad_request(format!("input.k must be 1 to {MAX_K}")))?,
    };
    let include_text = match input.get("include_text") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(CallError::bad_request(
                "input.include_text must be true or false",
            ));
        }
    };
    let retrieval = match optional_str(input, "retrieval", 16)? {
        None | Some("hybrid") => Retrieval::Hybrid,
        Some("bm25") => Retrieval::Bm25,
        Some("vector") => Retrieval::Vector,
        Some(_) => {
            return Err(CallError::bad_request(
                "input.retrieval must be \"hybrid\", \"bm25\" or \"vector\"",
            ));
        }
    };
    Ok(QueryRequest {
        corpus,
        query,
        k,
        filter: filter(input.get("filter"))?,
        include_text,
        retrieval,
    })
}

/// `input.filter`: the fields we know, each checked; anything else is
/// refused rather than silently ignored.
fn filter(value: Option<&Value>) -> Result<Filter, CallError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Filter::default());
    };
    let fields = value
        .as_object()
        .ok_or_else(|| CallError::bad_request("input.filter must be an object"))?;
    let mut filter = Filter::default();
    for (key, v) in fields {
        let year = || {
            v.as_i64()
                .filter(|y| (-9999..=9999).contains(y))
                .ok_or_else(|| CallError::bad_request(format!("input.filter.{key} must be a year")))
        };
        match key.as_str() {
            "language" => filter.language = language(value)?,
            "min_year" => filter.min_year = Some(year()?),
            "max_year" => filter.max_year = Some(year()?),
            other => {
                return Err(CallError::bad_request(format!(
                    "input.filter.{:.32}: unknown (language, min_year, max_year are known)",
                    other
                )));
            }
        }
    }
    Ok(filter)
}

struct IngestRequest {
    corpus: String,
    doc_cid: Blake3Id,
    title: Option<String>,
    language: String,
    metadata: Value,
    mime: Option<String>,
    filename: Option<String>,
}

fn ingest_request(params: &Value, input: &Value) -> Result<IngestRequest, CallError> {
    let corpus = corpus_name(params)?;
    let doc_cid = optional_str(input, "doc_cid", 80)?
        .and_then(|c| Blake3Id::parse(c).ok())
        .ok_or_else(|| {
            CallError::bad_request("input.doc_cid must be a CID (blake3:<64 hex digits>)")
        })?;
    let title = optional_str(input, "title", MAX_TITLE_CHARS)?.map(str::to_owned);
    let metadata = match input.get("metadata") {
        None | Some(Value::Null) => json!({}),
        Some(m @ Value::Object(_)) if m.to_string().len() <= MAX_METADATA_BYTES => m.clone(),
        Some(_) => {
            return Err(CallError::bad_request(format!(
                "input.metadata must be an object of at most {MAX_METADATA_BYTES} bytes"
            )));
        }
    };
    Ok(IngestRequest {
        corpus,
        doc_cid,
        title,
        // "und": undetermined (BCP 47).
        language: language(input)?.unwrap_or_else(|| "und".into()),
        metadata,
        mime: optional_str(input, "mime", MAX_HINT_CHARS)?.map(str::to_owned),
        filename: optional_str(input, "filename", MAX_HINT_CHARS)?.map(str::to_owned),
    })
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, RagError> + Send + 'static,
) -> Result<R, RagError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RagError::Task(e.to_string()))?
}

fn ms_since(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

impl RagService {
    /// The service over the corpora in `corpora_dir` (created on the first
    /// ingest), reading documents from `blobs`, announcing ingests in
    /// `log` signed by `key`, reaching `embed.text` through `bus`.
    pub fn new(
        corpora_dir: PathBuf,
        blobs: Arc<BlobStore>,
        log: EventLog,
        key: DeviceKey,
        bus: Weak<Bus>,
    ) -> Self {
        Self {
            corpora_dir,
            blobs,
            log,
            key,
            bus,
            open: Mutex::default(),
            ingesting: tokio::sync::Mutex::new(()),
            reindexing: Mutex::default(),
        }
    }

    fn bus(&self) -> Result<Arc<Bus>, CallError> {
        self.bus
            .upgrade()
            .ok_or_else(|| CallError::new(ErrorCode::Partition, "the node is shutting down"))
    }

    fn is_self(&self, caller: NodeId) -> bool {
        caller == self.key.node_id()
    }

    /// Whether `caller` may see corpus `name` at all.
    fn may_use(&self, name: &str, caller: NodeId) -> Result<(), RagError> {
        if name == PERSONAL && !self.is_self(caller) {
            return Err(RagError::Personal);
        }
        Ok(())
    }

    /// Corpus `name`, opened once and kept; created when `create`.
    async fn corpus(&self, name: &str, create: bool) -> Result<Arc<Corpus>, RagError> {
        if let Some(open) = self.open.lock().get(name) {
            return Ok(open.clone());
        }
        if create && self.corpus_names().len() >= MAX_CORPORA {
            return Err(RagError::TooManyCorpora(MAX_CORPORA));
        }
        let (dir, owned) = (self.corpora_dir.clone(), name.to_owned());
        let corpus = blocking(move || Corpus::open(&dir, &owned, create))
            .await?
            .ok_or_else(|| RagError::UnknownCorpus(name.to_owned()))?;
        Ok(self
            .open
            .lock()
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(corpus))
            .clone())
    }

    /// The corpora on disk, by name, at most [`MAX_CORPORA`].
    fn corpus_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.corpora_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let stem = name.strip_suffix(".sqlite")?;
                corpus_name(&json!({"corpus": stem})).ok()
            })
            .collect();
        names.sort();
        names.truncate(MAX_CORPORA);
        names
    }

    async fn query(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let started = Instant::now();
        let request = query_request(&call.params, &call.input)?;
        self.may_use(&request.corpus, call.caller)?;
        let corpus = self.corpus(&request.corpus, false).await?;
        let mut retrieval = request.retrieval;
        // The vectors as they are now: the query is embedded with their
        // model and ranked against them, whatever a reindex swaps in
        // meanwhile.
        let (vectors, model) = blocking({
            let corpus = corpus.clone();
            move || match retrieval {
                Retrieval::Bm25 => Ok((None, corpus.model()?.map(|(m, _)| m))),
                _ => {
                    let vectors = corpus.vectors()?;
                    let model = vectors.as_ref().map(|v| v.model.clone());
                    Ok((vectors, model))
                }
            }
        })
        .await?;
        let mut meta = json!({"corpus": request.corpus, "embedding_model": model});
        let mut query_vector = None;
        if retrieval != Retrieval::Bm25 {
            let embedded = match &model {
                None => Err(CallError::new(
                    ErrorCode::NotFound,
                    "the corpus holds no vectors yet",
                )),
                Some(name) => {
                    let deadline = call
                        .deadline
                        .min(tokio::time::Instant::now() + QUERY_EMBED_BUDGET);
                    let texts = [request.query.clone()];
                    match self.bus() {
                        Ok(bus) => embedder::embed(&bus, &texts, Some(name), deadline).await,
                        Err(e) => Err(e),
                    }
                }
            };
            match embedded {
                Ok(mut e) => query_vector = e.vectors.pop(),
                Err(e) if retrieval == Retrieval::Vector => {
                    return Err(RagError::Embedding(e).into());
                }
                Err(e) => {
                    tracing::info!(corpus = %request.corpus, error = %e, "rag.query falls back to BM25");
                    meta["embedding_error"] = json!(e.to_string());
                    retrieval = Retrieval::Bm25;
                }
            }
        }
        let fts = store::fts_query(&request.query, MAX_QUERY_WORDS);
        let (filter, k) = (request.filter, request.k);
        let ranked = blocking(move || {
            let lexical = match retrieval {
                Retrieval::Vector => Vec::new(),
                _ => corpus.bm25(&fts, &filter, CANDIDATES)?,
            };
            let semantic = match (&vectors, &query_vector) {
                (Some(vectors), Some(v)) if retrieval != Retrieval::Bm25 => {
                    corpus.nearest(vectors, v, &filter, CANDIDATES)?
                }
                _ => Vec::new(),
            };
            let lists: Vec<&[i64]> = match retrieval {
                // Vectors first: where each method puts a different chunk
                // on top, the one that read the whole question wins.
                Retrieval::Hybrid => vec![&semantic, &lexical],
                Retrieval::Bm25 => vec![&lexical],
                Retrieval::Vector => vec![&semantic],
            };
            let fused: Vec<(i64, f64)> = fuse::reciprocal_rank_fusion(&lists)
                .into_iter()
                .take(k)
                .collect();
            let ids: Vec<i64> = fused.iter().map(|(id, _)| *id).collect();
            let hits = corpus.hits(&ids)?;
            Ok(fused
                .into_iter()
                .zip(hits)
                .map(|((_, score), hit)| (score, hit))
                .collect::<Vec<_>>())
        })
        .await?;
        let chunks: Vec<Value> = ranked
            .into_iter()
            .enumerate()
            .map(|(i, (score, hit))| {
                let mut chunk = json!({
                    "rank": i + 1,
                    // Rounded: RRF's digits past the fourth say nothing.
                    "score": (score * 10_000.0).round() / 10_000.0,
                    "metadata": {
                        "doc_cid": hit.doc_cid,
                        "doc_title": hit.doc_title,
                        "page": hit.page,
                        "chunk_id": chunk::Chunk::id_of(hit.ord),
                    }
                });
                if request.include_text {
                    chunk["text"] = json!(hit.text);
                }
                chunk
            })
            .collect();
        meta["retrieval"] = json!(retrieval.name());
        meta["ms"] = json!(ms_since(started));
        Ok(json!({"output": {"chunks": chunks}, "meta": meta}))
    }

    async fn ingest(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let started = Instant::now();
        let request = ingest_request(&call.params, &call.input)?;
        if request.corpus == SYSTEM {
            return Err(RagError::ReadOnly.into());
        }
        self.may_use(&request.corpus, call.caller)?;
        let _one_at_a_time = self.ingesting.lock().await;
        let corpus = self.corpus(&request.corpus, true).await?;
        let cid = request.doc_cid.to_string();
        let existing = blocking({
            let (corpus, cid) = (corpus.clone(), cid.clone());
            move || corpus.document(&cid)
        })
        .await?;
        let record = match existing {
            Some(record) => record,
            None => self.index(&call, &request, &corpus).await?,
        };
        Ok(json!({
            "output": {
                "doc_cid": cid,
                "chunks_indexed": record.chunks,
                "tokens_indexed": record.tokens,
            },
            "meta": {
                "corpus": request.corpus,
                "ms": ms_since(started),
                "ingest_event_id": record.event_id,
                "embedding_model": record.model,
            }
        }))
    }

    /// Read, extract, chunk, embed and store a new document, then tell the
    /// community (never of a personal one).
    async fn index(
        &self,
        call: &Call,
        request: &IngestRequest,
        corpus: &Arc<Corpus>,
    ) -> Result<store::DocRecord, CallError> {
        let (blobs, cid) = (self.blobs.clone(), request.doc_cid);
        let (mime, filename) = (request.mime.clone(), request.filename.clone());
        let (extracted, chunks) = blocking(move || {
            let blob_error = |e| RagError::Blob(cid.to_string(), e);
            let manifest = blobs.manifest(&cid).map_err(blob_error)?;
            if manifest.size_bytes > MAX_DOC_BYTES {
                return Err(RagError::DocumentTooLarge {
                    size: manifest.size_bytes,
                    max: MAX_DOC_BYTES,
                });
            }
            let mut bytes = Vec::with_capacity(manifest.size_bytes as usize);
            for chunk in &manifest.chunks {
                bytes.extend(blobs.read_chunk(&chunk.cid).map_err(blob_error)?);
            }
            let hint = extract::Hint {
                mime: mime.as_deref(),
                filename: filename.as_deref(),
            };
            let extracted = extract::extract(bytes, hint)?;
            let chunks = chunk::chunk_pages(&extracted.pages);
            if chunks.len() > MAX_DOC_CHUNKS {
                return Err(RagError::TooManyChunks {
                    chunks: chunks.len(),
                    max: MAX_DOC_CHUNKS,
                });
            }
            Ok((extracted, chunks))
        })
        .await?;
        if call.cancel.is_cancelled() {
            return Err(CallError::new(ErrorCode::Timeout, "cancelled"));
        }
        let model = blocking({
            let corpus = corpus.clone();
            move || corpus.model()
        })
        .await?;
        let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
        let bus = self.bus()?;
        let embedded = embedder::embed(
            &bus,
            &texts,
            model.as_ref().map(|m| m.0.as_str()),
            call.deadline,
        )
        .await
        .map_err(RagError::Embedding)?;
        let title = request
            .title
            .clone()
            .or(extracted
                .title
                .map(|t| t.chars().take(MAX_TITLE_CHARS).collect()))
            .or(request.filename.clone())
            .unwrap_or_else(|| request.doc_cid.to_string());
        let mut record = blocking({
            let (corpus, cid, title) = (corpus.clone(), request.doc_cid.to_string(), title.clone());
            let (language, metadata, media) = (
                request.language.clone(),
                request.metadata.clone(),
                extracted.media,
            );
            move || {
                let doc = NewDocument {
                    doc_cid: &cid,
                    title: &title,
                    language: &language,
                    media: media.mime(),
                    metadata: &metadata,
                };
                corpus.insert(&doc, &chunks, &embedded.vectors, &embedded.model)
            }
        })
        .await?;
        if request.corpus != PERSONAL {
            let data = json!({
                "corpus": request.corpus,
                "doc_cid": request.doc_cid,
                "title": title,
                "language": request.language,
                "chunks": record.chunks,
            });
            match self.log.append_local(INGESTED_EVENT, data, &self.key).await {
                Ok(event) => {
                    let (corpus, cid, id) = (
                        corpus.clone(),
                        request.doc_cid.to_string(),
                        event.event_id.clone(),
                    );
                    blocking(move || corpus.set_event(&cid, &id)).await?;
                    record.event_id = Some(event.event_id);
                }
                // The document is indexed and answers queries; only the
                // announcement is missing.
                Err(e) => {
                    tracing::warn!(corpus = %request.corpus, error = %e, "cannot record rag.document.ingested")
                }
            }
        }
        Ok(record)
    }

    async fn list_corpora(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let started = Instant::now();
        let mut corpora = Vec::new();
        for name in self.corpus_names() {
            if self.may_use(&name, call.caller).is_err() {
                continue;
            }
            let corpus = self.corpus(&name, false).await?;
            let stats = blocking(move || corpus.stats()).await?;
            corpora.push(json!({
                "name": name,
                "docs": stats.docs,
                "chunks": stats.chunks,
                "size_bytes": stats.size_bytes,
                "language_majority": stats.language_majority,
            }));
        }
        Ok(json!({"output": {"corpora": corpora}, "meta": {"ms": ms_since(started)}}))
    }
}

impl RagService {
    /// Mark corpus `name` as being reindexed, or refuse if it is already.
    fn claim_reindex(&self, name: &str) -> Result<Reindexing<'_>, RagError> {
        if !self.reindexing.lock().insert(name.to_owned()) {
            return Err(RagError::ReindexRunning(name.to_owned()));
        }
        Ok(Reindexing {
            running: &self.reindexing,
            name: name.to_owned(),
        })
    }

    /// `rag.reindex`: new vectors for every chunk of a corpus, by
    /// `input.embedding_model` (default: the corpus's own model), built
    /// beside the ones in use and swapped in once complete. Streams
    /// `progress` frames `{done, total}`.
    async fn reindex(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let started = Instant::now();
        let name = corpus_name(&call.params)?;
        let requested = model_name(&call.input)?;
        let _running = self.claim_reindex(&name)?;
        let corpus = self.corpus(&name, false).await?;
        let (serving, _) = blocking({
            let corpus = corpus.clone();
            move || corpus.model()
        })
        .await?
        .ok_or_else(|| RagError::NothingToReindex(name.clone()))?;
        let model = requested.unwrap_or_else(|| serving.clone());
        let bus = self.bus()?;
        let mut progress = blocking({
            let (corpus, model) = (corpus.clone(), model.clone());
            move || {
                Ok(Progress {
                    done: corpus.reindexed(&model)?,
                    total: corpus.chunk_count()?,
                })
            }
        })
        .await?;
        report(&call, progress).await?;
        let mut pass = ReindexPass {
            call: &call,
            bus: &bus,
            corpus: &corpus,
            model: &model,
            serving: &serving,
            after: 0,
        };
        // Every chunk, and those ingested meanwhile (theirs come after),
        // while ingests go on.
        pass.run(&mut progress).await?;
        let swapped = {
            // What was ingested since, and the swap, with ingests held: none
            // is then embedding with the old model when the model changes.
            let _no_ingest = self.ingesting.lock().await;
            // From the first chunk again: a scan of what is done, cheap
            // beside embedding, and it also catches vectors dropped by a
            // late write of an abandoned reindex with another model.
            pass.after = 0;
            pass.run(&mut progress).await?;
            let (corpus, model) = (corpus.clone(), model.clone());
            blocking(move || corpus.reindex_swap(&model)).await?
        };
        // Loaded now, so that the next query does not wait for it.
        blocking({
            let corpus = corpus.clone();
            move || corpus.vectors().map(drop)
        })
        .await?;
        tracing::info!(corpus = %name, before = %swapped.model_before, after = %model, chunks = swapped.chunks, "reindexed");
        Ok(json!({
            "output": {
                "corpus": name,
                "model_before": swapped.model_before,
                "model_after": model,
                "dim": swapped.dim,
                "chunks": swapped.chunks,
            },
            "meta": {"ms": ms_since(started)}
        }))
    }
}

/// A `progress` frame. Waiting for a slow reader is fine here (the
/// frames are few, one per batch); a caller gone stops the reindex.
async fn report(call: &Call, progress: Progress) -> Result<(), CallError> {
    let data = json!({"done": progress.done, "total": progress.total});
    call.frames
        .send("progress", data)
        .await
        .map_err(|_| cancelled())
}

fn cancelled() -> CallError {
    CallError::new(
        ErrorCode::Timeout,
        "cancelled; the new vectors made so far are kept, and the next reindex with the same model resumes from them",
    )
}

/// Walks a corpus's chunks without a new vector, in id order, embedding
/// and storing them a batch at a time.
struct ReindexPass<'a> {
    call: &'a Call,
    bus: &'a Bus,
    corpus: &'a Arc<Corpus>,
    model: &'a str,
    /// The model the corpus uses now (for the error when `model` has no
    /// provider).
    serving: &'a str,
    /// The last chunk id handled.
    after: i64,
}

impl ReindexPass<'_> {
    /// Until no chunk after `after` lacks a new vector.
    async fn run(&mut self, progress: &mut Progress) -> Result<(), CallError> {
        loop {
            if self.call.cancel.is_cancelled() {
                return Err(cancelled());
            }
            let pending = blocking({
                let (corpus, model, after) =
                    (self.corpus.clone(), self.model.to_owned(), self.after);
                move || corpus.reindex_pending(&model, after, REINDEX_BATCH)
            })
            .await?;
            let Some(&(last, _)) = pending.last() else {
                return Ok(());
            };
            self.after = last;
            let (ids, texts): (Vec<i64>, Vec<String>) = pending.into_iter().unzip();
            let embedded = embedder::embed(self.bus, &texts, Some(self.model), self.call.deadline)
                .await
                .map_err(|e| match e.code {
                    ErrorCode::NotFound => RagError::ModelNotServed {
                        corpus: self.corpus.name.clone(),
                        model: self.model.to_owned(),
                        serving: self.serving.to_owned(),
                    },
                    _ => RagError::Embedding(e),
                })?;
            let stored = ids.len();
            progress.total = blocking({
                let (corpus, model) = (self.corpus.clone(), self.model.to_owned());
                let vectors: Vec<(i64, Vec<f32>)> = ids.into_iter().zip(embedded.vectors).collect();
                move || {
                    corpus.reindex_store(&model, &vectors)?;
                    corpus.chunk_count()
                }
            })
            .await?;
            progress.done += stored;
            report(self.call, *progress).await?;
        }
    }
}

/// `{"params": {"corpus": …}, "input": <input>}`.
fn corpus_call_schema(input: Value) -> Value {
    json!({
        "type": "object",
        "required": ["params", "input"],
        "properties": {
            "params": {
                "type": "object",
                "required": ["corpus"],
                "properties": {"corpus": {"type": "string", "maxLength": MAX_CORPUS_NAME}}
            },
            "input": input
        }
    })
}

impl Service for RagService {
    fn name(&self) -> &'static str {
        "rag"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        // Bounds that the contract answers with `bad_request` (k > 20)
        // are the handler's; the schema keeps only types and sizes.
        let query = CapabilityDescriptor {
            stability: Stability::Stable,
            request_schema: corpus_call_schema(json!({
                "type": "object",
                "required": ["query"],
                "properties": {
                    "query": {"type": "string", "maxLength": MAX_QUERY_CHARS},
                    "k": {"type": "integer"},
                    "filter": {"type": "object", "maxProperties": 8},
                    "include_text": {"type": "boolean"},
                    "retrieval": {"enum": ["hybrid", "bm25", "vector"]}
                }
            })),
            params: json!({"k_max": MAX_K}),
            ..CapabilityDescriptor::new(QUERY, json!({}))
        };
        let ingest = CapabilityDescriptor {
            stability: Stability::Stable,
            request_schema: corpus_call_schema(json!({
                "type": "object",
                "required": ["doc_cid"],
                "properties": {
                    "doc_cid": {"type": "string", "maxLength": 80},
                    "title": {"type": "string", "maxLength": MAX_TITLE_CHARS},
                    "language": {"type": "string", "maxLength": MAX_LANGUAGE_CHARS},
                    "metadata": {"type": "object"},
                    "mime": {"type": "string", "maxLength": MAX_HINT_CHARS},
                    "filename": {"type": "string", "maxLength": MAX_HINT_CHARS}
                }
            })),
            trust: Trust::Level(TrustLevel::Trusted),
            max_concurrent: 2,
            timeout: Duration::from_secs(300),
            mutating: true,
            ..CapabilityDescriptor::new(INGEST, json!({}))
        };
        let list = CapabilityDescriptor {
            stability: Stability::Stable,
            ..CapabilityDescriptor::new(LIST_CORPORA, json!({"type": "object"}))
        };
        // The node's own CLI only, never offered to peers: hours of CPU.
        // The bus's longest deadline; a reindex cut short resumes.
        let reindex = CapabilityDescriptor {
            stability: Stability::Beta,
            request_schema: corpus_call_schema(json!({
                "type": "object",
                "properties": {
                    "embedding_model": {"type": "string", "maxLength": MAX_MODEL_NAME}
                }
            })),
            stream_schema: Some(json!({"type": "object"})),
            trust: Trust::SelfOnly,
            max_concurrent: 2,
            timeout: Duration::from_secs(3600),
            ..CapabilityDescriptor::new(REINDEX, json!({}))
        };
        vec![
            Capability::new(query, &self, Self::query),
            Capability::new(ingest, &self, Self::ingest),
            Capability::new(list, &self, Self::list_corpora),
            Capability::new(reindex, &self, Self::reindex),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_names_are_bounded() {
        assert_eq!(
            corpus_name(&json!({"corpus": "niederrhein-2"})).unwrap(),
            "niederrhein-2"
        );
        for bad in [
            json!({}),
            json!({"corpus": ""}),
            json!({"corpus": "A"}),
            json!({"corpus": "../x"}),
            json!({"corpus": "x".repeat(65)}),
            json!({"corpus": 3}),
        ] {
            assert_eq!(
                corpus_name(&bad).unwrap_err().code,
                ErrorCode::BadRequest,
                "{bad}"
            );
        }
    }

    #[test]
    fn query_inputs_are_bounded() {
        let params = json!({"corpus": "c"});
        let ok = query_request(
            &params,
            &json!({"query": "water", "filter": {"language": "DE", "min_year": 2000}}),
        )
        .unwrap();
        assert_eq!(
            (ok.k, ok.include_text, ok.retrieval),
            (DEFAULT_K, true, Retrieval::Hybrid)
        );
        assert_eq!(
            ok.filter,
            Filter {
                language: Some("de".into()),
                min_year: Some(2000),
                max_year: None
            }
        );
        for bad in [
            json!({"query": "x", "k": 21}),
            json!({"query": "x", "k": 0}),
            json!({"query": "x", "k": "5"}),
            json!({"query": "  "}),
            json!({"query": "x".repeat(MAX_QUERY_CHARS + 1)}),
            json!({"query": "x", "filter": {"author": "me"}}),
            json!({"query": "x", "filter": {"min_year": "2000"}}),
            json!({"query": "x", "filter": {"language": "german!"}}),
            json!({"query": "x", "include_text": 1}),
            json!({"query": "x", "retrieval": "magic"}),
        ] {
            assert_eq!(
                query_request(&params, &bad).err().unwrap().code,
                ErrorCode::BadRequest,
                "{bad}"
            );
        }
    }

    #[test]
    fn ingest_inputs_are_bounded() {
        let params = json!({"corpus": "c"});
        let cid = Blake3Id::of(b"x").to_string();
        let ok = ingest_request(&params, &json!({"doc_cid": cid})).unwrap();
        assert_eq!(
            (ok.language.as_str(), ok.metadata.clone()),
            ("und", json!({}))
        );
        for bad in [
            json!({"doc_cid": "blake3:xyz"}),
            json!({"doc_cid": cid, "metadata": {"x": "y".repeat(MAX_METADATA_BYTES)}}),
            json!({"doc_cid": cid, "metadata": []}),
            json!({"doc_cid": cid, "title": "t".repeat(MAX_TITLE_CHARS + 1)}),
            json!({"doc_cid": cid, "mime": 7}),
        ] {
            assert_eq!(
                ingest_request(&params, &bad).err().unwrap().code,
                ErrorCode::BadRequest,
                "{bad}"
            );
        }
    }
}
