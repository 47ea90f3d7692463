//! The local API's documents (SYSTEM.md item 4): what a node answers its
//! own CLI and tests on 127.0.0.1, and the answers of the self-only
//! `file.local.*` capabilities. The node serialises these, the client
//! decodes them with [`crate::decode`] / [`crate::from_value`].
//!
//! Every field a node always sends is required, so a missing one is an
//! error naming it; an `Option` is a field that may honestly be `null`
//! (and is still sent as `null`, so the JSON keeps its shape).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use hearthnet_base::{Blake3Id, CommunityId, NodeId, Profile, Stability, Timestamp, TrustLevel};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the client says when it decodes these (the `document` of
/// [`crate::DecodeError`]).
pub mod names {
    pub const HEALTH: &str = "the node's /health";
    pub const READY: &str = "the node's /ready";
    pub const STATUS: &str = "the node's status";
    pub const CAPS: &str = "the node's capability list";
    pub const TRACES: &str = "the node's recent traces";
    pub const SYNC_ROUND: &str = "the node's sync report";
    pub const UI_LINK: &str = "the web UI's login link";
    pub const UI_PAIRING: &str = "the web UI's pairing code";
    pub const FILE_PROGRESS: &str = "a progress frame of file.local";
    pub const FILE_ADDED: &str = "the node's answer to file.local.add";
    pub const FILE_GOT: &str = "the node's answer to file.local.get";
    pub const FILE_PINNED: &str = "the node's answer to file.local.pin";
    pub const FILE_LIST: &str = "the node's answer to file.local.list";
}

/// `GET /health`: the process answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok`: a node that answers at all is alive.
    pub status: String,
    pub node_id: NodeId,
}

/// Where the node is in its life, as `/ready` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Starting,
    Ready,
    Stopping,
}

/// `GET /ready` (200 when `ready`, 503 otherwise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    pub state: Phase,
    /// Local capabilities registered.
    pub capabilities: usize,
    /// Peers whose latest sync round succeeded; reported, not required.
    pub peers: usize,
}

/// `GET /local/v1/status`: what `hearthnet status` shows (M12 §3.3) and
/// what the doctor's running checks look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub node: NodeStatus,
    pub community: CommunityStatus,
    pub events: EventLogStatus,
    /// Verified peers, as the registry holds them.
    pub peers: Vec<PeerStatus>,
    pub discovery: DiscoveryStatus,
    /// `None` when the node runs without a blob store.
    pub files: Option<FilesStatus>,
    pub sync: SyncStatus,
    pub uptime_seconds: u64,
    /// The local API's address.
    pub api: SocketAddr,
    pub capabilities: CapabilityNames,
    /// The AI models this node can reach: its own and its neighbours'.
    #[serde(default)]
    pub models: Vec<ModelStatus>,
    /// Calls running on this node now.
    pub in_flight: u32,
    /// Internet reachability (M09); absent when the detector is off.
    #[serde(default)]
    pub emergency: Option<EmergencyStatus>,
}

/// What the emergency detector knows now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyStatus {
    /// `online`, `degraded` or `offline`.
    pub mode: String,
    pub since: Timestamp,
    /// How long the mode has held.
    pub held_seconds: u64,
    /// The last round of probes, in the configured order.
    pub probes: Vec<ProbeStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeStatus {
    pub target: String,
    pub reachable: bool,
}

/// One model as the bus sees it (from the `params.model` and
/// `params.models` of the capabilities that serve it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelStatus {
    pub model: String,
    /// The capabilities serving it, e.g. `llm.chat`, `embed.text`.
    pub capabilities: Vec<String>,
    /// Whether this node serves it itself.
    pub local: bool,
    /// How many neighbours serve it.
    pub neighbours: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub short_id: String,
    pub display_name: String,
    pub profile: Profile,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommunityStatus {
    pub id: CommunityId,
    pub short_id: String,
    pub name: String,
    /// Members not revoked.
    pub members: usize,
}

