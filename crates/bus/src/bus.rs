//! The bus itself: the registry of entries, routing, admission (trust,
//! capacity), execution with deadline and cancellation, and the record of
//! every call (health, metrics, trace ring).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hearthnet_base::constants::STREAM_WINDOW_FRAMES;
use hearthnet_base::{ErrorCode, NodeId, Timestamp, TrustLevel};
use hearthnet_observability::metrics::Metrics;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::descriptor::{CapabilityDescriptor, DescriptorError, Trust};
use crate::health::Health;
use crate::service::{Call, CallError, Capability, FrameSink, Handler, Item, Service};
use crate::trace::{TraceRecord, TraceRing};
use crate::version::Version;
use hearthnet_identity::CapabilitySpec;

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

struct Entry {
    node_id: NodeId,
    descriptor: CapabilityDescriptor,
    /// Ours, or as the offering peer's manifest states it.
    schema_hash: String,
    handler: Handler,
    params_compatible: fn(&Value, &Value) -> bool,
    /// For our own entries: the request schema, checked before the
    /// handler runs. A peer checks its own.
    request_schema: Option<jsonschema::Validator>,
    permits: Arc<Semaphore>,
    in_flight: AtomicU32,
    health: Mutex<Health>,
    /// For a peer's entry: until when its manifest vouches for it.
    valid_until: Mutex<Option<Instant>>,
}

impl Entry {
    fn local(
        node_id: NodeId,
        capability: Capability,
        request_schema: jsonschema::Validator,
    ) -> Arc<Self> {
        let hash = capability.descriptor.schema_hash().to_string();
        Self::new(
            node_id,
            capability.descriptor,
            hash,
            capability.handler,
            capability.params_compatible,
            Some(request_schema),
            None,
        )
    }

    fn new(
        node_id: NodeId,
        descriptor: CapabilityDescriptor,
        schema_hash: String,
        handler: Handler,
        params_compatible: fn(&Value, &Value) -> bool,
        request_schema: Option<jsonschema::Validator>,
        valid_until: Option<Instant>,
    ) -> Arc<Self> {
        Arc::new(Self {
            node_id,
            permits: Arc::new(Semaphore::new(descriptor.max_concurrent as usize)),
            descriptor,
            schema_hash,
            handler,
            params_compatible,
            request_schema,
            in_flight: AtomicU32::new(0),
            health: Mutex::new(Health::default()),
            valid_until: Mutex::new(valid_until),
        })
    }

    fn is_fresh(&self, now: Instant) -> bool {
        self.valid_until.lock().is_none_or(|until| now < until)
    }

    fn is_quarantined(&self, now: Instant) -> bool {
        self.health.lock().is_quarantined(now)
    }

    /// Contract §5.4: a body that breaks the request schema is refused
    /// with `schema_mismatch`, naming where, before any work is done.
    fn check_request(&self, body: &Value) -> Result<(), CallError> {
        let Some(schema) = &self.request_schema else {
            return Ok(());
        };
        let Err(e) = schema.validate(body) else {
            return Ok(());
        };
        let at = e.instance_path().to_string();
        let at = if at.is_empty() { "/".to_owned() } else { at };
        Err(CallError::new(
            ErrorCode::SchemaMismatch,
            format!(
                "the request does not match the schema of {}@{} at `{at}`: {e}",
                self.descriptor.name, self.descriptor.version
            ),
        )
        .with("schema_hash_expected", json!(self.schema_hash)))
    }

    fn key(&self) -> CapabilityKey {
        CapabilityKey {
            name: self.descriptor.name.clone(),
            version: self.descriptor.version.to_string(),
            node: self.node_id,
        }
    }

    fn load(&self) -> f64 {
        f64::from(self.in_flight.load(Ordering::Relaxed))
            / f64::from(self.descriptor.max_concurrent.max(1))
    }

    /// M03 §5.4: lower is better.
    fn score(&self, is_local: bool) -> f64 {
        let (p50, success) = {
            let h = self.health.lock();
            (h.p50_ms(), h.success_rate())
        };
        let latency = if p50 > 0.0 { p50 } else { 500.0 };
        let bonus = if is_local { -50.0 } else { 0.0 };
        latency * (1.0 + self.load()) + (1.0 - success) * 1000.0 + bonus
    }
}

/// The chosen entry, its capacity permit, and the fallbacks best first.
type Routed = (Arc<Entry>, OwnedSemaphorePermit, Vec<Arc<Entry>>);

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

/// What `caps` shows of one entry: the local API's document itself.
pub use hearthnet_wire::local::CapabilityEntry as EntryInfo;

/// One capability of one node, as registry events name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapabilityKey {
    pub name: String,
    pub version: String,
    pub node: NodeId,
}

/// A change of what the bus can route to (M03 §3.2), published locally to
/// whoever subscribed ([`Bus::changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEvent {
    /// `capability.added`: registered, restored, or offered by a peer.
    Added(CapabilityKey),
    /// `capability.removed`: withdrawn, or no longer offered by a peer.
    Removed(CapabilityKey),
}

