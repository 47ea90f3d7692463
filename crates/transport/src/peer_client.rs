//! Requests to other nodes over mutual TLS, signed as Contract §5.1 says
//! (the path is the `capability` of plain endpoints). One connection per
//! request: sync rounds make a handful of them, minutes apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hearthnet_base::request::{self, SignedHeaders};
use hearthnet_base::{CommunityId, DeviceKey, NodeId};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::tls::{Membership, TlsIdentity, client_config};

type Full = http_body_util::Full<Bytes>;

/// Largest response body read from a peer.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{addr} refused the request: HTTP {status}: {body}")]
    Refused {
        addr: String,
        status: u16,
        body: String,
    },
    #[error("{addr} answered something unusable: {reason}")]
    BadAnswer { addr: String, reason: String },
}

/// A node's client to its peers.
pub struct PeerClient {
    key: DeviceKey,
    community: CommunityId,
    identity: Arc<TlsIdentity>,
    member: Membership,
    /// Use plain HTTP (only when configured: closed test networks).
    plain: bool,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
}

/// A peer's answer and who gave it.
pub struct PeerReply {
    /// The node proven by TLS (`None` over plain HTTP).
    pub peer: Option<NodeId>,
    pub body: Value,
}

impl PeerClient {
    pub fn new(
        key: DeviceKey,
        community: CommunityId,
        identity: Arc<TlsIdentity>,
        member: Membership,
        plain: bool,
    ) -> Self {
        Self {
            key,
            community,
            identity,
            member,
            plain,
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
        }
    }

    /// Body bytes sent and received so far (for sync statistics).
    pub fn traffic(&self) -> (u64, u64) {
        (
            self.bytes_sent.load(Ordering::Relaxed),
            self.bytes_received.load(Ordering::Relaxed),
        )
    }

    pub async fn get(
        &self,
        addr: &str,
        expected: Option<NodeId>,
        path: &str,
    ) -> Result<PeerReply, PeerError> {
        self.send(
            addr,
            expected,
            hyper::Method::GET,
            path,
            &Value::Object(Default::default()),
        )
        .await
    }

    pub async fn post(
        &self,
        addr: &str,
        expected: Option<NodeId>,
        path: &str,
        body: &Value,
    ) -> Result<PeerReply, PeerError> {
        self.send(addr, expected, hyper::Method::POST, path, body)
            .await
    }

    async fn send(
        &self,
        addr: &str,
        expected: Option<NodeId>,
        method: hyper::Method,
        path: &str,
        body: &Value,
    ) -> Result<PeerReply, PeerError> {
        let unreachable = |reason: String| PeerError::Unreachable {
            addr: addr.to_owned(),
            reason,
        };
        let bad = |reason: String| PeerError::BadAnswer {
            addr: addr.to_owned(),
            reason,
        };
        let (path_only, _) = path.split_once('?').unwrap_or((path, ""));
        let headers = SignedHeaders::sign(
            &self.key,
            self.community,
            path_only,
            request::ENDPOINT_VERSION,
            body,
        )
        .map_err(|e| bad(e.to_string()))?;
        let payload = if method == hyper::Method::GET {
            Vec::new()
        } else {
            serde_json::to_vec(body).map_err(|e| bad(e.to_string()))?
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr)
            .header("content-type", "application/json");
        for (name, value) in headers.to_pairs() {
            req = req.header(name, value);
        }
        self.bytes_sent
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let req = req
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| bad(e.to_string()))?;

        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| unreachable("connection timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let exchange = async {
            if self.plain {
                let resp = exchange(TokioIo::new(tcp), req).await?;
                return Ok::<_, String>((None, resp));
            }
            let config = client_config(&self.identity, self.member.clone(), expected)
                .map_err(|e| e.to_string())?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name = rustls::pki_types::ServerName::try_from("hearthnet.local")
                .map_err(|e| e.to_string())?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(crate::tls::node_id_of);
            let resp = exchange(TokioIo::new(tls), req).await?;
            Ok((peer, resp))
        };
        let (peer, (status, bytes)) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable("no answer in time".into()))?
            .map_err(unreachable)?;
        self.bytes_received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if status != 200 {
            return Err(PeerError::Refused {
                addr: addr.to_owned(),
                status,
                body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            });
        }
        let body = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        Ok(PeerReply { peer, body })
    }
}

async fn exchange<IO>(io: IO, req: hyper::Request<Full>) -> Result<(u16, Bytes), String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    Ok((status, body))
}
