//! Event sync between nodes (X02 §6, SYSTEM.md item 2).
//!
//! Between our nodes: negentropy reconciliation over `(lamport, event id)`
//! (`/sync/v2/reconcile`), then a push of what the peer lacks
//! (`/sync/v1/events`) and a fetch of what we lack (`/sync/v2/fetch`), in
//! batches, each event validated on arrival. Chosen when the peer's signed
//! manifest lists `negentropy/1` in `sync`.
//!
//! With other nodes: the reference's endpoints, without its flaw. Instead
//! of "everything above the peer's head Lamport", which skips events
//! written concurrently below it, we push every event stored since our last
//! successful push to that peer, by local arrival order, so an event that
//! reached us late is still passed on. Both sides doing this converge.
//!
//! Every round is idempotent (duplicates are no-ops) and a broken round
//! only means the next one does the rest.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use hearthnet_base::{ErrorCode, NodeId, Timestamp};
use hearthnet_bus::CallError;
use hearthnet_events::sync::{IdSet, Initiator, answer};
use hearthnet_events::{EventLog, Query};
use hearthnet_identity::NodeManifest;
use hearthnet_transport::SyncEndpoints;
use hearthnet_transport::peer_client::{PeerClient, PeerError};
use hearthnet_wire::local::{SyncPeer, SyncRound};
use hearthnet_wire::peer::{
    EventsPush, EventsReport, FetchAnswer, FetchRequest, Heads, Hex, Reconcile, Redeemed, Rejection,
};
use parking_lot::Mutex;
use serde_json::{Value, json};

pub const PROTOCOL_V2: &str = "negentropy/1";
pub const PROTOCOL_V1: &str = "heads/1";
/// Events per push or fetch request.
const BATCH: usize = 500;
/// Events one `POST /sync/v1/events` may carry. Each costs a signature
/// check and a database look-up on the log's single thread, which every
/// other caller waits behind; twice our own batch leaves room for other
/// implementations' pushes.
pub const MAX_PUSH_EVENTS: usize = 2 * BATCH;
/// What the events of one push may add up to: the receiver's limit, less
/// room for the document around them.
const PUSH_BUDGET_BYTES: usize = hearthnet_wire::peer::MAX_PUSH_BYTES - 64 * 1024;

/// `events` in runs whose JSON adds up to at most `budget` bytes (an event
/// larger than that travels alone, and the receiver decides).
fn split_by_bytes(events: Vec<Value>, budget: usize) -> Vec<Vec<Value>> {
    let mut runs: Vec<Vec<Value>> = Vec::new();
    let mut used = 0;
    for event in events {
        // Comma and brackets included, so the sum bounds the array.
        let size = event.to_string().len() + 1;
        match runs.last_mut() {
            Some(run) if used + size <= budget => run.push(event),
            _ => {
                runs.push(vec![event]);
                used = 0;
            }
        }
        used += size;
    }
    runs
}
const _: () = assert!(BATCH <= MAX_PUSH_EVENTS, "our own pushes must fit");

/// Messages one pub-sub reply carries at most; a subscriber further
/// behind continues from the reply's `last_seq`.
pub const PUBSUB_BATCH: usize = 100;

/// What a syncer keeps per peer address: what `status` shows of it, and
/// its private cursors.
#[derive(Debug, Clone, Default)]
struct PeerSyncState {
    shown: SyncPeer,
    /// v1: our events up to this local sequence number reached the peer.
    pushed_seq: i64,
    /// Periodic passes in a row that did not list this address.
    unlisted_passes: u32,
}

/// Passes an address may go unlisted (a peer whose manifest lapsed for a
/// moment) before its state, v1 push cursor included, is forgotten.
const FORGET_AFTER_PASSES: u32 = 3;

/// What one round did: the answer of `/local/v1/sync`.
pub type RoundReport = SyncRound;

pub struct Syncer {
    log: EventLog,
    /// The root-signed genesis manifest, handed to new members.
    genesis_manifest: Value,
    metrics: Arc<hearthnet_observability::metrics::Metrics>,
    client: Arc<PeerClient>,
    peers: Mutex<HashMap<String, PeerSyncState>>,
    cache: Mutex<Option<(u64, Arc<IdSet>)>>,
}

