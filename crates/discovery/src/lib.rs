//! Discovery (M02): finding the neighbours. mDNS and UDP multicast hear
//! *sightings* — unsigned hints that a node of some community listens at
//! some address. Each new sighting leads to a fetch of that node's signed
//! manifest over mutual TLS; only a member of our community whose manifest
//! verifies enters the [`PeerRegistry`]. Static peers from config take the
//! same path. Manifests are refetched before they expire (they live 30 s
//! and are re-issued on every fetch), peers that stop answering are pruned,
//! and revoked members are dropped at once.
//!
//! Owns: the registry, the announcers and listeners, the status of each
//! discovery transport. Knows nothing of HTTP: fetching a manifest and
//! asking about membership go through [`Contact`].

mod announcement;
mod gate;
mod mdns;
mod registry;
mod udp;

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hearthnet_base::constants::{
    DISCOVERY_UDP_INTERVAL_ACTIVE_SECONDS, DISCOVERY_UDP_INTERVAL_STABLE_SECONDS,
};
use hearthnet_base::{CommunityId, NodeId, Timestamp};
use hearthnet_identity::NodeManifest;
use hearthnet_wire::local::{
    DiscoveryCounters, DiscoveryStatus, DiscoveryTransport, TransportState,
};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use announcement::{Announcement, MAX_UDP_BYTES, SERVICE_TYPE};
pub use registry::{Peer, PeerEvent, PeerRegistry, Source};

/// How often manifests near expiry are refetched and the registry pruned.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// Refetch a manifest this close to its expiry (M02 §4.2).
const REFETCH_BEFORE_EXPIRY_SECONDS: i64 = 10;
/// Peers whose manifest expired this long ago are dropped (M02 §4.2, §4.3).
const PRUNE_GRACE_SECONDS: i64 = 90;
const PRUNE_GRACE_EMERGENCY_SECONDS: i64 = 30;
/// A sighting that did not verify is retried after this, doubling up to
/// [`RETRY_BACKOFF_CAP`], and at once when our membership list changes
/// (the node may be a member we have not heard of yet, until sync tells
/// us; or a revoked one that keeps announcing itself).
const RETRY_BACKOFF_FIRST: Duration = Duration::from_secs(5);
const RETRY_BACKOFF_CAP: Duration = Duration::from_secs(300);
/// At most this many such sightings are remembered, each for at most
/// [`PENDING_FOR`].
const MAX_PENDING: usize = 64;
const PENDING_FOR: Duration = Duration::from_secs(3600);
/// A static peer's name is looked up again after this.
const RESOLVE_STATIC_EVERY: Duration = Duration::from_secs(60);
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("UDP discovery port {port} cannot be used: {reason}")]
    SocketInUse { port: u16, reason: String },
    #[error("mDNS cannot start: {0}")]
    MdnsUnavailable(String),
}

/// What discovery needs to know about us and how to behave.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node: NodeId,
    pub community: CommunityId,
    pub display_name: String,
    pub mdns_enabled: bool,
    pub mdns_port: u16,
    pub udp_enabled: bool,
    pub udp_group: Ipv4Addr,
    pub udp_port: u16,
    /// Interfaces to use; empty means every LAN interface.
    pub interfaces: Vec<String>,
    /// `host:port` of peers reached directly.
    pub static_peers: Vec<String>,
}

/// Our announcement as of now (capabilities change while running).
pub type AnnouncementSource = Arc<dyn Fn() -> Announcement + Send + Sync>;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Discovery's way to a node: fetch its manifest, ask the event log about
/// its membership.
pub trait Contact: Send + Sync + 'static {
    /// `GET /manifest` at `addr`: the JSON and the node proven by TLS.
    fn fetch_manifest(
        &self,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) -> BoxFuture<Result<(Value, Option<NodeId>), String>>;
    fn is_member(&self, node: &NodeId) -> bool;
    /// Changes whenever someone joins or is revoked.
    fn membership_version(&self) -> u64;
}

/// A hint that a node listens at `addr`.
#[derive(Debug, Clone)]
pub struct Sighting {
    pub node_short: Option<String>,
    pub community_short: Option<String>,
    pub addr: SocketAddr,
    pub source: Source,
}

