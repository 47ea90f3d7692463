//! The bus itself: the registry of entries, routing, admission (trust,
//! capacity), execution with deadline and cancellation, and the record of
//! every call (health, metrics, trace ring).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hearthnet_base::constants::STREAM_WINDOW_FRAMES;
use hearthnet_base::{ErrorCode, NodeId, Timestamp, TrustLevel};
use hearthnet_observability::metrics::Metrics;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::descriptor::{CapabilityDescriptor, DescriptorError, Trust};
use crate::health::Health;
use crate::service::{Call, CallError, FrameSink, Item, Service};
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
    service: Arc<dyn Service>,
    permits: Arc<Semaphore>,
    in_flight: AtomicU32,
    health: Mutex<Health>,
    /// For a peer's entry: until when its manifest vouches for it.
    valid_until: Mutex<Option<Instant>>,
}

impl Entry {
    fn new(
        node_id: NodeId,
        descriptor: CapabilityDescriptor,
        schema_hash: String,
        service: Arc<dyn Service>,
        valid_until: Option<Instant>,
    ) -> Arc<Self> {
        Arc::new(Self {
            node_id,
            permits: Arc::new(Semaphore::new(descriptor.max_concurrent as usize)),
            descriptor,
            schema_hash,
            service,
            in_flight: AtomicU32::new(0),
            health: Mutex::new(Health::default()),
            valid_until: Mutex::new(valid_until),
        })
    }

    fn is_fresh(&self, now: Instant) -> bool {
        self.valid_until
            .lock()
            .is_ok_and(|v| v.is_none_or(|until| now < until))
    }

    fn load(&self) -> f64 {
        f64::from(self.in_flight.load(Ordering::Relaxed))
            / f64::from(self.descriptor.max_concurrent.max(1))
    }

    /// M03 §5.4: lower is better.
    fn score(&self, is_local: bool) -> f64 {
        let (p50, success) = self
            .health
            .lock()
            .map_or((0.0, 1.0), |h| (h.p50_ms(), h.success_rate()));
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
    _cancel_on_drop: DropGuard,
}

impl CallStream {
    /// Whether the capability streams frames (and the caller asked for them).
    pub fn is_streaming(&self) -> bool {
        self.streaming
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

pub struct Bus {
    node_id: NodeId,
    settings: BusSettings,
    entries: RwLock<Vec<Arc<Entry>>>,
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
            traces: Arc::new(TraceRing::default()),
            metrics,
            shutdown: CancellationToken::new(),
            in_flight_total: Arc::new(AtomicU32::new(0)),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Register every capability `service` offers.
    pub fn register(&self, service: Arc<dyn Service>) -> Result<(), DescriptorError> {
        let descriptors = service.descriptors();
        for d in &descriptors {
            d.validate()?;
        }
        let mut entries = self.entries.write().map_err(|_| poisoned())?;
        for descriptor in descriptors {
            entries.retain(|e| {
                !(e.descriptor.name == descriptor.name
                    && e.descriptor.version == descriptor.version)
            });
            tracing::info!(capability = %descriptor.name, version = %descriptor.version, "capability registered");
            let hash = descriptor.schema_hash().to_string();
            entries.push(Entry::new(
                self.node_id,
                descriptor,
                hash,
                service.clone(),
                None,
            ));
        }
        Ok(())
    }

    /// Set what peer `node` offers, as its manifest (valid for `valid_for`)
    /// lists it; `provider` carries calls there. Entries that stay keep
    /// their health record; the ones no longer offered go.
    pub fn set_remote(
        &self,
        node: NodeId,
        offers: &[CapabilitySpec],
        valid_for: Duration,
        provider: Arc<dyn Service>,
    ) {
        let until = Instant::now() + valid_for;
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
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
                    if let Ok(mut v) = e.valid_until.lock() {
                        *v = Some(until);
                    }
                    kept.push(e.clone());
                }
                None => kept.push(Entry::new(
                    node,
                    CapabilityDescriptor::offered_by_peer(
                        spec,
                        version,
                        self.settings.default_timeout,
                    ),
                    spec.schema_hash.clone(),
                    provider.clone(),
                    Some(until),
                )),
            }
        }
        entries.retain(|e| e.node_id != node);
        entries.extend(kept);
    }

