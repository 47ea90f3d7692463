//! Who is asking: signed-request verification (Contract §5.1, SYSTEM.md
//! item 4), replay protection and rate limits (X01 §7).
//!
//! A request is accepted only if its headers are complete, it names our
//! community, its timestamp is within the skew window, its signature
//! checks out against the `From` key, what it carries beyond the v1
//! envelope (query string, timeout and target headers) is covered by the
//! same key ([`Extras`]), the signer is a member (and not revoked), and its
//! request id was not seen in the window before. The
//! window bounds how long a captured request is worth anything; the
//! replay cache makes it worthless inside the window too.
//!
//! Everything but the signature needs no body, so the typed layer runs
//! those checks ([`Authenticator::precheck`]) before it reads one: a
//! stranger's request costs its headers, never its body.
//!
//! The replay cache and the rate windows sit behind `parking_lot` locks,
//! which do not poison: a holder that panics releases the lock with the
//! data as it was, so a panic can never switch either check off.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use hearthnet_base::constants::{
    RATE_LIMIT_HARD_RPS_PER_CAP, RATE_LIMIT_HARD_RPS_TOTAL, RATE_LIMIT_SOFT_RPS_PER_CAP,
    RATE_LIMIT_SOFT_RPS_TOTAL,
};
use hearthnet_base::crypto::{SignedMessage, verify_all};
use hearthnet_base::request::{COVERS, COVERS_SIGNATURE, Extras, SignedHeaders};
use hearthnet_base::{CommunityId, ErrorCode, NodeId, Timestamp, TrustLevel};
use hearthnet_bus::CallError;
use hearthnet_observability::metrics::{CapabilityLabel, Metrics, ReasonLabel};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::NodeView;
use crate::http::ApiError;
use crate::server::PeerIdentity;

/// Who may use an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any member of the community.
    Member,
    /// Only this node's own key (local introspection).
    OwnKey,
    /// A device not yet a member, redeeming an invite addressed to its key
    /// (the endpoint checks the invite).
    Invitee,
}

/// A request as presented for authentication: everything but its body,
/// so all that needs no body can be checked before the body is read.
pub struct Presented<'a> {
    pub headers: &'a HeaderMap,
    /// The query string as received, if any.
    pub query: Option<&'a str>,
    /// The path, for plain endpoints (their signed `capability`).
    pub endpoint: Option<&'a str>,
    pub access: Access,
    /// The peer proven by the TLS connection, if any.
    pub connection: Option<PeerIdentity>,
}

/// What a passed precheck read from the headers, handed on to
/// [`Authenticator::authenticate`] so they are read once.
pub struct Prechecked {
    signed: SignedHeaders,
    covers: Option<SignedMessage>,
}

/// Who sent an accepted request.
#[derive(Debug)]
pub struct Caller {
    pub id: NodeId,
    pub level: TrustLevel,
    pub headers: SignedHeaders,
}

/// A check that failed, with the label it is counted under in
/// `hearthnet_signature_failures_total`.
struct Denied {
    reason: &'static str,
    error: CallError,
}

impl Denied {
    fn new(reason: &'static str, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            reason,
            error: CallError::new(code, message),
        }
    }

    fn counted(self, metrics: &Metrics) -> ApiError {
        metrics
            .signature_failures
            .get_or_create(&ReasonLabel {
                reason: self.reason.to_owned(),
            })
            .inc();
        ApiError::Call(self.error)
    }
}

pub struct Authenticator {
    node_id: NodeId,
    community: CommunityId,
    skew: Duration,
    /// When this node started (made its authenticator), to the second.
    started: Timestamp,
    signatures: SignatureBatcher,
    seen: Mutex<SeenIds>,
    windows: Mutex<RateWindows>,
}

