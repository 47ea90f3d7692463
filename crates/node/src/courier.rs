//! How the chat service hands a message to one node now (M10 §4.1):
//! a push of the one signed event to the node's peer port, at the
//! address its verified manifest came from.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use hearthnet_base::{CommunityId, NodeId};
use hearthnet_chat::Courier;
use hearthnet_discovery::PeerRegistry;
use hearthnet_transport::peer_client::PeerClient;
use hearthnet_wire::peer::{EventsPush, EventsReport};
use serde_json::Value;

/// A push that takes longer than this counts as not delivered: the
/// sender's `chat.send` waits for it (and for up to two anchors after it).
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(3);

pub struct PeerCourier {
    pub client: Arc<PeerClient>,
    pub peers: Arc<PeerRegistry>,
    pub community: CommunityId,
}

impl Courier for PeerCourier {
    fn hand_to(&self, node: NodeId, event: Value) -> BoxFuture<'static, bool> {
        let (client, peer) = (self.client.clone(), self.peers.get(&node));
        let body = EventsPush {
            community_id: Some(self.community),
            events: vec![event],
        };
        Box::pin(async move {
            // Not a verified peer now: away, as far as we know.
            let Some(peer) = peer else { return false };
            let addr = peer.addr.to_string();
            let push = client.post_as::<EventsReport>(&addr, Some(node), "/sync/v1/events", &body);
            match tokio::time::timeout(HAND_OVER_TIMEOUT, push).await {
                Ok(Ok(reply)) => reply.body.accepted + reply.body.duplicates > 0,
                Ok(Err(e)) => {
                    tracing::info!(peer = %node, error = %e, "a message could not be handed over");
                    false
                }
                Err(_) => false,
            }
        })
    }

    fn reachable(&self) -> Vec<NodeId> {
        self.peers.all().into_iter().map(|p| p.node_id).collect()
    }
}
