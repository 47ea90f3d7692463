//! Requests to other nodes over mutual TLS, signed as Contract §5.1 says
//! (the path is the `capability` of plain endpoints). Connections are kept
//! for the next request to the same peer once their answer has been read
//! (a few per peer), so a call costs one round trip, not three.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hearthnet_base::request::{self, Extras, SignedHeaders};
use hearthnet_base::{CommunityId, DeviceKey, NodeId};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::bulk::{self, ChunkReader};
use crate::tls::{Membership, TlsIdentity};

type Full = http_body_util::Full<Bytes>;

/// Largest response body read from a peer.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections kept open to one peer address between requests.
const IDLE_PER_PEER: usize = 4;
/// A kept connection is reused only this soon after its last request
/// went out. Servers close idle connections (ours after 10 s, common
/// Python servers after 5 s), and a request sent just as the server closes
/// is lost, with no way to tell whether it was acted on; bursts, such as
/// a sync round or a fetch, fall well within this.
const REUSE_WITHIN: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The request never reached the peer (connection, TLS).
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The request went out but no (complete) answer came back: whether
    /// the peer acted on it is unknown.
    #[error("{addr} did not answer: {reason}")]
    Lost { addr: String, reason: String },
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
    /// Open connections by address, with the node each one proved to be.
    connections: Mutex<HashMap<String, Vec<Connection>>>,
}

struct Connection {
    sender: SendRequest<Full>,
    peer: Option<NodeId>,
    last_request: std::time::Instant,
}

/// A peer's answer and who gave it.
pub struct PeerReply<T = Value> {
    /// The node proven by TLS (`None` over plain HTTP).
    pub peer: Option<NodeId>,
    pub body: T,
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
            connections: Mutex::default(),
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
        self.get_as(addr, expected, path).await
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

    /// A signed GET whose answer is decoded as `T`; an answer of another
    /// shape is [`PeerError::BadAnswer`] naming the field.
    pub async fn get_as<T: DeserializeOwned>(
        &self,
        addr: &str,
        expected: Option<NodeId>,
        path: &str,
    ) -> Result<PeerReply<T>, PeerError> {
        let empty = Value::Object(Default::default());
        self.send(addr, expected, hyper::Method::GET, path, &empty)
            .await
    }

    /// A signed POST of `body` whose answer is decoded as `T`, as
    /// [`get_as`](Self::get_as).
    pub async fn post_as<T: DeserializeOwned>(
        &self,
        addr: &str,
        expected: Option<NodeId>,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<PeerReply<T>, PeerError> {
        let body = serde_json::to_value(body).map_err(|e| bad(addr, e.to_string()))?;
        self.send(addr, expected, hyper::Method::POST, path, &body)
            .await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        addr: &str,
        expected: Option<NodeId>,
        method: hyper::Method,
        path: &str,
        body: &Value,
    ) -> Result<PeerReply<T>, PeerError> {
        let (path_only, query) = path
            .split_once('?')
            .map_or((path, None), |(p, q)| (p, Some(q)));
        let headers = SignedHeaders::sign(
            &self.key,
            self.community,
            path_only,
            request::ENDPOINT_VERSION,
            body,
        )
        .map_err(|e| bad(addr, e.to_string()))?;
        let covers = Extras {
            query,
            ..Extras::default()
        }
        .covers(&self.key, &headers)
        .map_err(|e| bad(addr, e.to_string()))?;
        let payload = if method == hyper::Method::GET {
            Vec::new()
        } else {
            serde_json::to_vec(body).map_err(|e| bad(addr, e.to_string()))?
        };
        let (peer, resp) = self
            .open(
                addr,
                expected,
                method,
                path,
                &headers,
                &covers,
                payload,
                REQUEST_TIMEOUT,
            )
            .await?;
        let status = resp.status().as_u16();
        let bytes = tokio::time::timeout(REQUEST_TIMEOUT, read_all(resp.into_body()))
            .await
            .map_err(|_| lost(addr, "no answer in time".into()))?
            .map_err(|e| lost(addr, e))?;
        self.bytes_received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if status != 200 {
            return Err(PeerError::Refused {
                addr: addr.to_owned(),
                status,
                body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            });
        }
        let body = hearthnet_wire::decode("a peer's answer", &bytes).map_err(|e| {
            bad(
                addr,
                format!("{path_only}: field `{}`: {}", e.path, e.message),
            )
        })?;
        Ok(PeerReply { peer, body })
    }

    /// Call a capability on the peer `node` at `addr` (`POST /bus/v1/call`,
    /// signed as Contract §5.1 says). A streamed answer is handed over frame
    /// by frame as it arrives.
    #[allow(clippy::too_many_arguments)] // the wire call's own parameters
    pub async fn call(
        &self,
        addr: &str,
        node: NodeId,
        capability: &str,
        version: &str,
        body: &Value,
        stream: bool,
        timeout: Duration,
    ) -> Result<CallReply, PeerError> {
        let headers = SignedHeaders::sign(&self.key, self.community, capability, version, body)
            .map_err(|e| bad(addr, e.to_string()))?;
        let payload = serde_json::to_vec(body).map_err(|e| bad(addr, e.to_string()))?;
        let accept = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let timeout_ms = timeout.as_millis().to_string();
        let covers = Extras {
            timeout_ms: Some(&timeout_ms),
            ..Extras::default()
        }
        .covers(&self.key, &headers)
        .map_err(|e| bad(addr, e.to_string()))?;
        let mut extra = vec![
            ("accept", accept.to_owned()),
            (request::TIMEOUT_MS, timeout_ms),
        ];
        extra.extend(covers);
        let (_, resp) = self
            .open(
                addr,
                Some(node),
                hyper::Method::POST,
                "/bus/v1/call",
                &headers,
                &extra,
                payload,
                timeout,
            )
            .await?;
        let status = resp.status().as_u16();
        if status == 200 && has_content_type(&resp, "text/event-stream") {
            return Ok(CallReply::Frames(FrameStream::new(resp.into_body())));
        }
        let bytes = tokio::time::timeout(timeout, read_all(resp.into_body()))
            .await
            .map_err(|_| lost(addr, "the answer did not arrive in time".into()))?
            .map_err(|e| lost(addr, e))?;
        self.bytes_received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(addr, format!("not JSON: {e}")))?;
        if status == 200 {
            return Ok(CallReply::Done(value));
        }
        // An error answer must be a contract error sent with its own
        // status (§5.5); anything else is not an answer we can act on.
        let code = value["error"]
            .as_str()
            .and_then(|c| c.parse::<hearthnet_base::ErrorCode>().ok());
        match code {
            Some(code) if code.http_status() == status => Ok(CallReply::Failed(value)),
            _ => Err(bad(
                addr,
                format!("HTTP {status} without the contract error of that status: {value}"),
            )),
        }
    }

