//! The node as the transport sees it: manifests, membership, readiness
//! and the status document.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use hearthnet_base::{DeviceKey, NodeId, Profile, Timestamp, TrustLevel};
use hearthnet_bus::Bus;
use hearthnet_config::{Config, NodePaths};
use hearthnet_events::EventLog;
use hearthnet_identity::hardware::{self, HardwareFacts};
use hearthnet_identity::{
    CommunityManifest, Endpoint, HardwareSpec, NodeManifest, NodeManifestContent,
};
use hearthnet_transport::NodeView;

use crate::sync::Syncer;
use hearthnet_discovery::{Peer, PeerRegistry};
use hearthnet_wire::local::{
    CapabilityEntry, CapabilityNames, CommunityStatus, EmergencyStatus, EventLogStatus,
    FilesStatus, MemberStatus, ModelStatus, NodeStatus, PeerStatus, Phase, ProbeStatus, Readiness,
    Status, SyncStatus,
};
use serde_json::{Value, json};

const STARTING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;

pub struct NodeState {
    key: DeviceKey,
    log: EventLog,
    syncer: Arc<Syncer>,
    display_name: String,
    profile: Profile,
    community: CommunityManifest,
    community_json: Value,
    bus: Arc<Bus>,
    hardware: HardwareSpec,
    endpoints: Vec<Endpoint>,
    api: SocketAddr,
    sync_interval_seconds: u64,
    registry: Arc<PeerRegistry>,
    discovery: Arc<hearthnet_discovery::Status>,
    blobs: Option<Arc<hearthnet_blobs::BlobStore>>,
    emergency: Option<tokio::sync::watch::Receiver<hearthnet_emergency::Status>>,
    started: Instant,
    phase: AtomicU8,
}

impl NodeState {
    #[allow(clippy::too_many_arguments)] // one constructor, called once by the wiring
    pub fn new(
        key: DeviceKey,
        log: EventLog,
        syncer: Arc<Syncer>,
        config: Config,
        community: CommunityManifest,
        community_json: Value,
        bus: Arc<Bus>,
        paths: NodePaths,
        api: SocketAddr,
        peer: Option<SocketAddr>,
        registry: Arc<PeerRegistry>,
        discovery: Arc<hearthnet_discovery::Status>,
        blobs: Option<Arc<hearthnet_blobs::BlobStore>>,
        emergency: Option<tokio::sync::watch::Receiver<hearthnet_emergency::Status>>,
    ) -> Self {
        let facts = HardwareFacts::detect(&paths.data_dir);
        let profile = config
            .identity
            .profile
            .unwrap_or_else(|| facts.suggest_profile().profile);
        let display_name = display_name(&config);
        let endpoints = peer
            .map(|addr| peer_endpoints(addr, config.transport.allow_plain_http))
            .unwrap_or_default();
        Self {
            key,
            log,
            syncer,
            display_name,
            profile,
            community,
            community_json,
            bus,
            hardware: HardwareSpec::from(&facts),
            endpoints,
            api,
            sync_interval_seconds: config.events.sync_interval.as_secs(),
            registry,
            discovery,
            blobs,
            emergency,
            started: Instant::now(),
            phase: AtomicU8::new(STARTING),
        }
    }

    pub fn mark_ready(&self) {
        self.phase.store(READY, Ordering::SeqCst);
    }

    pub fn mark_stopping(&self) {
        self.phase.store(STOPPING, Ordering::SeqCst);
    }

