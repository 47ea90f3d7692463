//! Routing (M03 §5.4–5.5): which provider serves a call. One step each:
//! the entries the call may reach, those of a matching version, those
//! whose params fit, those not quarantined, ranked (local first while it
//! has room, then by score; a conversation's own provider before all),
//! and the first with capacity left, which is answered with
//! `capacity_exceeded` rather than queued.

use std::sync::Arc;

use hearthnet_base::ErrorCode;
use hearthnet_base::constants::HEALTH_QUARANTINE_SECONDS;
use serde_json::{Value, json};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::entry::Entry;
use super::{Bus, InboundCall};
use crate::service::CallError;

/// The chosen entry, its capacity permit, and the fallbacks best first.
pub(super) type Routed = (Arc<Entry>, OwnedSemaphorePermit, Vec<Arc<Entry>>);

type Candidates<'a> = Vec<&'a Arc<Entry>>;

impl Bus {
    /// The chosen entry with its permit, and the other viable ones best
    /// first (where a call goes if the chosen peer turns out to be gone).
    pub(super) fn route(&self, req: &InboundCall, params: &Value) -> Result<Routed, CallError> {
        let entries = self.entries.read();
        let now = Instant::now();
        let reachable = self.reachable(&entries, req, now);
        let versioned = of_version(&reachable, req)?;
        let fitting = with_params(versioned, req, params)?;
        let healthy = healthy(fitting, req, now)?;
        let ranked = self.rank(healthy);
        let Some(session) = &req.session else {
            return take_capacity(&ranked, req, now);
        };
        // Lock order: entries, then sessions.
        let mut sessions = self.sessions.lock();
        let ranked = sessions.prefer_bound(&req.capability, session, ranked, now);
        let routed = take_capacity(&ranked, req, now)?;
        sessions.bind(&req.capability, session, routed.0.node_id, now);
        Ok(routed)
    }

    /// The entries of the capability that this call may reach.
    fn reachable<'a>(
        &self,
        entries: &'a [Arc<Entry>],
        req: &InboundCall,
        now: Instant,
    ) -> Candidates<'a> {
        // Only this node's own calls (its CLI, UI and services) are carried
        // to peers; a peer's call is served here or not at all, so calls
        // never bounce between nodes.
        let may_forward = req.caller == self.node_id;
        entries
            .iter()
            .filter(|e| e.descriptor.name == req.capability)
            .filter(|e| e.node_id == self.node_id || (may_forward && e.is_fresh(now)))
            .filter(|e| req.target.is_none_or(|t| t == e.node_id))
            .collect()
    }

    /// Best first: our own entry while its load is under the threshold
    /// (if local is preferred), then by score, then by load.
    fn rank<'a>(&self, mut candidates: Candidates<'a>) -> Candidates<'a> {
        let local_first = self.settings.prefer_local
            && candidates
                .iter()
                .find(|e| e.node_id == self.node_id)
                .is_some_and(|e| e.load() < self.settings.local_load_threshold);
        candidates.sort_by(|a, b| {
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
        candidates
    }
}

/// Those whose version satisfies the asked one; if none, `not_found`
/// naming the versions that are offered.
fn of_version<'a>(
    reachable: &[&'a Arc<Entry>],
    req: &InboundCall,
) -> Result<Candidates<'a>, CallError> {
    let versioned: Candidates<'a> = reachable
        .iter()
        .copied()
        .filter(|e| e.descriptor.version.satisfies(req.version))
        .collect();
    if !versioned.is_empty() {
        return Ok(versioned);
    }
    let alternatives: Vec<String> = reachable
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
    Err(err)
}

/// Those whose offered params can serve the requested ones (M03 §5.5).
fn with_params<'a>(
    versioned: Candidates<'a>,
    req: &InboundCall,
    params: &Value,
) -> Result<Candidates<'a>, CallError> {
    let fitting: Candidates<'a> = versioned
        .into_iter()
        .filter(|e| (e.params_compatible)(&e.descriptor.params, params))
        .collect();
    if fitting.is_empty() {
        return Err(CallError::new(
            ErrorCode::NotFound,
            format!(
                "nobody offers {}@{} with params {params}",
                req.capability, req.version
            ),
        ));
    }
    Ok(fitting)
}