impl RegistryEvent {
    /// The local topic the event is published under.
    pub fn topic(&self) -> &'static str {
        match self {
            Self::Added(_) => "capability.added",
            Self::Removed(_) => "capability.removed",
        }
    }
}

/// Registry events kept for a subscriber that lags behind.
const REGISTRY_EVENT_BACKLOG: usize = 256;

/// A service whose capabilities could not be registered, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot register the {service} service: {source}")]
pub struct RegisterError {
    pub service: &'static str,
    #[source]
    pub source: DescriptorError,
}

pub struct Bus {
    node_id: NodeId,
    settings: BusSettings,
    entries: RwLock<Vec<Arc<Entry>>>,
    /// Our own capabilities taken off the bus for now ([`Bus::withdraw`]).
    withdrawn: Mutex<Vec<Arc<Entry>>>,
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
            changes: broadcast::channel(REGISTRY_EVENT_BACKLOG).0,
            traces: Arc::new(TraceRing::default()),
            metrics,
            shutdown: CancellationToken::new(),
            in_flight_total: Arc::new(AtomicU32::new(0)),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Register every capability `service` declares. Nothing is
    /// registered if any declaration is invalid; the error names the
    /// service and the capability.
    pub fn register(&self, service: Arc<dyn Service>) -> Result<(), RegisterError> {
        let name = service.name();
        let mut ready = Vec::new();
        for capability in service.capabilities() {
            let schema = capability
                .descriptor
                .compile()
                .map_err(|source| RegisterError {
                    service: name,
                    source,
                })?;
            ready.push(Entry::local(self.node_id, capability, schema));
        }
        let mut entries = self.entries.write();
        for entry in ready {
            let same = |e: &Arc<Entry>| {
                e.node_id == self.node_id
                    && e.descriptor.name == entry.descriptor.name
                    && e.descriptor.version == entry.descriptor.version
            };
            entries.retain(|e| !same(e));
            self.withdrawn.lock().retain(|e| !same(e));
            tracing::info!(service = name, capability = %entry.descriptor.name, version = %entry.descriptor.version, "capability registered");
            self.publish(RegistryEvent::Added(entry.key()));
            entries.push(entry);
        }
        Ok(())
    }

    /// Take our own capabilities that `pick` selects off the bus: they are
    /// no longer routed to or listed in our manifest (calls in flight
    /// finish) until [`Bus::restore`]. Returns the names withdrawn.
    pub fn withdraw(&self, pick: impl Fn(&CapabilityDescriptor) -> bool) -> Vec<String> {
        let mut entries = self.entries.write();
        let (taken, kept): (Vec<_>, Vec<_>) = entries
            .drain(..)
            .partition(|e| e.node_id == self.node_id && pick(&e.descriptor));
        *entries = kept;
        self.announce(&taken, RegistryEvent::Removed, "withdrawn");
        let names = taken.iter().map(|e| e.descriptor.name.clone()).collect();
        self.withdrawn.lock().extend(taken);
        names
    }

    /// Put back the withdrawn capabilities that `pick` selects. Returns
    /// the names restored.
    pub fn restore(&self, pick: impl Fn(&CapabilityDescriptor) -> bool) -> Vec<String> {
        let mut entries = self.entries.write();
        let (back, still): (Vec<_>, Vec<_>) = self
            .withdrawn
            .lock()
            .drain(..)
            .partition(|e| pick(&e.descriptor));
        *self.withdrawn.lock() = still;
        self.announce(&back, RegistryEvent::Added, "restored");
        let names = back.iter().map(|e| e.descriptor.name.clone()).collect();
        entries.extend(back);
        names
    }

    /// Registry events from now on (M03 §3.2): capabilities added and
    /// removed, ours and our peers'.
    pub fn changes(&self) -> broadcast::Receiver<RegistryEvent> {
        self.changes.subscribe()
    }

    fn publish(&self, event: RegistryEvent) {
        // Nobody listening is fine: the events are for whoever cares now.
        let _ = self.changes.send(event);
    }

    fn announce(
        &self,
        entries: &[Arc<Entry>],
        event: fn(CapabilityKey) -> RegistryEvent,
        what: &str,
    ) {
        for e in entries {
            tracing::info!(capability = %e.descriptor.name, version = %e.descriptor.version, "capability {what}");
            self.publish(event(e.key()));
        }
    }

