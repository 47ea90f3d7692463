//! M01: who this device is, and the documents that say so.
//!
//! Owns the device key on disk (`<DATA>/keys/device.ed25519`, mode 0600),
//! the local API key beside it (`local-api.key`, the bearer token of the
//! OpenAI-compatible gateway, [`api_key`]),
//! node manifests (Contract §6.1), community manifests and genesis (§6.2,
//! §7.2 `community.created`), and the hardware facts a manifest and a
//! profile are derived from. The byte-level rules (canonical JSON, the
//! signature format) are `hearthnet-base`'s; this crate owns no network and
//! no event log.

pub mod api_key;
pub mod community;
pub mod hardware;
pub mod keystore;
pub mod node_manifest;

pub use api_key::{ApiKey, ApiKeyCheck, ApiKeyError, ApiKeyFile};
pub use community::{
    CommunityManifest, CommunityPolicy, Genesis, ManifestError, Member, RevokedMember,
};
pub use hardware::{HardwareFacts, ProfileChoice};
pub use keystore::{KeyError, KeyStore};
pub use node_manifest::{
    CapabilitySpec, Endpoint, HardwareSpec, NodeManifest, NodeManifestContent,
};