    /// The peers with entries on this bus.
    pub fn remote_nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self
            .entries
            .read()
            .map(|e| {
                e.iter()
                    .map(|e| e.node_id)
                    .filter(|n| *n != self.node_id)
                    .collect()
            })
            .unwrap_or_default();
        nodes.sort_by_key(NodeId::full);
        nodes.dedup();
        nodes
    }

    /// Forget everything peer `node` offered.
    pub fn remove_remote(&self, node: &NodeId) {
        if *node == self.node_id {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|e| e.node_id != *node);
        }
    }

    /// Capabilities this node itself offers.
    pub fn capability_count(&self) -> usize {
        self.entries.read().map_or(0, |e| {
            e.iter().filter(|e| e.node_id == self.node_id).count()
        })
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
            .map(|e| {
                e.iter()
                    .filter(|e| e.node_id == self.node_id)
                    .map(|e| e.descriptor.clone())
                    .collect()
            })
            .unwrap_or_default()
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
        let Ok(entries) = self.entries.read() else {
            return Vec::new();
        };
        entries
            .iter()
            .filter(|e| e.is_fresh(now))
            .map(|e| {
                let (success_rate, p50_ms, quarantined) =
                    e.health.lock().map_or((1.0, 0.0, false), |h| {
                        (h.success_rate(), h.p50_ms(), h.is_quarantined(now))
                    });
                EntryInfo {
                    name: e.descriptor.name.clone(),
                    version: e.descriptor.version.to_string(),
                    stability: e.descriptor.stability,
                    node: e.node_id.full(),
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
        }
        Ok(self.start(entry, permit, fallbacks, req, params, input))
    }

    /// The chosen entry with its permit, and the other viable ones best
    /// first (where a call goes if the chosen peer turns out to be gone).
    fn route(&self, req: &InboundCall, params: &Value) -> Result<Routed, CallError> {
        let entries = self
            .entries
            .read()
            .map_err(|_| CallError::new(ErrorCode::InternalError, "registry lock"))?;
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
            .filter(|e| e.service.params_compatible(&e.descriptor.params, params))
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
            .filter(|e| e.health.lock().map_or(true, |h| !h.is_quarantined(now)))
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
                if let Ok(mut h) = entry.health.lock() {
                    h.on_selected(now);
                }
                let fallbacks = ranked[i + 1..].iter().map(|e| (*e).clone()).collect();
                return Ok(((*entry).clone(), permit, fallbacks));
            }
        }
        let p50 = healthy
            .iter()
            .filter_map(|e| e.health.lock().ok().map(|h| h.p50_ms()))
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
                                && next.health.lock().is_ok_and(|h| !h.is_quarantined(now));
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
        let handler = entry.service.clone().handle(call);
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
        let result = match &outcome {
            Some(Item::Done(_)) => "ok".to_owned(),
            Some(Item::Failed(e)) => e.code.as_str().to_owned(),
            _ => "cancelled".to_owned(),
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        entry.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.in_flight_total.fetch_sub(1, Ordering::Relaxed);
        gauge.dec();
        drop(permit);
        let is_local = entry.node_id == self.us;
        // A local `partition` is our own shutdown; a peer's is the peer
        // being unreachable, which its health must remember.
        let provider_failed = matches!(
            result.as_str(),
            "internal_error" | "timeout" | "not_implemented"
        ) || (!is_local && result == "partition");
        if result != "cancelled" && (result != "partition" || !is_local) {
            let quarantined = entry
                .health
                .lock()
                .map(|mut h| h.record(!provider_failed, ms, Instant::now()))
                .unwrap_or(false);
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

fn poisoned() -> DescriptorError {
    DescriptorError::Invalid("registry".into(), "lock poisoned by a panic".into())
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
        fn descriptors(&self) -> Vec<CapabilityDescriptor> {
            vec![CapabilityDescriptor {
                name: "experimental.test".into(),
                version: Version::new(1, 2),
                stability: Stability::Experimental,
                request_schema: json!({"type": "object"}),
                response_schema: None,
                stream_schema: Some(json!({"type": "object"})),
                params: json!({"model": "m1"}),
                max_concurrent: self.max_concurrent,
                trust: self.trust,
                timeout: Duration::from_secs(5),
                idempotent: true,
            }]
        }

        fn handle(self: Arc<Self>, call: Call) -> BoxFuture<'static, Result<Value, CallError>> {
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

    impl Service for FakePeer {
        fn descriptors(&self) -> Vec<CapabilityDescriptor> {
            Vec::new()
        }

        fn handle(self: Arc<Self>, _call: Call) -> BoxFuture<'static, Result<Value, CallError>> {
            Box::pin(async move {
                self.served.fetch_add(1, Ordering::SeqCst);
                match &self.failure {
                    None => Ok(json!({"from": "peer"})),
                    Some(e) => Err(e.clone()),
                }
            })
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
            provider.clone(),
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
            dead.clone(),
        );
        bus.set_remote(
            alive_id,
            &[remote_spec()],
            Duration::from_secs(30),
            alive.clone(),
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
            peer(true),
        );
        assert!(bus.call(own_call(&bus)).is_ok());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            bus.call(own_call(&bus)).err().unwrap().code,
            ErrorCode::NotFound
        );
        assert!(bus.entries().iter().all(|e| e.local));
        // A fresh manifest brings it back.
        bus.set_remote(node, &[remote_spec()], Duration::from_secs(30), peer(true));
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
            first.clone(),
        );
        bus.set_remote(
            DeviceKey::generate().node_id(),
            &[remote_spec()],
            Duration::from_secs(30),
            second.clone(),
        );
        let err = own_call_error(&bus).await;
        assert_eq!(err.code, ErrorCode::Partition);
        let runs = first.served.load(Ordering::SeqCst) + second.served.load(Ordering::SeqCst);
        assert_eq!(runs, 1, "exactly one provider ran it");
    }
}
