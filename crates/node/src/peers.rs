//! The neighbours as the node uses them: discovery reaches them through
//! [`PeerContact`]; each verified peer's capabilities become remote entries
//! on the bus, served through [`RemoteNode`]; a new peer is synced with at
//! once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use hearthnet_base::{ErrorCode, NodeId, Timestamp};
use hearthnet_bus::{Bus, Call, CallError, CapabilityDescriptor, Service};
use hearthnet_discovery::{Contact, Discovery, Peer, PeerEvent};
use hearthnet_events::EventLog;
use hearthnet_transport::peer_client::{CallReply, PeerClient, PeerError};
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

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
            client
                .get(&addr.to_string(), expected, "/manifest")
                .await
                .map(|reply| (reply.body, reply.peer))
                .map_err(|e| e.to_string())
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

impl Service for RemoteNode {
    /// Remote entries come from the peer's manifest, not from here.
    fn descriptors(&self) -> Vec<CapabilityDescriptor> {
        Vec::new()
    }

    fn handle(self: Arc<Self>, call: Call) -> BoxFuture<'static, Result<Value, CallError>> {
        Box::pin(async move {
            let body = json!({"params": call.params, "input": call.input});
            // The bus holds the deadline; the peer gets what is left of it
            // as its own, so it stops working when we stop waiting.
            let timeout = call
                .deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_millis(1));
            let reply = self
                .client
                .call(
                    &self.addr,
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
                        self.discovery.suspect(self.node);
                    }
                    unreachable(&self.node, e)
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
                            _ => call.frames.send(&event, data).await.map_err(|_| {
                                CallError::new(ErrorCode::Partition, "the caller left")
                            })?,
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
        })
    }
}

fn unreachable(node: &NodeId, e: PeerError) -> CallError {
    let code = match e {
        PeerError::Unreachable { .. } => ErrorCode::Partition,
        _ => ErrorCode::InternalError,
    };
    CallError::new(code, format!("peer {}: {e}", node.short()))
}

/// Rebuild a Contract §5.4 error a peer sent.
fn error_from_body(body: &Value) -> CallError {
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
        let left = peer.manifest.expires_at.unix() - Timestamp::now().unix();
        bus.set_remote(
            peer.node_id,
            &peer.manifest.content.capabilities,
            Duration::from_secs(left.max(0).unsigned_abs()),
            Arc::new(RemoteNode {
                client: client.clone(),
                node: peer.node_id,
                addr: peer.addr.to_string(),
                discovery: discovery.clone(),
            }),
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
                for peer in registry.all() {
                    offer(&peer);
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