/// Checks the signatures of requests that arrive together in one batch
/// ([`verify_all`]): the most expensive step of every request, and about
/// 40 % cheaper per signature in batches of 16.
///
/// Each request queues its signature, then either finds it answered or
/// takes one of the leads (one per core) and checks the queue front to
/// back, [`Self::MOST`] at a time, until its own is done. Nobody waits for
/// a batch to fill: a lone request is checked at once, and batches form
/// only while the leads are busy, i.e. under load. No signature is
/// stranded: its task either gets the answer or takes a lead itself. (A
/// request abandoned while queued leaves its entry for the next lead.)
struct SignatureBatcher {
    queue: Mutex<Vec<(SignedMessage, oneshot::Sender<bool>)>>,
    leads: tokio::sync::Semaphore,
    /// Until when to check one by one: a batch holding a bad signature
    /// costs more than single checks, and any member can send bad
    /// signatures, so after a failed batch
    /// batching pauses for [`Self::PAUSE_AFTER_FAILURE`].
    /// On the runtime's clock, so tests can step over the pause.
    singles_until: Mutex<Option<tokio::time::Instant>>,
}

impl Default for SignatureBatcher {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            queue: Mutex::default(),
            leads: tokio::sync::Semaphore::new(cores),
            singles_until: Mutex::default(),
        }
    }
}

impl SignatureBatcher {
    /// Most signatures checked in one go: the gain levels off near 16,
    /// while the task checking them holds its runtime thread ~30 µs each.
    const MOST: usize = 16;
    const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