    /// Ask the peer `node` for chunks of a blob (`POST /blobs/v1/chunks`,
    /// [`bulk`]); the answer's records are read as they arrive. `wait`
    /// bounds the time until the answer starts.
    pub async fn chunks(
        &self,
        addr: &str,
        node: NodeId,
        request: &(impl Serialize + ?Sized),
        wait: Duration,
    ) -> Result<ChunkReader<hyper::body::Incoming>, PeerError> {
        let request = &serde_json::to_value(request).map_err(|e| bad(addr, e.to_string()))?;
        let headers = SignedHeaders::sign(
            &self.key,
            self.community,
            bulk::CHUNKS_PATH,
            request::ENDPOINT_VERSION,
            request,
        )
        .map_err(|e| bad(addr, e.to_string()))?;
        let payload = serde_json::to_vec(request).map_err(|e| bad(addr, e.to_string()))?;
        let (_, resp) = self
            .open(
                addr,
                Some(node),
                hyper::Method::POST,
                bulk::CHUNKS_PATH,
                &headers,
                &[("accept", bulk::CONTENT_TYPE.to_owned())],
                payload,
                wait,
            )
            .await?;
        let status = resp.status().as_u16();
        if status == 200 && has_content_type(&resp, bulk::CONTENT_TYPE) {
            return Ok(ChunkReader::new(resp.into_body()));
        }
        let bytes = tokio::time::timeout(wait, read_all(resp.into_body()))
            .await
            .map_err(|_| lost(addr, "the answer did not arrive in time".into()))?
            .map_err(|e| lost(addr, e))?;
        Err(PeerError::Refused {
            addr: addr.to_owned(),
            status,
            body: String::from_utf8_lossy(&bytes).chars().take(2000).collect(),
        })
    }