    /// Set what peer `node` offers, as its manifest (valid for `valid_for`)
    /// lists it; `provider` carries calls there. Entries that stay keep
    /// their health record; the ones no longer offered go.
    pub fn set_remote(
        &self,
        node: NodeId,
        offers: &[CapabilitySpec],
        valid_for: Duration,
        provider: Handler,
    ) {
        let until = Instant::now() + valid_for;
        let mut entries = self.entries.write();
        let mut kept: Vec<Arc<Entry>> = Vec::new();
        // What only a node itself may call is never taken from a peer: a
        // call meant for this node must not reach another.
        let own_only: Vec<String> = entries
            .iter()
            .filter(|e| e.node_id == self.node_id && e.descriptor.trust == Trust::SelfOnly)
            .map(|e| e.descriptor.name.clone())
            .collect();
        for spec in offers.iter().filter(|s| {
            !s.name.split('.').any(|part| part == "local") && !own_only.contains(&s.name)
        }) {
            let Ok(version) = spec.version.parse::<Version>() else {
                tracing::debug!(peer = %node.short(), capability = %spec.name, version = %spec.version, "unusable version in a peer's manifest");
                continue;
            };
            let existing = entries.iter().find(|e| {
                e.node_id == node
                    && e.descriptor.name == spec.name
                    && e.descriptor.version == version
                    && e.schema_hash == spec.schema_hash
                    && e.descriptor.params == spec.params
            });
            match existing {
                Some(e) => {
                    *e.valid_until.lock() = Some(until);
                    kept.push(e.clone());
                }
                None => {
                    let entry = Entry::new(
                        node,
                        CapabilityDescriptor::offered_by_peer(
                            spec,
                            version,
                            self.settings.default_timeout,
                        ),
                        spec.schema_hash.clone(),
                        provider.clone(),
                        crate::descriptor::default_params_compatible,
                        None,
                        Some(until),
                    );
                    self.publish(RegistryEvent::Added(entry.key()));
                    kept.push(entry);
                }
            }
        }
        entries.retain(|e| {
            let gone = e.node_id == node && !kept.iter().any(|k| Arc::ptr_eq(k, e));
            if gone {
                self.publish(RegistryEvent::Removed(e.key()));
            }
            e.node_id != node
        });
        entries.extend(kept);
    }

