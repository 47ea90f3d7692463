//! Who is asking: signed-request verification (Contract §5.1, SYSTEM.md
//! item 4), replay protection and rate limits (X01 §7).
//!
//! A request is accepted only if its headers are complete, it names our
//! community, its timestamp is within the skew window, its signature
//! checks out against the `From` key, the signer is a member (and not
//! revoked), and its request id was not seen in the window before. The
//! window bounds how long a captured request is worth anything; the
//! replay cache makes it worthless inside the window too.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use hearthnet_base::constants::{
    RATE_LIMIT_HARD_RPS_PER_CAP, RATE_LIMIT_HARD_RPS_TOTAL, RATE_LIMIT_SOFT_RPS_PER_CAP,
    RATE_LIMIT_SOFT_RPS_TOTAL,
};
use hearthnet_base::crypto::{SignedMessage, verify_all};
use hearthnet_base::request::SignedHeaders;
use hearthnet_base::{CommunityId, ErrorCode, NodeId, Timestamp, TrustLevel};
use hearthnet_bus::CallError;
use hearthnet_observability::metrics::{CapabilityLabel, Metrics, ReasonLabel};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::NodeView;
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

/// A request as presented for authentication.
pub struct Presented<'a> {
    pub headers: &'a HeaderMap,
    /// The path, for plain endpoints (their signed `capability`).
    pub endpoint: Option<&'a str>,
    pub body: &'a Value,
    pub access: Access,
    /// The peer proven by the TLS connection, if any.
    pub connection: Option<PeerIdentity>,
}

pub struct Caller {
    pub id: NodeId,
    pub level: TrustLevel,
    pub headers: SignedHeaders,
}

/// Why a request is refused.
pub enum Refusal {
    Error(CallError),
    /// Over the hard rate limit: close without an answer (X01 §7).
    Drop,
}

impl From<CallError> for Refusal {
    fn from(e: CallError) -> Self {
        Self::Error(e)
    }
}

pub struct Authenticator {
    node_id: NodeId,
    community: CommunityId,
    skew: Duration,
    signatures: SignatureBatcher,
    seen: Mutex<SeenIds>,
    windows: Mutex<RateWindows>,
}

/// Checks the signatures of requests that arrive together in one batch
/// ([`verify_all`]): the most expensive step of every request, and about
/// 40 % cheaper per signature in batches of 16.
///
/// Each request queues its signature, then either finds it answered or
/// takes the lead and checks the queue front to back, [`Self::MOST`] at a
/// time, until its own is done. Nobody waits for a batch to fill: a lone
/// request is checked at once, and batches form only while the lead is
/// busy, i.e. under load. No signature is stranded: its task either gets
/// the answer or takes the lead itself.
#[derive(Default)]
struct SignatureBatcher {
    queue: Mutex<Vec<(SignedMessage, oneshot::Sender<bool>)>>,
    lead: tokio::sync::Mutex<()>,
}

impl SignatureBatcher {
    /// Most signatures checked in one go: the gain levels off near 16,
    /// while the task checking them holds its runtime thread ~30 µs each.
    const MOST: usize = 16;

