//! The endpoints (X01 §3.2, SYSTEM.md item 4) and the mapping of bus
//! outcomes to HTTP.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hearthnet_base::request;
use hearthnet_base::{DeviceKey, ErrorCode, Timestamp};
use hearthnet_bus::{Bus, CallError, InboundCall, Version};
use hearthnet_observability::metrics::Metrics;
use hearthnet_wire::local;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Access, Authenticator, Caller, Presented, Refusal};
use crate::bulk;
use crate::server::PeerIdentity;
use crate::{BlobEndpoints, NodeView, SyncEndpoints};

/// Everything the handlers share.
pub struct ApiState {
    pub bus: Arc<Bus>,
    pub view: Arc<dyn NodeView>,
    pub metrics: Arc<Metrics>,
    pub key: DeviceKey,
    pub max_body_bytes: usize,
    pub sync: Option<Arc<dyn SyncEndpoints>>,
    pub blobs: Option<Arc<dyn BlobEndpoints>>,
    pub(crate) auth: Authenticator,
}

impl ApiState {
    pub fn new(
        bus: Arc<Bus>,
        view: Arc<dyn NodeView>,
        metrics: Arc<Metrics>,
        key: DeviceKey,
        community: hearthnet_base::CommunityId,
        max_body_bytes: usize,
        request_skew: Duration,
    ) -> Self {
        Self {
            auth: Authenticator::new(key.node_id(), community, request_skew),
            bus,
            view,
            metrics,
            key,
            max_body_bytes,
            sync: None,
            blobs: None,
        }
    }

    /// Serve the sync and pub-sub endpoints through `sync`.
    pub fn with_sync(mut self, sync: Arc<dyn SyncEndpoints>) -> Self {
        self.sync = Some(sync);
        self
    }

    /// Serve chunk bytes (`/blobs/v1/chunks`) through `blobs`.
    pub fn with_blobs(mut self, blobs: Arc<dyn BlobEndpoints>) -> Self {
        self.blobs = Some(blobs);
        self
    }
}

/// Marks a response whose connection should be closed without it.
#[derive(Clone, Copy)]
pub(crate) struct DropConnection;

type Shared = State<Arc<ApiState>>;

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/manifest", get(manifest))
        .route("/community/manifest", get(community_manifest))
        .route("/metrics", get(metrics))
        .route("/trace/recent", get(trace_recent))
        .route("/local/v1/status", get(local_status))
        .route("/local/v1/caps", get(local_caps))
        .route("/bus/v1/call", post(bus_call))
        .route("/sync/v1/heads", get(sync_heads))
        .route("/sync/v1/events", post(sync_events))
        .route("/sync/v2/reconcile", post(sync_reconcile))
        .route("/sync/v2/fetch", post(sync_fetch))
        .route("/pubsub/v1/subscribe", get(pubsub_subscribe))
        .route("/local/v1/sync", post(local_sync))
        .route("/onboarding/v1/redeem", post(onboarding_redeem))
        .route(bulk::CHUNKS_PATH, post(blob_chunks))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            members_only_over_tls,
        ))
        .with_state(state)
}

fn error_response(e: &CallError, request_id: Option<&str>) -> Response {
    let status =
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(e.to_body())).into_response();
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        resp.headers_mut().insert(request::REQUEST_ID, id);
    }
    resp
}

fn refusal_response(r: Refusal, headers: &HeaderMap) -> Response {
    match r {
        Refusal::Error(e) => {
            let id = headers
                .get(request::REQUEST_ID)
                .and_then(|v| v.to_str().ok());
            error_response(&e, id)
        }
        Refusal::Drop => {
            let mut resp = StatusCode::TOO_MANY_REQUESTS.into_response();
            resp.extensions_mut().insert(DropConnection);
            resp
        }
    }
}

type Peer = Option<axum::Extension<PeerIdentity>>;

async fn authorize(
    state: &ApiState,
    headers: &HeaderMap,
    path: &str,
    access: Access,
    peer: Peer,
) -> Result<Caller, Box<Response>> {
    state
        .auth
        .authenticate(
            state.view.as_ref(),
            &state.metrics,
            Presented {
                headers,
                endpoint: Some(path),
                body: &json!({}),
                access,
                connection: peer.map(|p| p.0),
            },
        )
        .await
        .map_err(|r| Box::new(refusal_response(r, headers)))
}

async fn not_found() -> Response {
    error_response(
        &CallError::new(ErrorCode::NotFound, "no such endpoint"),
        None,
    )
}

async fn health(State(s): Shared) -> Response {
    axum::Json(local::Health {
        status: "ok".into(),
        node_id: s.key.node_id(),
    })
    .into_response()
}

async fn ready(State(s): Shared) -> Response {
    let (ready, details) = s.view.readiness();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(details)).into_response()
}