    /// Connect (TLS unless configured plain), send one request, and return
    /// the response with its body still unread.
    #[allow(clippy::too_many_arguments)]
    async fn open(
        &self,
        addr: &str,
        expected: Option<NodeId>,
        method: hyper::Method,
        path: &str,
        headers: &SignedHeaders,
        extra: &[(&str, String)],
        payload: Vec<u8>,
        wait: Duration,
    ) -> Result<(Option<NodeId>, hyper::Response<hyper::body::Incoming>), PeerError> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr)
            .header("content-type", "application/json");
        for (name, value) in headers.to_pairs() {
            req = req.header(name, value);
        }
        for (name, value) in extra {
            req = req.header(*name, value);
        }
        self.bytes_sent
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let mut req = req
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| bad(addr, e.to_string()))?;
        if let Some(mut connection) = self.idle_connection(addr, expected) {
            connection.last_request = std::time::Instant::now();
            match tokio::time::timeout(wait, connection.sender.try_send_request(req)).await {
                Ok(Ok(resp)) => {
                    let peer = connection.peer;
                    self.keep(addr, connection);
                    return Ok((peer, resp));
                }
                // Closed before the request left: a new connection sends it.
                Ok(Err(mut e)) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(lost(addr, e.into_error().to_string())),
                },
                Err(_) => return Err(lost(addr, "no answer in time".into())),
            }
        }

        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| unreachable(addr, "connection timed out".into()))?
            .map_err(|e| unreachable(addr, e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        // Set once the request may have left: from then on a failure
        // leaves the peer's side unknown.
        let sent = std::sync::atomic::AtomicBool::new(false);
        let exchange = async {
            if self.plain {
                let (sender, resp) = exchange(TokioIo::new(tcp), req, &sent).await?;
                return Ok::<_, String>((Connection::new(sender, None), resp));
            }
            let tls = crate::tls::connect(tcp, &self.identity, self.member.clone(), expected)
                .await
                .map_err(|e| e.to_string())?;
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(crate::tls::node_id_of);
            let (sender, resp) = exchange(TokioIo::new(tls), req, &sent).await?;
            Ok((Connection::new(sender, peer), resp))
        };
        let result = tokio::time::timeout(wait, exchange).await;
        let failed = |reason: String| {
            if sent.load(Ordering::SeqCst) {
                lost(addr, reason)
            } else {
                unreachable(addr, reason)
            }
        };
        let (connection, resp) = result
            .map_err(|_| failed("no answer in time".into()))?
            .map_err(failed)?;
        let peer = connection.peer;
        self.keep(addr, connection);
        Ok((peer, resp))
    }

    /// A kept connection to `addr` free for a request: open, its answer
    /// read, to the node expected (if one is), and that node still a
    /// member (it was checked when the connection was made).
    fn idle_connection(&self, addr: &str, expected: Option<NodeId>) -> Option<Connection> {
        let mut connections = self.connections.lock();
        let kept = connections.get_mut(addr)?;
        kept.retain(Connection::fresh);
        // Plain HTTP proves no identity, on a new connection either.
        let usable = |c: &Connection| {
            c.sender.is_ready()
                && (self.plain || expected.is_none_or(|e| c.peer == Some(e)))
                && c.peer.is_none_or(|p| (self.member)(&p))
        };
        let at = kept.iter().position(usable)?;
        Some(kept.swap_remove(at))
    }

    /// Keep `connection` for later requests to `addr` (it becomes free once
    /// its current answer has been read), unless enough are kept already.
    fn keep(&self, addr: &str, connection: Connection) {
        let mut connections = self.connections.lock();
        // Let go of every stale one, whatever its peer, so none stays open
        // just because its peer is not asked again.
        for kept in connections.values_mut() {
            kept.retain(Connection::fresh);
        }
        connections.retain(|_, kept| !kept.is_empty());
        let kept = connections.entry(addr.to_owned()).or_default();
        if kept.len() < IDLE_PER_PEER {
            kept.push(connection);
        }
    }
}

impl Connection {
    fn new(sender: SendRequest<Full>, peer: Option<NodeId>) -> Self {
        Self {
            sender,
            peer,
            last_request: std::time::Instant::now(),
        }
    }

    /// Still worth a request: open, and used recently enough.
    fn fresh(&self) -> bool {
        !self.sender.is_closed() && self.last_request.elapsed() < REUSE_WITHIN
    }
}

/// A capability call's answer from a peer.
pub enum CallReply {
    /// The JSON response body (non-streamed success).
    Done(Value),
    /// A Contract §5.4 error body.
    Failed(Value),
    /// Frames as they arrive, the last one `done` or `error`.
    Frames(FrameStream),
}

/// Server-sent events read incrementally from a peer's response.
pub struct FrameStream {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for a frame end.
    scanned: usize,
}

/// A peer silent this long in the middle of a stream is taken as gone.
const STREAM_IDLE: Duration = Duration::from_secs(120);

impl FrameStream {
    fn new(body: hyper::body::Incoming) -> Self {
        Self {
            body,
            buf: Vec::new(),
            scanned: 0,
        }
    }