/// One member of the community as this node's log has it (not revoked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub node_id: NodeId,
    pub level: TrustLevel,
    pub added_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLogStatus {
    pub head_lamport: u64,
    pub count: u64,
    pub disk_bytes: u64,
}

/// How a peer was found (mDNS, UDP announcement, configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerSource {
    Mdns,
    Udp,
    Static,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub node_id: NodeId,
    pub short_id: String,
    pub display_name: String,
    /// The peer-port address its manifest was fetched from.
    pub addr: SocketAddr,
    pub sources: BTreeSet<PeerSource>,
    pub profile: Profile,
    /// `name@version` of what its manifest offers.
    pub capabilities: Vec<String>,
    pub first_verified: Timestamp,
    pub manifest_expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryStatus {
    pub mdns: DiscoveryTransport,
    pub udp: DiscoveryTransport,
    pub counters: DiscoveryCounters,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportState {
    #[default]
    Starting,
    Running,
    Failed,
    Disabled,
}

/// One discovery mechanism (mDNS or UDP announcements).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryTransport {
    pub state: TransportState,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub interfaces: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryCounters {
    pub udp_sent: u64,
    pub udp_received: u64,
    pub udp_malformed: u64,
    pub mdns_resolved: u64,
    pub foreign_sightings: u64,
    pub manifests_rejected: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilesStatus {
    /// The blob store's directory (lossy where it is not UTF-8).
    pub dir: String,
    pub blobs: usize,
    pub pinned: usize,
    pub disk_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncStatus {
    pub interval_seconds: u64,
    /// By peer address (`host:port`).
    pub peers: BTreeMap<String, SyncPeer>,
}

/// What the node knows of its sync rounds with one peer address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncPeer {
    /// The node that answered there, once one did.
    pub node_id: Option<String>,
    /// The protocol of the last successful round.
    pub protocol: Option<String>,
    pub last_round: Option<Timestamp>,
    pub last_ok: Option<Timestamp>,
    pub rounds: u64,
    pub events_in: u64,
    pub events_out: u64,
    pub errors: u64,
    pub last_error: Option<String>,
}

/// The local capabilities, as `name@version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilityNames {
    pub count: usize,
    pub names: Vec<String>,
}

/// `GET /local/v1/caps`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Caps {
    pub capabilities: Vec<CapabilityEntry>,
}

/// One entry of the bus, local or a peer's: what `hearthnet caps` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilityEntry {
    pub name: String,
    pub version: String,
    pub stability: Stability,
    /// The node that offers it (the full NodeID on the wire).
    pub node: NodeId,
    pub local: bool,
    pub params: Value,
    pub schema_hash: String,
    pub success_rate: f64,
    pub p50_ms: f64,
    pub in_flight: u32,
    pub max_concurrent: u32,
    pub quarantined: bool,
    pub streaming: bool,
}

/// `GET /trace/recent`, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Traces {
    pub traces: Vec<TraceRecord>,
}

/// One finished call (X03 §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceRecord {
    pub ts: String,
    pub trace_id: String,
    pub capability: String,
    pub version: String,
    pub from_node: String,
    pub to_node: String,
    pub is_local: bool,
    /// `ok`, `cancelled`, or a contract error code.
    pub result: String,
    pub ms: f64,
    pub stream: bool,
    pub frames: u64,
}

/// `POST /local/v1/ui/link`'s answer: a one-time login link to the web UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiLink {
    pub url: String,
    /// How long the link may be used (once).
    pub expires_in_seconds: u64,
}

/// `POST /local/v1/ui/pair`'s answer: a pairing code that lets one
/// device of the household on the LAN (a phone) into the web UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiPairing {
    /// What the person types on the other device.
    pub code: String,
    /// Where that device opens the UI (`https://ADDRESS:PORT/pair`), one
    /// per address of this machine the UI listens on.
    pub urls: Vec<String>,
    /// The SHA-256 fingerprint of the UI's certificate, to compare with
    /// what the other device's browser shows before accepting it.
    pub certificate_sha256: String,
    /// How long the code may be used (once).
    pub expires_in_seconds: u64,
}