fn internal(e: impl std::fmt::Display) -> CallError {
    CallError::new(ErrorCode::InternalError, e.to_string())
}

fn peer_error(e: PeerError) -> CallError {
    match e {
        PeerError::Unreachable { .. } | PeerError::Lost { .. } => {
            CallError::new(ErrorCode::Partition, e.to_string())
        }
        other => CallError::new(ErrorCode::BadRequest, other.to_string()),
    }
}

impl Syncer {
    pub fn new(
        log: EventLog,
        genesis_manifest: Value,
        client: Arc<PeerClient>,
        metrics: Arc<hearthnet_observability::metrics::Metrics>,
    ) -> Self {
        Self {
            log,
            genesis_manifest,
            metrics,
            client,
            peers: Mutex::new(HashMap::new()),
            cache: Mutex::new(None),
        }
    }

    /// What `status` shows of each peer address.
    pub fn states(&self) -> BTreeMap<String, SyncPeer> {
        self.peers
            .lock()
            .iter()
            .map(|(addr, state)| (addr.clone(), state.shown.clone()))
            .collect()
    }

    /// After a periodic pass over `current`: addresses no longer among the
    /// peers (a peer that moved, a one-off `hearthnet sync`) stop counting
    /// as reachable at once, and are forgotten after a few passes.
    fn forget_all_but(&self, current: &[String]) {
        let mut peers = self.peers.lock();
        for (addr, state) in peers.iter_mut() {
            if current.contains(addr) {
                state.unlisted_passes = 0;
            } else {
                state.unlisted_passes += 1;
            }
        }
        peers.retain(|_, state| state.unlisted_passes < FORGET_AFTER_PASSES);
        self.metrics.peers.set(reachable(&peers) as i64);
    }

    /// Peers whose latest round succeeded: the ones this node can reach.
    pub fn peers_reachable(&self) -> usize {
        reachable(&self.peers.lock())
    }

    /// Our id set, rebuilt only when what counts in the log changed (the
    /// count alone can stay the same: a late revocation counts as its
    /// target's later event stops counting).
    async fn id_set(&self) -> Result<Arc<IdSet>, CallError> {
        let revision = self.log.revision();
        if let Some((seen, set)) = self.cache.lock().as_ref()
            && *seen == revision
        {
            return Ok(set.clone());
        }
        let ids = self.log.ids().await.map_err(internal)?;
        let set = Arc::new(IdSet::new(&ids).map_err(internal)?);
        *self.cache.lock() = Some((revision, set.clone()));
        Ok(set)
    }

    /// One round with `addr`; `protocol` forces `v1` or `v2`.
    pub async fn round(
        &self,
        addr: &str,
        protocol: Option<&str>,
    ) -> Result<RoundReport, CallError> {
        let started = Instant::now();
        let traffic_before = self.client.traffic();
        let outcome = self.round_inner(addr, protocol).await;
        let traffic_after = self.client.traffic();
        let mut peers = self.peers.lock();
        let state = peers.entry(addr.to_owned()).or_default();
        state.shown.rounds += 1;
        state.shown.last_round = Some(Timestamp::now());
        if outcome.is_ok() {
            state.shown.last_ok = state.shown.last_round;
        }
        self.metrics.peers.set(reachable(&peers) as i64);
        let state = peers.entry(addr.to_owned()).or_default();
        match outcome {
            Ok(mut report) => {
                state.shown.node_id = report.node_id.clone();
                state.shown.protocol = Some(report.protocol.clone());
                state.shown.events_in += report.events_in;
                state.shown.events_out += report.events_out;
                report.ms = started.elapsed().as_millis() as u64;
                report.bytes_sent = traffic_after.0 - traffic_before.0;
                report.bytes_received = traffic_after.1 - traffic_before.1;
                tracing::info!(peer = addr, protocol = %report.protocol, events_in = report.events_in, events_out = report.events_out, ms = report.ms, "sync round");
                Ok(report)
            }
            Err(e) => {
                state.shown.errors += 1;
                state.shown.last_error = Some(e.to_string());
                tracing::warn!(peer = addr, error = %e, "sync round failed");
                Err(e)
            }
        }
    }

