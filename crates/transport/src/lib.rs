//! X01: how requests reach a node and answers leave it.
//!
//! Owns the HTTP server (an accept loop with header timeouts, a connection
//! cap and graceful shutdown), authentication of signed requests (Contract
//! §5.1: signature, community, membership, timestamp window, replay cache),
//! rate limits, the mapping of bus outcomes to JSON bodies, HTTP statuses
//! (§5.4–§5.5) and SSE frames (§5.3), and the contract's endpoints.
//!
//! Architecture invariant: this is the only crate that knows HTTP. What a
//! node *is* (manifests, status, readiness) it asks a [`NodeView`].

mod auth;
mod routes;
mod server;
mod sse;

use hearthnet_base::{NodeId, TrustLevel};
use serde_json::Value;

pub use routes::{ApiState, router};
pub use server::{Listener, serve};

/// What the transport needs to know about the node it serves.
pub trait NodeView: Send + Sync + 'static {
    /// The signed node manifest, freshly issued.
    fn node_manifest(&self) -> Value;
    /// The signed community manifest as stored.
    fn community_manifest(&self) -> Value;
    /// The level of `node` in the community (`Unknown` for strangers).
    fn level_of(&self, node: &NodeId) -> TrustLevel;
    /// Whether `node` was revoked.
    fn is_revoked(&self, node: &NodeId) -> bool;
    /// `(ready, details)` for `/ready`.
    fn readiness(&self) -> (bool, Value);
    /// The local-only status document for `hearthnet status`.
    fn status(&self) -> Value;
}
