//! The bus as its users see it: a call arrives as an [`InboundCall`] and
//! runs as a [`CallStream`]; [`Bus::call`] checks it, has it routed and
//! started; and the bus shows what it holds (entries, load, traces).
//!
//! The parts live in submodules: `registry` (what can be called and the
//! events when that changes), `route` (which provider serves a call),
//! `attempt` (running a call on a provider, with failover), `sticky`
//! (the provider each conversation stays with), all over `entry` (one
//! capability of one node).

mod attempt;
mod entry;
mod registry;
mod route;
mod sticky;
#[cfg(test)]
mod testing;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hearthnet_base::request::SessionId;
use hearthnet_base::{ErrorCode, NodeId, TrustLevel};
use hearthnet_observability::metrics::Metrics;
use hearthnet_wire::local::{CapabilityEntry, TraceRecord};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::descriptor::{CapabilityDescriptor, Trust};
use crate::service::{CallError, Item};
use crate::trace::TraceRing;
use crate::version::Version;
use entry::Entry;

pub use registry::{CapabilityKey, RegisterError, RegistryEvent};
pub use sticky::SESSION_IDLE;

/// Routing preferences (from `[bus]` in config.toml).
#[derive(Debug, Clone)]
pub struct BusSettings {
    pub prefer_local: bool,
    pub local_load_threshold: f64,
    pub default_timeout: Duration,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            prefer_local: true,
            local_load_threshold: 0.8,
            default_timeout: Duration::from_secs(
                hearthnet_base::constants::RPC_DEFAULT_TIMEOUT_SECONDS,
            ),
        }
    }
}

/// A capability call as it arrives from the transport, after the caller's
/// signature and membership were checked.
#[derive(Debug, Clone)]
pub struct InboundCall {
    pub capability: String,
    pub version: Version,
    /// `{"params": {...}, "input": {...}}`
    pub body: Value,
    pub caller: NodeId,
    pub caller_level: TrustLevel,
    pub trace_id: String,
    pub timeout: Option<Duration>,
    pub stream: bool,
    /// Only this node may serve it (e.g. the peer known to hold a blob).
    pub target: Option<NodeId>,
    /// The conversation this call continues: it goes to the provider of
    /// the session's last call while that one can serve it.
    pub session: Option<SessionId>,
}

impl InboundCall {
    /// `capability@version` with `body` (`{"params", "input"}`), by
    /// `caller` at `caller_level`: a fresh trace id, the capability's own
    /// deadline, no stream, any provider. Name the fields that differ.
    pub fn new(
        capability: &str,
        version: Version,
        body: Value,
        caller: NodeId,
        caller_level: TrustLevel,
    ) -> Self {
        Self {
            capability: capability.to_owned(),
            version,
            body,
            caller,
            caller_level,
            trace_id: ulid::Ulid::new().to_string(),
            timeout: None,
            stream: false,
            target: None,
            session: None,
        }
    }
}

/// A running call. Dropping it cancels the call: that is how a caller who
/// disconnects stops the provider.
pub struct CallStream {
    rx: mpsc::Receiver<Item>,
    streaming: bool,
    must_sign: bool,
    _cancel_on_drop: DropGuard,
}

impl CallStream {
    /// Whether the capability streams frames (and the caller asked for them).
    pub fn is_streaming(&self) -> bool {
        self.streaming
    }

    /// Whether a non-stream answer must be signed (Contract §5.2): the
    /// capability declares that it mutates, or the answer is relayed from
    /// a peer (whose declaration we do not hold).
    pub fn must_sign(&self) -> bool {
        self.must_sign
    }

    /// The next frame or the terminal outcome; `None` after the terminal one.
    pub async fn next(&mut self) -> Option<Item> {
        self.rx.recv().await
    }

    /// Wait for the terminal outcome, ignoring frames.
    pub async fn outcome(mut self) -> Result<Value, CallError> {
        while let Some(item) = self.rx.recv().await {
            match item {
                Item::Frame(_) => {}
                Item::Done(v) => return Ok(v),
                Item::Failed(e) => return Err(e),
            }
        }
        Err(CallError::new(
            ErrorCode::InternalError,
            "the call ended without an outcome",
        ))
    }
}

/// The capability bus of one node: shared by the transport, the services
/// and the node's own tasks, behind an `Arc`.
pub struct Bus {
    node_id: NodeId,
    settings: BusSettings,
    entries: RwLock<Vec<Arc<Entry>>>,
    /// Our own capabilities taken off the bus for now ([`Bus::withdraw`]).
    withdrawn: Mutex<Vec<Arc<Entry>>>,
    sessions: Mutex<sticky::Sessions>,
    changes: broadcast::Sender<RegistryEvent>,
    traces: Arc<TraceRing>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    in_flight_total: Arc<AtomicU32>,
}