    async fn round_inner(
        &self,
        addr: &str,
        protocol: Option<&str>,
    ) -> Result<RoundReport, CallError> {
        let manifest = self
            .client
            .get(addr, None, "/manifest")
            .await
            .map_err(peer_error)?;
        let peer_id = manifest.peer;
        let verified = NodeManifest::verify(&manifest.body, Timestamp::now())
            .map_err(|e| CallError::new(ErrorCode::InvalidSignature, format!("{addr}: {e}")))?;
        if peer_id.is_some_and(|id| id != verified.node_id) {
            return Err(CallError::new(
                ErrorCode::InvalidSignature,
                format!("{addr}: manifest of another node"),
            ));
        }
        let offers_v2 = manifest.body["sync"]
            .as_array()
            .is_some_and(|p| p.iter().any(|v| v == PROTOCOL_V2));
        let use_v2 = match protocol {
            Some("v1") => false,
            Some("v2") => true,
            _ => offers_v2,
        };
        let expected = Some(verified.node_id);
        let mut report = RoundReport {
            peer: addr.to_owned(),
            node_id: Some(verified.node_id.full()),
            protocol: if use_v2 { PROTOCOL_V2 } else { PROTOCOL_V1 }.into(),
            events_in: 0,
            events_out: 0,
            rejected: 0,
            bytes_sent: 0,
            bytes_received: 0,
            reconcile_bytes: 0,
            ms: 0,
        };
        if use_v2 {
            self.reconcile_with(addr, expected, &mut report).await?;
        } else {
            self.push_since(addr, expected, &mut report).await?;
        }
        Ok(report)
    }

    async fn reconcile_with(
        &self,
        addr: &str,
        expected: Option<NodeId>,
        report: &mut RoundReport,
    ) -> Result<(), CallError> {
        let set = self.id_set().await?;
        let before = self.client.traffic();
        let (have, need) = {
            let (mut init, mut message) = Initiator::new(&set).map_err(internal)?;
            loop {
                let reply = self
                    .client
                    .post_as::<Reconcile>(
                        addr,
                        expected,
                        "/sync/v2/reconcile",
                        &Reconcile {
                            message: Hex(message),
                        },
                    )
                    .await
                    .map_err(peer_error)?;
                match init.step(&reply.body.message.0).map_err(internal)? {
                    Some(next) => message = next,
                    None => break,
                }
            }
            (init.have, init.need)
        };
        let after = self.client.traffic();
        report.reconcile_bytes = (after.0 - before.0) + (after.1 - before.1);
        // Push what they lack, in replay order.
        let ids: Vec<String> = have
            .iter()
            .filter_map(|h| set.event_id(h).map(str::to_owned))
            .collect();
        for chunk in ids.chunks(BATCH) {
            let events = self.log.by_ids(chunk.to_vec()).await.map_err(internal)?;
            let values: Vec<Value> = events.into_iter().map(|e| e.json).collect();
            report.events_out += self.push(addr, expected, values).await?;
        }
        // Fetch what we lack.
        let hashes: Vec<Hex> = need.iter().map(|h| Hex(h.to_vec())).collect();
        for chunk in hashes.chunks(BATCH) {
            let request = FetchRequest {
                hashes: chunk.to_vec(),
            };
            let reply = self
                .client
                .post_as::<FetchAnswer>(addr, expected, "/sync/v2/fetch", &request)
                .await
                .map_err(peer_error)?;
            let events = reply.body.events;
            let appended = self.log.append_received(events).await.map_err(internal)?;
            self.count_rejected(&appended);
            report.events_in += appended.accepted;
            report.rejected += appended.rejected.len() as u64;
        }
        Ok(())
    }

    /// Every refused event is counted by reason (whether kept aside as held
    /// or not stored at all).
    fn count_rejected(&self, report: &hearthnet_events::AppendReport) {
        for (_, r) in &report.rejected {
            self.metrics
                .events_rejected
                .get_or_create(&hearthnet_observability::metrics::ReasonLabel {
                    reason: r.code.as_str().to_owned(),
                })
                .inc();
        }
    }