    async fn verify(&self, item: SignedMessage, metrics: &Metrics) -> bool {
        let (answer, mut answered) = oneshot::channel();
        self.queue.lock().push((item, answer));
        let _lead = tokio::select! {
            biased;
            ok = &mut answered => return ok.unwrap_or(false),
            lead = self.leads.acquire() => lead,
        };
        // Leading: check batches from the front of the queue until ours is
        // among them, answering everyone queued before us on the way.
        loop {
            match answered.try_recv() {
                Ok(ok) => return ok,
                Err(oneshot::error::TryRecvError::Closed) => return false,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<_> = {
                let mut queue = self.queue.lock();
                let n = queue.len().min(Self::MOST);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                // Another lead took ours and is checking it.
                return answered.await.unwrap_or(false);
            }
            let (items, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            for (ok, answer) in self.check(&items, metrics).into_iter().zip(answers) {
                // A waiter that went away no longer needs its answer.
                let _ = answer.send(ok);
            }
            // Let the other tasks of this thread run between batches.
            tokio::task::yield_now().await;
        }
    }

    fn check(&self, items: &[SignedMessage], metrics: &Metrics) -> Vec<bool> {
        let now = tokio::time::Instant::now();
        let paused = self.singles_until.lock().is_some_and(|until| now < until);
        if paused {
            for _ in items {
                metrics.signature_batch_size.observe(1.0);
            }
            return items.iter().map(|item| item.verify().is_ok()).collect();
        }
        metrics.signature_batch_size.observe(items.len() as f64);
        let verified = verify_all(items);
        if items.len() > 1 && verified.contains(&false) {
            *self.singles_until.lock() = Some(now + Self::PAUSE_AFTER_FAILURE);
        }
        verified
    }
}

/// Request ids seen recently, in two generations that rotate every
/// `keep`: an id is remembered for at least `keep` and at most twice that,
/// with O(1) work per request however busy the node is.
///
/// Each `(sender, request id)` is kept as the first 128 bits of its
/// BLAKE3 hash: no allocation per request and 16 bytes an entry, so a busy
/// window costs megabytes, not hundreds. A collision could only refuse a
/// fresh request as a replay, never let a replay through, and finding one
/// on purpose takes ~2^64 hashes.
#[derive(Default, Clone)]
struct SeenIds {
    current: HashSet<u128>,
    previous: HashSet<u128>,
    rotated: Option<Instant>,
}

impl SeenIds {
    fn digest(from: &NodeId, request_id: &str) -> u128 {
        let mut hasher = blake3::Hasher::new();
        hasher.update(from.as_bytes());
        hasher.update(request_id.as_bytes());
        let mut first = [0u8; 16];
        hasher.finalize_xof().fill(&mut first);
        u128::from_le_bytes(first)
    }

    /// Whether [`Self::insert`] would call the id seen, without recording
    /// it (nor rotating: what a rotation due now would forget is skipped).
    fn contains(&self, from: &NodeId, request_id: &str, now: Instant, keep: Duration) -> bool {
        let digest = Self::digest(from, request_id);
        match self.rotated {
            Some(at) if now.duration_since(at) < keep => {
                self.current.contains(&digest) || self.previous.contains(&digest)
            }
            // Due to rotate: `current` becomes what `insert` checks.
            _ => self.current.contains(&digest),
        }
    }

    /// False if the id was already seen.
    fn insert(&mut self, from: NodeId, request_id: &str, now: Instant, keep: Duration) -> bool {
        match self.rotated {
            Some(at) if now.duration_since(at) < keep => {}
            _ => {
                self.previous = std::mem::take(&mut self.current);
                self.rotated = Some(now);
            }
        }
        let digest = Self::digest(&from, request_id);
        if self.previous.contains(&digest) {
            return false;
        }
        self.current.insert(digest)
    }
}

fn replayed(signed: &SignedHeaders) -> Denied {
    Denied::new(
        "replay",
        ErrorCode::Unauthorized,
        format!(
            "request id {} was already used: a replayed request",
            signed.request_id
        ),
    )
}

#[derive(Default)]
struct RateWindows {
    second: u64,
    per_capability: HashMap<(NodeId, String), u32>,
    per_peer: HashMap<NodeId, u32>,
}

/// The headers of a signed request, or `unauthorized` naming what is
/// missing or malformed.
fn signed_headers(headers: &HeaderMap) -> Result<SignedHeaders, CallError> {
    let lookup = |name: &'static str| headers.get(name).and_then(|v| v.to_str().ok());
    SignedHeaders::from_lookup(lookup).map_err(|e| {
        CallError::new(
            ErrorCode::Unauthorized,
            format!("a signed request is required: {e}"),
        )
    })
}

impl Authenticator {
    pub fn new(node_id: NodeId, community: CommunityId, skew: Duration) -> Self {
        Self {
            node_id,
            community,
            skew,
            started: Timestamp::now(),
            signatures: SignatureBatcher::default(),
            seen: Mutex::new(SeenIds::default()),
            windows: Mutex::new(RateWindows::default()),
        }
    }

    /// The community this node serves.
    pub fn community(&self) -> CommunityId {
        self.community
    }

    /// Refuse, before its body is read, a request that would be refused
    /// whatever its body: a body of up to the route's limit costs more to
    /// read and parse than all of these checks together, and a stranger
    /// must not make the node pay for it. Passing proves nothing (the
    /// signature is not checked yet); [`Self::authenticate`] checks it all.
    pub fn precheck(
        &self,
        view: &dyn NodeView,
        metrics: &Metrics,
        req: &Presented<'_>,
    ) -> Result<Prechecked, ApiError> {
        let signed = signed_headers(req.headers)?;
        let covers = self
            .check_without_body(view, req, &signed)
            .map_err(|denied| denied.counted(metrics))?;
        Ok(Prechecked { signed, covers })
    }

    /// Accept the request `prechecked` from `req`, with `body`, or say why
    /// not.
    pub async fn authenticate(
        &self,
        view: &dyn NodeView,
        metrics: &Metrics,
        req: Presented<'_>,
        prechecked: Prechecked,
        body: &Value,
    ) -> Result<Caller, ApiError> {
        let Prechecked { signed, covers } = prechecked;
        let level = self
            .verify(view, metrics, &req, &signed, covers, body)
            .await
            .map_err(|denied| denied.counted(metrics))?;
        if signed.from != self.node_id {
            // Budgets per capability are for capability calls; sync and the
            // other endpoints count only toward the peer's total budget.
            let capability = req.endpoint.is_none().then_some(signed.capability.as_str());
            self.check_rate(&signed.from, capability, metrics)?;
        }
        Ok(Caller {
            id: signed.from,
            level,
            headers: signed,
        })
    }

    /// The checks the precheck left, and the rate limit aside; the
    /// sender's level if all pass. What may have changed while the body
    /// arrived is checked again: the sender may have been revoked, or the
    /// id used.
    async fn verify(
        &self,
        view: &dyn NodeView,
        metrics: &Metrics,
        req: &Presented<'_>,
        signed: &SignedHeaders,
        covers: Option<SignedMessage>,
        body: &Value,
    ) -> Result<TrustLevel, Denied> {
        let level = self.check_access(view, signed, req.access, req.connection)?;
        self.check_unseen(signed)?;
        self.check_signature(signed, body, covers, metrics).await?;
        // Recorded only now: an id recorded before its signature checked
        // out would let anyone burn a member's request ids.
        self.check_replay(signed)?;
        Ok(level)
    }

    /// The checks that need no body, cheapest and most telling first; the
    /// covers signature still to check, if any.
    fn check_without_body(
        &self,
        view: &dyn NodeView,
        req: &Presented<'_>,
        signed: &SignedHeaders,
    ) -> Result<Option<SignedMessage>, Denied> {
        self.check_addressed_here(signed, req.endpoint)?;
        self.check_clock(signed)?;
        self.check_access(view, signed, req.access, req.connection)?;
        let covers = Self::check_extras(req, signed)?;
        self.check_unseen(signed)?;
        Ok(covers)
    }

    /// The request id not used yet; recorded only by [`Self::check_replay`].
    fn check_unseen(&self, signed: &SignedHeaders) -> Result<(), Denied> {
        let seen = self.seen.lock().contains(
            &signed.from,
            &signed.request_id,
            Instant::now(),
            self.replay_window(),
        );
        if seen { Err(replayed(signed)) } else { Ok(()) }
    }

    /// The query string and our timeout and target headers as the signer
    /// covered them ([`Extras`]): a change is named here, before any
    /// signature is checked; the covers signature is returned to check.
    fn check_extras(
        req: &Presented<'_>,
        signed: &SignedHeaders,
    ) -> Result<Option<SignedMessage>, Denied> {
        let header = |name: &'static str| req.headers.get(name).and_then(|v| v.to_str().ok());
        Extras::from_lookup(header, req.query)
            .covered_message(signed, header(COVERS), header(COVERS_SIGNATURE))
            .map_err(|e| Denied::new("extras_mismatch", ErrorCode::Unauthorized, e.to_string()))
    }

    /// Signed for this endpoint (plain endpoints sign their path as the
    /// `capability`) and this community.
    fn check_addressed_here(
        &self,
        signed: &SignedHeaders,
        endpoint: Option<&str>,
    ) -> Result<(), Denied> {
        if let Some(path) = endpoint
            && signed.capability != path
        {
            return Err(Denied::new(
                "wrong_endpoint",
                ErrorCode::InvalidSignature,
                format!(
                    "the request was signed for `{}`, not `{path}`",
                    signed.capability
                ),
            ));
        }
        if signed.community != self.community {
            return Err(Denied::new(
                "foreign_community",
                ErrorCode::Unauthorized,
                format!(
                    "this node serves community {}, not {}",
                    self.community.short(),
                    signed.community.short()
                ),
            ));
        }
        Ok(())
    }

    /// The timestamp within the skew window, what bounds how long a
    /// captured request is worth anything, and not before this node
    /// started: the replay cache lives in memory, so without that rule a
    /// request captured before a restart could be replayed after it.
    ///
    /// Timestamps have whole seconds, so a request stamped in the very
    /// second the node started passes: a replay needs a restart within
    /// that second. A client whose clock runs behind by `d` is refused as
    /// `expired` for the first `d` seconds after a start (its requests are
    /// stamped earlier), then served again.
    fn check_clock(&self, signed: &SignedHeaders) -> Result<(), Denied> {
        let age = Timestamp::now().unix() - signed.timestamp.unix();
        if age.unsigned_abs() > self.skew.as_secs() {
            return Err(Denied::new(
                "stale",
                ErrorCode::Expired,
                format!(
                    "the request is stamped {}, {age} s from this node's clock; the window is ±{} s (check both clocks)",
                    signed.timestamp,
                    self.skew.as_secs()
                ),
            ));
        }
        if signed.timestamp < self.started {
            return Err(Denied::new(
                "before_start",
                ErrorCode::Expired,
                format!(
                    "the request is stamped {}, before this node started ({}): sign it again (check both clocks if this persists)",
                    signed.timestamp, self.started
                ),
            ));
        }
        Ok(())
    }

    /// The v1 signature and, for a request with extras, the covers
    /// signature, queued together so they can share a batch.
    async fn check_signature(
        &self,
        signed: &SignedHeaders,
        body: &Value,
        covers: Option<SignedMessage>,
        metrics: &Metrics,
    ) -> Result<(), Denied> {
        let request = async {
            match signed.signed_message(body) {
                Ok(message) => self.signatures.verify(message, metrics).await,
                Err(_) => false,
            }
        };
        let covered = async {
            match covers {
                Some(message) => self.signatures.verify(message, metrics).await,
                None => true,
            }
        };
        let (verified, covered) = futures_util::future::join(request, covered).await;
        if !verified {
            return Err(Denied::new(
                "mismatch",
                ErrorCode::InvalidSignature,
                "the signature does not match the request and the From key",
            ));
        }
        if !covered {
            return Err(Denied::new(
                "extras_mismatch",
                ErrorCode::Unauthorized,
                format!(
                    "{COVERS} does not match {COVERS_SIGNATURE}: the query string or the timeout or target headers were changed after signing"
                ),
            ));
        }
        Ok(())
    }

    /// The signer may use an endpoint of `access`, over this connection.
    fn check_access(
        &self,
        view: &dyn NodeView,
        signed: &SignedHeaders,
        access: Access,
        connection: Option<PeerIdentity>,
    ) -> Result<TrustLevel, Denied> {
        let from = signed.from;
        if view.is_revoked(&from) {
            return Err(Denied::new(
                "revoked",
                ErrorCode::Revoked,
                format!("{} was revoked", from.short()),
            ));
        }
        let level = view.level_of(&from);
        if level == TrustLevel::Unknown && access != Access::Invitee {
            return Err(Denied::new(
                "not_member",
                ErrorCode::Unauthorized,
                format!("{} is not a member of this community", from.short()),
            ));
        }
        if let Some(PeerIdentity(peer)) = connection
            && peer != from
        {
            return Err(Denied::new(
                "connection_mismatch",
                ErrorCode::Unauthorized,
                format!(
                    "signed by {} over the TLS connection of {}",
                    from.short(),
                    peer.short()
                ),
            ));
        }
        if access == Access::OwnKey && from != self.node_id {
            return Err(Denied::new(
                "not_self",
                ErrorCode::Unauthorized,
                "this endpoint answers only to the node's own key",
            ));
        }
        Ok(level)
    }

    /// How long a request id is remembered: as long as its timestamp can
    /// be accepted, twice the skew, plus a second of rounding.
    fn replay_window(&self) -> Duration {
        self.skew * 2 + Duration::from_secs(1)
    }

    /// The request id unseen within the window: a captured request is
    /// worthless inside the window too.
    fn check_replay(&self, signed: &SignedHeaders) -> Result<(), Denied> {
        let fresh = self.seen.lock().insert(
            signed.from,
            &signed.request_id,
            Instant::now(),
            self.replay_window(),
        );
        if fresh { Ok(()) } else { Err(replayed(signed)) }
    }

    fn check_rate(
        &self,
        peer: &NodeId,
        capability: Option<&str>,
        metrics: &Metrics,
    ) -> Result<(), ApiError> {
        self.check_rate_at(peer, capability, metrics, Timestamp::now().unix() as u64)
    }

    /// Fixed one-second windows: `second` is the window of this request.
    fn check_rate_at(
        &self,
        peer: &NodeId,
        capability: Option<&str>,
        metrics: &Metrics,
        second: u64,
    ) -> Result<(), ApiError> {
        let (per_cap, total) = self.windows.lock().count(peer, capability, second);
        let hard = per_cap > RATE_LIMIT_HARD_RPS_PER_CAP || total > RATE_LIMIT_HARD_RPS_TOTAL;
        let soft = per_cap > RATE_LIMIT_SOFT_RPS_PER_CAP || total > RATE_LIMIT_SOFT_RPS_TOTAL;
        if !soft && !hard {
            return Ok(());
        }
        let capability = capability.unwrap_or("endpoints");
        metrics
            .rate_limited
            .get_or_create(&CapabilityLabel {
                capability: capability.to_owned(),
            })
            .inc();
        if hard {
            return Err(ApiError::DropConnection);
        }
        Err(ApiError::Call(
            CallError::new(
                ErrorCode::RateLimited,
                format!("over the rate budget for {capability}"),
            )
            .retry_after(1000),
        ))
    }
}

impl RateWindows {
    /// Count one request of `peer` (to `capability`, for capability calls)
    /// in window `second`: `(this capability's count, the peer's total)`.
    fn count(&mut self, peer: &NodeId, capability: Option<&str>, second: u64) -> (u32, u32) {
        if self.second != second {
            *self = Self {
                second,
                ..Self::default()
            };
        }
        let per_cap = match capability {
            Some(capability) => {
                let c = self
                    .per_capability
                    .entry((*peer, capability.to_owned()))
                    .or_insert(0);
                *c += 1;
                *c
            }
            None => 0,
        };
        let total = self.per_peer.entry(*peer).or_insert(0);
        *total += 1;
        (per_cap, *total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearthnet_base::DeviceKey;
    use serde_json::json;
    use std::sync::Arc;

    fn authenticator() -> Authenticator {
        let us = DeviceKey::generate().node_id();
        Authenticator::new(us, CommunityId::of_root(us), Duration::from_secs(60))
    }

    #[test]
    fn soft_then_hard_rate_limits_per_capability_and_peer() {
        let auth = authenticator();
        let metrics = Metrics::new();
        let peer = DeviceKey::generate().node_id();
        let outcome =
            |cap: &str, second: u64| match auth.check_rate_at(&peer, Some(cap), &metrics, second) {
                Ok(()) => "ok",
                Err(ApiError::Call(e))
                    if e.code == ErrorCode::RateLimited && e.retry_after_ms.is_some() =>
                {
                    "soft"
                }
                Err(ApiError::Call(_)) => "other",
                Err(ApiError::DropConnection) => "drop",
            };
        let first: Vec<&str> = (0..RATE_LIMIT_HARD_RPS_PER_CAP + 1)
            .map(|_| outcome("llm.chat", 7))
            .collect();
        let soft = RATE_LIMIT_SOFT_RPS_PER_CAP as usize;
        assert!(first[..soft].iter().all(|o| *o == "ok"), "{first:?}");
        assert!(
            first[soft..first.len() - 1].iter().all(|o| *o == "soft"),
            "{first:?}"
        );
        assert_eq!(*first.last().unwrap(), "drop");
        // The next second starts a fresh budget.
        assert_eq!(outcome("llm.chat", 8), "ok");
        // The per-peer budget counts every capability together.
        for _ in 0..RATE_LIMIT_SOFT_RPS_TOTAL {
            outcome("embed.text", 9);
        }
        assert_eq!(outcome("rag.query", 9), "soft");
    }

    /// A thread that panics while holding `mutex` (its guard is dropped as
    /// it unwinds).
    fn panic_holding<T: Send>(mutex: &Mutex<T>) {
        let panicked = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let _held = mutex.lock();
                    panic!("a holder of the lock panics");
                })
                .join()
        });
        assert!(panicked.is_err());
    }

