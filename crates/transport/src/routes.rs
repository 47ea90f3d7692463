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
use serde::Deserialize;
use serde_json::{Value, json};

use crate::NodeView;
use crate::auth::{Access, Authenticator, Caller, Refusal};

/// Everything the handlers share.
pub struct ApiState {
    pub bus: Arc<Bus>,
    pub view: Arc<dyn NodeView>,
    pub metrics: Arc<Metrics>,
    pub key: DeviceKey,
    pub max_body_bytes: usize,
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
        }
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
        .fallback(not_found)
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

fn authorize(
    state: &ApiState,
    headers: &HeaderMap,
    path: &str,
    access: Access,
) -> Result<Caller, Box<Response>> {
    state
        .auth
        .authenticate(
            state.view.as_ref(),
            &state.metrics,
            headers,
            Some(path),
            &json!({}),
            access,
        )
        .map_err(|r| Box::new(refusal_response(r, headers)))
}

async fn not_found() -> Response {
    error_response(
        &CallError::new(ErrorCode::NotFound, "no such endpoint"),
        None,
    )
}

async fn health(State(s): Shared) -> Response {
    axum::Json(json!({"status": "ok", "node_id": s.key.node_id()})).into_response()
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

async fn community_manifest(State(s): Shared, headers: HeaderMap) -> Response {
    match authorize(&s, &headers, "/community/manifest", Access::Member) {
        Ok(_) => axum::Json(s.view.community_manifest()).into_response(),
        Err(r) => *r,
    }
}

async fn metrics(State(s): Shared, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s, &headers, "/metrics", Access::Member) {
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
    headers: HeaderMap,
    Query(q): Query<TraceQuery>,
) -> Response {
    if let Err(r) = authorize(&s, &headers, "/trace/recent", Access::Member) {
        return *r;
    }
    let n =
        q.n.unwrap_or(50)
            .min(hearthnet_base::constants::TRACE_RING_BUFFER);
    axum::Json(json!({"traces": s.bus.recent_traces(n, q.capability.as_deref())})).into_response()
}

async fn local_status(State(s): Shared, headers: HeaderMap) -> Response {
    match authorize(&s, &headers, "/local/v1/status", Access::OwnKey) {
        Ok(_) => axum::Json(s.view.status()).into_response(),
        Err(r) => *r,
    }
}

async fn local_caps(State(s): Shared, headers: HeaderMap) -> Response {
    match authorize(&s, &headers, "/local/v1/caps", Access::OwnKey) {
        Ok(_) => axum::Json(json!({"capabilities": s.bus.entries()})).into_response(),
        Err(r) => *r,
    }
}

async fn bus_call(State(s): Shared, headers: HeaderMap, body: Body) -> Response {
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
    let caller = match s.auth.authenticate(
        s.view.as_ref(),
        &s.metrics,
        &headers,
        None,
        &body,
        Access::Member,
    ) {
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