    async fn verify(&self, item: SignedMessage, metrics: &Metrics) -> bool {
        let (answer, mut answered) = oneshot::channel();
        self.queue().push((item, answer));
        let _lead = tokio::select! {
            biased;
            ok = &mut answered => return ok.unwrap_or(false),
            lead = self.lead.lock() => lead,
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
                let mut queue = self.queue();
                let n = queue.len().min(Self::MOST);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                return false;
            }
            metrics.signature_batch_size.observe(batch.len() as f64);
            let (items, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            for (ok, answer) in verify_all(&items).into_iter().zip(answers) {
                // A waiter that went away no longer needs its answer.
                let _ = answer.send(ok);
            }
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<(SignedMessage, oneshot::Sender<bool>)>> {
        // Nothing panics while the queue is locked; a poisoned lock still
        // holds a consistent queue.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Request ids seen recently, in two generations that rotate every
/// `keep`: an id is remembered for at least `keep` and at most twice that,
/// with O(1) work per request however busy the node is.
///
/// Each `(sender, request id)` is kept as a 128-bit keyed digest: no
/// allocation per request and 16 bytes an entry, so a busy window costs
/// megabytes, not hundreds. The keys are random per process, so nobody can
/// pick ids whose digests collide with another sender's.
#[derive(Default)]
struct SeenIds {
    current: HashSet<u128>,
    previous: HashSet<u128>,
    rotated: Option<Instant>,
    keys: [RandomState; 2],
}

impl SeenIds {
    fn digest(&self, from: &NodeId, request_id: &str) -> u128 {
        let [high, low] = self
            .keys
            .each_ref()
            .map(|key| key.hash_one((from.as_bytes(), request_id)));
        (u128::from(high) << 64) | u128::from(low)
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
        let digest = self.digest(&from, request_id);
        if self.previous.contains(&digest) {
            return false;
        }
        self.current.insert(digest)
    }
}

#[derive(Default)]
struct RateWindows {
    second: u64,
    per_capability: HashMap<(NodeId, String), u32>,
    per_peer: HashMap<NodeId, u32>,
}

impl Authenticator {
    pub fn new(node_id: NodeId, community: CommunityId, skew: Duration) -> Self {
        Self {
            node_id,
            community,
            skew,
            signatures: SignatureBatcher::default(),
            seen: Mutex::new(SeenIds::default()),
            windows: Mutex::new(RateWindows::default()),
        }
    }

    pub async fn authenticate(
        &self,
        view: &dyn NodeView,
        metrics: &Metrics,
        req: Presented<'_>,
    ) -> Result<Caller, Refusal> {
        let Presented {
            headers,
            endpoint,
            body,
            access,
            connection,
        } = req;
        let lookup = |name: &'static str| headers.get(name).and_then(|v| v.to_str().ok());
        let signed = SignedHeaders::from_lookup(lookup).map_err(|e| {
            CallError::new(
                ErrorCode::Unauthorized,
                format!("a signed request is required: {e}"),
            )
        })?;
        let fail = |reason: &str, code: ErrorCode, message: String| {
            metrics
                .signature_failures
                .get_or_create(&ReasonLabel {
                    reason: reason.to_owned(),
                })
                .inc();
            Refusal::Error(CallError::new(code, message))
        };
        if let Some(path) = endpoint
            && signed.capability != path
        {
            return Err(fail(
                "wrong_endpoint",
                ErrorCode::InvalidSignature,
                format!(
                    "the request was signed for `{}`, not `{path}`",
                    signed.capability
                ),
            ));
        }
        if signed.community != self.community {
            return Err(fail(
                "foreign_community",
                ErrorCode::Unauthorized,
                format!(
                    "this node serves community {}, not {}",
                    self.community.short(),
                    signed.community.short()
                ),
            ));
        }
        let now = Timestamp::now().unix();
        let age = now - signed.timestamp.unix();
        if age.unsigned_abs() > self.skew.as_secs() {
            return Err(fail(
                "stale",
                ErrorCode::Expired,
                format!(
                    "the request is stamped {}, {age} s from this node's clock; the window is ±{} s (check both clocks)",
                    signed.timestamp,
                    self.skew.as_secs()
                ),
            ));
        }
        let verified = match signed.signed_message(body) {
            Ok(message) => self.signatures.verify(message, metrics).await,
            Err(_) => false,
        };
        if !verified {
            return Err(fail(
                "mismatch",
                ErrorCode::InvalidSignature,
                "the signature does not match the request and the From key".into(),
            ));
        }
        if view.is_revoked(&signed.from) {
            return Err(fail(
                "revoked",
                ErrorCode::Revoked,
                format!("{} was revoked", signed.from.short()),
            ));
        }
        let level = view.level_of(&signed.from);
        if level == TrustLevel::Unknown && access != Access::Invitee {
            return Err(fail(
                "not_member",
                ErrorCode::Unauthorized,
                format!("{} is not a member of this community", signed.from.short()),
            ));
        }
        if let Some(PeerIdentity(peer)) = connection
            && peer != signed.from
        {
            return Err(fail(
                "connection_mismatch",
                ErrorCode::Unauthorized,
                format!(
                    "signed by {} over the TLS connection of {}",
                    signed.from.short(),
                    peer.short()
                ),
            ));
        }
        if access == Access::OwnKey && signed.from != self.node_id {
            return Err(fail(
                "not_self",
                ErrorCode::Unauthorized,
                "this endpoint answers only to the node's own key".into(),
            ));
        }
        self.check_replay(&signed)
            .map_err(|m| fail("replay", ErrorCode::Unauthorized, m))?;
        if signed.from != self.node_id {
            // Budgets per capability are for capability calls; sync and the
            // other endpoints count only toward the peer's total budget.
            let capability = endpoint.is_none().then_some(signed.capability.as_str());
            self.check_rate(&signed.from, capability, metrics)?;
        }
        Ok(Caller {
            id: signed.from,
            level,
            headers: signed,
        })
    }

    fn check_replay(&self, signed: &SignedHeaders) -> Result<(), String> {
        let Ok(mut seen) = self.seen.lock() else {
            return Ok(());
        };
        // A request id must stay remembered as long as its timestamp can be
        // accepted: twice the skew, plus a second of rounding.
        let keep = self.skew * 2 + Duration::from_secs(1);
        if seen.insert(signed.from, &signed.request_id, Instant::now(), keep) {
            Ok(())
        } else {
            Err(format!(
                "request id {} was already used: a replayed request",
                signed.request_id
            ))
        }
    }

    fn check_rate(
        &self,
        peer: &NodeId,
        capability: Option<&str>,
        metrics: &Metrics,
    ) -> Result<(), Refusal> {
        self.check_rate_at(peer, capability, metrics, Timestamp::now().unix() as u64)
    }

    /// Fixed one-second windows: `second` is the window of this request.
    fn check_rate_at(
        &self,
        peer: &NodeId,
        capability: Option<&str>,
        metrics: &Metrics,
        second: u64,
    ) -> Result<(), Refusal> {
        let Ok(mut w) = self.windows.lock() else {
            return Ok(());
        };
        if w.second != second {
            *w = RateWindows {
                second,
                ..RateWindows::default()
            };
        }
        let per_cap = match capability {
            Some(capability) => {
                let c = w
                    .per_capability
                    .entry((*peer, capability.to_owned()))
                    .or_insert(0);
                *c += 1;
                *c
            }
            None => 0,
        };
        let capability = capability.unwrap_or("endpoints");
        let total = {
            let c = w.per_peer.entry(*peer).or_insert(0);
            *c += 1;
            *c
        };
        if per_cap > RATE_LIMIT_HARD_RPS_PER_CAP || total > RATE_LIMIT_HARD_RPS_TOTAL {
            metrics
                .rate_limited
                .get_or_create(&CapabilityLabel {
                    capability: capability.to_owned(),
                })
                .inc();
            return Err(Refusal::Drop);
        }
        if per_cap > RATE_LIMIT_SOFT_RPS_PER_CAP || total > RATE_LIMIT_SOFT_RPS_TOTAL {
            metrics
                .rate_limited
                .get_or_create(&CapabilityLabel {
                    capability: capability.to_owned(),
                })
                .inc();
            return Err(Refusal::Error(
                CallError::new(
                    ErrorCode::RateLimited,
                    format!("over the rate budget for {capability}"),
                )
                .retry_after(1000),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearthnet_base::DeviceKey;
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
                Err(Refusal::Error(e))
                    if e.code == ErrorCode::RateLimited && e.retry_after_ms.is_some() =>
                {
                    "soft"
                }
                Err(Refusal::Error(_)) => "other",
                Err(Refusal::Drop) => "drop",
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

    /// Signatures of `n` requests by different keys, every `bad`-th one
    /// over a message other than the one it signed.
    fn signed_messages(n: usize, bad: usize) -> Vec<(SignedMessage, bool)> {
        (0..n)
            .map(|i| {
                let key = DeviceKey::generate();
                let message = format!("request {i}").into_bytes();
                let signature = key.sign_bytes(&message);
                let valid = i % bad != 0;
                let checked = if valid { message } else { b"forged".to_vec() };
                let item = SignedMessage::new(checked, &signature, &key.node_id()).unwrap();
                (item, valid)
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signatures_queued_together_are_checked_in_batches_with_the_right_answers() {
        let batcher = Arc::new(SignatureBatcher::default());
        let metrics = Arc::new(Metrics::new());
        // While someone holds the lead, requests queue up behind it.
        let lead = batcher.lead.lock().await;
        let n = 40;
        let tasks: Vec<_> = signed_messages(n, 7)
            .into_iter()
            .map(|(item, valid)| {
                let (batcher, metrics) = (batcher.clone(), metrics.clone());
                tokio::spawn(async move { (batcher.verify(item, &metrics).await, valid) })
            })
            .collect();
        let queued = async {
            while batcher.queue().len() < n {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), queued)
            .await
            .unwrap();
        drop(lead);
        for task in tasks {
            let (verified, valid) = task.await.unwrap();
            assert_eq!(verified, valid);
        }
        let text = metrics.render();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} missing in {text}"))
        };
        assert_eq!(value("hearthnet_signature_batch_size_sum"), n as f64);
        let checks = value("hearthnet_signature_batch_size_count");
        assert!(
            checks <= (n / SignatureBatcher::MOST + 1) as f64,
            "{checks} checks for {n} queued signatures"
        );
        assert!(batcher.queue().is_empty());
    }

    #[tokio::test]
    async fn a_lone_signature_is_checked_at_once() {
        let batcher = SignatureBatcher::default();
        let metrics = Metrics::new();
        for (item, valid) in signed_messages(3, 2) {
            assert_eq!(batcher.verify(item, &metrics).await, valid);
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
