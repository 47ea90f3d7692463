//! The crate's failures, and the one place they become wire codes (M06 §6).

use std::path::PathBuf;

use hearthnet_base::ErrorCode;
use hearthnet_bus::CallError;
use hearthnet_events::EventLogError;

#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    #[error("{0}")]
    BadInput(String),
    #[error("no post {0} is known on this node")]
    UnknownPost(String),
    #[error("post {post} was already expired by event {by}")]
    AlreadyExpired { post: String, by: String },
    #[error("{0}")]
    MayNotExpire(String),
    #[error(
        "this node already has {0} live posts, the most one author may have (every node's log refuses more); expire one first"
    )]
    TooManyPosts(usize),
    #[error("the event log refused the event: {0}")]
    Log(#[from] EventLogError),
    #[error("market index {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a blocking task stopped: {0}")]
    Task(String),
    #[error("the market index is still being built from the event log; try again shortly")]
    NotReady,
}

impl MarketError {
    pub fn code(&self) -> ErrorCode {
        match self {
            MarketError::BadInput(_) => ErrorCode::BadRequest,
            MarketError::UnknownPost(_) | MarketError::AlreadyExpired { .. } => ErrorCode::NotFound,
            MarketError::MayNotExpire(_) => ErrorCode::Unauthorized,
            MarketError::TooManyPosts(_) => ErrorCode::CapacityExceeded,
            MarketError::Log(e) => e.error_code(),
            MarketError::NotReady => ErrorCode::Partition,
            MarketError::Db { .. } | MarketError::Create { .. } | MarketError::Task(_) => {
                ErrorCode::InternalError
            }
        }
    }
}

impl From<MarketError> for CallError {
    fn from(e: MarketError) -> Self {
        let error = CallError::new(e.code(), e.to_string());
        match e {
            MarketError::NotReady => error.retry_after(1_000),
            _ => error,
        }
    }
}
