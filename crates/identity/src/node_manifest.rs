//! Node manifests (Contract §6.1): what a node is and offers, signed by its
//! device key, valid for exactly `MANIFEST_TTL_SECONDS`.

use hearthnet_base::constants::MANIFEST_TTL_SECONDS;
use hearthnet_base::{
    CommunityId, DeviceKey, NodeId, Profile, Timestamp, sign_value, verify_value,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::community::ManifestError;
use crate::hardware::HardwareFacts;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub transport: String,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HardwareSpec {
    pub gpu: Option<String>,
    pub vram_gb: f64,
    pub ram_gb: f64,
    pub cpu_cores: u32,
    pub disk_free_gb: f64,
}

impl From<&HardwareFacts> for HardwareSpec {
    fn from(f: &HardwareFacts) -> Self {
        let gb = |bytes: u64| (bytes as f64 / 1e8).round() / 10.0;
        Self {
            gpu: f.gpus.first().cloned(),
            vram_gb: gb(f.vram_bytes),
            ram_gb: gb(f.ram_bytes),
            cpu_cores: f.cpu_cores,
            disk_free_gb: gb(f.disk_free_bytes),
        }
    }
}

/// A capability as it appears inside a node manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilitySpec {
    pub name: String,
    pub version: String,
    pub stability: hearthnet_base::Stability,
    pub schema_hash: String,
    pub params: Value,
    pub max_concurrent: u32,
    /// Our extension (M03's descriptor field): how long the provider lets
    /// a call run, so its callers wait as long and no longer. Absent from
    /// manifests of nodes without it; the signature covers it when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeManifest {
    pub version: u32,
    pub contract_version: String,
    pub node_id: NodeId,
    #[serde(flatten)]
    pub content: NodeManifestContent,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub signature: String,
}

/// The parts of a node manifest its owner decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeManifestContent {
    pub display_name: String,
    pub community_id: CommunityId,
    pub profile: Profile,
    pub endpoints: Vec<Endpoint>,
    pub hardware: HardwareSpec,
    pub capabilities: Vec<CapabilitySpec>,
    pub uptime_seconds: u64,
    pub load: Value,
    /// Sync protocols this node speaks, best first (our extension; peers
    /// that do not list it speak the reference's heads protocol).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync: Vec<String>,
}

impl NodeManifest {
    /// Build and sign a manifest issued at `now`, expiring 30 s later.
    pub fn issue(
        content: NodeManifestContent,
        key: &DeviceKey,
        now: Timestamp,
    ) -> Result<(Self, Value), ManifestError> {
        let unsigned = serde_json::to_value(NodeManifest {
            version: 1,
            contract_version: hearthnet_base::CONTRACT_VERSION.into(),
            node_id: key.node_id(),
            content,
            issued_at: now,
            expires_at: now.plus_seconds(MANIFEST_TTL_SECONDS),
            signature: String::new(),
        })?;
        let signed = sign_value(unsigned, key).map_err(ManifestError::Signature)?;
        Ok((serde_json::from_value(signed.clone())?, signed))
    }

    /// Check a received manifest: its own node signed it, its lifetime is
    /// exactly the TTL, and it has not expired at `now`.
    pub fn verify(value: &Value, now: Timestamp) -> Result<Self, ManifestError> {
        let manifest: NodeManifest = serde_json::from_value(value.clone())?;
        verify_value(value, &manifest.node_id).map_err(ManifestError::Signature)?;
        if manifest.expires_at.unix() - manifest.issued_at.unix() != MANIFEST_TTL_SECONDS {
            return Err(ManifestError::Inconsistent(format!(
                "expires_at - issued_at must be {MANIFEST_TTL_SECONDS} s"
            )));
        }
        if now > manifest.expires_at {
            return Err(ManifestError::Expired {
                expires_at: manifest.expires_at,
                now,
            });
        }
        Ok(manifest)
    }
}

#[cfg(any(test, feature = "samples"))]
pub mod samples {
    //! A filled-in manifest for tests here and in the crates that verify,
    //! serve or register manifests, so none writes one out by hand.

    use super::*;

    /// A laptop-sized anchor of `community` on the default peer port,
    /// offering nothing yet and speaking negentropy sync.
    pub fn content(community: CommunityId) -> NodeManifestContent {
        NodeManifestContent {
            display_name: "garage-pc".into(),
            community_id: community,
            profile: Profile::Anchor,
            endpoints: vec![Endpoint {
                transport: "https".into(),
                host: "127.0.0.1".into(),
                port: 7443,
            }],
            hardware: HardwareSpec {
                gpu: None,
                vram_gb: 0.0,
                ram_gb: 15.5,
                cpu_cores: 8,
                disk_free_gb: 120.25,
            },
            capabilities: vec![],
            uptime_seconds: 12,
            load: serde_json::json!({"cpu": 0.12, "in_flight_total": 0}),
            sync: vec!["negentropy/1".into()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_boundary_is_exact() {
        let key = DeviceKey::generate();
        let t0 = Timestamp::parse("2026-05-26T08:14:22Z").unwrap();
        let (m, json) = NodeManifest::issue(
            samples::content(CommunityId::of_root(key.node_id())),
            &key,
            t0,
        )
        .unwrap();
        assert_eq!(m.expires_at.to_string(), "2026-05-26T08:14:52Z");
        assert!(NodeManifest::verify(&json, t0.plus_seconds(30)).is_ok());
        assert!(matches!(
            NodeManifest::verify(&json, t0.plus_seconds(31)),
            Err(ManifestError::Expired { .. })
        ));
        let mut tampered = json.clone();
        tampered["display_name"] = serde_json::json!("evil");
        assert!(matches!(
            NodeManifest::verify(&tampered, t0),
            Err(ManifestError::Signature(_))
        ));
    }
}