    #[test]
    fn a_panic_while_holding_the_locks_still_refuses_replays_and_limits_rates() {
        let auth = authenticator();
        let metrics = Metrics::new();
        let key = DeviceKey::generate();
        let signed =
            SignedHeaders::sign(&key, auth.community, "/sync/v1/heads", "1.0", &json!({})).unwrap();
        assert!(auth.check_replay(&signed).is_ok());
        panic_holding(&auth.seen);
        let replayed = auth.check_replay(&signed).err().map(|d| d.reason);
        assert_eq!(replayed, Some("replay"));
        assert!(
            auth.check_replay(&SignedHeaders {
                request_id: "01B".into(),
                ..signed
            })
            .is_ok()
        );

        let peer = key.node_id();
        for _ in 0..RATE_LIMIT_SOFT_RPS_PER_CAP {
            assert!(
                auth.check_rate_at(&peer, Some("llm.chat"), &metrics, 5)
                    .is_ok()
            );
        }
        panic_holding(&auth.windows);
        assert!(matches!(
            auth.check_rate_at(&peer, Some("llm.chat"), &metrics, 5),
            Err(ApiError::Call(e)) if e.code == ErrorCode::RateLimited
        ));
    }

    /// Signatures of `n` requests by different keys; those at `bad` are
    /// checked against a message other than the one they signed.
    fn signed_messages(n: usize, bad: &[usize]) -> Vec<(SignedMessage, bool)> {
        (0..n)
            .map(|i| {
                let key = DeviceKey::generate();
                let message = format!("request {i}").into_bytes();
                let signature = key.sign_bytes(&message);
                let valid = !bad.contains(&i);
                let checked = if valid { message } else { b"forged".to_vec() };
                let item = SignedMessage::new(checked, &signature, &key.node_id()).unwrap();
                (item, valid)
            })
            .collect()
    }

