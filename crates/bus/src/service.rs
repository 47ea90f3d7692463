//! The one trait every service implements, and what a handler receives.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;
use hearthnet_base::{ErrorCode, NodeId};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::descriptor::{CapabilityDescriptor, default_params_compatible};
use crate::version::Version;

/// One stream frame (Contract §5.3).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub event: String,
    pub data: Value,
}

/// A contract error raised by the bus or a handler (Contract §5.4).
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: Option<u64>,
    /// Further body fields: `alt_capabilities`, `alt_nodes`,
    /// `schema_hash_expected`.
    pub extra: Map<String, Value>,
    /// The provider never started on the call (it could not be reached,
    /// or refused it before running it): another provider may take it
    /// without running it twice. Not part of the wire body.
    pub not_started: bool,
}

impl CallError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
            extra: Map::new(),
            not_started: false,
        }
    }

    /// Mark as refused before the provider started (see `not_started`).
    pub fn before_start(mut self) -> Self {
        self.not_started = true;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn retry_after(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// The JSON body of §5.4 (also the data of an `error` frame).
    pub fn to_body(&self) -> Value {
        let mut body = self.extra.clone();
        body.insert("error".into(), json!(self.code));
        if !self.message.is_empty() {
            body.insert("message".into(), json!(self.message));
        }
        if let Some(ms) = self.retry_after_ms {
            body.insert("retry_after_ms".into(), json!(ms));
        }
        Value::Object(body)
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// What travels from a running call to whoever answers the caller.
#[derive(Debug)]
pub enum Item {
    Frame(Frame),
    /// Success: the response body (non-stream) or the `done` data.
    Done(Value),
    Failed(CallError),
}

/// Where a handler writes stream frames. Bounded (`STREAM_WINDOW_FRAMES`):
/// a slow reader makes `send` wait instead of piling frames up in memory.
#[derive(Clone)]
pub struct FrameSink {
    tx: mpsc::Sender<Item>,
    count: Arc<AtomicU64>,
}

/// The caller went away or the call was cancelled; stop working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

impl FrameSink {
    pub(crate) fn new(tx: mpsc::Sender<Item>, count: Arc<AtomicU64>) -> Self {
        Self { tx, count }
    }

    pub async fn send(&self, event: &str, data: Value) -> Result<(), Gone> {
        self.tx
            .send(Item::Frame(Frame {
                event: event.to_owned(),
                data,
            }))
            .await
            .map_err(|_| Gone)?;
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// One call, as a handler sees it.
pub struct Call {
    pub capability: String,
    /// The version the caller asked for.
    pub version: Version,
    pub params: Value,
    pub input: Value,
    pub caller: NodeId,
    pub trace_id: String,
    /// The caller wants frames (`Accept: text/event-stream`).
    pub stream: bool,
    pub frames: FrameSink,
    /// When the caller stops waiting (the bus enforces it; a handler that
    /// asks someone else passes on what is left).
    pub deadline: tokio::time::Instant,
    /// Cancelled when the caller leaves, the deadline passes or the node
    /// stops; blocking work should check it.
    pub cancel: CancellationToken,
}

/// Serves one call of a capability: the response body (non-stream) or the
/// data of the `done` frame (stream); frames go to `call.frames`.
pub type Handler = Arc<dyn Fn(Call) -> BoxFuture<'static, Result<Value, CallError>> + Send + Sync>;

/// One capability as its service declares it: what it is (the descriptor)
/// and what serves it. The bus dispatches on this pairing, so a service
/// never matches capability names itself.
pub struct Capability {
    pub descriptor: CapabilityDescriptor,
    pub(crate) handler: Handler,
    pub(crate) params_compatible: fn(&Value, &Value) -> bool,
}

impl Capability {
    /// `descriptor`, served by `handler` on `service` (typically an
    /// `async fn(self: Arc<Self>, call: Call)` method).
    pub fn new<S, F, Fut>(descriptor: CapabilityDescriptor, service: &Arc<S>, handler: F) -> Self
    where
        S: Send + Sync + 'static,
        F: Fn(Arc<S>, Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, CallError>> + Send + 'static,
    {
        let service = service.clone();
        Self {
            descriptor,
            handler: Arc::new(move |call| Box::pin(handler(service.clone(), call))),
            params_compatible: default_params_compatible,
        }
    }

    /// Replace the default `params_compatible` (M03 §5.5) for this
    /// capability: whether an offer with `offered` params can serve
    /// `requested` ones.
    pub fn params_compatible(mut self, check: fn(&Value, &Value) -> bool) -> Self {
        self.params_compatible = check;
        self
    }
}

/// A provider of capabilities. Every service of the node implements it and
/// is registered with one call, [`crate::Bus::register`].
pub trait Service: Send + Sync + 'static {
    /// Names the service in logs and errors, e.g. `"file"`.
    fn name(&self) -> &'static str;

    /// What this service offers, each capability declared once with its
    /// handler; asked once, at registration.
    fn capabilities(self: Arc<Self>) -> Vec<Capability>;
}