async fn manifest(State(s): Shared) -> Response {
    axum::Json(s.view.node_manifest()).into_response()
}

async fn community_manifest(State(s): Shared, peer: Peer, headers: HeaderMap) -> Response {
    match authorize(&s, &headers, "/community/manifest", Access::Member, peer).await {
        Ok(_) => axum::Json(s.view.community_manifest()).into_response(),
        Err(r) => *r,
    }
}

async fn metrics(State(s): Shared, peer: Peer, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s, &headers, "/metrics", Access::Member, peer).await {
        return *r;
    }
    let mut resp = s.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

#[derive(Deserialize)]
struct TraceQuery {
    n: Option<usize>,
    capability: Option<String>,
}

async fn trace_recent(
    State(s): Shared,
    peer: Peer,
    headers: HeaderMap,
    Query(q): Query<TraceQuery>,
) -> Response {
    if let Err(r) = authorize(&s, &headers, "/trace/recent", Access::Member, peer).await {
        return *r;
    }
    let n =
        q.n.unwrap_or(50)
            .min(hearthnet_base::constants::TRACE_RING_BUFFER);
    axum::Json(local::Traces {
        traces: s.bus.recent_traces(n, q.capability.as_deref()),
    })
    .into_response()
}

async fn local_status(State(s): Shared, peer: Peer, headers: HeaderMap) -> Response {
    match authorize(&s, &headers, "/local/v1/status", Access::OwnKey, peer).await {
        Ok(_) => {
            // Status reads the blob store's manifests and sizes from disk:
            // keep that off the runtime's threads.
            let view = s.view.clone();
            match tokio::task::spawn_blocking(move || view.status()).await {
                Ok(status) => axum::Json(status).into_response(),
                Err(e) => error_response(
                    &CallError::new(ErrorCode::InternalError, format!("status failed: {e}")),
                    None,
                ),
            }
        }
        Err(r) => *r,
    }
}

async fn local_caps(State(s): Shared, peer: Peer, headers: HeaderMap) -> Response {
    match authorize(&s, &headers, "/local/v1/caps", Access::OwnKey, peer).await {
        Ok(_) => axum::Json(local::Caps {
            capabilities: s.bus.entries(),
        })
        .into_response(),
        Err(r) => *r,
    }
}

async fn bus_call(State(s): Shared, peer: Peer, headers: HeaderMap, body: Body) -> Response {
    let request_id = headers
        .get(request::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let fail = |e: CallError| error_response(&e, request_id.as_deref());
    let bytes = match axum::body::to_bytes(body, s.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return fail(CallError::bad_request(format!(
                "the body is larger than {} bytes or was cut off",
                s.max_body_bytes
            )));
        }
    };
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return fail(CallError::bad_request(format!("the body is not JSON: {e}"))),
    };
    let caller = match s
        .auth
        .authenticate(
            s.view.as_ref(),
            &s.metrics,
            Presented {
                headers: &headers,
                endpoint: None,
                body: &body,
                access: Access::Member,
                connection: peer.map(|p| p.0),
            },
        )
        .await
    {
        Ok(c) => c,
        Err(r) => return refusal_response(r, &headers),
    };
    let version: Version = match caller.headers.version.parse() {
        Ok(v) => v,
        Err(e) => return fail(CallError::bad_request(e.to_string())),
    };
    let timeout = headers
        .get(request::TIMEOUT_MS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let target = match headers.get(request::TARGET_NODE).map(|v| v.to_str()) {
        None => None,
        Some(Ok(text)) => match hearthnet_base::NodeId::parse(text) {
            Ok(node) => Some(node),
            Err(e) => {
                return fail(CallError::bad_request(format!(
                    "{} is not a NodeID: {e}",
                    request::TARGET_NODE
                )));
            }
        },
        Some(Err(_)) => return fail(CallError::bad_request("the target node header is not text")),
    };
    let trace_id = caller.headers.request_id.clone();
    let call = InboundCall {
        capability: caller.headers.capability.clone(),
        version,
        body,
        caller: caller.id,
        caller_level: caller.level,
        trace_id: trace_id.clone(),
        timeout,
        stream: wants_stream,
        target,
    };
    let stream = match s.bus.call(call) {
        Ok(stream) => stream,
        Err(e) => return fail(e),
    };
    if stream.is_streaming() {
        let mut resp = Response::new(crate::sse::body(stream));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        insert_identity(h, &trace_id, &s.key);
        return resp;
    }
    match stream.outcome().await {
        Ok(value) if must_sign_response(&caller.headers.capability) => {
            signed_json(&s.key, &trace_id, value)
        }
        Ok(value) => {
            let mut resp = axum::Json(value).into_response();
            insert_identity(resp.headers_mut(), &trace_id, &s.key);
            resp
        }
        Err(e) => fail(e),
    }
}

