//! Raw chunk transfer between the file service and the transport
//! (`/blobs/v1/chunks`): [`PeerChunks`] fetches from peers, [`ServedChunks`]
//! answers them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use hearthnet_base::{Blake3Id, ErrorCode, NodeId};
use hearthnet_bus::CallError;
use hearthnet_discovery::PeerRegistry;
use hearthnet_files::{ChunkSource, Chunks, FileService};
use hearthnet_observability::metrics::Metrics;
use hearthnet_transport::bulk::{self, ChunkStreamError};
use hearthnet_transport::peer_client::{PeerClient, PeerError};
use hearthnet_wire::peer::ChunksRequest;
use serde_json::Value;

use crate::peers::{error_from_body, peer_failure};

/// Chunks from verified peers, by their current address.
pub struct PeerChunks {
    pub client: Arc<PeerClient>,
    pub peers: Arc<PeerRegistry>,
    pub metrics: Arc<Metrics>,
}

impl ChunkSource for PeerChunks {
    fn chunks(
        &self,
        holder: NodeId,
        cid: Blake3Id,
        indices: Vec<usize>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Option<Chunks>, CallError>> {
        let client = self.client.clone();
        let peers = self.peers.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            // Not a verified peer (yet): the bus's way decides.
            let Some(peer) = peers.get(&holder) else {
                return Ok(None);
            };
            let deadline = tokio::time::Instant::now() + timeout;
            let request = ChunksRequest {
                cid,
                chunks: Some(indices.iter().map(|&i| i as u64).collect()),
            };
            match client
                .chunks(&peer.addr.to_string(), holder, &request, timeout)
                .await
            {
                Ok(reader) => Ok(Some(
                    reader
                        .into_stream()
                        .map(move |item| {
                            let (i, bytes) = item.map_err(|e| stream_error(holder, e))?;
                            metrics.raw_chunks("fetched", bytes.len());
                            Ok((i as usize, bytes))
                        })
                        .boxed(),
                )),
                // A node without the route (another implementation).
                Err(PeerError::Refused { status: 404, .. }) => Ok(None),
                Err(PeerError::Refused { status, body, .. }) => {
                    Err(match serde_json::from_str::<Value>(&body) {
                        Ok(body) => error_from_body(&body),
                        Err(_) => CallError::new(
                            ErrorCode::InternalError,
                            format!("peer {} refused chunks: HTTP {status}", holder.short()),
                        ),
                    })
                }
                Err(e) => {
                    if matches!(e, PeerError::Unreachable { .. }) {
                        peers.suspect(holder);
                    }
                    Err(peer_failure(&holder, e, deadline))
                }
            }
        })
    }
}

fn stream_error(holder: NodeId, e: ChunkStreamError) -> CallError {
    match e {
        ChunkStreamError::Reported(body) => error_from_body(&body),
        ChunkStreamError::Broken(why) => CallError::new(
            ErrorCode::Partition,
            format!("the chunk stream from {} broke: {why}", holder.short()),
        ),
    }
}

/// This node's chunks, for its peers.
pub struct ServedChunks {
    pub files: Arc<FileService>,
    pub metrics: Arc<Metrics>,
}

impl hearthnet_transport::BlobEndpoints for ServedChunks {
    fn chunks(
        &self,
        caller: NodeId,
        request: ChunksRequest,
    ) -> BoxFuture<'static, Result<bulk::ServedChunks, CallError>> {
        let files = self.files.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let chunks = files.serve_chunks(caller, request);
            Ok(chunks
                .await?
                .map(move |item| {
                    let (i, bytes) = item?;
                    metrics.raw_chunks("served", bytes.len());
                    Ok((i as u32, bytes))
                })
                .boxed())
        })
    }
}
