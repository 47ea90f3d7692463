//! X01: how requests reach a node and answers leave it.
//!
//! Owns the HTTP server (an accept loop with header timeouts, a connection
//! cap and graceful shutdown), authentication of signed requests (Contract
//! §5.1: signature, community, membership, timestamp window, replay cache),
//! rate limits, the mapping of bus outcomes to JSON bodies, HTTP statuses
//! (§5.4–§5.5) and SSE frames (§5.3), and the contract's endpoints.
//!
//! [`http`] is the typed layer under the endpoints (the error type, the
//! signed-request extractors, bounded bodies), shaped so that another
//! surface can reuse it; `routes` is the node's API built on it; `openai`
//! is the OpenAI-compatible gateway that [`local_router`] adds to the
//! local API (bearer key, OpenAI's documents, calls through the bus); the
//! JSON documents of the peer protocols are `hearthnet_wire::peer`'s.
//!
//! Architecture invariant: this is the only crate that knows HTTP. What a
//! node *is* (manifests, status, readiness) it asks a [`NodeView`].

mod auth;
pub mod bulk;
pub mod http;
mod openai;
pub mod peer_client;
mod routes;
mod server;
mod sse;
pub mod tls;

use futures_util::future::BoxFuture;
use hearthnet_base::{NodeId, TrustLevel};
use hearthnet_bus::CallError;
use hearthnet_wire::peer::{ChunksRequest, EventsReport, Heads, Redeemed};
use serde_json::Value;

pub use openai::MAX_BODY_BYTES as GATEWAY_MAX_BODY_BYTES;
pub use routes::{ApiState, local_router, router};
pub use server::{
    LOCAL_CONNECTIONS_PER_ADDRESS, Listener, LocalApi, NON_MEMBER_CONNECTIONS,
    NON_MEMBER_CONNECTIONS_PER_ADDRESS, NonMembers, PEER_CONNECTIONS_PER_ADDRESS, PeerIdentity,
    Serving, serve,
};

/// The event-log side of the sync and pub-sub endpoints (X02, Contract
/// §7.6 and §8), implemented by the node.
pub trait SyncEndpoints: Send + Sync + 'static {
    /// `GET /sync/v1/heads`
    fn heads(&self) -> BoxFuture<'static, Heads>;
    /// `POST /sync/v1/events`: store what validates, report on every event.
    fn receive(&self, events: Vec<Value>) -> BoxFuture<'static, Result<EventsReport, CallError>>;
    /// `POST /sync/v2/reconcile`: one negentropy round, answered.
    fn reconcile(&self, message: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, CallError>>;
    /// `POST /sync/v2/fetch`: events by the hashes reconciliation named.
    fn fetch(&self, hashes: Vec<Vec<u8>>) -> BoxFuture<'static, Result<Vec<Value>, CallError>>;
    /// `GET /pubsub/v1/subscribe`: the next messages of `topic` after
    /// `last_seq`, waiting up to `timeout`; `caller` (the signer) may be
    /// refused a private topic (another node's `chat.message.<node>`).
    fn subscribe(
        &self,
        caller: NodeId,
        topic: String,
        last_seq: i64,
        timeout: std::time::Duration,
    ) -> BoxFuture<'static, Result<Value, CallError>>;
    /// `POST /onboarding/v1/redeem`: `from` redeems `invite` with its signed
    /// `community.member.joined` event; answers with what a new member
    /// needs (community manifest, genesis and membership history).
    fn redeem(
        &self,
        from: NodeId,
        invite: String,
        joined: Value,
    ) -> BoxFuture<'static, Result<Redeemed, CallError>>;
    /// `POST /local/v1/sync` (own key only): one sync round with `peer` now.
    fn sync_now(
        &self,
        peer: String,
        protocol: Option<String>,
    ) -> BoxFuture<'static, Result<Value, CallError>>;
}

/// The blob store's side of `POST /blobs/v1/chunks` ([`bulk`]),
/// implemented by the node.
pub trait BlobEndpoints: Send + Sync + 'static {
    /// The chunks `request` asks for, as `caller` may have them; an error
    /// before the first chunk is answered as JSON.
    fn chunks(
        &self,
        caller: NodeId,
        request: ChunksRequest,
    ) -> BoxFuture<'static, Result<bulk::ServedChunks, CallError>>;
}

/// The web UI's side of `POST /local/v1/ui/link` and `/ui/pair` (own key
/// only), implemented by the UI: a fresh one-time login link for the
/// owner's browser, and a pairing code for a device on the LAN (`None`
/// when the UI is not offered on the LAN).
pub trait UiLinks: Send + Sync + 'static {
    fn login_link(&self) -> hearthnet_wire::local::UiLink;
    fn pairing(&self) -> Option<hearthnet_wire::local::UiPairing>;
}

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
    /// The local-only status document for `hearthnet status`; may read
    /// the disk, so it is called on a blocking thread.
    fn status(&self) -> Value;
    /// The members not revoked, as this node's log has them (the web UI's
    /// Settings page lists them). A view without a log has none.
    fn members(&self) -> Vec<hearthnet_wire::local::MemberStatus> {
        Vec::new()
    }
}
