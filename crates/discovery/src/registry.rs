//! The registry of verified peers: members of our community whose signed
//! manifest we fetched and checked. Everyone who needs to know who is
//! around (the bus, sync, status) reads it or subscribes to its events.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use hearthnet_base::{NodeId, Timestamp};
use hearthnet_identity::NodeManifest;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::broadcast;

/// How we learned of a peer (as `status` reports it).
pub use hearthnet_wire::local::PeerSource as Source;

#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    pub node_id: NodeId,
    pub display_name: String,
    /// The peer-port address its manifest was fetched from.
    pub addr: SocketAddr,
    pub manifest: NodeManifest,
    pub sources: BTreeSet<Source>,
    /// When this node first verified the peer.
    pub first_verified: Timestamp,
}

#[derive(Debug, Clone)]
pub enum PeerEvent {
    Added(Peer),
    /// A new manifest (re-issued, or capabilities changed).
    Updated(Peer),
    Removed(NodeId),
}

pub struct PeerRegistry {
    peers: Mutex<HashMap<NodeId, Peer>>,
    events: broadcast::Sender<PeerEvent>,
    /// Peers a call found unreachable, for discovery to check at once.
    suspects: broadcast::Sender<NodeId>,
}

impl Default for PeerRegistry {
    fn default() -> Self {
        Self {
            peers: Mutex::new(HashMap::new()),
            // A subscriber that falls this far behind resynchronises from
            // `all()` (see `Lagged` handling in the node).
            events: broadcast::channel(256).0,
            suspects: broadcast::channel(64).0,
        }
    }
}

impl PeerRegistry {
    /// A call found `node` unreachable: discovery asks for its manifest
    /// now and drops it if that fails too, instead of waiting for it to
    /// expire.
    pub fn suspect(&self, node: NodeId) {
        // Without discovery running nobody checks; the manifest expires.
        let _ = self.suspects.send(node);
    }

    pub(crate) fn suspects(&self) -> broadcast::Receiver<NodeId> {
        self.suspects.subscribe()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.events.subscribe()
    }

    /// Add or refresh a verified peer; true when it is new.
    pub fn upsert(&self, mut peer: Peer) -> bool {
        let mut peers = self.peers.lock();
        let event = match peers.get(&peer.node_id) {
            Some(old) => {
                peer.first_verified = old.first_verified;
                peer.sources.extend(old.sources.iter().copied());
                PeerEvent::Updated(peer.clone())
            }
            None => PeerEvent::Added(peer.clone()),
        };
        let added = matches!(event, PeerEvent::Added(_));
        if added {
            tracing::info!(peer = %peer.node_id.short(), name = %peer.display_name, addr = %peer.addr, sources = ?peer.sources, "peer added");
        }
        peers.insert(peer.node_id, peer);
        let _ = self.events.send(event);
        added
    }

    /// Record another source for a known peer without a new manifest.
    pub fn heard(&self, node: &NodeId, source: Source) {
        if let Some(p) = self.peers.lock().get_mut(node) {
            p.sources.insert(source);
        }
    }

    pub fn remove(&self, node: &NodeId, why: &str) -> bool {
        let removed = self.peers.lock().remove(node).is_some();
        if removed {
            tracing::info!(peer = %node.short(), why, "peer removed");
            let _ = self.events.send(PeerEvent::Removed(*node));
        }
        removed
    }

    pub fn get(&self, node: &NodeId) -> Option<Peer> {
        self.peers.lock().get(node).cloned()
    }

    pub fn all(&self) -> Vec<Peer> {
        let mut all: Vec<Peer> = self.peers.lock().values().cloned().collect();
        all.sort_by_key(|p| p.node_id.full());
        all
    }

    pub fn len(&self) -> usize {
        self.peers.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The peer with this short id, if verified.
    pub fn by_short(&self, short: &str) -> Option<Peer> {
        self.peers
            .lock()
            .values()
            .find(|p| p.node_id.short() == short)
            .cloned()
    }

    /// Remove peers whose manifest expired more than `grace_seconds` ago
    /// (M02 §4.2: they stopped answering); returns how many.
    pub fn prune_expired(&self, now: Timestamp, grace_seconds: i64) -> usize {
        let stale: Vec<NodeId> = self
            .peers
            .lock()
            .values()
            .filter(|p| now > p.manifest.expires_at.plus_seconds(grace_seconds))
            .map(|p| p.node_id)
            .collect();
        stale
            .iter()
            .filter(|n| self.remove(n, "manifest expired and could not be refetched"))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearthnet_base::{CommunityId, DeviceKey};
    use hearthnet_identity::node_manifest::samples;

    fn peer(key: &DeviceKey, issued: Timestamp) -> Peer {
        let content = samples::content(CommunityId::of_root(key.node_id()));
        let (manifest, _) = NodeManifest::issue(content, key, issued).unwrap();
        Peer {
            node_id: key.node_id(),
            display_name: "shed".into(),
            addr: "10.0.0.2:7443".parse().unwrap(),
            manifest,
            sources: BTreeSet::from([Source::Udp]),
            first_verified: issued,
        }
    }

    #[test]
    fn upsert_returns_true_the_first_time_and_merges_sources() {
        let registry = PeerRegistry::default();
        let mut events = registry.subscribe();
        let key = DeviceKey::generate();
        let t0 = Timestamp::now();
        assert!(registry.upsert(peer(&key, t0)));
        let mut again = peer(&key, t0.plus_seconds(20));
        again.sources = BTreeSet::from([Source::Mdns]);
        assert!(!registry.upsert(again));
        let got = registry.get(&key.node_id()).unwrap();
        assert_eq!(got.sources, BTreeSet::from([Source::Mdns, Source::Udp]));
        assert_eq!(got.first_verified, t0);
        assert!(matches!(events.try_recv(), Ok(PeerEvent::Added(_))));
        assert!(matches!(events.try_recv(), Ok(PeerEvent::Updated(_))));
        assert_eq!(
            registry.by_short(&key.node_id().short()).map(|p| p.node_id),
            Some(key.node_id())
        );
    }

    #[test]
    fn prune_removes_only_long_expired_peers() {
        let registry = PeerRegistry::default();
        let mut events = registry.subscribe();
        let (old, fresh) = (DeviceKey::generate(), DeviceKey::generate());
        let now = Timestamp::now();
        // Expired 100 s ago (issued 130 s ago, 30 s lifetime).
        registry.upsert(peer(&old, now.plus_seconds(-130)));
        // Expired 20 s ago: still within the 90 s grace.
        registry.upsert(peer(&fresh, now.plus_seconds(-50)));
        assert_eq!(registry.prune_expired(now, 90), 1);
        assert!(registry.get(&old.node_id()).is_none());
        assert!(registry.get(&fresh.node_id()).is_some());
        let mut removed = None;
        while let Ok(e) = events.try_recv() {
            if let PeerEvent::Removed(n) = e {
                removed = Some(n);
            }
        }
        assert_eq!(removed, Some(old.node_id()));
        // The emergency grace of 30 s catches the other one too.
        assert_eq!(registry.prune_expired(now, 10), 1);
        assert!(registry.is_empty());
    }
}