fn insert_identity(h: &mut HeaderMap, request_id: &str, key: &DeviceKey) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(request::REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&key.node_id().full()) {
        h.insert(request::FROM, v);
    }
}

/// Contract §5.2: responses of mutating capabilities must be signed (their
/// callers must verify); for the others signing is optional and costs a
/// signature per call, so we skip it.
fn must_sign_response(capability: &str) -> bool {
    const MUTATING_SUFFIXES: [&str; 5] = [".post", ".invite", ".revoke", ".ingest", ".expire"];
    capability == "chat.send" || MUTATING_SUFFIXES.iter().any(|s| capability.ends_with(s))
}

/// A JSON response signed by this node (Contract §5.2): the signature
/// covers `{request_id, from, timestamp, body}` in canonical form.
fn signed_json(key: &DeviceKey, request_id: &str, body: Value) -> Response {
    let timestamp = Timestamp::now();
    let envelope = json!({
        "request_id": request_id,
        "from": key.node_id(),
        "timestamp": timestamp,
        "body": body,
    });
    let signature = key.sign_canonical(&envelope).ok();
    let mut resp = axum::Json(body).into_response();
    let h = resp.headers_mut();
    insert_identity(h, request_id, key);
    if let Ok(v) = HeaderValue::from_str(&timestamp.to_string()) {
        h.insert(request::TIMESTAMP, v);
    }
    if let Some(v) = signature.and_then(|s| HeaderValue::from_str(&s).ok()) {
        h.insert(request::SIGNATURE, v);
    }
    resp
}

/// Over TLS, a device that is not (or no longer) a member reaches nothing
/// but invite redemption: not even the unsigned endpoints.
async fn members_only_over_tls(
    State(s): Shared,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(PeerIdentity(peer)) = req.extensions().get::<PeerIdentity>().copied()
        && s.view.level_of(&peer) == hearthnet_base::TrustLevel::Unknown
        && req.uri().path() != "/onboarding/v1/redeem"
    {
        return error_response(
            &CallError::new(
                ErrorCode::Unauthorized,
                format!("{} is not a member of this community", peer.short()),
            ),
            None,
        );
    }
    next.run(req).await
}

async fn onboarding_redeem(
    State(s): Shared,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let from = peer.as_ref().map(|p| p.0.0);
    let (value, sync) = match sync_request(
        &s,
        peer,
        &headers,
        body,
        "/onboarding/v1/redeem",
        Access::Invitee,
    )
    .await
    {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let signer = headers
        .get(request::FROM)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| hearthnet_base::NodeId::parse(v).ok());
    let (Some(signer), Some(invite)) = (from.or(signer), value["invite"].as_str()) else {
        return error_response(
            &CallError::bad_request("expected {\"invite\": \"hearthnet://v1/…\", \"joined\": {…}}"),
            None,
        );
    };
    json_or_error(
        sync.redeem(signer, invite.to_owned(), value["joined"].clone())
            .await,
    )
}

/// Read a JSON body and authenticate the request that carries it.
async fn signed_body(
    s: &ApiState,
    peer: Peer,
    headers: &HeaderMap,
    body: Body,
    path: &str,
    access: Access,
) -> Result<(Value, Caller), Box<Response>> {
    let bytes = axum::body::to_bytes(body, s.max_body_bytes)
        .await
        .map_err(|_| {
            Box::new(error_response(
                &CallError::bad_request(format!(
                    "the body is larger than {} bytes or was cut off",
                    s.max_body_bytes
                )),
                None,
            ))
        })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        Box::new(error_response(
            &CallError::bad_request(format!("the body is not JSON: {e}")),
            None,
        ))
    })?;
    let caller = s
        .auth
        .authenticate(
            s.view.as_ref(),
            &s.metrics,
            Presented {
                headers,
                endpoint: Some(path),
                body: &value,
                access,
                connection: peer.map(|p| p.0),
            },
        )
        .await
        .map_err(|r| Box::new(refusal_response(r, headers)))?;
    Ok((value, caller))
}

/// A signed JSON request to one of the event log's endpoints.
async fn sync_request(
    s: &ApiState,
    peer: Peer,
    headers: &HeaderMap,
    body: Body,
    path: &str,
    access: Access,
) -> Result<(Value, Arc<dyn SyncEndpoints>), Box<Response>> {
    let (value, _) = signed_body(s, peer, headers, body, path, access).await?;
    Ok((value, sync_of(s)?))
}

fn sync_of(s: &ApiState) -> Result<Arc<dyn SyncEndpoints>, Box<Response>> {
    s.sync.clone().ok_or_else(|| {
        Box::new(error_response(
            &CallError::new(ErrorCode::NotImplemented, "this node keeps no event log"),
            None,
        ))
    })
}