    /// The next `(event, data)`; `None` when the peer closed the stream.
    pub async fn next(&mut self) -> Option<Result<(String, Value), String>> {
        loop {
            // Search only what arrived since the last look (one byte back,
            // for a "\n\n" split across reads).
            let from = self.scanned.saturating_sub(1);
            if let Some(at) = self.buf[from..].windows(2).position(|w| w == b"\n\n") {
                let end = from + at + 2;
                let block: Vec<u8> = self.buf.drain(..end).collect();
                self.scanned = 0;
                match parse_frame(&block) {
                    Some(frame) => return Some(frame),
                    None => continue, // a comment or keep-alive
                }
            }
            self.scanned = self.buf.len();
            if self.buf.len() > MAX_FRAME_BYTES {
                return Some(Err("a frame larger than the limit".into()));
            }
            let next = match tokio::time::timeout(STREAM_IDLE, self.body.frame()).await {
                Ok(next) => next?,
                Err(_) => return Some(Err(format!("no data for {} s", STREAM_IDLE.as_secs()))),
            };
            match next {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Err(e) => return Some(Err(e.to_string())),
            }
        }
    }
}

/// The largest single frame accepted from a peer.
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// [`parse_frame`] for the fuzz targets (`fuzz/`) only: not part of the
/// crate's API.
#[cfg(feature = "fuzzing")]
pub fn fuzz_parse_frame(block: &[u8]) -> Option<Result<(String, Value), String>> {
    parse_frame(block)
}

fn parse_frame(block: &[u8]) -> Option<Result<(String, Value), String>> {
    let text = std::str::from_utf8(block).ok()?;
    let mut event = None;
    let mut data = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    let event = event?;
    Some(
        serde_json::from_str(&data)
            .map(|d| (event, d))
            .map_err(|e| format!("a frame that is not JSON: {e}")),
    )
}

/// Whether the answer's media type is `media` (parameters aside).
fn has_content_type(resp: &hyper::Response<hyper::body::Incoming>, media: &str) -> bool {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim() == media))
}

fn unreachable(addr: &str, reason: String) -> PeerError {
    PeerError::Unreachable {
        addr: addr.to_owned(),
        reason,
    }
}

fn lost(addr: &str, reason: String) -> PeerError {
    PeerError::Lost {
        addr: addr.to_owned(),
        reason,
    }
}

fn bad(addr: &str, reason: String) -> PeerError {
    PeerError::BadAnswer {
        addr: addr.to_owned(),
        reason,
    }
}

async fn read_all(body: hyper::body::Incoming) -> Result<Bytes, String> {
    http_body_util::Limited::new(body, MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| format!("reading the answer: {e}"))
}

async fn exchange<IO>(
    io: IO,
    req: hyper::Request<Full>,
    sent: &std::sync::atomic::AtomicBool,
) -> Result<(SendRequest<Full>, hyper::Response<hyper::body::Incoming>), String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sent.store(true, Ordering::SeqCst);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok((sender, resp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use hearthnet_wire::peer::{FetchAnswer, FetchRequest, Hex};
    use serde_json::json;

    /// A plain-HTTP peer on loopback that answers every POST to `path`
    /// with `answer`.
    async fn peer_answering(
        path: &str,
        answer: Value,
    ) -> (String, tokio_util::sync::CancellationToken) {
        let listener = crate::Listener::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let router = axum::Router::new().route(
            path,
            post(move || {
                let answer = answer.clone();
                async move { axum::Json(answer) }
            }),
        );
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(crate::serve(
            listener,
            router,
            stop.clone(),
            crate::Serving::local(),
        ));
        (addr, stop)
    }

    fn client() -> PeerClient {
        let key = DeviceKey::generate();
        let community = CommunityId::of_root(key.node_id());
        let identity = Arc::new(TlsIdentity::new(&key).unwrap());
        PeerClient::new(key, community, identity, Arc::new(|_| true), true)
    }

    #[tokio::test]
    async fn a_typed_answer_decodes_and_a_malformed_one_names_its_field() {
        let request = FetchRequest {
            hashes: vec![Hex(vec![1, 2])],
        };
        let (addr, stop) = peer_answering("/sync/v2/fetch", json!({"events": [{"n": 1}]})).await;
        let reply = client()
            .post_as::<FetchAnswer>(&addr, None, "/sync/v2/fetch", &request)
            .await
            .unwrap();
        assert_eq!(reply.body.events, vec![json!({"n": 1})]);
        stop.cancel();

        let (addr, stop) = peer_answering("/sync/v2/fetch", json!({"events": 3})).await;
        let refused = client()
            .post_as::<FetchAnswer>(&addr, None, "/sync/v2/fetch", &request)
            .await
            .err();
        match refused {
            Some(PeerError::BadAnswer { reason, .. }) => {
                assert!(
                    reason.starts_with("/sync/v2/fetch: field `events`"),
                    "{reason}"
                );
            }
            other => panic!("{:?}", other.map(|e| e.to_string())),
        }
        stop.cancel();
    }
}
