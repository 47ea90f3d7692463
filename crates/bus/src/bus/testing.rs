//! What the bus's tests share: a local test service, a fake peer, and the
//! calls they answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use hearthnet_base::{DeviceKey, ErrorCode, NodeId, Stability, TrustLevel};
use hearthnet_identity::CapabilitySpec;
use hearthnet_observability::metrics::Metrics;
use hearthnet_wire::local::TraceRecord;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Bus, BusSettings, InboundCall};
use crate::descriptor::{CapabilityDescriptor, Trust};
use crate::service::{Call, CallError, Capability, Handler, Service};
use crate::version::Version;

/// Set once the test service's handler future is dropped, whether it
/// finished or was stopped; a test can wait for it.
#[derive(Clone)]
pub(super) struct Dropped(Arc<watch::Sender<bool>>);

impl Dropped {
    fn new() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }

    pub(super) fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    pub(super) async fn wait(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so this ends only when set.
        let _ = rx.wait_for(|dropped| *dropped).await;
    }
}

struct SetOnDrop(Dropped);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.0.send_replace(true);
    }
}

/// `input.mode`: "ok" (echo), "fail", "sleep" (input.ms), "stream"
/// (input.n frames every input.ms).
struct TestService {
    max_concurrent: u32,
    trust: Trust,
    dropped: Dropped,
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

/// A bus of a fresh node with the test service registered.
pub(super) fn bus_with(max_concurrent: u32, trust: Trust) -> (Bus, Dropped) {
    let bus = Bus::new(
        DeviceKey::generate().node_id(),
        BusSettings::default(),
        Arc::new(Metrics::new()),
    );
    let dropped = Dropped::new();
    bus.register(Arc::new(TestService {
        max_concurrent,
        trust,
        dropped: dropped.clone(),
    }))
    .unwrap();
    (bus, dropped)
}

/// A member's call of the test service.
pub(super) fn call(input: Value) -> InboundCall {
    InboundCall {
        stream: true,
        ..InboundCall::new(
            "experimental.test",
            Version::new(1, 0),
            json!({"params": {}, "input": input}),
            DeviceKey::generate().node_id(),
            TrustLevel::Member,
        )
    }
}

/// The newest `n` traces once that many are recorded. For a call whose
/// caller never sees an outcome (one that saw it finds its trace at once);
/// on the paused clock the wait costs no real time, and a trace that never
/// comes fails the test instead of hanging it.
pub(super) async fn traces_when_recorded(bus: &Bus, n: usize) -> Vec<TraceRecord> {
    let wait = async {
        loop {
            let traces = bus.recent_traces(n, None);
            if traces.len() == n {
                return traces;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the call was never traced")
}

/// A peer as the bus sees it: answers, or fails with `failure`.
pub(super) struct FakePeer {
    failure: Option<CallError>,
    served: AtomicU32,
}

impl FakePeer {
    /// A peer that fails every call with `failure`.
    pub(super) fn failing(failure: CallError) -> Arc<Self> {
        Arc::new(Self {
            failure: Some(failure),
            served: AtomicU32::new(0),
        })
    }

    pub(super) fn handler(self: &Arc<Self>) -> Handler {
        let this = self.clone();
        Arc::new(move |_call| {
            let this = this.clone();
            Box::pin(async move { this.serve().await })
        })
    }

    /// How many calls reached it.
    pub(super) fn served(&self) -> u32 {
        self.served.load(Ordering::SeqCst)
    }

    async fn serve(&self) -> Result<Value, CallError> {
        self.served.fetch_add(1, Ordering::SeqCst);
        match &self.failure {
            None => Ok(json!({"from": "peer"})),
            Some(e) => Err(e.clone()),
        }
    }
}

/// A peer that answers, or one that cannot be reached (the call never
/// started there).
pub(super) fn peer(reachable: bool) -> Arc<FakePeer> {
    let failure = (!reachable)
        .then(|| CallError::new(ErrorCode::Partition, "connection refused").before_start());
    Arc::new(FakePeer {
        failure,
        served: AtomicU32::new(0),
    })
}

/// What the fake peers offer.
pub(super) fn remote_spec() -> CapabilitySpec {
    CapabilitySpec {
        name: "experimental.remote".into(),
        version: "1.0".into(),
        stability: Stability::Experimental,
        schema_hash: "blake3:00".into(),
        params: json!({}),
        max_concurrent: 4,
        timeout_seconds: None,
    }
}

/// Node `node` offers `remote_spec()`, served by `peer`, its manifest
/// valid for 30 s.
pub(super) fn offer(bus: &Bus, node: NodeId, peer: &Arc<FakePeer>) {
    bus.set_remote(
        node,
        &[remote_spec()],
        Duration::from_secs(30),
        peer.handler(),
    );
}

/// This node's own call of what the peers offer.
pub(super) fn own_call(bus: &Bus) -> InboundCall {
    InboundCall {
        capability: "experimental.remote".into(),
        caller: bus.node_id(),
        ..call(json!({}))
    }
}

/// How this node's own call ends when it fails.
pub(super) async fn own_call_error(bus: &Bus) -> CallError {
    match bus.call(own_call(bus)) {
        Ok(stream) => stream.outcome().await.err().unwrap(),
        Err(e) => panic!("refused before it started: {e}"),
    }
}