/// How each discovery transport fares, for `status` and `doctor`.
#[derive(Default)]
pub struct Status {
    udp_sent: AtomicU64,
    udp_received: AtomicU64,
    udp_malformed: AtomicU64,
    mdns_resolved: AtomicU64,
    foreign_sightings: AtomicU64,
    manifests_rejected: AtomicU64,
    udp: Mutex<DiscoveryTransport>,
    mdns: Mutex<DiscoveryTransport>,
}

impl Status {
    fn set(slot: &Mutex<DiscoveryTransport>, f: impl FnOnce(&mut DiscoveryTransport)) {
        f(&mut slot.lock());
    }

    fn set_udp_interfaces(&self, interfaces: Vec<String>) {
        Self::set(&self.udp, |s| {
            s.state = TransportState::Running;
            s.interfaces = interfaces;
        });
    }

    fn set_mdns_ok(&self, interfaces: Vec<String>) {
        Self::set(&self.mdns, |s| {
            s.state = TransportState::Running;
            s.error = None;
            s.interfaces = interfaces;
        });
    }

    fn set_mdns_error(&self, error: String) {
        Self::set(&self.mdns, |s| {
            s.state = TransportState::Failed;
            s.error = Some(error);
        });
    }

    fn snapshot(slot: &Mutex<DiscoveryTransport>) -> DiscoveryTransport {
        slot.lock().clone()
    }

    /// How mDNS and UDP announcements fare, for the node's status.
    pub fn report(&self) -> DiscoveryStatus {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DiscoveryStatus {
            mdns: Self::snapshot(&self.mdns),
            udp: Self::snapshot(&self.udp),
            counters: DiscoveryCounters {
                udp_sent: n(&self.udp_sent),
                udp_received: n(&self.udp_received),
                udp_malformed: n(&self.udp_malformed),
                mdns_resolved: n(&self.mdns_resolved),
                foreign_sightings: n(&self.foreign_sightings),
                manifests_rejected: n(&self.manifests_rejected),
            },
        }
    }
}

/// State shared by the discovery tasks.
struct Context {
    settings: Settings,
    registry: Arc<PeerRegistry>,
    status: Arc<Status>,
    announcement: AnnouncementSource,
    sightings: mpsc::Sender<Sighting>,
    emergency: watch::Receiver<bool>,
    /// Sightings that did not verify yet.
    pending: Mutex<HashMap<SocketAddr, Pending>>,
    /// Bounds the manifest fetches in flight, with slots kept for known
    /// peers (see `gate`).
    fetches: gate::FetchSlots,
    /// Peers whose manifest is being refetched (or checked after a
    /// failed call) right now.
    refreshing: Mutex<std::collections::HashSet<NodeId>>,
}

struct Pending {
    sighting: Sighting,
    since: Instant,
    failures: u32,
    next_try: Instant,
    /// `Contact::membership_version` at the last failure.
    membership: u64,
}

impl Context {
    /// M02 §3.4: fast while we know fewer than two peers or the internet is
    /// gone (M09), slow once the neighbourhood is settled.
    fn udp_interval(&self) -> Duration {
        let fast = self.registry.len() < 2 || *self.emergency.borrow();
        Duration::from_secs(if fast {
            DISCOVERY_UDP_INTERVAL_ACTIVE_SECONDS
        } else {
            DISCOVERY_UDP_INTERVAL_STABLE_SECONDS
        })
    }

    /// A node of our community we have not verified yet, nor failed to.
    fn is_stranger(&self, s: &Sighting) -> bool {
        let ours = s.community_short.as_deref() == Some(&self.settings.community.short());
        let us = s.node_short.as_deref() == Some(&self.settings.node.short());
        let failed = self.pending.lock().contains_key(&s.addr);
        ours && !us
            && !failed
            && s.node_short
                .as_deref()
                .is_some_and(|n| self.registry.by_short(n).is_none())
    }
}