/// Those not in quarantine; if none, `partition` with the quarantine's
/// length as the time to retry.
fn healthy<'a>(
    fitting: Candidates<'a>,
    req: &InboundCall,
    now: Instant,
) -> Result<Candidates<'a>, CallError> {
    let healthy: Candidates<'a> = fitting
        .into_iter()
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
        .retry_after(HEALTH_QUARANTINE_SECONDS * 1000));
    }
    Ok(healthy)
}

/// The best-ranked entry with a free permit (its health hears it was
/// picked), and the ones ranked after it; if all are full,
/// `capacity_exceeded` with the slowest median latency as the time to
/// retry.
fn take_capacity(
    ranked: &[&Arc<Entry>],
    req: &InboundCall,
    now: Instant,
) -> Result<Routed, CallError> {
    for (i, entry) in ranked.iter().enumerate() {
        if let Ok(permit) = entry.permits.clone().try_acquire_owned() {
            entry.health.lock().on_selected(now);
            let fallbacks = ranked[i + 1..].iter().map(|e| (*e).clone()).collect();
            return Ok(((*entry).clone(), permit, fallbacks));
        }
    }
    let p50 = ranked
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hearthnet_base::{DeviceKey, NodeId, TrustLevel};

    use super::*;
    use crate::bus::BusSettings;
    use crate::bus::testing::{bus_with, call, offer, own_call, peer, remote_spec};
    use crate::descriptor::Trust;
    use crate::version::Version;
    use hearthnet_base::request::SessionId;
    use hearthnet_identity::CapabilitySpec;

    #[tokio::test(start_paused = true)]
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

    #[tokio::test(start_paused = true)]
    async fn capacity_is_refused_not_queued() {
        let (bus, _) = bus_with(1, Trust::Level(TrustLevel::Member));
        let busy = bus.call(call(json!({"mode": "sleep", "ms": 300}))).unwrap();
        let err = bus.call(call(json!({}))).err().unwrap();
        assert_eq!(err.code, ErrorCode::CapacityExceeded);
        assert!(err.retry_after_ms.unwrap() >= 100);
        busy.outcome().await.unwrap();
        // The permit is back before the outcome reaches the caller.
        bus.call(call(json!({}))).unwrap().outcome().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
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
        assert_eq!(bus.in_flight_total(), 0);
        assert_eq!(bus.recent_traces(20, None).len(), 10);
        let err = bus.call(call(json!({}))).err().unwrap();
        assert_eq!(err.code, ErrorCode::Partition);
        assert_eq!(err.retry_after_ms, Some(HEALTH_QUARANTINE_SECONDS * 1000));
        assert!(bus.entries()[0].quarantined);
        // No time passed while the calls ran (the paused clock moves only
        // when told), so the quarantine ends exactly this far ahead.
        let quarantine = Duration::from_secs(HEALTH_QUARANTINE_SECONDS);
        tokio::time::advance(quarantine - Duration::from_millis(1)).await;
        assert_eq!(
            bus.call(call(json!({}))).err().map(|e| e.code),
            Some(ErrorCode::Partition)
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        // The probe that follows is routed, and its success clears it.
        bus.call(call(json!({}))).unwrap().outcome().await.unwrap();
        assert!(!bus.entries()[0].quarantined);
    }

    #[tokio::test(start_paused = true)]
    async fn peers_serve_our_own_calls_only() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let provider = peer(true);
        offer(&bus, DeviceKey::generate().node_id(), &provider);
        assert_eq!(bus.capability_count(), 1, "remote entries are not ours");
        let out = bus.call(own_call(&bus)).unwrap().outcome().await.unwrap();
        assert_eq!(out["from"], "peer");
        // Another node's call is never forwarded: no loops between nodes.
        let foreign = InboundCall {
            caller: DeviceKey::generate().node_id(),
            ..own_call(&bus)
        };
        assert_eq!(bus.call(foreign).err().unwrap().code, ErrorCode::NotFound);
        // The own call's trace was recorded before its outcome arrived.
        let traces = bus.recent_traces(10, None);
        assert_eq!(traces.len(), 1, "{traces:?}");
        assert!(!traces[0].is_local);
        assert_eq!(provider.served(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_stays_with_its_provider_until_it_cannot_serve() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let (a, b) = (
            DeviceKey::generate().node_id(),
            DeviceKey::generate().node_id(),
        );
        let peers = [(a, peer(true)), (b, peer(true))];
        for (node, provider) in &peers {
            offer(&bus, *node, provider);
        }
        let served = || peers.iter().map(|(_, p)| p.served()).collect::<Vec<_>>();
        // Where routing sends a call without a session...
        bus.call(own_call(&bus)).unwrap().outcome().await.unwrap();
        let routed = served().iter().position(|n| *n == 1).unwrap();
        let (usual, other) = (peers[routed].0, peers[1 - routed].0);
        // ...and a conversation that began on the other provider.
        let turn = |target: Option<NodeId>| InboundCall {
            session: Some(SessionId::parse("chat-1").unwrap()),
            target,
            ..own_call(&bus)
        };
        bus.call(turn(Some(other)))
            .unwrap()
            .outcome()
            .await
            .unwrap();
        for _ in 0..3 {
            bus.call(turn(None)).unwrap().outcome().await.unwrap();
            bus.call(own_call(&bus)).unwrap().outcome().await.unwrap();
        }
        let mut want = [0, 0];
        want[routed] = 4;
        want[1 - routed] = 4;
        assert_eq!(
            served(),
            want,
            "the session's turns all went to its provider"
        );

        // Its provider leaves: the session moves to the one left, and
        // stays there when the first comes back.
        bus.set_remote(other, &[], Duration::from_secs(30), peer(true).handler());
        bus.call(turn(None)).unwrap().outcome().await.unwrap();
        want[routed] += 1;
        offer(&bus, other, &peers[1 - routed].1);
        bus.call(turn(None)).unwrap().outcome().await.unwrap();
        want[routed] += 1;
        assert_eq!(served(), want);
        assert_eq!(usual, peers[routed].0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_call_waits_as_long_as_the_peer_declares_within_bounds() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let timeout_of = |declared: Option<u64>| {
            let node = DeviceKey::generate().node_id();
            let spec = CapabilitySpec {
                timeout_seconds: declared,
                ..remote_spec()
            };
            bus.set_remote(node, &[spec], Duration::from_secs(30), peer(true).handler());
            let entry = bus
                .entries
                .read()
                .iter()
                .find(|e| e.node_id == node)
                .cloned();
            entry.unwrap().descriptor.timeout
        };
        assert_eq!(timeout_of(Some(300)), Duration::from_secs(300));
        assert_eq!(timeout_of(None), BusSettings::default().default_timeout);
        assert_eq!(timeout_of(Some(u64::MAX)), Duration::from_secs(3600));
        assert_eq!(timeout_of(Some(0)), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_manifests_stop_routing() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let node = DeviceKey::generate().node_id();
        let validity = Duration::from_millis(30);
        bus.set_remote(node, &[remote_spec()], validity, peer(true).handler());
        assert!(bus.call(own_call(&bus)).is_ok());
        tokio::time::advance(validity - Duration::from_millis(1)).await;
        assert!(bus.call(own_call(&bus)).is_ok(), "still vouched for");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            bus.call(own_call(&bus)).err().unwrap().code,
            ErrorCode::NotFound
        );
        assert!(bus.entries().iter().all(|e| e.local));
        // A fresh manifest brings it back.
        offer(&bus, node, &peer(true));
        assert!(bus.call(own_call(&bus)).is_ok());
    }
}
