//! Community manifests (Contract §6.2) and community genesis (§7.2
//! `community.created`).
//!
//! The founder's device key is the community's root key, so the
//! CommunityID is the founder's full NodeID. The genesis is one signed
//! `community.created` event at Lamport 0 plus the signed manifest that is
//! its materialised view; the event log replays from that event.

use std::path::Path;

use hearthnet_base::event::{Event, EventError, NewEvent};
use hearthnet_base::{
    CommunityId, DeviceKey, NodeId, SignatureError, Timestamp, TrustLevel, fsio, sign_value,
    verify_value,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const GENESIS_FILE: &str = "genesis.json";
pub const MAX_COMMUNITY_NAME_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunityPolicy {
    pub min_signatures_to_invite: u32,
    pub min_signatures_to_demote: u32,
    pub min_signatures_to_revoke: u32,
    pub capability_token_ttl_seconds: u64,
    pub federation_enabled: bool,
    pub default_member_can_invite: bool,
    /// Every event must carry `data.author_prev`, so a revocation can cut
    /// exactly what its revokers did not know (SECURITY.md rule 7). On for
    /// new communities; absent (off) in those made before it existed, and
    /// off where members run v1 nodes, which do not link.
    #[serde(default)]
    pub require_event_links: bool,
}

impl Default for CommunityPolicy {
    /// The create flow's defaults (M13 §4.1).
    fn default() -> Self {
        Self {
            min_signatures_to_invite: 1,
            min_signatures_to_demote: 3,
            min_signatures_to_revoke: 3,
            capability_token_ttl_seconds: 86_400,
            federation_enabled: true,
            default_member_can_invite: true,
            require_event_links: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node_id: NodeId,
    pub level: TrustLevel,
    pub added_at: Timestamp,
    pub added_by: NodeId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedMember {
    pub node_id: NodeId,
    pub revoked_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunityManifest {
    pub version: u32,
    pub community_id: CommunityId,
    pub name: String,
    pub root_key: NodeId,
    pub created_at: Timestamp,
    pub lamport_at_creation: u64,
    pub policy: CommunityPolicy,
    pub members: Vec<Member>,
    pub revoked: Vec<RevokedMember>,
    pub head_lamport: u64,
    pub signature: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is malformed: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("manifest signature invalid: {0}")]
    Signature(SignatureError),
    #[error("manifest is inconsistent: {0}")]
    Inconsistent(String),
    #[error("manifest has expired at {expires_at} (now {now})")]
    Expired {
        expires_at: Timestamp,
        now: Timestamp,
    },
    #[error("community name must be 1 to {MAX_COMMUNITY_NAME_CHARS} characters, not {0}")]
    BadName(usize),
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl CommunityManifest {
    /// Parse a manifest as received and check that the community's root
    /// key signed it (true of every genesis manifest).
    pub fn verify(value: &Value) -> Result<Self, ManifestError> {
        Self::verify_with_anchors(value, &[])
    }

    /// Like [`verify`](Self::verify), also accepting a signature by one of
    /// `anchors`: the anchors *we* know from replaying the log, never the
    /// ones the manifest lists about itself (anyone can list themselves).
    pub fn verify_with_anchors(value: &Value, anchors: &[NodeId]) -> Result<Self, ManifestError> {
        let manifest: CommunityManifest = serde_json::from_value(value.clone())?;
        if manifest.community_id.root_key() != manifest.root_key {
            return Err(ManifestError::Inconsistent(
                "community_id is not the root key".into(),
            ));
        }
        let mut last_error = SignatureError::Missing;
        for signer in std::iter::once(&manifest.root_key).chain(anchors) {
            match verify_value(value, signer) {
                Ok(()) => return Ok(manifest),
                Err(e) => last_error = e,
            }
        }
        Err(ManifestError::Signature(last_error))
    }

    /// Read and verify `<state_dir>/manifest.json`.
    pub fn load(state_dir: &Path) -> Result<Self, ManifestError> {
        let path = state_dir.join(MANIFEST_FILE);
        let text = std::fs::read(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        Self::verify(&serde_json::from_slice(&text)?)
    }
}

/// The birth of a community: its first event and first manifest.
#[derive(Debug, Clone)]
pub struct Genesis {
    pub manifest: CommunityManifest,
    /// The signed manifest exactly as written.
    pub manifest_json: Value,
    pub created_event: Event,
}

impl Genesis {
    /// Found a community named `name` with `founder` as its root and sole
    /// anchor.
    pub fn create(
        founder: &DeviceKey,
        name: &str,
        policy: CommunityPolicy,
    ) -> Result<Self, ManifestError> {
        let name = name.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_COMMUNITY_NAME_CHARS {
            return Err(ManifestError::BadName(chars));
        }
        let root = founder.node_id();
        let community_id = CommunityId::of_root(root);
        let created_event = Event::create(
            NewEvent {
                community_id,
                lamport: 0,
                event_type: "community.created",
                data: serde_json::json!({
                    "name": name,
                    "founder_node_id": root,
                    "policy": policy,
                    // The founder's first event: its chain starts here.
                    "author_prev": null,
                }),
            },
            founder,
        )?;
        let unsigned = serde_json::json!({
            "version": 1,
            "community_id": community_id,
            "name": name,
            "root_key": root,
            "created_at": created_event.wall_clock,
            "lamport_at_creation": 0,
            "policy": policy,
            "members": [{
                "node_id": root,
                "level": TrustLevel::Anchor,
                "added_at": created_event.wall_clock,
                "added_by": root,
            }],
            "revoked": [],
            "head_lamport": 0,
        });
        let manifest_json = sign_value(unsigned, founder).map_err(ManifestError::Signature)?;
        let manifest = CommunityManifest::verify(&manifest_json)?;
        Ok(Self {
            manifest,
            manifest_json,
            created_event,
        })
    }

    /// Write `manifest.json` and `genesis.json` into `state_dir`, each
    /// atomically.
    pub fn write_to(&self, state_dir: &Path) -> Result<(), ManifestError> {
        let write = |name: &str, value: &Value| {
            let path = state_dir.join(name);
            let mut text = serde_json::to_vec_pretty(value)?;
            text.push(b'\n');
            fsio::atomic_write(&path, &text, 0o600)
                .map_err(|source| ManifestError::Io { path, source })
        };
        write(MANIFEST_FILE, &self.manifest_json)?;
        write(GENESIS_FILE, &self.created_event.to_value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn genesis_makes_the_founder_root_and_sole_anchor() {
        let founder = DeviceKey::generate();
        let g =
            Genesis::create(&founder, "  Niederrhein Demo ", CommunityPolicy::default()).unwrap();
        assert_eq!(g.manifest.name, "Niederrhein Demo");
        assert_eq!(g.manifest.community_id.root_key(), founder.node_id());
        assert_eq!(g.manifest.members.len(), 1);
        assert_eq!(
            (g.manifest.members[0].node_id, g.manifest.members[0].level),
            (founder.node_id(), TrustLevel::Anchor)
        );
        assert_eq!(g.manifest.head_lamport, 0);
        assert_eq!(g.created_event.event_type, "community.created");
        assert_eq!(g.created_event.lamport, 0);
        assert_eq!(
            g.created_event.data["founder_node_id"],
            json!(founder.node_id())
        );
        Event::verify(&g.created_event.to_value()).unwrap();
    }

    #[test]
    fn tampered_manifests_are_rejected() {
        let founder = DeviceKey::generate();
        let g = Genesis::create(&founder, "Demo", CommunityPolicy::default()).unwrap();
        CommunityManifest::verify(&g.manifest_json).unwrap();

        let mut renamed = g.manifest_json.clone();
        renamed["name"] = json!("Hijacked");
        assert!(matches!(
            CommunityManifest::verify(&renamed),
            Err(ManifestError::Signature(_))
        ));

        // A stranger adds themself as anchor and re-signs with their own key.
        let stranger = DeviceKey::generate();
        let mut grabbed = g.manifest_json.clone();
        grabbed["members"].as_array_mut().unwrap().push(json!({
            "node_id": stranger.node_id(), "level": "anchor",
            "added_at": "2026-01-01T00:00:00Z", "added_by": stranger.node_id()
        }));
        let resigned = sign_value(grabbed.clone(), &stranger).unwrap();
        assert!(matches!(
            CommunityManifest::verify(&resigned),
            Err(ManifestError::Signature(_))
        ));
        // Only an anchor we learned of ourselves may sign a regeneration.
        assert!(CommunityManifest::verify_with_anchors(&resigned, &[stranger.node_id()]).is_ok());
        let mut forged_root = resigned;
        forged_root["root_key"] = json!(stranger.node_id());
        assert!(matches!(
            CommunityManifest::verify(&forged_root),
            Err(ManifestError::Inconsistent(_))
        ));

        assert!(matches!(
            Genesis::create(&founder, "", CommunityPolicy::default()),
            Err(ManifestError::BadName(0))
        ));
    }

    #[test]
    fn written_genesis_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let g =
            Genesis::create(&DeviceKey::generate(), "Demo", CommunityPolicy::default()).unwrap();
        g.write_to(dir.path()).unwrap();
        assert_eq!(CommunityManifest::load(dir.path()).unwrap(), g.manifest);
        let text = std::fs::read_to_string(dir.path().join(MANIFEST_FILE)).unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), text.replace("Demo", "Dem0")).unwrap();
        assert!(CommunityManifest::load(dir.path()).is_err());
    }
}