    fn uptime(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

/// The configured display name, or the host's name.
pub fn display_name(config: &Config) -> String {
    if config.identity.display_name.is_empty() {
        hardware::host_name()
    } else {
        config.identity.display_name.clone()
    }
}

/// Where neighbours reach a peer listener bound to `addr`: the address
/// itself, or every LAN address when bound to all interfaces.
pub fn peer_endpoints(addr: SocketAddr, plain_http: bool) -> Vec<Endpoint> {
    let hosts: Vec<String> = if addr.ip().is_unspecified() {
        hardware::lan_ipv4_addresses()
            .iter()
            .map(ToString::to_string)
            .collect()
    } else {
        vec![addr.ip().to_string()]
    };
    hosts
        .into_iter()
        .map(|host| Endpoint {
            transport: if plain_http { "http" } else { "https" }.into(),
            host,
            port: addr.port(),
        })
        .collect()
}

impl NodeView for NodeState {
    fn node_manifest(&self) -> Value {
        let content = NodeManifestContent {
            display_name: self.display_name.clone(),
            community_id: self.community.community_id,
            profile: self.profile,
            endpoints: self.endpoints.clone(),
            hardware: self.hardware.clone(),
            capabilities: self
                .bus
                .offered_descriptors()
                .iter()
                .map(|d| d.spec())
                .collect(),
            uptime_seconds: self.uptime(),
            load: json!({"in_flight_total": self.bus.in_flight_total()}),
            sync: vec![
                crate::sync::PROTOCOL_V2.into(),
                crate::sync::PROTOCOL_V1.into(),
            ],
        };
        match NodeManifest::issue(content, &self.key, Timestamp::now()) {
            Ok((_, signed)) => signed,
            Err(e) => json!({"error": "internal_error", "message": e.to_string()}),
        }
    }

    /// The manifest as the log has it now, signed by us when we are an
    /// anchor; otherwise the last one an anchor signed.
    fn community_manifest(&self) -> Value {
        let view = self.log.view();
        if view.level_of(&self.key.node_id()) == TrustLevel::Anchor
            && let Ok(signed) = view.manifest(&self.key)
        {
            return signed;
        }
        self.community_json.clone()
    }

    fn level_of(&self, node: &NodeId) -> TrustLevel {
        self.log.view().level_of(node)
    }

    fn is_revoked(&self, node: &NodeId) -> bool {
        self.log.view().is_revoked(node)
    }

    /// Ready once every component is started and at least one capability is
    /// registered. X01 also asks for a peer; a household's only node must be
    /// usable on its own, so the peer count is reported, not required.
    fn readiness(&self) -> (bool, Value) {
        let ready = self.readiness_document();
        (ready.ready, to_document(&ready))
    }

    fn status(&self) -> Value {
        to_document(&self.status_document())
    }

    fn members(&self) -> Vec<MemberStatus> {
        let view = self.log.view();
        view.members
            .iter()
            .filter(|(id, _)| !view.is_revoked(id))
            .map(|(id, m)| MemberStatus {
                node_id: *id,
                level: m.level,
                added_at: m.added_at,
            })
            .collect()
    }
}

impl NodeState {
    fn readiness_document(&self) -> Readiness {
        let phase = self.phase.load(Ordering::SeqCst);
        let capabilities = self.bus.capability_count();
        Readiness {
            ready: phase == READY && capabilities > 0,
            state: match phase {
                STARTING => Phase::Starting,
                READY => Phase::Ready,
                _ => Phase::Stopping,
            },
            capabilities,
            peers: self.syncer.peers_reachable(),
        }
    }

    fn status_document(&self) -> Status {
        let view = self.log.view();
        let names: Vec<String> = self
            .bus
            .local_descriptors()
            .iter()
            .map(|d| format!("{}@{}", d.name, d.version))
            .collect();
        let node = self.key.node_id();
        let community = self.community.community_id;
        Status {
            node: NodeStatus {
                id: node,
                short_id: node.short(),
                display_name: self.display_name.clone(),
                profile: self.profile,
            },
            community: CommunityStatus {
                id: community,
                short_id: community.short(),
                name: self.community.name.clone(),
                members: view.members.keys().filter(|m| !view.is_revoked(m)).count(),
            },
            events: EventLogStatus {
                head_lamport: view.head,
                count: view.count,
                disk_bytes: self.log.disk_bytes(),
            },
            peers: self.registry.all().iter().map(peer_status).collect(),
            discovery: self.discovery.report(),
            files: self.blobs.as_ref().map(|store| {
                let blobs = store.list();
                FilesStatus {
                    dir: store.root().to_string_lossy().into_owned(),
                    blobs: blobs.len(),
                    pinned: blobs.iter().filter(|b| b.pinned).count(),
                    disk_bytes: store.disk_bytes(),
                }
            }),
            sync: SyncStatus {
                interval_seconds: self.sync_interval_seconds,
                peers: self.syncer.states(),
            },
            uptime_seconds: self.uptime(),
            api: self.api,
            capabilities: CapabilityNames {
                count: names.len(),
                names,
            },
            models: models(&self.bus.entries()),
            in_flight: self.bus.in_flight_total(),
            emergency: self.emergency.as_ref().map(|status| {
                let status = status.borrow();
                EmergencyStatus {
                    mode: status.mode.as_str().to_owned(),
                    since: status.since,
                    held_seconds: status.since_instant.elapsed().as_secs(),
                    probes: status
                        .results
                        .iter()
                        .map(|(target, reachable)| ProbeStatus {
                            target: target.clone(),
                            reachable: *reachable,
                        })
                        .collect(),
                }
            }),
        }
    }
}

/// The models the capabilities name, each with what serves it and where.
fn models(entries: &[CapabilityEntry]) -> Vec<ModelStatus> {
    #[derive(Default)]
    struct Served<'a> {
        capabilities: BTreeSet<&'a str>,
        local: bool,
        neighbours: BTreeSet<NodeId>,
    }
    let mut models: BTreeMap<&str, Served> = BTreeMap::new();
    for entry in entries {
        let named = entry.params.get("model").into_iter().chain(
            entry
                .params
                .get("models")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
        for model in named.filter_map(Value::as_str) {
            let served = models.entry(model).or_default();
            served.capabilities.insert(&entry.name);
            if entry.local {
                served.local = true;
            } else {
                served.neighbours.insert(entry.node);
            }
        }
    }
    models
        .into_iter()
        .map(|(model, served)| ModelStatus {
            model: model.to_owned(),
            capabilities: served.capabilities.into_iter().map(str::to_owned).collect(),
            local: served.local,
            neighbours: served.neighbours.len(),
        })
        .collect()
}

fn peer_status(p: &Peer) -> PeerStatus {
    PeerStatus {
        node_id: p.node_id,
        short_id: p.node_id.short(),
        display_name: p.display_name.clone(),
        addr: p.addr,
        sources: p.sources.clone(),
        profile: p.manifest.content.profile,
        capabilities: p
            .manifest
            .content
            .capabilities
            .iter()
            .map(|c| format!("{}@{}", c.name, c.version))
            .collect(),
        first_verified: p.first_verified,
        manifest_expires_at: p.manifest.expires_at,
    }
}

/// A local API document as the transport's `NodeView` hands it on. Its
/// types serialise infallibly (string keys, UTF-8 paths shown lossily);
/// were that ever to break, the client gets an error body it reports,
/// not a half document.
fn to_document<T: serde::Serialize>(doc: &T) -> Value {
    serde_json::to_value(doc)
        .unwrap_or_else(|e| json!({"error": "internal_error", "message": e.to_string()}))
}

#[cfg(test)]
mod tests {
    use hearthnet_base::{DeviceKey, Stability};

    use super::*;

    fn entry(name: &str, params: Value, node: NodeId, local: bool) -> CapabilityEntry {
        CapabilityEntry {
            name: name.into(),
            version: "1.0".into(),
            stability: Stability::Stable,
            node,
            local,
            params,
            schema_hash: "blake3:00".into(),
            success_rate: 1.0,
            p50_ms: 0.0,
            in_flight: 0,
            max_concurrent: 1,
            quarantined: false,
            streaming: false,
        }
    }

    #[test]
    fn models_are_gathered_from_every_capability_that_names_them() {
        let (here, a, b) = (
            DeviceKey::generate().node_id(),
            DeviceKey::generate().node_id(),
            DeviceKey::generate().node_id(),
        );
        let chat = json!({"model": "smollm", "models": ["smollm", "qwen"]});
        let entries = [
            entry("llm.chat", chat.clone(), here, true),
            entry("llm.complete", json!({"model": "smollm"}), here, true),
            entry("llm.chat", chat, a, false),
            entry(
                "embed.text",
                json!({"model": "minilm", "dim": 384}),
                a,
                false,
            ),
            entry("embed.text", json!({"model": "minilm"}), b, false),
            entry("rag.query", json!({"corpus": "c"}), here, true),
            entry("experimental.x", json!({"model": 7}), here, true),
        ];
        let models = models(&entries);
        let summary: Vec<(&str, Vec<&str>, bool, usize)> = models
            .iter()
            .map(|m| {
                let caps = m.capabilities.iter().map(String::as_str).collect();
                (m.model.as_str(), caps, m.local, m.neighbours)
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("minilm", vec!["embed.text"], false, 2),
                ("qwen", vec!["llm.chat"], true, 1),
                ("smollm", vec!["llm.chat", "llm.complete"], true, 1),
            ]
        );
    }
}
