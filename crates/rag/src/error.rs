//! The crate's failures, and the one place they become wire codes.

use std::path::PathBuf;

use hearthnet_base::ErrorCode;
use hearthnet_blobs::BlobError;
use hearthnet_bus::CallError;

use crate::extract::ExtractError;

#[derive(Debug, thiserror::Error)]
pub enum RagError {
    #[error("corpus `{0}` does not exist on this node")]
    UnknownCorpus(String),
    #[error("the personal corpus answers only to this node's own key")]
    Personal,
    #[error("the system corpus is read-only")]
    ReadOnly,
    #[error("this node already holds {0} corpora")]
    TooManyCorpora(usize),
    #[error("corpus `{corpus}` is full ({max} chunks)")]
    CorpusFull { corpus: String, max: usize },
    #[error("the document is {size} bytes; at most {max} are indexed")]
    DocumentTooLarge { size: u64, max: u64 },
    #[error("the document makes {chunks} chunks; at most {max} are indexed")]
    TooManyChunks { chunks: usize, max: usize },
    #[error("document {0}: {1}")]
    Blob(String, #[source] BlobError),
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error(
        "corpus `{corpus}` holds vectors of {have}; the embedding provider answered with {got}"
    )]
    ModelMismatch {
        corpus: String,
        have: String,
        got: String,
    },
    #[error("no embedding: {0}")]
    Embedding(CallError),
    #[error(
        "no node in reach offers embed.text with model `{model}`; corpus `{corpus}` keeps its vectors of `{serving}`"
    )]
    ModelNotServed {
        corpus: String,
        model: String,
        serving: String,
    },
    #[error("corpus `{0}` is being reindexed already; wait for that to finish")]
    ReindexRunning(String),
    #[error("corpus `{0}` holds no chunks yet: there is nothing to reindex")]
    NothingToReindex(String),
    #[error(
        "corpus `{corpus}`: {missing} chunk(s) have no new vector yet; the old ones stay in use"
    )]
    ReindexIncomplete { corpus: String, missing: usize },
    #[error("corpus {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a blocking task stopped: {0}")]
    Task(String),
}

impl RagError {
    /// The wire code (M05 §6).
    pub fn code(&self) -> ErrorCode {
        match self {
            RagError::UnknownCorpus(_) | RagError::ModelNotServed { .. } => ErrorCode::NotFound,
            RagError::Personal | RagError::ReadOnly => ErrorCode::Unauthorized,
            RagError::TooManyCorpora(_)
            | RagError::CorpusFull { .. }
            | RagError::ReindexRunning(_) => ErrorCode::CapacityExceeded,
            RagError::DocumentTooLarge { .. }
            | RagError::TooManyChunks { .. }
            | RagError::NothingToReindex(_) => ErrorCode::BadRequest,
            RagError::Blob(_, e) => e.code(),
            RagError::Extract(e) => e.code(),
            // No provider, or one that misbehaves: the bus's word for a
            // capability the community cannot serve now.
            RagError::Embedding(_) | RagError::ModelMismatch { .. } => ErrorCode::Partition,
            // Refused at the swap only if a reindex skipped a chunk: a bug.
            RagError::Db { .. }
            | RagError::CreateDir { .. }
            | RagError::Task(_)
            | RagError::ReindexIncomplete { .. } => ErrorCode::InternalError,
        }
    }
}

impl From<RagError> for CallError {
    fn from(e: RagError) -> Self {
        let code = e.code();
        let error = CallError::new(code, e.to_string());
        match (code, &e) {
            (ErrorCode::NotFound, _) => error.before_start(),
            // Minutes to hours: a hint to retry soon would mislead.
            (_, RagError::ReindexRunning(_)) => error,
            (ErrorCode::CapacityExceeded | ErrorCode::Partition, _) => error.retry_after(5_000),
            _ => error,
        }
    }
}
