//! Running a routed call: one attempt on a provider under the call's
//! deadline, stopped when the caller leaves or the node shuts down, and
//! recorded (in-flight counts, health, metrics, log, trace); then, if a
//! peer never started it, the same call on the next provider.
//!
//! The trace and the counts are recorded before the outcome is sent, so a
//! caller who has the outcome also finds the call in the trace ring.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use hearthnet_base::constants::STREAM_WINDOW_FRAMES;
use hearthnet_base::{ErrorCode, NodeId, Timestamp};
use hearthnet_observability::metrics::Metrics;
use hearthnet_wire::local::TraceRecord;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::entry::Entry;
use super::{Bus, CallStream, InboundCall, shutting_down};
use crate::service::{Call, CallError, FrameSink, Item};
use crate::trace::TraceRing;

/// No call waits longer than this, whatever it asks for.
const MAX_DEADLINE: Duration = Duration::from_secs(3600);

impl Bus {
    /// Start the call on `entry` in a task of its own; `fallbacks` are
    /// where it may go if that peer turns out to be gone.
    pub(super) fn start(
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
        // A peer decides by itself whether it streams; relay what it sends.
        let streaming =
            req.stream && (entry.descriptor.is_streaming() || entry.node_id != self.node_id);
        let declared = entry.descriptor.timeout;
        let deadline = match req.timeout {
            // A caller may shorten a capability's declared timeout, never
            // lengthen it: a slot held for as long as a caller likes is a
            // slot taken from everyone else.
            Some(asked) if entry.node_id == self.node_id => asked.min(declared),
            // The peer clamps the call to what it declared itself (its
            // manifest says what, see `peer_timeout`), ending ours with
            // its answer.
            Some(asked) => asked,
            None => declared,
        }
        .min(MAX_DEADLINE);
        let attempt = Attempt {
            req,
            params,
            input,
            streaming,
            deadline_at: Instant::now() + deadline,
            deadline,
            frames: Arc::new(AtomicU64::new(0)),
            tx,
            caller_gone: caller_gone.clone(),
            shutdown: self.shutdown.clone(),
            metrics: self.metrics.clone(),
            traces: self.traces.clone(),
            in_flight_total: self.in_flight_total.clone(),
            us: self.node_id,
        };
        tokio::spawn(attempt.serve(entry, permit, fallbacks));
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
    deadline_at: Instant,
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
    /// Run the call on `entry`, then on fallbacks while `hand_on` allows,
    /// and send the caller the outcome (if the caller is still there).
    async fn serve(
        self,
        mut entry: Arc<Entry>,
        mut permit: OwnedSemaphorePermit,
        fallbacks: Vec<Arc<Entry>>,
    ) {
        let mut fallbacks = fallbacks.into_iter();
        let outcome = loop {
            let outcome = self.run(&entry, permit).await;
            match self.hand_on(&entry, &outcome, &mut fallbacks) {
                Some((next, p)) => {
                    tracing::info!(trace_id = %self.req.trace_id, capability = %self.req.capability, from = %entry.node_id.short(), to = %next.node_id.short(), "failing over");
                    (entry, permit) = (next, p);
                }
                None => break outcome,
            }
        };
        if let Some(item) = outcome {
            // The caller may have left meanwhile; nobody else wants it.
            let _ = self.tx.send(item).await;
        }
    }

    /// The next provider for a call that failed on `failed`, with its
    /// permit. Only a call the peer never started is handed on (nothing
    /// runs twice), only while time is left, and only to a provider still
    /// fresh and healthy on another node.
    fn hand_on(
        &self,
        failed: &Entry,
        outcome: &Option<Item>,
        fallbacks: &mut impl Iterator<Item = Arc<Entry>>,
    ) -> Option<(Arc<Entry>, OwnedSemaphorePermit)> {
        let Some(Item::Failed(e)) = outcome else {
            return None;
        };
        let now = Instant::now();
        let may_hand_on = failed.node_id != self.us
            && e.not_started
            && self.frames.load(Ordering::Relaxed) == 0
            && now < self.deadline_at;
        if !may_hand_on {
            return None;
        }
        fallbacks.find_map(|next| {
            let usable =
                next.node_id != failed.node_id && next.is_fresh(now) && !next.is_quarantined(now);
            if !usable {
                return None;
            }
            let p = next.permits.clone().try_acquire_owned().ok()?;
            Some((next, p))
        })
    }

    /// Run the call on `entry` and record it. The outcome is `None` when
    /// the caller left.
    async fn run(&self, entry: &Arc<Entry>, permit: OwnedSemaphorePermit) -> Option<Item> {
        let handler_cancel = CancellationToken::new();
        let gauge = self.metrics.in_flight(&entry.descriptor.name);
        let started = Instant::now();
        let ts = Timestamp::now();
        entry.in_flight.fetch_add(1, Ordering::Relaxed);
        self.in_flight_total.fetch_add(1, Ordering::Relaxed);
        gauge.inc();
        let outcome = self.execute(entry, handler_cancel.clone()).await;
        // The handler's future is gone; tell work it spawned to stop too.
        handler_cancel.cancel();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        entry.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.in_flight_total.fetch_sub(1, Ordering::Relaxed);
        gauge.dec();
        drop(permit);
        self.record(entry, &outcome, ts, ms);
        outcome
    }

    /// The handler's outcome, or what ended it first: the deadline, the
    /// caller leaving (`None`), the node shutting down.
    async fn execute(&self, entry: &Entry, cancel: CancellationToken) -> Option<Item> {
        let req = &self.req;
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
            cancel,
        };
        let handler = (entry.handler)(call);
        tokio::select! {
            r = tokio::time::timeout_at(self.deadline_at, handler) => match r {
                Ok(Ok(v)) => Some(Item::Done(v)),
                Ok(Err(e)) => Some(Item::Failed(e)),
                Err(_) => Some(Item::Failed(CallError::new(
                    ErrorCode::Timeout,
                    format!("{} did not finish within {} ms", entry.descriptor.name, self.deadline.as_millis()),
                ))),
            },
            _ = self.caller_gone.cancelled() => None,
            _ = self.shutdown.cancelled() => Some(Item::Failed(shutting_down())),
        }
    }