/// `POST /local/v1/sync`'s answer: what one round did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRound {
    pub peer: String,
    pub node_id: Option<String>,
    pub protocol: String,
    pub events_in: u64,
    pub events_out: u64,
    pub rejected: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Body bytes of the reconciliation rounds alone (v2).
    pub reconcile_bytes: u64,
    pub ms: u64,
}

/// A `progress` frame of `file.local.add` and `file.local.get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileProgress {
    pub current: u64,
    pub total: u64,
    /// What is being done (`hashing`, `writing`).
    pub stage: String,
}

/// `file.local.add`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileAdded {
    pub cid: Blake3Id,
    pub size_bytes: u64,
    pub chunks: usize,
    pub pinned: bool,
    /// The name it is kept under (the file's name, cleaned), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `file.local.get`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileGot {
    pub cid: Blake3Id,
    pub size_bytes: u64,
    /// The peers that served missing chunks (none when it was here).
    pub from: Vec<NodeId>,
}

/// `file.local.pin`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilePinned {
    pub cid: Blake3Id,
    pub pinned: bool,
    /// False when it already was as asked.
    pub changed: bool,
    /// The peers that served it, when pinning fetched it.
    pub from: Vec<NodeId>,
}

/// `file.local.list`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileList {
    pub blobs: Vec<LocalBlob>,
    /// The whole store on disk.
    pub disk_bytes: u64,
}

/// One blob of the store, as `file.local.list` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalBlob {
    pub cid: Blake3Id,
    pub size_bytes: u64,
    pub chunks: usize,
    pub pinned: bool,
    /// Unix seconds of the last use (LRU order for collection).
    pub last_used: u64,
    /// Whether the log lists this node as a holder.
    pub offered: bool,
    /// The name it was added under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[cfg(any(test, feature = "samples"))]
pub mod samples {
    //! Filled-in documents for tests here and in the crates that serve or
    //! read them (the CLI's stand-in node), so no test copies a document
    //! by hand.

    use super::*;

    pub fn node_id(seed: u8) -> NodeId {
        NodeId::from_bytes([seed; 32])
    }

    pub fn timestamp() -> Timestamp {
        Timestamp::from_unix(1_795_996_800)
    }

