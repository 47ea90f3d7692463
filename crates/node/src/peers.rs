//! The neighbours as the node uses them: discovery reaches them through
//! [`PeerContact`]; each verified peer's capabilities become remote entries
//! on the bus, served through [`RemoteNode`]; a new peer is synced with at
//! once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hearthnet_base::{ErrorCode, NodeId, Timestamp};
use hearthnet_bus::{Bus, Call, CallError, Handler};
use hearthnet_discovery::{Contact, Discovery, Peer, PeerEvent};
use hearthnet_events::EventLog;
use hearthnet_transport::peer_client::{CallReply, PeerClient, PeerError};
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

const MANIFEST_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Discovery's access to other nodes: our TLS client and our event log.
pub struct PeerContact {
    pub client: Arc<PeerClient>,
    pub log: EventLog,
}

impl Contact for PeerContact {
    fn fetch_manifest(
        &self,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) -> hearthnet_discovery::BoxFuture<Result<(Value, Option<NodeId>), String>> {
        let client = self.client.clone();
        Box::pin(async move {
            // A peer that stalls must not hold a fetch slot for long.
            let target = addr.to_string();
            let fetch = client.get(&target, expected, "/manifest");
            match tokio::time::timeout(MANIFEST_FETCH_TIMEOUT, fetch).await {
                Ok(reply) => reply
                    .map(|reply| (reply.body, reply.peer))
                    .map_err(|e| e.to_string()),
                Err(_) => Err(format!(
                    "{addr} sent no manifest within {MANIFEST_FETCH_TIMEOUT:?}"
                )),
            }
        })
    }

    fn is_member(&self, node: &NodeId) -> bool {
        let view = self.log.view();
        view.level_of(node) >= hearthnet_base::TrustLevel::Member && !view.is_revoked(node)
    }

    fn membership_version(&self) -> u64 {
        let view = self.log.view();
        (view.members.len() + view.revoked.len()) as u64
    }
}

/// A peer's capabilities, called over the network.
pub struct RemoteNode {
    client: Arc<PeerClient>,
    node: NodeId,
    addr: String,
    discovery: Arc<Discovery>,
}

impl RemoteNode {
    /// What serves the bus's entries of this peer: any of its capabilities,
    /// carried over the network.
    fn handler(self: Arc<Self>) -> Handler {
        Arc::new(move |call| Box::pin(self.clone().carry(call)))
    }

    async fn carry(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let body = json!({"params": call.params, "input": call.input});
        // The bus holds the deadline; the peer gets a little less of
        // what is left, so its own `timeout` answer arrives in time.
        let left = call
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        let timeout = (left - left / 10).max(Duration::from_millis(1));
        // Where the peer is now (its address may have changed since
        // this entry was made).
        let addr = self
            .discovery
            .registry
            .get(&self.node)
            .map_or_else(|| self.addr.clone(), |p| p.addr.to_string());
        let reply = self
            .client
            .call(
                &addr,
                self.node,
                &call.capability,
                &call.version.to_string(),
                &body,
                call.stream,
                timeout,
            )
            .await
            .map_err(|e| {
                if matches!(e, PeerError::Unreachable { .. }) {
                    self.discovery.registry.suspect(self.node);
                }
                peer_failure(&self.node, e, call.deadline)
            })?;
        match reply {
            CallReply::Done(value) => Ok(value),
            CallReply::Failed(body) => Err(error_from_body(&body)),
            CallReply::Frames(mut frames) => {
                while let Some(frame) = frames.next().await {
                    let (event, data) = frame.map_err(|e| {
                        CallError::new(
                            ErrorCode::Partition,
                            format!("the stream from {} broke: {e}", self.node.short()),
                        )
                    })?;
                    match event.as_str() {
                        "done" => return Ok(data),
                        "error" => return Err(error_from_body(&data)),
                        _ => {
                            call.frames.send(&event, data).await.map_err(|_| {
                                CallError::new(ErrorCode::Partition, "the caller left")
                            })?
                        }
                    }
                }
                Err(CallError::new(
                    ErrorCode::Partition,
                    format!(
                        "{} closed the stream without a terminal frame",
                        self.node.short()
                    ),
                ))
            }
        }
    }
}

/// What a failed exchange with a peer means for the caller: unreachable
/// (nothing started there; another provider may take the call), out of
/// time, or unknown (the call may have run).
pub(crate) fn peer_failure(
    node: &NodeId,
    e: PeerError,
    deadline: tokio::time::Instant,
) -> CallError {
    let message = format!("peer {}: {e}", node.short());
    match e {
        PeerError::Unreachable { .. } => {
            CallError::new(ErrorCode::Partition, message).before_start()
        }
        PeerError::Lost { .. } if tokio::time::Instant::now() >= deadline => {
            CallError::new(ErrorCode::Timeout, message)
        }
        PeerError::Lost { .. } => CallError::new(ErrorCode::Partition, message),
        PeerError::Refused { .. } | PeerError::BadAnswer { .. } => {
            CallError::new(ErrorCode::InternalError, message)
        }
    }
}

/// Rebuild a Contract §5.4 error a peer sent.
pub(crate) fn error_from_body(body: &Value) -> CallError {
    let code = body["error"]
        .as_str()
        .and_then(|c| serde_json::from_value::<ErrorCode>(json!(c)).ok())
        .unwrap_or(ErrorCode::InternalError);
    let mut err = CallError::new(code, body["message"].as_str().unwrap_or("no message"));
    if let Some(ms) = body["retry_after_ms"].as_u64() {
        err = err.retry_after(ms);
    }
    for key in ["alt_capabilities", "alt_nodes", "schema_hash_expected"] {
        if let Some(v) = body.get(key) {
            err = err.with(key, v.clone());
        }
    }
    // Refusals that come before a provider runs anything.
    if matches!(
        code,
        ErrorCode::CapacityExceeded | ErrorCode::NotFound | ErrorCode::RateLimited
    ) {
        err = err.before_start();
    }
    err
}

/// Keep the bus's remote entries in step with the registry, and wake sync
/// when someone new appears.
pub async fn follow(
    discovery: Arc<Discovery>,
    bus: Arc<Bus>,
    client: Arc<PeerClient>,
    new_peer: Arc<Notify>,
    stop: CancellationToken,
) {
    let registry = discovery.registry.clone();
    let mut events = registry.subscribe();
    let offer = |peer: &Peer| {
        // Never longer than a manifest lives, whatever the peer's clock.
        let left = (peer.manifest.expires_at.unix() - Timestamp::now().unix())
            .clamp(0, hearthnet_base::constants::MANIFEST_TTL_SECONDS);
        bus.set_remote(
            peer.node_id,
            &peer.manifest.content.capabilities,
            Duration::from_secs(left.unsigned_abs()),
            Arc::new(RemoteNode {
                client: client.clone(),
                node: peer.node_id,
                addr: peer.addr.to_string(),
                discovery: discovery.clone(),
            })
            .handler(),
        );
    };
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = stop.cancelled() => return,
        };
        match event {
            Ok(PeerEvent::Added(peer)) => {
                offer(&peer);
                new_peer.notify_one();
            }
            Ok(PeerEvent::Updated(peer)) => offer(&peer),
            Ok(PeerEvent::Removed(node)) => bus.remove_remote(&node),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Missed events: rebuild from the registry, removals too.
                let peers = registry.all();
                for node in bus.remote_nodes() {
                    if !peers.iter().any(|p| p.node_id == node) {
                        bus.remove_remote(&node);
                    }
                }
                for peer in &peers {
                    offer(peer);
                }
                new_peer.notify_one();
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