    /// The peers with entries on this bus.
    pub fn remote_nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self
            .entries
            .read()
            .iter()
            .map(|e| e.node_id)
            .filter(|n| *n != self.node_id)
            .collect();
        nodes.sort_by_key(NodeId::full);
        nodes.dedup();
        nodes
    }

    /// Forget everything peer `node` offered.
    pub fn remove_remote(&self, node: &NodeId) {
        if *node == self.node_id {
            return;
        }
        self.entries.write().retain(|e| {
            let gone = e.node_id == *node;
            if gone {
                self.publish(RegistryEvent::Removed(e.key()));
            }
            !gone
        });
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

    pub fn entries(&self) -> Vec<EntryInfo> {
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
                EntryInfo {
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

    /// End every call in flight with an `error` frame and refuse new ones.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Route, admit and start a call. Errors before the call starts come
    /// back here (→ an HTTP error status); afterwards they arrive as the
    /// stream's terminal item.
    pub fn call(&self, req: InboundCall) -> Result<CallStream, CallError> {
        if self.shutdown.is_cancelled() {
            return Err(
                CallError::new(ErrorCode::Partition, "the node is shutting down").retry_after(1000),
            );
        }
        let params = req.body.get("params").cloned().unwrap_or_else(|| json!({}));
        let input = req.body.get("input").cloned().unwrap_or_else(|| json!({}));
        if !params.is_object() || !input.is_object() {
            return Err(CallError::bad_request(
                "the body must be {\"params\": {...}, \"input\": {...}}",
            ));
        }
        let (entry, permit, fallbacks) = self.route(&req, &params)?;
        if entry.node_id == self.node_id {
            check_trust(&entry.descriptor, &req, self.node_id)?;
            entry.check_request(&req.body)?;
        }
        Ok(self.start(entry, permit, fallbacks, req, params, input))
    }

    /// The chosen entry with its permit, and the other viable ones best
    /// first (where a call goes if the chosen peer turns out to be gone).
    fn route(&self, req: &InboundCall, params: &Value) -> Result<Routed, CallError> {
        let entries = self.entries.read();
        let now = Instant::now();
        // Only this node's own calls (its CLI, UI and services) are carried
        // to peers; a peer's call is served here or not at all, so calls
        // never bounce between nodes.
        let may_forward = req.caller == self.node_id;
        let same_name: Vec<&Arc<Entry>> = entries
            .iter()
            .filter(|e| e.descriptor.name == req.capability)
            .filter(|e| e.node_id == self.node_id || (may_forward && e.is_fresh(now)))
            .filter(|e| req.target.is_none_or(|t| t == e.node_id))
            .collect();
        let versioned: Vec<&Arc<Entry>> = same_name
            .iter()
            .copied()
            .filter(|e| e.descriptor.version.satisfies(req.version))
            .collect();
        if versioned.is_empty() {
            let alternatives: Vec<String> = same_name
                .iter()
                .map(|e| format!("{}@{}", e.descriptor.name, e.descriptor.version))
                .collect();
            let mut err = CallError::new(
                ErrorCode::NotFound,
                format!("nobody offers {}@{}", req.capability, req.version),
            );
            if !alternatives.is_empty() {
                err = err.with("alt_capabilities", json!(alternatives));
            }
            return Err(err);
        }
        let compatible: Vec<&Arc<Entry>> = versioned
            .into_iter()
            .filter(|e| (e.params_compatible)(&e.descriptor.params, params))
            .collect();
        if compatible.is_empty() {
            return Err(CallError::new(
                ErrorCode::NotFound,
                format!(
                    "nobody offers {}@{} with params {params}",
                    req.capability, req.version
                ),
            ));
        }
        let healthy: Vec<&Arc<Entry>> = compatible
            .iter()
            .copied()
            .filter(|e| !e.is_quarantined(now))
            .collect();
        if healthy.is_empty() {
            return Err(CallError::new(
                ErrorCode::Partition,
                format!(
                    "every provider of {} is quarantined after repeated failures",
                    req.capability
                ),
            )
            .retry_after(hearthnet_base::constants::HEALTH_QUARANTINE_SECONDS * 1000));
        }
        let mut ranked: Vec<&Arc<Entry>> = healthy.clone();
        let local_first = self.settings.prefer_local
            && ranked
                .iter()
                .find(|e| e.node_id == self.node_id)
                .is_some_and(|e| e.load() < self.settings.local_load_threshold);
        ranked.sort_by(|a, b| {
            let key = |e: &Arc<Entry>| {
                let local = e.node_id == self.node_id;
                (
                    if local_first && local {
                        f64::MIN
                    } else {
                        e.score(local)
                    },
                    e.load(),
                )
            };
            key(a)
                .partial_cmp(&key(b))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        for (i, entry) in ranked.iter().enumerate() {
            if let Ok(permit) = entry.permits.clone().try_acquire_owned() {
                entry.health.lock().on_selected(now);
                let fallbacks = ranked[i + 1..].iter().map(|e| (*e).clone()).collect();
                return Ok(((*entry).clone(), permit, fallbacks));
            }
        }
        let p50 = healthy
            .iter()
            .map(|e| e.health.lock().p50_ms())
            .fold(0.0, f64::max);
        Err(CallError::new(
            ErrorCode::CapacityExceeded,
            format!(
                "every provider of {} is at its max_concurrent",
                req.capability
            ),
        )
        .retry_after((p50 as u64).clamp(100, 30_000)))
    }

    fn start(
        &self,
        entry: Arc<Entry>,
        permit: OwnedSemaphorePermit,
        fallbacks: Vec<Arc<Entry>>,
        req: InboundCall,
        params: Value,
        input: Value,
    ) -> CallStream {
        let (tx, rx) = mpsc::channel(STREAM_WINDOW_FRAMES as usize);
        let must_sign = entry.node_id != self.node_id || entry.descriptor.mutating;
        let caller_gone = CancellationToken::new();
        let frames = Arc::new(AtomicU64::new(0));
        // A peer decides by itself whether it streams; relay what it sends.
        let streaming =
            req.stream && (entry.descriptor.is_streaming() || entry.node_id != self.node_id);
        let deadline = req
            .timeout
            .unwrap_or(entry.descriptor.timeout)
            .min(Duration::from_secs(3600));
        let call = Attempt {
            req,
            params,
            input,
            streaming,
            deadline_at: tokio::time::Instant::now() + deadline,
            deadline,
            frames: frames.clone(),
            tx: tx.clone(),
            caller_gone: caller_gone.clone(),
            shutdown: self.shutdown.clone(),
            metrics: self.metrics.clone(),
            traces: self.traces.clone(),
            in_flight_total: self.in_flight_total.clone(),
            us: self.node_id,
        };
        tokio::spawn(async move {
            let (mut entry, mut permit) = (entry, permit);
            let mut fallbacks = fallbacks.into_iter();
            let outcome = loop {
                let outcome = call.run(&entry, permit).await;
                // Only a call the peer never started is handed on (nothing
                // runs twice), only while time is left, and only to a
                // provider still fresh and healthy on another node.
                let handed_on = match &outcome {
                    Some(Item::Failed(e))
                        if entry.node_id != call.us
                            && e.not_started
                            && call.frames.load(Ordering::Relaxed) == 0
                            && tokio::time::Instant::now() < call.deadline_at =>
                    {
                        let now = Instant::now();
                        let failed = entry.node_id;
                        fallbacks.by_ref().find_map(|next| {
                            let usable = next.node_id != failed
                                && next.is_fresh(now)
                                && !next.is_quarantined(now);
                            if !usable {
                                return None;
                            }
                            let p = next.permits.clone().try_acquire_owned().ok()?;
                            Some((next, p))
                        })
                    }
                    _ => None,
                };
                match handed_on {
                    Some((next, p)) => {
                        tracing::info!(trace_id = %call.req.trace_id, capability = %call.req.capability, from = %entry.node_id.short(), to = %next.node_id.short(), "failing over");
                        (entry, permit) = (next, p);
                    }
                    None => break outcome,
                }
            };
            if let Some(item) = outcome {
                let _ = tx.send(item).await;
            }
        });
        CallStream {
            rx,
            streaming,
            must_sign,
            _cancel_on_drop: caller_gone.drop_guard(),
        }
    }
}

/// One call's journey, possibly over several providers.
struct Attempt {
    req: InboundCall,
    params: Value,
    input: Value,
    streaming: bool,
    deadline_at: tokio::time::Instant,
    deadline: Duration,
    frames: Arc<AtomicU64>,
    tx: mpsc::Sender<Item>,
    caller_gone: CancellationToken,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    traces: Arc<TraceRing>,
    in_flight_total: Arc<AtomicU32>,
    us: NodeId,
}

impl Attempt {
    /// Run the call on `entry` and record it (health, metrics, trace). The
    /// outcome is `None` when the caller left.
    async fn run(&self, entry: &Arc<Entry>, permit: OwnedSemaphorePermit) -> Option<Item> {
        let req = &self.req;
        let handler_cancel = CancellationToken::new();
        let call = Call {
            capability: req.capability.clone(),
            version: req.version,
            params: self.params.clone(),
            input: self.input.clone(),
            caller: req.caller,
            trace_id: req.trace_id.clone(),
            stream: self.streaming,
            frames: FrameSink::new(self.tx.clone(), self.frames.clone()),
            deadline: self.deadline_at,
            cancel: handler_cancel.clone(),
        };
        let gauge = self.metrics.in_flight(&entry.descriptor.name);
        let started = Instant::now();
        let ts = Timestamp::now();
        entry.in_flight.fetch_add(1, Ordering::Relaxed);
        self.in_flight_total.fetch_add(1, Ordering::Relaxed);
        gauge.inc();
        let handler = (entry.handler)(call);
        let outcome = tokio::select! {
            r = tokio::time::timeout_at(self.deadline_at, handler) => match r {
                Ok(Ok(v)) => Some(Item::Done(v)),
                Ok(Err(e)) => Some(Item::Failed(e)),
                Err(_) => Some(Item::Failed(CallError::new(
                    ErrorCode::Timeout,
                    format!("{} did not finish within {} ms", entry.descriptor.name, self.deadline.as_millis()),
                ))),
            },
            _ = self.caller_gone.cancelled() => None,
            _ = self.shutdown.cancelled() => Some(Item::Failed(
                CallError::new(ErrorCode::Partition, "the node is shutting down").retry_after(1000),
            )),
        };
        handler_cancel.cancel();
        let failure = match &outcome {
            Some(Item::Failed(e)) => Some(e.code),
            _ => None,
        };
        let result = match (&outcome, failure) {
            (_, Some(code)) => code.as_str().to_owned(),
            (Some(_), None) => "ok".to_owned(),
            (None, None) => "cancelled".to_owned(),
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        entry.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.in_flight_total.fetch_sub(1, Ordering::Relaxed);
        gauge.dec();
        drop(permit);
        let is_local = entry.node_id == self.us;
        // A local `partition` is our own shutdown; a peer's is the peer
        // being unreachable, which its health must remember.
        let provider_failed = failure.is_some_and(|code| {
            code.is_provider_failure() || (!is_local && code == ErrorCode::Partition)
        });
        let own_shutdown = is_local && failure == Some(ErrorCode::Partition);
        if outcome.is_some() && !own_shutdown {
            let quarantined = entry
                .health
                .lock()
                .record(!provider_failed, ms, Instant::now());
            if quarantined {
                self.metrics.quarantines.inc();
                tracing::warn!(capability = %entry.descriptor.name, node = %entry.node_id.short(), "provider quarantined");
            }
        }
        self.metrics
            .record_call(&entry.descriptor.name, &result, ms);
        tracing::info!(
            trace_id = %req.trace_id, capability = %entry.descriptor.name,
            caller = %req.caller.short(), provider = %entry.node_id.short(), result = %result, ms = ms,
            "call finished"
        );
        self.traces.push(TraceRecord {
            ts: ts.to_string(),
            trace_id: req.trace_id.clone(),
            capability: req.capability.clone(),
            version: req.version.to_string(),
            from_node: req.caller.full(),
            to_node: entry.node_id.full(),
            is_local,
            result,
            ms,
            stream: self.streaming,
            frames: self.frames.load(Ordering::Relaxed),
        });
        outcome
    }
}

fn check_trust(d: &CapabilityDescriptor, req: &InboundCall, us: NodeId) -> Result<(), CallError> {
    let allowed = match d.trust {
        Trust::Level(needed) => req.caller_level >= needed,
        Trust::SelfOnly => req.caller == us,
    };
    if allowed {
        Ok(())
    } else {
        Err(CallError::new(
            ErrorCode::Unauthorized,
            format!(
                "{} needs trust level {:?}; the caller is {}",
                d.name, d.trust, req.caller_level
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::Trust;
    use futures_util::future::BoxFuture;
    use hearthnet_base::{DeviceKey, Stability};
    use std::sync::atomic::AtomicBool;

    /// `input.mode`: "ok" (echo), "fail", "sleep" (input.ms), "stream"
    /// (input.n frames every input.ms).
    struct TestService {
        max_concurrent: u32,
        trust: Trust,
        dropped: Arc<AtomicBool>,
    }

    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    impl Service for TestService {
        fn name(&self) -> &'static str {
            "test"
        }

        fn capabilities(self: Arc<Self>) -> Vec<Capability> {
            let descriptor = CapabilityDescriptor {
                version: Version::new(1, 2),
                response_schema: None,
                stream_schema: Some(json!({"type": "object"})),
                params: json!({"model": "m1"}),
                max_concurrent: self.max_concurrent,
                trust: self.trust,
                timeout: Duration::from_secs(5),
                ..CapabilityDescriptor::new(
                    "experimental.test",
                    json!({"type": "object", "properties": {"mode": {"enum": ["ok", "fail", "sleep", "stream"]}, "ms": {"type": "integer"}}}),
                )
            };
            vec![Capability::new(descriptor, &self, Self::serve)]
        }
    }

    impl TestService {
        fn serve(self: Arc<Self>, call: Call) -> BoxFuture<'static, Result<Value, CallError>> {
            Box::pin(async move {
                let _guard = SetOnDrop(self.dropped.clone());
                let ms = call.input["ms"].as_u64().unwrap_or(0);
                match call.input["mode"].as_str().unwrap_or("ok") {
                    "fail" => Err(CallError::new(ErrorCode::InternalError, "boom")),
                    "sleep" => {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Ok(json!({"slept": ms}))
                    }
                    "stream" => {
                        for i in 0..call.input["n"].as_u64().unwrap_or(1) {
                            call.frames
                                .send("token", json!({"i": i}))
                                .await
                                .map_err(|_| CallError::new(ErrorCode::InternalError, "gone"))?;
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        Ok(json!({"ms": 1}))
                    }
                    _ => Ok(json!({"output": call.input})),
                }
            })
        }
    }

    fn bus_with(max_concurrent: u32, trust: Trust) -> (Bus, Arc<AtomicBool>) {
        let bus = Bus::new(
            DeviceKey::generate().node_id(),
            BusSettings::default(),
            Arc::new(Metrics::new()),
        );
        let dropped = Arc::new(AtomicBool::new(false));
        bus.register(Arc::new(TestService {
            max_concurrent,
            trust,
            dropped: dropped.clone(),
        }))
        .unwrap();
        (bus, dropped)
    }

    fn call(input: Value) -> InboundCall {
        InboundCall {
            capability: "experimental.test".into(),
            version: Version::new(1, 0),
            body: json!({"params": {}, "input": input}),
            caller: DeviceKey::generate().node_id(),
            caller_level: TrustLevel::Member,
            trace_id: ulid::Ulid::new().to_string(),
            timeout: None,
            stream: true,
            target: None,
        }
    }

    #[tokio::test]
    async fn local_call_round_trips_and_is_traced() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let out = bus
            .call(call(json!({"text": "hi"})))
            .unwrap()
            .outcome()
            .await
            .unwrap();
        assert_eq!(out["output"]["text"], "hi");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let traces = bus.recent_traces(10, None);
        assert_eq!(traces.len(), 1);
        assert_eq!(traces[0].result, "ok");
        assert_eq!(bus.in_flight_total(), 0);
    }

    #[tokio::test]
    async fn unknown_versions_and_params_are_not_found() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let mut req = call(json!({}));
        req.version = Version::new(2, 0);
        let err = bus.call(req).err().unwrap();
        assert_eq!(err.code, ErrorCode::NotFound);
        assert_eq!(
            err.extra["alt_capabilities"],
            json!(["experimental.test@1.2"])
        );
        let mut req = call(json!({}));
        req.version = Version::new(1, 3);
        assert_eq!(bus.call(req).err().unwrap().code, ErrorCode::NotFound);
        let mut req = call(json!({}));
        req.body["params"] = json!({"model": "other"});
        assert_eq!(bus.call(req).err().unwrap().code, ErrorCode::NotFound);
    }

    #[tokio::test]
    async fn capacity_is_refused_not_queued() {
        let (bus, _) = bus_with(1, Trust::Level(TrustLevel::Member));
        let busy = bus.call(call(json!({"mode": "sleep", "ms": 300}))).unwrap();
        let err = bus.call(call(json!({}))).err().unwrap();
        assert_eq!(err.code, ErrorCode::CapacityExceeded);
        assert!(err.retry_after_ms.unwrap() >= 100);
        busy.outcome().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        bus.call(call(json!({}))).unwrap().outcome().await.unwrap();
    }

    #[tokio::test]
    async fn deadlines_end_calls_with_timeout() {
        let (bus, dropped) = bus_with(1, Trust::Level(TrustLevel::Member));
        let mut req = call(json!({"mode": "sleep", "ms": 5000}));
        req.timeout = Some(Duration::from_millis(50));
        let err = bus.call(req).unwrap().outcome().await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Timeout);
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn dropping_the_stream_cancels_the_provider_promptly() {
        let (bus, dropped) = bus_with(1, Trust::Level(TrustLevel::Member));
        let mut stream = bus
            .call(call(json!({"mode": "stream", "n": 1000, "ms": 20})))
            .unwrap();
        assert!(matches!(stream.next().await, Some(Item::Frame(_))));
        let t = Instant::now();
        drop(stream);
        while !dropped.load(Ordering::SeqCst) {
            assert!(
                t.elapsed() < Duration::from_millis(200),
                "provider still running"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(bus.in_flight_total(), 0);
        assert_eq!(bus.recent_traces(1, None)[0].result, "cancelled");
    }

    #[tokio::test]
    async fn failures_decrement_in_flight_and_lead_to_quarantine() {
        let (bus, _) = bus_with(4, Trust::Level(TrustLevel::Member));
        for _ in 0..10 {
            let err = bus
                .call(call(json!({"mode": "fail"})))
                .unwrap()
                .outcome()
                .await
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::InternalError);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(bus.in_flight_total(), 0);
        let err = bus.call(call(json!({}))).err().unwrap();
        assert_eq!(err.code, ErrorCode::Partition);
        assert!(bus.entries()[0].quarantined);
    }

    #[tokio::test]
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

    #[tokio::test]
    async fn shutdown_ends_calls_in_flight_with_an_error() {
        let (bus, _) = bus_with(1, Trust::Level(TrustLevel::Member));
        let mut stream = bus
            .call(call(json!({"mode": "stream", "n": 1000, "ms": 20})))
            .unwrap();
        assert!(matches!(stream.next().await, Some(Item::Frame(_))));
        bus.shutdown();
        let mut last = None;
        while let Some(item) = stream.next().await {
            last = Some(item);
        }
        assert!(matches!(last, Some(Item::Failed(e)) if e.code == ErrorCode::Partition));
        assert_eq!(
            bus.call(call(json!({}))).err().unwrap().code,
            ErrorCode::Partition
        );
    }

    /// A peer as the bus sees it: answers, or fails with `failure`.
    struct FakePeer {
        failure: Option<CallError>,
        served: AtomicU32,
    }

    impl FakePeer {
        fn handler(self: &Arc<Self>) -> Handler {
            let this = self.clone();
            Arc::new(move |_call| {
                let this = this.clone();
                Box::pin(async move { this.serve().await })
            })
        }

        async fn serve(&self) -> Result<Value, CallError> {
            self.served.fetch_add(1, Ordering::SeqCst);
            match &self.failure {
                None => Ok(json!({"from": "peer"})),
                Some(e) => Err(e.clone()),
            }
        }
    }

    fn remote_spec() -> CapabilitySpec {
        CapabilitySpec {
            name: "experimental.remote".into(),
            version: "1.0".into(),
            stability: Stability::Experimental,
            schema_hash: "blake3:00".into(),
            params: json!({}),
            max_concurrent: 4,
        }
    }

    fn own_call(bus: &Bus) -> InboundCall {
        InboundCall {
            capability: "experimental.remote".into(),
            caller: bus.node_id(),
            ..call(json!({}))
        }
    }

    /// How this node's own call ends when it fails.
    async fn own_call_error(bus: &Bus) -> CallError {
        match bus.call(own_call(bus)) {
            Ok(stream) => stream.outcome().await.err().unwrap(),
            Err(e) => panic!("refused before it started: {e}"),
        }
    }

    /// A peer that answers, or one that cannot be reached (the call never
    /// started there).
    fn peer(reachable: bool) -> Arc<FakePeer> {
        let failure = (!reachable)
            .then(|| CallError::new(ErrorCode::Partition, "connection refused").before_start());
        Arc::new(FakePeer {
            failure,
            served: AtomicU32::new(0),
        })
    }

    #[tokio::test]
    async fn peers_serve_our_own_calls_only() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let provider = peer(true);
        bus.set_remote(
            DeviceKey::generate().node_id(),
            &[remote_spec()],
            Duration::from_secs(30),
            provider.handler(),
        );
        assert_eq!(bus.capability_count(), 1, "remote entries are not ours");
        let out = bus.call(own_call(&bus)).unwrap().outcome().await.unwrap();
        assert_eq!(out["from"], "peer");
        // Another node's call is never forwarded: no loops between nodes.
        let foreign = InboundCall {
            caller: DeviceKey::generate().node_id(),
            ..own_call(&bus)
        };
        assert_eq!(bus.call(foreign).err().unwrap().code, ErrorCode::NotFound);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let trace = &bus.recent_traces(1, None)[0];
        assert!(!trace.is_local);
        assert_eq!(provider.served.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_gone_peer_hands_the_call_to_the_next() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let (dead, alive) = (peer(false), peer(true));
        let (dead_id, alive_id) = (
            DeviceKey::generate().node_id(),
            DeviceKey::generate().node_id(),
        );
        bus.set_remote(
            dead_id,
            &[remote_spec()],
            Duration::from_secs(30),
            dead.handler(),
        );
        bus.set_remote(
            alive_id,
            &[remote_spec()],
            Duration::from_secs(30),
            alive.handler(),
        );
        for _ in 0..6 {
            let out = bus.call(own_call(&bus)).unwrap().outcome().await.unwrap();
            assert_eq!(out["from"], "peer");
        }
        assert_eq!(alive.served.load(Ordering::SeqCst), 6);
        // The dead one was tried, then ranked last by its failures.
        let tried_dead = dead.served.load(Ordering::SeqCst);
        assert!((1..6).contains(&tried_dead), "{tried_dead}");
        // When nobody is left, the caller hears `partition`.
        bus.remove_remote(&alive_id);
        let err = own_call_error(&bus).await;
        assert_eq!(err.code, ErrorCode::Partition);
        bus.remove_remote(&dead_id);
        assert_eq!(
            bus.call(own_call(&bus)).err().unwrap().code,
            ErrorCode::NotFound
        );
    }

    #[tokio::test]
    async fn expired_manifests_stop_routing() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let node = DeviceKey::generate().node_id();
        bus.set_remote(
            node,
            &[remote_spec()],
            Duration::from_millis(30),
            peer(true).handler(),
        );
        assert!(bus.call(own_call(&bus)).is_ok());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            bus.call(own_call(&bus)).err().unwrap().code,
            ErrorCode::NotFound
        );
        assert!(bus.entries().iter().all(|e| e.local));
        // A fresh manifest brings it back.
        bus.set_remote(
            node,
            &[remote_spec()],
            Duration::from_secs(30),
            peer(true).handler(),
        );
        assert!(bus.call(own_call(&bus)).is_ok());
    }

    /// A peer that may have run the call (the answer was lost) is not
    /// asked again elsewhere: nothing runs twice.
    #[tokio::test]
    async fn a_call_that_may_have_run_is_not_handed_on() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let lost = || {
            Arc::new(FakePeer {
                failure: Some(CallError::new(ErrorCode::Partition, "the answer was lost")),
                served: AtomicU32::new(0),
            })
        };
        let (first, second) = (lost(), lost());
        bus.set_remote(
            DeviceKey::generate().node_id(),
            &[remote_spec()],
            Duration::from_secs(30),
            first.handler(),
        );
        bus.set_remote(
            DeviceKey::generate().node_id(),
            &[remote_spec()],
            Duration::from_secs(30),
            second.handler(),
        );
        let err = own_call_error(&bus).await;
        assert_eq!(err.code, ErrorCode::Partition);
        let runs = first.served.load(Ordering::SeqCst) + second.served.load(Ordering::SeqCst);
        assert_eq!(runs, 1, "exactly one provider ran it");
    }

    #[tokio::test]
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
        assert!(bus.call(call(json!({"mode": "ok"}))).is_ok());
    }

    #[tokio::test]
    async fn withdrawn_capabilities_are_not_routed_until_restored() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let mut changes = bus.changes();
        let key = CapabilityKey {
            name: "experimental.test".into(),
            version: "1.2".into(),
            node: bus.node_id(),
        };
        assert_eq!(
            bus.withdraw(|d| d.name == "experimental.other"),
            Vec::<String>::new()
        );
        assert_eq!(
            bus.withdraw(|d| !d.needs_internet),
            vec!["experimental.test"]
        );
        assert_eq!(
            changes.try_recv().ok(),
            Some(RegistryEvent::Removed(key.clone()))
        );
        assert_eq!(
            bus.call(call(json!({}))).err().map(|e| e.code),
            Some(ErrorCode::NotFound)
        );
        assert!(
            bus.local_descriptors().is_empty(),
            "not in our manifest either"
        );
        assert_eq!(bus.restore(|_| true), vec!["experimental.test"]);
        assert_eq!(changes.try_recv().ok(), Some(RegistryEvent::Added(key)));
        assert!(bus.call(call(json!({}))).is_ok());
        assert!(changes.try_recv().is_err(), "one event per change");
    }

    #[tokio::test]
    async fn peers_offers_come_and_go_as_registry_events() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let mut changes = bus.changes();
        let node = DeviceKey::generate().node_id();
        let key = CapabilityKey {
            name: "experimental.remote".into(),
            version: "1.0".into(),
            node,
        };
        let offer = |bus: &Bus| {
            bus.set_remote(
                node,
                &[remote_spec()],
                Duration::from_secs(30),
                peer(true).handler(),
            )
        };
        offer(&bus);
        assert_eq!(
            changes.try_recv().ok(),
            Some(RegistryEvent::Added(key.clone()))
        );
        offer(&bus);
        assert!(
            changes.try_recv().is_err(),
            "an unchanged offer is no event"
        );
        bus.set_remote(node, &[], Duration::from_secs(30), peer(true).handler());
        assert_eq!(
            changes.try_recv().ok(),
            Some(RegistryEvent::Removed(key.clone()))
        );
        offer(&bus);
        bus.remove_remote(&node);
        assert_eq!(
            changes.try_recv().ok(),
            Some(RegistryEvent::Added(key.clone()))
        );
        assert_eq!(changes.try_recv().ok(), Some(RegistryEvent::Removed(key)));
    }

    #[test]
    fn a_bad_declaration_names_its_service_and_registers_nothing() {
        struct Broken;
        impl Service for Broken {
            fn name(&self) -> &'static str {
                "broken"
            }
            fn capabilities(self: Arc<Self>) -> Vec<Capability> {
                let good = CapabilityDescriptor::new("experimental.good", json!({}));
                let bad = CapabilityDescriptor {
                    request_schema: json!({"type": 12}),
                    ..CapabilityDescriptor::new("experimental.bad", json!({}))
                };
                let serve = |_: Arc<Self>, _: Call| async { Ok(json!({})) };
                vec![
                    Capability::new(good, &self, serve),
                    Capability::new(bad, &self, serve),
                ]
            }
        }
        let bus = Bus::new(
            DeviceKey::generate().node_id(),
            BusSettings::default(),
            Arc::new(Metrics::new()),
        );
        let err = bus
            .register(Arc::new(Broken))
            .expect_err("an invalid schema was registered")
            .to_string();
        assert!(
            err.starts_with(
                "cannot register the broken service: capability `experimental.bad`: request_schema:"
            ),
            "{err}"
        );
        assert_eq!(bus.capability_count(), 0);
    }
}