fn json_or_error(r: Result<Value, CallError>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error_response(&e, None),
    }
}

async fn sync_heads(State(s): Shared, peer: Peer, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s, &headers, "/sync/v1/heads", Access::Member, peer).await {
        return *r;
    }
    match sync_of(&s) {
        Ok(sync) => axum::Json(sync.heads().await).into_response(),
        Err(r) => *r,
    }
}

async fn sync_events(State(s): Shared, peer: Peer, headers: HeaderMap, body: Body) -> Response {
    let (value, sync) =
        match sync_request(&s, peer, &headers, body, "/sync/v1/events", Access::Member).await {
            Ok(found) => found,
            Err(r) => return *r,
        };
    if value
        .get("community_id")
        .is_some_and(|c| *c != json!(s.view.community_manifest()["community_id"]))
    {
        return error_response(
            &CallError::new(ErrorCode::Unauthorized, "events of another community"),
            None,
        );
    }
    let Some(events) = value.get("events").and_then(Value::as_array).cloned() else {
        return error_response(
            &CallError::bad_request("expected {\"events\": [...]}"),
            None,
        );
    };
    json_or_error(sync.receive(events).await)
}

async fn sync_reconcile(State(s): Shared, peer: Peer, headers: HeaderMap, body: Body) -> Response {
    let (value, sync) = match sync_request(
        &s,
        peer,
        &headers,
        body,
        "/sync/v2/reconcile",
        Access::Member,
    )
    .await
    {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let Some(message) = value["message"].as_str().and_then(hex_decode) else {
        return error_response(
            &CallError::bad_request("expected {\"message\": <hex>}"),
            None,
        );
    };
    json_or_error(
        sync.reconcile(message)
            .await
            .map(|m| json!({"message": hex_encode(&m)})),
    )
}

async fn sync_fetch(State(s): Shared, peer: Peer, headers: HeaderMap, body: Body) -> Response {
    let (value, sync) =
        match sync_request(&s, peer, &headers, body, "/sync/v2/fetch", Access::Member).await {
            Ok(found) => found,
            Err(r) => return *r,
        };
    let hashes: Vec<String> = value["hashes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str().map(str::to_owned))
        .collect();
    json_or_error(
        sync.fetch(hashes)
            .await
            .map(|events| json!({"events": events})),
    )
}

/// `POST /blobs/v1/chunks` (members): chunks of a blob as raw bytes
/// ([`bulk`]); errors before the first byte are ordinary JSON answers.
async fn blob_chunks(State(s): Shared, peer: Peer, headers: HeaderMap, body: Body) -> Response {
    let (request, caller) =
        match signed_body(&s, peer, &headers, body, bulk::CHUNKS_PATH, Access::Member).await {
            Ok(found) => found,
            Err(r) => return *r,
        };
    let Some(blobs) = s.blobs.clone() else {
        return error_response(
            &CallError::new(ErrorCode::NotFound, "this node serves no chunks"),
            None,
        );
    };
    match blobs.chunks(caller.id, request).await {
        Ok(chunks) => {
            let mut resp = Response::new(bulk::body(chunks));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(bulk::CONTENT_TYPE),
            );
            resp
        }
        Err(e) => error_response(&e, None),
    }
}

#[derive(Deserialize)]
struct SubscribeQuery {
    topic: String,
    last_seq: Option<i64>,
    timeout: Option<u64>,
}

async fn pubsub_subscribe(
    State(s): Shared,
    peer: Peer,
    headers: HeaderMap,
    Query(q): Query<SubscribeQuery>,
) -> Response {
    if let Err(r) = authorize(&s, &headers, "/pubsub/v1/subscribe", Access::Member, peer).await {
        return *r;
    }
    let sync = match sync_of(&s) {
        Ok(sync) => sync,
        Err(r) => return *r,
    };
    let timeout = Duration::from_secs(q.timeout.unwrap_or(30).min(60));
    json_or_error(
        sync.subscribe(q.topic, q.last_seq.unwrap_or(0), timeout)
            .await,
    )
}

async fn local_sync(State(s): Shared, peer: Peer, headers: HeaderMap, body: Body) -> Response {
    let (value, sync) =
        match sync_request(&s, peer, &headers, body, "/local/v1/sync", Access::OwnKey).await {
            Ok(found) => found,
            Err(r) => return *r,
        };
    let Some(peer_addr) = value["peer"].as_str() else {
        return error_response(
            &CallError::bad_request("expected {\"peer\": \"host:port\"}"),
            None,
        );
    };
    let protocol = value["protocol"].as_str().map(str::to_owned);
    json_or_error(sync.sync_now(peer_addr.to_owned(), protocol).await)
}

fn hex_encode(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    data_encoding::HEXLOWER.decode(text.as_bytes()).ok()
}