    /// A node with one peer, both discovery transports reported and a
    /// blob store; its API at `api`.
    pub fn status(api: SocketAddr) -> Status {
        let peer = node_id(2);
        Status {
            node: NodeStatus {
                id: node_id(1),
                short_id: node_id(1).short(),
                display_name: "garage-pc".into(),
                profile: Profile::Anchor,
            },
            community: CommunityStatus {
                id: CommunityId::of_root(node_id(1)),
                short_id: node_id(1).short(),
                name: "Niederrhein".into(),
                members: 7,
            },
            events: EventLogStatus {
                head_lamport: 41,
                count: 42,
                disk_bytes: 1 << 20,
            },
            peers: vec![PeerStatus {
                node_id: peer,
                short_id: peer.short(),
                display_name: "kitchen".into(),
                addr: SocketAddr::from(([192, 168, 1, 20], 7443)),
                sources: BTreeSet::from([PeerSource::Mdns, PeerSource::Udp]),
                profile: Profile::Spark,
                capabilities: vec!["file.read@1.0".into()],
                first_verified: timestamp(),
                manifest_expires_at: timestamp(),
            }],
            discovery: DiscoveryStatus {
                mdns: DiscoveryTransport {
                    state: TransportState::Failed,
                    error: Some("port 5353 taken".into()),
                    interfaces: vec![],
                },
                udp: DiscoveryTransport {
                    state: TransportState::Running,
                    error: None,
                    interfaces: vec!["eth0".into()],
                },
                counters: DiscoveryCounters {
                    udp_sent: 3,
                    ..DiscoveryCounters::default()
                },
            },
            files: Some(FilesStatus {
                dir: "/var/lib/hearthnet/blobs".into(),
                blobs: 2,
                pinned: 1,
                disk_bytes: 4096,
            }),
            sync: SyncStatus {
                interval_seconds: 300,
                peers: BTreeMap::from([(
                    "192.168.1.20:7443".to_owned(),
                    SyncPeer {
                        node_id: Some(peer.full()),
                        last_ok: Some(timestamp()),
                        rounds: 1,
                        ..SyncPeer::default()
                    },
                )]),
            },
            uptime_seconds: 3725,
            api,
            capabilities: CapabilityNames {
                count: 1,
                names: vec!["experimental.echo@1.0".into()],
            },
            models: vec![ModelStatus {
                model: "smollm2-135m".into(),
                capabilities: vec!["llm.chat".into(), "llm.complete".into()],
                local: true,
                neighbours: 2,
            }],
            in_flight: 3,
            emergency: Some(EmergencyStatus {
                mode: "degraded".into(),
                since: timestamp(),
                held_seconds: 42,
                probes: vec![
                    ProbeStatus {
                        target: "1.1.1.1".into(),
                        reachable: true,
                    },
                    ProbeStatus {
                        target: "quad9.net".into(),
                        reachable: false,
                    },
                ],
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::samples::{node_id, timestamp};
    use super::*;

    fn status() -> Status {
        samples::status(SocketAddr::from(([127, 0, 0, 1], 7080)))
    }
    use crate::from_value;
    use serde::de::DeserializeOwned;

    /// `doc` survives a round trip, and without the field at `pointer`
    /// decoding fails naming `path`.
    fn check<T>(doc: &T, pointer: &str, path: &str)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let value = serde_json::to_value(doc).unwrap();
        let back: T = from_value("a test", value.clone()).unwrap();
        assert_eq!(&back, doc);

        let (parent, field) = pointer.rsplit_once('/').unwrap();
        let mut broken = value;
        let removed = broken
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .and_then(|o| o.remove(field));
        assert!(removed.is_some(), "{pointer} is in the sample");
        let e = from_value::<T>("a test", broken).unwrap_err();
        assert_eq!(e.path, path);
        assert_eq!(e.message, "missing field");
    }

    #[test]
    fn status_round_trips_and_names_a_missing_field() {
        check(&status(), "/community/members", "community.members");
        check(&status(), "/events/head_lamport", "events.head_lamport");
        check(
            &status(),
            "/discovery/udp/interfaces",
            "discovery.udp.interfaces",
        );
        check(
            &status(),
            "/sync/peers/192.168.1.20:7443/rounds",
            "sync.peers.192.168.1.20:7443.rounds",
        );
    }

    #[test]
    fn status_keeps_its_json_shape() {
        let value = serde_json::to_value(status()).unwrap();
        assert_eq!(value["api"], "127.0.0.1:7080");
        assert_eq!(value["node"]["profile"], "anchor");
        assert_eq!(
            value["peers"][0]["sources"],
            serde_json::json!(["mdns", "udp"])
        );
        assert_eq!(
            value["discovery"]["udp"]["error"],
            Value::Null,
            "sent as null"
        );
        assert_eq!(
            value["sync"]["peers"]["192.168.1.20:7443"]["last_error"],
            Value::Null
        );
    }

    #[test]
    fn optional_fields_may_be_null_or_absent() {
        let mut value = serde_json::to_value(status()).unwrap();
        value["files"] = Value::Null;
        let s: Status = from_value("a test", value.clone()).unwrap();
        assert_eq!(s.files, None);
        value.as_object_mut().unwrap().remove("files");
        assert!(from_value::<Status>("a test", value).is_ok());
    }

    #[test]
    fn a_wrong_state_is_named() {
        let mut value = serde_json::to_value(status()).unwrap();
        value["discovery"]["mdns"]["state"] = "sleeping".into();
        let e = from_value::<Status>("a test", value).unwrap_err();
        assert_eq!(e.path, "discovery.mdns.state");
    }

    #[test]
    fn health_and_readiness() {
        let health = Health {
            status: "ok".into(),
            node_id: node_id(1),
        };
        check(&health, "/node_id", "node_id");
        let ready = Readiness {
            ready: false,
            state: Phase::Starting,
            capabilities: 0,
            peers: 0,
        };
        check(&ready, "/state", "state");
        assert_eq!(serde_json::to_value(&ready).unwrap()["state"], "starting");
    }

    #[test]
    fn caps_entries() {
        let caps = Caps {
            capabilities: vec![CapabilityEntry {
                name: "llm.chat".into(),
                version: "1.0".into(),
                stability: Stability::Beta,
                node: node_id(3),
                local: false,
                params: serde_json::json!({"model": "qwen2.5"}),
                schema_hash: "blake3:00".into(),
                success_rate: 0.5,
                p50_ms: 12.5,
                in_flight: 1,
                max_concurrent: 4,
                quarantined: false,
                streaming: true,
            }],
        };
        check(
            &caps,
            "/capabilities/0/max_concurrent",
            "capabilities[0].max_concurrent",
        );
        // The node is its full NodeID on the wire, as before it was typed;
        // anything else is named.
        let mut value = serde_json::to_value(&caps).unwrap();
        assert_eq!(value["capabilities"][0]["node"], node_id(3).full());
        value["capabilities"][0]["node"] = node_id(3).short().into();
        let e = from_value::<Caps>(names::CAPS, value).err().map(|e| e.path);
        assert_eq!(e.as_deref(), Some("capabilities[0].node"));
    }

    #[test]
    fn traces() {
        let traces = Traces {
            traces: vec![TraceRecord {
                ts: timestamp().to_string(),
                trace_id: "01J".into(),
                capability: "experimental.echo".into(),
                version: "1.0".into(),
                from_node: node_id(1).full(),
                to_node: node_id(1).full(),
                is_local: true,
                result: "cancelled".into(),
                ms: 1.5,
                stream: true,
                frames: 5,
            }],
        };
        check(&traces, "/traces/0/result", "traces[0].result");
    }

    #[test]
    fn sync_round() {
        let round = SyncRound {
            peer: "10.0.0.2:7443".into(),
            node_id: None,
            protocol: "negentropy/1".into(),
            events_in: 1,
            events_out: 2,
            rejected: 0,
            bytes_sent: 300,
            bytes_received: 400,
            reconcile_bytes: 100,
            ms: 12,
        };
        check(&round, "/events_in", "events_in");
    }

    #[test]
    fn file_answers() {
        let cid = Blake3Id::of(b"a file");
        check(
            &FileProgress {
                current: 1,
                total: 2,
                stage: "hashing".into(),
            },
            "/total",
            "total",
        );
        check(
            &FileAdded {
                cid,
                size_bytes: 6,
                chunks: 1,
                pinned: true,
                name: Some("recipes.pdf".into()),
            },
            "/size_bytes",
            "size_bytes",
        );
        check(
            &FileGot {
                cid,
                size_bytes: 6,
                from: vec![node_id(2)],
            },
            "/from",
            "from",
        );
        check(
            &FilePinned {
                cid,
                pinned: true,
                changed: false,
                from: vec![],
            },
            "/changed",
            "changed",
        );
        check(
            &FileList {
                blobs: vec![LocalBlob {
                    cid,
                    size_bytes: 6,
                    chunks: 1,
                    pinned: false,
                    last_used: 1_780_000_000,
                    offered: true,
                    name: None,
                }],
                disk_bytes: 8192,
            },
            "/blobs/0/offered",
            "blobs[0].offered",
        );
    }
}