    /// Health (provider failures only), metrics, the log line and the trace
    /// of one finished attempt that took `ms`.
    fn record(&self, entry: &Entry, outcome: &Option<Item>, ts: Timestamp, ms: f64) {
        let req = &self.req;
        let failure = match outcome {
            Some(Item::Failed(e)) => Some(e.code),
            _ => None,
        };
        let result = match (outcome, failure) {
            (_, Some(code)) => code.as_str().to_owned(),
            (Some(_), None) => "ok".to_owned(),
            (None, None) => "cancelled".to_owned(),
        };
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
    }
}

#[cfg(test)]
mod tests {
    use hearthnet_base::{DeviceKey, TrustLevel};
    use serde_json::json;

    use super::*;
    use crate::bus::testing::{
        FakePeer, bus_with, call, offer, own_call, own_call_error, peer, traces_when_recorded,
    };
    use crate::descriptor::Trust;

    #[tokio::test(start_paused = true)]
    async fn local_call_round_trips_and_is_traced() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let out = bus
            .call(call(json!({"text": "hi"})))
            .unwrap()
            .outcome()
            .await
            .unwrap();
        assert_eq!(out["output"]["text"], "hi");
        // Recorded before the outcome was sent: no waiting needed.
        let traces = bus.recent_traces(10, None);
        assert_eq!(traces.len(), 1);
        assert_eq!(traces[0].result, "ok");
        assert!(traces[0].is_local);
        assert_eq!(bus.in_flight_total(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_end_calls_with_timeout() {
        let (bus, dropped) = bus_with(1, Trust::Level(TrustLevel::Member));
        let mut req = call(json!({"mode": "sleep", "ms": 5000}));
        req.timeout = Some(Duration::from_millis(50));
        let started = Instant::now();
        let err = bus.call(req).unwrap().outcome().await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Timeout);
        let waited = started.elapsed();
        assert!(
            (Duration::from_millis(50)..Duration::from_millis(60)).contains(&waited),
            "ended after {waited:?}"
        );
        assert!(dropped.is_set(), "the provider was stopped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_shortens_the_declared_timeout_but_never_lengthens_it() {
        // The test service declares 5 s.
        let declared = Duration::from_secs(5);
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        for (asked, ends_after) in [
            (Some(Duration::from_secs(3600)), declared),
            (None, declared),
            (Some(Duration::from_secs(2)), Duration::from_secs(2)),
        ] {
            let mut req = call(json!({"mode": "sleep", "ms": 60_000}));
            req.timeout = asked;
            let started = Instant::now();
            let err = bus.call(req).unwrap().outcome().await.unwrap_err();
            assert_eq!(err.code, ErrorCode::Timeout, "{asked:?}");
            assert_eq!(started.elapsed(), ends_after, "{asked:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_stream_cancels_the_provider_promptly() {
        let (bus, dropped) = bus_with(1, Trust::Level(TrustLevel::Member));
        // A frame a minute: only cancellation ends this provider soon (its
        // next send, which would fail, is a minute away).
        let mut stream = bus
            .call(call(json!({"mode": "stream", "n": 1000, "ms": 60_000})))
            .unwrap();
        assert!(matches!(stream.next().await, Some(Item::Frame(_))));
        let dropped_at = Instant::now();
        drop(stream);
        tokio::time::timeout(Duration::from_millis(200), dropped.wait())
            .await
            .expect("the provider still runs 200 ms after the caller left");
        assert_eq!(
            dropped_at.elapsed(),
            Duration::ZERO,
            "cancellation waits for no timer"
        );
        let traces = traces_when_recorded(&bus, 1).await;
        assert_eq!(traces[0].result, "cancelled");
        assert_eq!(bus.in_flight_total(), 0);
    }

    #[tokio::test(start_paused = true)]
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

    #[tokio::test(start_paused = true)]
    async fn a_gone_peer_hands_the_call_to_the_next() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let (dead, alive) = (peer(false), peer(true));
        let (dead_id, alive_id) = (
            DeviceKey::generate().node_id(),
            DeviceKey::generate().node_id(),
        );
        offer(&bus, dead_id, &dead);
        offer(&bus, alive_id, &alive);
        for _ in 0..6 {
            let out = bus.call(own_call(&bus)).unwrap().outcome().await.unwrap();
            assert_eq!(out["from"], "peer");
        }
        assert_eq!(alive.served(), 6);
        // The dead one was tried, then ranked last by its failures.
        let tried_dead = dead.served();
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

    /// A peer that may have run the call (the answer was lost) is not
    /// asked again elsewhere: nothing runs twice.
    #[tokio::test(start_paused = true)]
    async fn a_call_that_may_have_run_is_not_handed_on() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let lost =
            || FakePeer::failing(CallError::new(ErrorCode::Partition, "the answer was lost"));
        let (first, second) = (lost(), lost());
        offer(&bus, DeviceKey::generate().node_id(), &first);
        offer(&bus, DeviceKey::generate().node_id(), &second);
        let err = own_call_error(&bus).await;
        assert_eq!(err.code, ErrorCode::Partition);
        assert_eq!(
            first.served() + second.served(),
            1,
            "exactly one provider ran it"
        );
    }
}