    /// v1: push everything stored since the last successful push.
    async fn push_since(
        &self,
        addr: &str,
        expected: Option<NodeId>,
        report: &mut RoundReport,
    ) -> Result<(), CallError> {
        let mut after = self.peers.lock().get(addr).map_or(0, |s| s.pushed_seq);
        loop {
            let batch = self
                .log
                .query(Query {
                    after_seq: Some(after),
                    limit: Some(BATCH),
                    ..Query::default()
                })
                .await
                .map_err(internal)?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                break;
            };
            let values: Vec<Value> = batch.into_iter().map(|e| e.json).collect();
            report.events_out += self.push(addr, expected, values).await?;
            after = last;
            self.peers
                .lock()
                .entry(addr.to_owned())
                .or_default()
                .pushed_seq = last;
        }
        Ok(())
    }

    /// Push `events` in as many requests as the receiver's body limit
    /// needs; returns how many it accepted.
    async fn push(
        &self,
        addr: &str,
        expected: Option<NodeId>,
        events: Vec<Value>,
    ) -> Result<u64, CallError> {
        let community_id = Some(self.log.view().community_id);
        let mut accepted = 0;
        for events in split_by_bytes(events, PUSH_BUDGET_BYTES) {
            let body = EventsPush {
                community_id,
                events,
            };
            let reply = self
                .client
                .post_as::<EventsReport>(addr, expected, "/sync/v1/events", &body)
                .await
                .map_err(peer_error)?;
            accepted += reply.body.accepted;
        }
        Ok(accepted)
    }

    /// Sync with every peer `peers()` names now and then every
    /// `schedule.interval(emergency)`, where `emergency` follows the
    /// emergency detector (M09): more often when the internet is gone and
    /// the neighbourhood depends on itself. `new_peer` starts a round at
    /// once.
    pub async fn run_periodic(
        self: Arc<Self>,
        peers: impl Fn() -> Vec<String> + Send + 'static,
        new_peer: Arc<tokio::sync::Notify>,
        schedule: Schedule,
        mut emergency: tokio::sync::watch::Receiver<bool>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let current = peers();
            for peer in &current {
                let _ = self.round(peer, None).await;
            }
            self.forget_all_but(&current);
            let wait = schedule.interval(*emergency.borrow());
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = new_peer.notified() => {}
                // Entering or leaving emergency mode reschedules at once.
                r = emergency.changed() => if r.is_err() { return },
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// Distinct peers, still listed, whose latest round succeeded: a node
/// reached at two addresses (say a static one and a discovered one)
/// counts once.
fn reachable(states: &HashMap<String, PeerSyncState>) -> usize {
    states
        .iter()
        .filter(|(_, s)| s.unlisted_passes == 0)
        .filter(|(_, s)| s.shown.last_ok.is_some() && s.shown.last_ok == s.shown.last_round)
        .map(|(addr, s)| s.shown.node_id.as_deref().unwrap_or(addr))
        .collect::<std::collections::HashSet<_>>()
        .len()
}

impl Syncer {
    /// Redeem an invite (M13): the invite is ours to honour, addressed to
    /// `from`, unexpired and unused; `joined` is `from`'s own event naming
    /// it. On success `from` is a member and gets what it needs to start.
    async fn redeem(&self, from: NodeId, text: &str, joined: Value) -> Result<Redeemed, CallError> {
        use hearthnet_onboarding::Invite;
        let invite = Invite::decode(text).map_err(|e| CallError::new(e.code(), e.to_string()))?;
        let view = self.log.view();
        if invite.community_id != view.community_id {
            return Err(CallError::new(
                ErrorCode::Unauthorized,
                "the invite is for another community",
            ));
        }
        invite
            .check_for(&from, Timestamp::now())
            .map_err(|e| CallError::new(e.code(), e.to_string()))?;
        if view.level_of(&invite.inviter_node_id) < hearthnet_base::TrustLevel::Member {
            return Err(CallError::new(
                ErrorCode::Unauthorized,
                "the inviter is not a member",
            ));
        }
        let recorded = view.invites.get(&invite.invite_event_id).ok_or_else(|| {
            CallError::new(
                ErrorCode::NotFound,
                "this node has not seen the invite's event yet; try the inviter's node",
            )
        })?;
        if recorded.used {
            return Err(CallError::new(
                ErrorCode::Unauthorized,
                "the invite was already used",
            ));
        }
        if recorded.invitee != from {
            return Err(CallError::new(
                ErrorCode::Unauthorized,
                "the invite event names another node",
            ));
        }
        let valid_join = joined["author"] == json!(from)
            && joined["event_type"] == "community.member.joined"
            && joined["data"]["invite_event_id"] == invite.invite_event_id.as_str();
        if !valid_join {
            return Err(CallError::bad_request(
                "`joined` must be your community.member.joined event naming this invite",
            ));
        }
        let report = self
            .log
            .append_received(vec![joined])
            .await
            .map_err(internal)?;
        self.count_rejected(&report);
        if let Some((_, r)) = report.rejected.first() {
            return Err(CallError::new(r.code.error_code(), r.to_string()));
        }
        if report.accepted == 0 {
            return Err(CallError::new(
                ErrorCode::Unauthorized,
                "the invite was already used",
            ));
        }
        let mut events = Vec::new();
        // The membership history a new member needs before it can sync:
        // every `community.*` event.
        for t in hearthnet_events::types::known().filter(|t| t.starts_with("community.")) {
            let found = self
                .log
                .query(Query {
                    event_type: Some(t.into()),
                    ..Query::default()
                })
                .await
                .map_err(internal)?;
            events.extend(found.into_iter().map(|e| e.json));
        }
        tracing::info!(member = %from.short(), "invite redeemed");
        Ok(Redeemed {
            community_id: view.community_id,
            genesis_manifest: self.genesis_manifest.clone(),
            events,
        })
    }
}

/// How often the periodic sync runs (`[events]` in config.toml).
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub normal: Duration,
    pub emergency: Duration,
}