impl Bus {
    pub fn new(node_id: NodeId, settings: BusSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            node_id,
            settings,
            entries: RwLock::new(Vec::new()),
            withdrawn: Mutex::new(Vec::new()),
            sessions: Mutex::new(sticky::Sessions::default()),
            changes: broadcast::channel(registry::REGISTRY_EVENT_BACKLOG).0,
            traces: Arc::new(TraceRing::default()),
            metrics,
            shutdown: CancellationToken::new(),
            in_flight_total: Arc::new(AtomicU32::new(0)),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Route, admit and start a call. Errors before the call starts come
    /// back here (→ an HTTP error status); afterwards they arrive as the
    /// stream's terminal item.
    pub fn call(&self, req: InboundCall) -> Result<CallStream, CallError> {
        if self.shutdown.is_cancelled() {
            return Err(shutting_down());
        }
        let empty = json!({});
        let part = |name| match req.body.get(name) {
            None => Some(&empty),
            Some(part) => part.is_object().then_some(part),
        };
        let (Some(params), Some(_)) = (part("params"), part("input")) else {
            return Err(CallError::bad_request(
                "the body must be {\"params\": {...}, \"input\": {...}}",
            ));
        };
        let (entry, permit, fallbacks) = self.route(&req, params)?;
        // A peer admits its own calls; we hold neither its trust rules nor
        // its schemas.
        if entry.node_id == self.node_id {
            entry.admit(&req, self.node_id)?;
        }
        // Checked against the schema as a whole; taken apart only now.
        let mut req = req;
        let mut take = |name| match req.body.get_mut(name) {
            Some(part) => part.take(),
            None => json!({}),
        };
        let (params, input) = (take("params"), take("input"));
        Ok(self.start(entry, permit, fallbacks, req, params, input))
    }

    /// End every call in flight with an `error` frame and refuse new ones.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Capabilities this node itself offers.
    pub fn capability_count(&self) -> usize {
        self.entries
            .read()
            .iter()
            .filter(|e| e.node_id == self.node_id)
            .count()
    }

    pub fn in_flight_total(&self) -> u32 {
        self.in_flight_total.load(Ordering::Relaxed)
    }

    pub fn recent_traces(&self, n: usize, capability: Option<&str>) -> Vec<TraceRecord> {
        self.traces.recent(n, capability)
    }

    /// Changes whenever a call is recorded in the traces.
    pub fn calls(&self) -> tokio::sync::watch::Receiver<u64> {
        self.traces.pushed()
    }

    /// Descriptors of the local capabilities, for the node manifest.
    pub fn local_descriptors(&self) -> Vec<CapabilityDescriptor> {
        self.entries
            .read()
            .iter()
            .filter(|e| e.node_id == self.node_id)
            .map(|e| e.descriptor.clone())
            .collect()
    }

    /// What peers may call here: the local capabilities not reserved to
    /// this node itself (for the node manifest and announcements).
    pub fn offered_descriptors(&self) -> Vec<CapabilityDescriptor> {
        self.local_descriptors()
            .into_iter()
            .filter(|d| d.trust != Trust::SelfOnly)
            .collect()
    }

    /// What `caps` shows: every entry still vouched for, ours and peers'.
    pub fn entries(&self) -> Vec<CapabilityEntry> {
        let now = Instant::now();
        self.entries
            .read()
            .iter()
            .filter(|e| e.is_fresh(now))
            .map(|e| {
                let (success_rate, p50_ms, quarantined) = {
                    let h = e.health.lock();
                    (h.success_rate(), h.p50_ms(), h.is_quarantined(now))
                };
                CapabilityEntry {
                    name: e.descriptor.name.clone(),
                    version: e.descriptor.version.to_string(),
                    stability: e.descriptor.stability,
                    node: e.node_id,
                    local: e.node_id == self.node_id,
                    params: e.descriptor.params.clone(),
                    schema_hash: e.schema_hash.clone(),
                    success_rate,
                    p50_ms,
                    in_flight: e.in_flight.load(Ordering::Relaxed),
                    max_concurrent: e.descriptor.max_concurrent,
                    quarantined,
                    streaming: e.descriptor.is_streaming(),
                }
            })
            .collect()
    }
}

/// What a call hears when the node stops, before or while it runs.
fn shutting_down() -> CallError {
    CallError::new(ErrorCode::Partition, "the node is shutting down").retry_after(1000)
}

#[cfg(test)]
mod tests {
    use super::testing::{bus_with, call};
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn trust_levels_gate_calls() {
        let (bus, _) = bus_with(1, Trust::Level(TrustLevel::Trusted));
        assert_eq!(
            bus.call(call(json!({}))).err().unwrap().code,
            ErrorCode::Unauthorized
        );
        let mut req = call(json!({}));
        req.caller_level = TrustLevel::Anchor;
        assert!(bus.call(req).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_breaks_the_schema_is_refused_naming_where() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let Err(err) = bus.call(call(json!({"mode": "dance"}))) else {
            panic!("a mode outside the enum was accepted");
        };
        assert_eq!(err.code, ErrorCode::SchemaMismatch);
        assert!(err.message.contains("`/input/mode`"), "{}", err.message);
        assert_eq!(
            err.extra["schema_hash_expected"],
            json!(bus.entries()[0].schema_hash)
        );
        let mut no_input = call(json!({}));
        no_input.body = json!({"params": {}});
        no_input.body.as_object_mut().map(|b| b.remove("input"));
        let err = bus.call(no_input).err().expect("refused");
        assert_eq!(err.code, ErrorCode::SchemaMismatch, "{}", err.message);
        assert!(err.message.contains("`/`"), "{}", err.message);
        // Refused before the handler ran: nothing traced, nothing in flight.
        assert!(bus.recent_traces(10, None).is_empty());
        assert_eq!(bus.in_flight_total(), 0);
        assert!(bus.call(call(json!({"mode": "ok"}))).is_ok());
    }
}