/// Running discovery: the registry and the transports' status.
pub struct Discovery {
    pub registry: Arc<PeerRegistry>,
    pub status: Arc<Status>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Discovery {
    /// Start every enabled transport; verified peers go into `registry`
    /// (made by the caller, so that others can hold it before discovery
    /// starts). A transport that cannot start is
    /// logged and shown in the status, never fatal (M02 §5): the node goes
    /// on with whichever works.
    pub fn start(
        settings: Settings,
        registry: Arc<PeerRegistry>,
        contact: Arc<dyn Contact>,
        announcement: AnnouncementSource,
        emergency: watch::Receiver<bool>,
        stop: CancellationToken,
    ) -> Self {
        let status = Arc::new(Status::default());
        let (tx, rx) = mpsc::channel(256);
        let ctx = Arc::new(Context {
            settings,
            registry: registry.clone(),
            status: status.clone(),
            announcement,
            sightings: tx,
            emergency,
            pending: Mutex::new(HashMap::new()),
            fetches: gate::FetchSlots::new(),
            refreshing: Mutex::new(std::collections::HashSet::new()),
        });
        let mut tasks = Vec::new();
        let disabled = |slot: &Mutex<DiscoveryTransport>| {
            Status::set(slot, |s| s.state = TransportState::Disabled)
        };
        if ctx.settings.udp_enabled {
            match udp::bind(&ctx.settings) {
                Ok(socket) => {
                    tasks.push(tokio::spawn(udp::run(socket, ctx.clone(), stop.clone())));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "UDP discovery unavailable");
                    Status::set(&status.udp, |s| {
                        s.state = TransportState::Failed;
                        s.error = Some(e.to_string());
                    });
                }
            }
        } else {
            disabled(&status.udp);
        }
        if ctx.settings.mdns_enabled {
            match mdns::start(&ctx) {
                Ok(daemon) => {
                    tasks.push(tokio::spawn(mdns::run(daemon, ctx.clone(), stop.clone())));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "mDNS discovery unavailable");
                    status.set_mdns_error(e.to_string());
                }
            }
        } else {
            disabled(&status.mdns);
        }
        tasks.push(tokio::spawn(verify_sightings(
            ctx.clone(),
            contact.clone(),
            rx,
            stop.clone(),
        )));
        tasks.push(tokio::spawn(check_suspects(
            ctx.clone(),
            contact.clone(),
            registry.suspects(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(refresh(ctx.clone(), contact.clone(), stop)));
        Self {
            registry,
            status,
            tasks: Mutex::new(tasks),
        }
    }

    /// Wait (after `stop`) for the transports to say goodbye: the mDNS
    /// unregistration goes out before the process ends.
    pub async fn stopped(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Context {
    /// True if nobody was refreshing `node` yet (and now we are).
    fn start_refreshing(&self, node: NodeId) -> bool {
        self.refreshing.lock().insert(node)
    }

    fn stop_refreshing(&self, node: &NodeId) {
        self.refreshing.lock().remove(node);
    }

    /// Keep a sighting that did not verify, backing off its retries.
    fn remember_failure(&self, sighting: Sighting, membership: u64) {
        let mut pending = self.pending.lock();
        pending.retain(|_, p| p.since.elapsed() < PENDING_FOR);
        if pending.len() >= MAX_PENDING && !pending.contains_key(&sighting.addr) {
            // Forget the one that failed most (the likeliest junk).
            if let Some(worst) = pending
                .iter()
                .max_by_key(|(_, p)| (p.failures, std::cmp::Reverse(p.since)))
                .map(|(a, _)| *a)
            {
                pending.remove(&worst);
            }
        }
        let entry = pending.entry(sighting.addr).or_insert_with(|| Pending {
            sighting,
            since: Instant::now(),
            failures: 0,
            next_try: Instant::now(),
            membership: 0,
        });
        entry.failures += 1;
        let backoff = RETRY_BACKOFF_FIRST
            .saturating_mul(1 << entry.failures.min(10).saturating_sub(1))
            .min(RETRY_BACKOFF_CAP);
        entry.next_try = Instant::now() + backoff;
        entry.membership = membership;
    }
}

/// Turn sightings into verified peers.
async fn verify_sightings(
    ctx: Arc<Context>,
    contact: Arc<dyn Contact>,
    mut rx: mpsc::Receiver<Sighting>,
    stop: CancellationToken,
) {
    let mut gate = gate::FetchGate::new();
    loop {
        let sighting = tokio::select! {
            s = rx.recv() => match s { Some(s) => s, None => return },
            _ = stop.cancelled() => return,
        };
        let ours = ctx.settings.community.short();
        if sighting
            .community_short
            .as_deref()
            .is_some_and(|c| c != ours)
        {
            ctx.status.foreign_sightings.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if sighting.node_short.as_deref() == Some(&ctx.settings.node.short()) {
            continue;
        }
        // A known peer heard at another address (a second interface):
        // move only when the current address stopped answering.
        if let Some(known) = sighting
            .node_short
            .as_deref()
            .and_then(|n| ctx.registry.by_short(n))
            && (known.addr == sighting.addr || !near_expiry(&known, Timestamp::now()))
        {
            ctx.registry.heard(&known.node_id, sighting.source);
            continue;
        }
        let now = Instant::now();
        let backing_off = ctx
            .pending
            .lock()
            .get(&sighting.addr)
            .is_some_and(|p| now < p.next_try && p.membership == contact.membership_version());
        if backing_off {
            continue;
        }
        // Announcements can be forged, static peers cannot: only the
        // former count against their source IP's rate.
        let configured = sighting.source == Source::Static;
        if let Err(why) = gate.admit(sighting.addr, !configured, now) {
            tracing::trace!(addr = %sighting.addr, ?why, "sighting not fetched");
            continue;
        }
        // Bounded: a flood of sightings cannot open connections without
        // limit, nor crowd out the peers we know; the dropped ones come
        // again with the next announcement.
        let known = configured
            || sighting
                .node_short
                .as_deref()
                .is_some_and(|n| ctx.registry.by_short(n).is_some());
        let Some(permit) = ctx.fetches.try_take(known) else {
            tracing::debug!(addr = %sighting.addr, known, "fetch slots full; sighting dropped");
            continue;
        };
        let (ctx, contact) = (ctx.clone(), contact.clone());
        tokio::spawn(async move {
            contact_peer(ctx, contact, sighting, None).await;
            drop(permit);
        });
    }
}

/// Fetch and check the manifest at `sighting.addr`; admit or refresh the
/// peer. Returns whether the peer is (still) verified.
async fn contact_peer(
    ctx: Arc<Context>,
    contact: Arc<dyn Contact>,
    sighting: Sighting,
    expected: Option<NodeId>,
) -> bool {
    let fetched = contact.fetch_manifest(sighting.addr, expected).await;
    let verdict = fetched.and_then(|(json, tls_node)| {
        check_manifest(&ctx.settings, contact.as_ref(), &sighting, &json, tls_node)
    });
    if verdict.is_ok() {
        ctx.pending.lock().remove(&sighting.addr);
    } else {
        ctx.remember_failure(sighting.clone(), contact.membership_version());
    }
    match verdict {
        Ok(manifest) => {
            ctx.registry.upsert(Peer {
                node_id: manifest.node_id,
                display_name: manifest.content.display_name.clone(),
                addr: sighting.addr,
                manifest,
                sources: [sighting.source].into(),
                first_verified: Timestamp::now(),
            });
            true
        }
        Err(reason) => {
            ctx.status
                .manifests_rejected
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(addr = %sighting.addr, source = ?sighting.source, %reason, "not a peer");
            false
        }
    }
}

fn check_manifest(
    settings: &Settings,
    contact: &dyn Contact,
    sighting: &Sighting,
    json: &Value,
    tls_node: Option<NodeId>,
) -> Result<NodeManifest, String> {
    let manifest = NodeManifest::verify(json, Timestamp::now()).map_err(|e| e.to_string())?;
    let node = manifest.node_id;
    if manifest.content.community_id != settings.community {
        return Err(format!("{} belongs to another community", node.short()));
    }
    if node == settings.node {
        return Err("that is this node".into());
    }
    if tls_node.is_some_and(|t| t != node) {
        return Err("the manifest is not the TLS peer's".into());
    }
    if sighting
        .node_short
        .as_deref()
        .is_some_and(|s| s != node.short())
    {
        return Err("the manifest is not the announced node's".into());
    }
    if !contact.is_member(&node) {
        return Err(format!("{} is not a member (or was revoked)", node.short()));
    }
    Ok(manifest)
}

/// Keep manifests fresh, drop the silent and the revoked, retry static
/// peers.
async fn refresh(ctx: Arc<Context>, contact: Arc<dyn Contact>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(REFRESH_EVERY);
    let mut resolved: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now = Timestamp::now();
        for peer in ctx.registry.all() {
            if !contact.is_member(&peer.node_id) {
                ctx.registry.remove(&peer.node_id, "no longer a member");
                continue;
            }
            if near_expiry(&peer, now) && ctx.start_refreshing(peer.node_id) {
                let source = peer.sources.iter().next().copied().unwrap_or(Source::Udp);
                let sighting = Sighting {
                    node_short: Some(peer.node_id.short()),
                    community_short: None,
                    addr: peer.addr,
                    source,
                };
                let (ctx, contact) = (ctx.clone(), contact.clone());
                tokio::spawn(async move {
                    let node = peer.node_id;
                    if let Some(_permit) = ctx.fetches.take_reserved().await {
                        contact_peer(ctx.clone(), contact, sighting, Some(node)).await;
                    }
                    ctx.stop_refreshing(&node);
                });
            }
        }
        let grace = if *ctx.emergency.borrow() {
            PRUNE_GRACE_EMERGENCY_SECONDS
        } else {
            PRUNE_GRACE_SECONDS
        };
        ctx.registry.prune_expired(now, grace);
        let membership = contact.membership_version();
        let retry: Vec<Sighting> = ctx
            .pending
            .lock()
            .values_mut()
            .filter(|p| Instant::now() >= p.next_try || p.membership != membership)
            .map(|p| {
                // Let the sighting through the back-off check.
                p.membership = u64::MAX;
                p.sighting.clone()
            })
            .collect();
        for sighting in retry {
            let _ = ctx.sightings.try_send(sighting);
        }
        // Static peers: names are looked up off this loop (DNS may be the
        // thing that is down), each at most once a minute; one that does
        // not verify is retried from `pending` meanwhile.
        for entry in &ctx.settings.static_peers {
            if resolved
                .get(entry)
                .is_some_and(|t: &Instant| t.elapsed() < RESOLVE_STATIC_EVERY)
            {
                continue;
            }
            resolved.insert(entry.clone(), Instant::now());
            let (ctx, entry) = (ctx.clone(), entry.clone());
            tokio::spawn(async move {
                let lookup =
                    tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(entry.as_str()))
                        .await;
                let Some(addr) = lookup.ok().and_then(Result::ok).and_then(|mut a| a.next()) else {
                    tracing::debug!(peer = %entry, "static peer does not resolve");
                    return;
                };
                if ctx.registry.all().iter().any(|p| p.addr == addr) {
                    return;
                }
                let _ = ctx.sightings.try_send(Sighting {
                    node_short: None,
                    community_short: None,
                    addr,
                    source: Source::Static,
                });
            });
        }
    }
}

/// Within [`REFETCH_BEFORE_EXPIRY_SECONDS`] of its manifest's expiry.
fn near_expiry(peer: &Peer, now: Timestamp) -> bool {
    peer.manifest.expires_at.unix() - now.unix() <= REFETCH_BEFORE_EXPIRY_SECONDS
}

/// Check peers that calls found unreachable ([`PeerRegistry::suspect`]):
/// ask for the manifest now and drop the peer if that fails too, instead
/// of waiting for it to expire. Its last sighting is kept for retries, so
/// it comes back when it answers again even where mDNS announces nothing
/// new.
async fn check_suspects(
    ctx: Arc<Context>,
    contact: Arc<dyn Contact>,
    mut suspects: tokio::sync::broadcast::Receiver<NodeId>,
    stop: CancellationToken,
) {
    loop {
        let node = tokio::select! {
            n = suspects.recv() => match n {
                Ok(node) => node,
                // Missed some: the next failed call reports them again.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            () = stop.cancelled() => return,
        };
        let Some(peer) = ctx.registry.get(&node) else {
            continue;
        };
        if !ctx.start_refreshing(node) {
            continue;
        }
        let (ctx, contact) = (ctx.clone(), contact.clone());
        tokio::spawn(async move {
            let answered = contact.fetch_manifest(peer.addr, Some(node)).await.is_ok();
            ctx.stop_refreshing(&node);
            if !answered {
                ctx.registry
                    .remove(&node, "unreachable after a failed call");
                let source = peer.sources.iter().next().copied().unwrap_or(Source::Udp);
                ctx.remember_failure(
                    Sighting {
                        node_short: Some(node.short()),
                        community_short: None,
                        addr: peer.addr,
                        source,
                    },
                    contact.membership_version(),
                );
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearthnet_base::DeviceKey;
    use std::collections::HashSet;

    /// Records every address dialed; a stranger's fetch never ends (the
    /// worst case: each holds its slot until the fetch times out), a static
    /// peer's fails at once.
    struct Recorder {
        dialed: Mutex<Vec<SocketAddr>>,
        hang: HashSet<std::net::IpAddr>,
    }

    impl Contact for Recorder {
        fn fetch_manifest(
            &self,
            addr: SocketAddr,
            _expected: Option<NodeId>,
        ) -> BoxFuture<Result<(Value, Option<NodeId>), String>> {
            self.dialed.lock().push(addr);
            let hang = self.hang.contains(&addr.ip());
            Box::pin(async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                Err("no manifest".to_owned())
            })
        }
        fn is_member(&self, _node: &NodeId) -> bool {
            true
        }
        fn membership_version(&self) -> u64 {
            0
        }
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(5), async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "timed out waiting for {what}");
    }

    #[tokio::test]
    async fn a_flood_of_forged_announcements_leaves_room_for_a_static_peer() {
        let node = DeviceKey::generate().node_id();
        let community = CommunityId::of_root(node);
        let settings = Settings {
            node,
            community,
            display_name: "us".into(),
            mdns_enabled: false,
            mdns_port: 0,
            udp_enabled: false,
            udp_group: Ipv4Addr::UNSPECIFIED,
            udp_port: 0,
            interfaces: Vec::new(),
            static_peers: Vec::new(),
        };
        let forged: Vec<SocketAddr> = (0..200u32)
            .map(|i| SocketAddr::from(((0x0a00_0000 + i).to_be_bytes(), 7000)))
            .collect();
        let contact = Arc::new(Recorder {
            dialed: Mutex::new(Vec::new()),
            hang: forged.iter().map(SocketAddr::ip).collect(),
        });
        let (tx, rx) = mpsc::channel(256);
        let (_emergency_tx, emergency) = watch::channel(false);
        let ctx = Arc::new(Context {
            settings,
            registry: Arc::new(PeerRegistry::default()),
            status: Arc::new(Status::default()),
            announcement: Arc::new(|| Announcement {
                v: 1,
                node: String::new(),
                community: String::new(),
                port: 0,
                caps: Vec::new(),
            }),
            sightings: tx.clone(),
            emergency,
            pending: Mutex::new(HashMap::new()),
            fetches: gate::FetchSlots::new(),
            refreshing: Mutex::new(std::collections::HashSet::new()),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(verify_sightings(ctx, contact.clone(), rx, stop.clone()));
        for (i, addr) in forged.iter().enumerate() {
            let sighting = Sighting {
                node_short: Some(format!("n{i}")),
                community_short: Some(community.short()),
                addr: *addr,
                source: Source::Udp,
            };
            tx.send(sighting).await.unwrap();
        }
        until("the open slots to fill", || {
            contact.dialed.lock().len() == gate::OPEN_FETCHES
        })
        .await;

        let configured = SocketAddr::from(([192, 168, 7, 7], 7443));
        tx.send(Sighting {
            node_short: None,
            community_short: None,
            addr: configured,
            source: Source::Static,
        })
        .await
        .unwrap();
        until("the static peer to be dialed", || {
            contact.dialed.lock().contains(&configured)
        })
        .await;
        // The forged ones never got more than the open slots.
        assert_eq!(contact.dialed.lock().len(), gate::OPEN_FETCHES + 1);
        stop.cancel();
        task.await.unwrap();
    }
}