impl Schedule {
    pub fn interval(&self, emergency: bool) -> Duration {
        if emergency {
            self.emergency
        } else {
            self.normal
        }
    }
}

/// The endpoints' futures must be `'static`, so they hold the syncer by `Arc`.
pub struct SyncHandle(pub Arc<Syncer>);

impl SyncEndpoints for SyncHandle {
    fn heads(&self) -> BoxFuture<'static, Heads> {
        let view = self.0.log.view();
        Box::pin(async move {
            Heads {
                community_id: view.community_id,
                head: view.head,
                sync: vec![PROTOCOL_V2.into(), PROTOCOL_V1.into()],
                by_community: [(view.community_id.full(), view.head)].into(),
            }
        })
    }

    fn receive(&self, events: Vec<Value>) -> BoxFuture<'static, Result<EventsReport, CallError>> {
        let this = self.0.clone();
        Box::pin(async move {
            if events.len() > MAX_PUSH_EVENTS {
                return Err(CallError::bad_request(format!(
                    "a push carries at most {MAX_PUSH_EVENTS} events, this one {}",
                    events.len()
                )));
            }
            let report = this.log.append_received(events).await.map_err(internal)?;
            this.count_rejected(&report);
            Ok(EventsReport {
                accepted: report.accepted,
                duplicates: report.duplicates,
                rejected: report.rejected.len() as u64,
                rejected_reasons: report
                    .rejected
                    .into_iter()
                    .map(|(event_id, r)| Rejection {
                        event_id,
                        reason: r.code.as_str().to_owned(),
                        detail: r.detail,
                    })
                    .collect(),
                new_head_lamport: report.head,
            })
        })
    }

    fn reconcile(&self, message: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, CallError>> {
        let this = self.0.clone();
        Box::pin(async move {
            let set = this.id_set().await?;
            answer(&set, &message).map_err(|e| CallError::bad_request(e.to_string()))
        })
    }

    fn fetch(&self, hashes: Vec<Vec<u8>>) -> BoxFuture<'static, Result<Vec<Value>, CallError>> {
        let this = self.0.clone();
        Box::pin(async move {
            let set = this.id_set().await?;
            let ids: Vec<String> = hashes
                .iter()
                .take(BATCH * 4)
                .filter_map(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
                .filter_map(|h| set.event_id(&h).map(str::to_owned))
                .collect();
            let events = this.log.by_ids(ids).await.map_err(internal)?;
            Ok(events.into_iter().map(|e| e.json).collect())
        })
    }

    fn subscribe(
        &self,
        caller: NodeId,
        topic: String,
        last_seq: i64,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Value, CallError>> {
        let log = self.0.log.clone();
        Box::pin(async move {
            let filter = hearthnet_events::types::topic(&topic)
                .ok_or_else(|| CallError::new(ErrorCode::NotFound, format!("no topic {topic}")))?;
            if filter.private_to().is_some_and(|owner| owner != caller) {
                return Err(CallError::new(
                    ErrorCode::Unauthorized,
                    format!(
                        "{topic} is its recipient's own topic; subscribe to chat.message.<your node id>"
                    ),
                ));
            }
            let deadline = Instant::now() + timeout;
            let mut changes = log.changes();
            let mut cursor = last_seq;
            loop {
                // The database does the type filter and the bound; only a
                // parameterised topic's field is checked here.
                let page = log
                    .query(Query {
                        event_types: filter.event_types().map(str::to_owned).collect(),
                        after_seq: Some(cursor),
                        limit: Some(PUBSUB_BATCH),
                        ..Query::default()
                    })
                    .await
                    .map_err(internal)?;
                let full = page.len() == PUBSUB_BATCH;
                cursor = page.last().map_or(cursor, |e| e.seq);
                let messages: Vec<Value> = page
                    .into_iter()
                    .filter(|e| filter.matches(&e.event.event_type, &e.event.data))
                    .map(|e| json!({"seq": e.seq, "payload": e.json}))
                    .collect();
                // A full page answers even when none of it matched, so one
                // request never scans more than one page: the client goes
                // on from `last_seq`.
                if !messages.is_empty() || full {
                    return Ok(json!({"topic": topic, "messages": messages, "last_seq": cursor}));
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || tokio::time::timeout(left, changes.changed()).await.is_err() {
                    return Ok(json!({"topic": topic, "timeout": true, "last_seq": cursor}));
                }
            }
        })
    }

    fn redeem(
        &self,
        from: NodeId,
        invite: String,
        joined: Value,
    ) -> BoxFuture<'static, Result<Redeemed, CallError>> {
        let this = self.0.clone();
        Box::pin(async move { this.redeem(from, &invite, joined).await })
    }

    fn sync_now(
        &self,
        peer: String,
        protocol: Option<String>,
    ) -> BoxFuture<'static, Result<Value, CallError>> {
        let this = self.0.clone();
        Box::pin(async move {
            let report = this.round(&peer, protocol.as_deref()).await?;
            serde_json::to_value(report).map_err(internal)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearthnet_base::DeviceKey;
    use hearthnet_identity::{CommunityPolicy, Genesis};
    use hearthnet_transport::tls::TlsIdentity;

    #[test]
    fn reachable_counts_each_listed_node_once_while_its_last_round_worked() {
        let now = Some(Timestamp::now());
        let state = |node: Option<&str>, last_ok| PeerSyncState {
            shown: SyncPeer {
                node_id: node.map(str::to_owned),
                last_round: now,
                last_ok,
                ..SyncPeer::default()
            },
            ..PeerSyncState::default()
        };
        let states: HashMap<String, PeerSyncState> = [
            ("10.0.0.1:7443", state(Some("ed25519:a"), now)),
            ("192.168.1.1:7443", state(Some("ed25519:a"), now)),
            ("10.0.0.2:7443", state(Some("ed25519:b"), now)),
            ("10.0.0.3:7443", state(Some("ed25519:c"), None)),
            ("10.0.0.4:7443", state(None, now)),
            (
                "10.0.0.5:7443",
                PeerSyncState {
                    unlisted_passes: 1,
                    ..state(Some("ed25519:d"), now)
                },
            ),
        ]
        .into_iter()
        .map(|(addr, s)| (addr.to_owned(), s))
        .collect();
        assert_eq!(reachable(&states), 3);
    }

    /// A syncer over a fresh log in `dir`, its peers unreachable.
    fn syncer(dir: &std::path::Path) -> Arc<Syncer> {
        founded_by(dir, DeviceKey::generate())
    }

    /// A syncer over a fresh log in `dir` of a community `key` founded.
    fn founded_by(dir: &std::path::Path, key: DeviceKey) -> Arc<Syncer> {
        let genesis = Genesis::create(&key, "t", CommunityPolicy::default()).unwrap();
        let community = genesis.manifest.community_id;
        let log = EventLog::open(
            hearthnet_events::LogPaths::in_state_dir(dir),
            community,
            hearthnet_events::Limits::default(),
            Some(genesis.created_event.to_value()),
            None,
        )
        .unwrap();
        let identity = Arc::new(TlsIdentity::new(&key).unwrap());
        // Plain HTTP: the fake peers below speak no TLS.
        let client = PeerClient::new(key, community, identity, Arc::new(|_| true), true);
        Arc::new(Syncer::new(
            log,
            json!({}),
            Arc::new(client),
            Arc::new(hearthnet_observability::metrics::Metrics::new()),
        ))
    }

    /// A peer on loopback speaking plain HTTP/1.1, one request per
    /// connection: `GET /manifest` is a signed manifest offering
    /// negentropy, and each of `answers` is what a POST to its path gets.
    async fn fake_peer(answers: Vec<(&'static str, Value)>) -> String {
        use hearthnet_identity::node_manifest::samples;
        use hearthnet_identity::{Endpoint, NodeManifestContent};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let key = DeviceKey::generate();
        let content = NodeManifestContent {
            endpoints: vec![Endpoint {
                transport: "http".into(),
                host: "127.0.0.1".into(),
                port: 1,
            }],
            sync: vec![PROTOCOL_V2.into()],
            ..samples::content(hearthnet_base::CommunityId::of_root(key.node_id()))
        };
        let (_, manifest) = NodeManifest::issue(content, &key, Timestamp::now()).unwrap();
        let mut answers: HashMap<&str, Value> = answers.into_iter().collect();
        answers.insert("/manifest", manifest);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // The whole request: headers, then the body they announce.
                let (head, body_len) = loop {
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break (String::new(), 0);
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (head, end + 4 + length);
                    }
                };
                while request.len() < body_len {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let path = head.split(' ').nth(1).unwrap_or_default();
                let body = answers.get(path).map_or_else(String::new, Value::to_string);
                let status = if body.is_empty() {
                    "404 Not Found"
                } else {
                    "200 OK"
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_malformed_answer_of_a_peer_fails_the_round_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = syncer(dir.path());
        let peer = fake_peer(vec![
            ("/sync/v2/reconcile", json!({"message": 5})),
            (
                "/sync/v1/events",
                json!({"accepted": "all", "new_head_lamport": 1}),
            ),
        ])
        .await;
        for (protocol, field) in [(None, "field `message`"), (Some("v1"), "field `accepted`")] {
            let failed = syncer.round(&peer, protocol).await.err().map(|e| e.message);
            assert!(
                failed.as_deref().is_some_and(|m| m.contains(field)),
                "{protocol:?}: {failed:?}"
            );
        }
        assert_eq!(syncer.states()[&peer].errors, 2);
    }

    #[tokio::test]
    async fn a_push_over_the_cap_is_refused_before_the_log_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let handle = SyncHandle(syncer(dir.path()));
        let count = handle.0.log.view().count;
        // Not even events: refused for their number, not their content.
        let refused = handle
            .receive(vec![json!({}); MAX_PUSH_EVENTS + 1])
            .await
            .err()
            .map(|e| (e.code, e.message));
        let (code, message) = refused.expect("over the cap");
        assert_eq!(code, ErrorCode::BadRequest);
        assert!(message.contains(&MAX_PUSH_EVENTS.to_string()), "{message}");
        let at_cap = handle
            .receive(vec![json!({}); MAX_PUSH_EVENTS])
            .await
            .unwrap();
        assert_eq!(at_cap.rejected, MAX_PUSH_EVENTS as u64, "judged one by one");
        assert_eq!(handle.0.log.view().count, count);
    }

    #[tokio::test]
    async fn a_page_of_messages_for_others_answers_with_none_and_moves_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let founder = DeviceKey::generate();
        let handle = SyncHandle(founded_by(dir.path(), founder.clone()));
        let (carol, dave) = (DeviceKey::generate(), DeviceKey::generate());
        let send = |to: &DeviceKey, i: usize| {
            let data =
                json!({"client_id": format!("m{i}"), "recipient": to.node_id(), "body": "hi"});
            handle
                .0
                .log
                .append_local("chat.message.sent", data, &founder)
        };
        for i in 0..PUBSUB_BATCH + 20 {
            send(&carol, i).await.unwrap();
        }
        send(&dave, 0).await.unwrap();
        let topic = format!("chat.message.{}", dave.node_id().full());
        let wait = Duration::from_secs(5);
        // One page of Carol's messages: nothing for Dave, but the cursor
        // moves past them at once rather than scanning on.
        // Only Dave may ask: Carol is refused before anything is read.
        let refused = handle
            .subscribe(carol.node_id(), topic.clone(), 0, wait)
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::Unauthorized);
        let dave_id = dave.node_id();
        let first = handle
            .subscribe(dave_id, topic.clone(), 0, wait)
            .await
            .unwrap();
        assert_eq!(first["messages"], json!([]), "{first}");
        assert!(first.get("timeout").is_none(), "{first}");
        let cursor = first["last_seq"].as_i64().unwrap();
        let second = handle
            .subscribe(dave_id, topic, cursor, wait)
            .await
            .unwrap();
        let messages = second["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "{second}");
        assert_eq!(
            messages[0]["payload"]["data"]["recipient"],
            json!(dave.node_id())
        );
    }

    /// `run_periodic` in a task: the emergency switch, the stop token and
    /// the task.
    fn start_periodic(
        syncer: &Arc<Syncer>,
        peers: impl Fn() -> Vec<String> + Send + 'static,
        normal: Duration,
        emergency: Duration,
    ) -> (
        tokio::sync::watch::Sender<bool>,
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let (flag, in_emergency) = tokio::sync::watch::channel(false);
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(syncer.clone().run_periodic(
            peers,
            Arc::new(tokio::sync::Notify::new()),
            Schedule { normal, emergency },
            in_emergency,
            stop.clone(),
        ));
        (flag, stop, task)
    }

    /// Lets the (paused) clock run until `done` holds; fails after `limit`
    /// of its time. Returns how much of it passed.
    async fn until(limit: Duration, what: &str, done: impl Fn() -> bool) -> Duration {
        let started = tokio::time::Instant::now();
        while !done() {
            assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_no_longer_listed_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = syncer(dir.path());
        let listed = Arc::new(Mutex::new(vec!["127.0.0.1:1".to_owned()]));
        let peers = {
            let listed = listed.clone();
            move || listed.lock().clone()
        };
        let every = Duration::from_millis(20);
        let (_flag, stop, task) = start_periodic(&syncer, peers, every, every);
        let limit = Duration::from_secs(60);
        until(limit, "a round with the listed peer", || {
            syncer.states().contains_key("127.0.0.1:1")
        })
        .await;
        listed.lock().clear();
        until(limit, "the unlisted peer is forgotten", || {
            syncer.states().is_empty()
        })
        .await;
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn emergency_mode_syncs_more_often() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = syncer(dir.path());
        // Nobody listens on port 1 on loopback: every round fails.
        let peer = "127.0.0.1:1".to_owned();
        let peers = {
            let peer = peer.clone();
            move || vec![peer.clone()]
        };
        let normal = Duration::from_secs(3600);
        let (flag, stop, task) = start_periodic(&syncer, peers, normal, Duration::from_millis(40));
        let rounds = || syncer.states().get(&peer).map_or(0, |s| s.rounds);
        until(normal / 2, "the round at start", || rounds() == 1).await;
        // Most of the normal hour passes without a second round.
        tokio::time::sleep(normal / 2).await;
        assert_eq!(rounds(), 1, "one round at start, then the normal hour");
        flag.send_replace(true);
        let took = until(normal / 2, "four rounds in emergency mode", || {
            rounds() >= 5
        })
        .await;
        assert!(syncer.states()[&peer].errors >= 5);
        // Rounds come 40 ms apart, not back to back.
        assert!(took >= Duration::from_millis(120), "{took:?}");
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn pushes_are_split_to_fit_the_receivers_body_limit() {
        let event = |n: usize| json!({"pad": "x".repeat(n)});
        let size = |e: &Value| e.to_string().len() + 1;
        let events: Vec<Value> = (0..10).map(|_| event(1000)).collect();
        let one = size(&events[0]);
        let runs = split_by_bytes(events.clone(), 3 * one);
        assert_eq!(runs.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
        assert_eq!(runs.concat(), events, "nothing lost or reordered");
        for run in &runs {
            assert!(run.iter().map(size).sum::<usize>() <= 3 * one);
        }
        // One event over the budget travels alone.
        let runs = split_by_bytes(vec![event(10), event(5000), event(10)], 2000);
        assert_eq!(runs.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
        assert!(split_by_bytes(Vec::new(), 10).is_empty());
    }
}