    type Checking = tokio::task::JoinHandle<(bool, bool)>;

    /// Queue `items` while every lead is taken, so they wait together;
    /// the leads are free again when this returns.
    async fn queue_up(
        batcher: &Arc<SignatureBatcher>,
        metrics: &Arc<Metrics>,
        items: Vec<(SignedMessage, bool)>,
    ) -> Vec<Checking> {
        let all = batcher.leads.available_permits() as u32;
        let leads = batcher.leads.acquire_many(all).await.unwrap();
        let n = items.len();
        let tasks = items
            .into_iter()
            .map(|(item, valid)| {
                let (batcher, metrics) = (batcher.clone(), metrics.clone());
                tokio::spawn(async move { (batcher.verify(item, &metrics).await, valid) })
            })
            .collect();
        let queued = async {
            while batcher.queue.lock().len() < n {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), queued)
            .await
            .unwrap();
        drop(leads);
        tasks
    }

    /// Every task ends, soon, with the answer its signature deserves.
    async fn answered_rightly(tasks: Vec<Checking>) {
        for task in tasks {
            let (verified, valid) = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("a queued signature was never answered")
                .unwrap();
            assert_eq!(verified, valid);
        }
    }

    /// `(sum, count)` of the batch-size histogram: signatures and checks.
    fn checked(metrics: &Metrics) -> (f64, f64) {
        let text = metrics.render();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        (
            value("hearthnet_signature_batch_size_sum"),
            value("hearthnet_signature_batch_size_count"),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signatures_queued_together_are_checked_in_batches() {
        let batcher = Arc::new(SignatureBatcher::default());
        let metrics = Arc::new(Metrics::new());
        let n = 40;
        answered_rightly(queue_up(&batcher, &metrics, signed_messages(n, &[])).await).await;
        let (signatures, checks) = checked(&metrics);
        assert_eq!(signatures, n as f64);
        assert!(
            checks <= n.div_ceil(SignatureBatcher::MOST) as f64,
            "{checks} checks for {n} queued signatures"
        );
        assert!(batcher.queue.lock().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_bad_signature_fails_alone_and_pauses_batching() {
        let batcher = Arc::new(SignatureBatcher::default());
        let metrics = Arc::new(Metrics::new());
        let items = signed_messages(20, &[0, 13]);
        answered_rightly(queue_up(&batcher, &metrics, items).await).await;
        // Within the pause, signatures queued together are checked alone.
        let (_, checks_before) = checked(&metrics);
        answered_rightly(queue_up(&batcher, &metrics, signed_messages(10, &[])).await).await;
        let (_, checks_after) = checked(&metrics);
        assert_eq!(checks_after - checks_before, 10.0);
        // After it, in batches again.
        tokio::time::advance(SignatureBatcher::PAUSE_AFTER_FAILURE).await;
        answered_rightly(queue_up(&batcher, &metrics, signed_messages(10, &[])).await).await;
        let (_, checks_later) = checked(&metrics);
        assert_eq!(checks_later - checks_after, 1.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_that_leave_while_queued_strand_nobody() {
        let batcher = Arc::new(SignatureBatcher::default());
        let metrics = Arc::new(Metrics::new());
        let tasks = queue_up(&batcher, &metrics, signed_messages(40, &[5, 30])).await;
        let mut kept = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            if i % 2 == 0 {
                task.abort();
            } else {
                kept.push(task);
            }
        }
        answered_rightly(kept).await;
    }

    #[tokio::test]
    async fn a_lone_signature_is_checked_at_once() {
        let batcher = SignatureBatcher::default();
        let metrics = Metrics::new();
        for (item, valid) in signed_messages(3, &[1]) {
            assert_eq!(batcher.verify(item, &metrics).await, valid);
        }
    }

    #[test]
    fn peeking_at_a_request_id_agrees_with_recording_it_and_records_nothing() {
        let mut seen = SeenIds::default();
        let peer = DeviceKey::generate().node_id();
        let t0 = Instant::now();
        let keep = Duration::from_secs(121);
        assert!(!seen.contains(&peer, "01A", t0, keep));
        assert!(
            !seen.contains(&peer, "01A", t0, keep),
            "a peek records nothing"
        );
        assert!(seen.insert(peer, "01A", t0, keep));
        let mut later = seen.clone();
        assert!(later.insert(peer, "01B", t0 + Duration::from_secs(150), keep));
        for (ids, secs) in [
            (&seen, 0),
            (&seen, 120),
            (&seen, 150),
            (&later, 150),
            (&later, 300),
        ] {
            let now = t0 + Duration::from_secs(secs);
            for id in ["01A", "01B", "01C"] {
                let peeked = ids.contains(&peer, id, now, keep);
                let recorded = ids.clone().insert(peer, id, now, keep);
                assert_eq!(peeked, !recorded, "{id} after {secs} s");
            }
        }
    }

    #[test]
    fn request_ids_are_single_use_and_forgotten_after_the_window() {
        let mut seen = SeenIds::default();
        let peer = DeviceKey::generate().node_id();
        let t0 = Instant::now();
        let keep = Duration::from_secs(121);
        assert!(seen.insert(peer, "01A", t0, keep));
        assert!(!seen.insert(peer, "01A", t0 + Duration::from_secs(1), keep));
        assert!(
            !seen.insert(peer, "01A", t0 + Duration::from_secs(150), keep),
            "still within two generations"
        );
        assert!(seen.insert(peer, "01A", t0 + Duration::from_secs(400), keep));
        assert!(
            seen.insert(DeviceKey::generate().node_id(), "01A", t0, keep),
            "ids are per sender"
        );
    }
}
