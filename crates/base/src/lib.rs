//! The primitives of Capability Contract v1.0 that every other crate speaks.
//!
//! This crate owns the contract's *byte-level* rules and nothing else:
//! canonical JSON (§1.2), the signing primitive (§1.3, §10), BLAKE3 ids
//! (§1.4), identifier forms (GLOSSARY), timestamps (§1.1), the closed set of
//! error codes (§9), schema hashes (§11), the event envelope (§7.1) and the
//! interop constants of the GLOSSARY.
//!
//! Architecture invariant: no network IO happens here, and the only file IO
//! is [`fsio::atomic_write`], the one way every crate replaces a document.

pub mod canonical;
pub mod constants;
pub mod crypto;
pub mod error_code;
pub mod event;
pub mod fsio;
pub mod hash;
pub mod ids;
pub mod kinds;
pub mod request;
pub mod schema;
pub mod time;

pub use canonical::{CanonicalError, to_canonical_bytes};
pub use crypto::{DeviceKey, SignatureError, sign_value, verify_value};
pub use error_code::ErrorCode;
pub use hash::Blake3Id;
pub use ids::{CommunityId, IdError, NodeId};
pub use kinds::{Profile, Stability, TrustLevel};
pub use time::Timestamp;

/// The contract revision this build implements (carried in node manifests).
pub const CONTRACT_VERSION: &str = "1.0";
