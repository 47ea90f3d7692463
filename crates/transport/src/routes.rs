//! The endpoints (X01 §3.2, SYSTEM.md item 4) and the mapping of bus
//! outcomes to HTTP, on the typed layer of [`crate::http`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hearthnet_base::request;
use hearthnet_base::request::SessionId;
use hearthnet_base::{DeviceKey, ErrorCode, NodeId, Timestamp};
use hearthnet_bus::{Bus, CallError, InboundCall, Version};
use hearthnet_identity::ApiKeyCheck;
use hearthnet_observability::metrics::Metrics;
use hearthnet_wire::local;
use hearthnet_wire::peer::{
    ChunksRequest, EventsPush, EventsReport, FetchAnswer, FetchRequest, Heads, Hex, Reconcile,
    Redeem, Redeemed, SubscribeQuery, SyncNow,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Authenticator, Prechecked};
use crate::bulk;
use crate::http::{
    self, Access, ApiError, BodyBudget, BodyReservation, Caller, EventsBody, Invitee, Member,
    OwnKey, Presented, Query, Signed, SignedGet, SignedSurface, Stranger, SyncBody, Unsigned,
};
use crate::server::{LocalApi, PeerIdentity};
use crate::{BlobEndpoints, NodeView, SyncEndpoints, UiLinks};

/// Everything the handlers share.
pub struct ApiState {
    pub bus: Arc<Bus>,
    pub view: Arc<dyn NodeView>,
    pub metrics: Arc<Metrics>,
    pub key: DeviceKey,
    pub max_body_bytes: usize,
    pub sync: Option<Arc<dyn SyncEndpoints>>,
    pub blobs: Option<Arc<dyn BlobEndpoints>>,
    /// The OpenAI-compatible gateway's key; without one the local API
    /// has no gateway.
    pub api_key: Option<Arc<ApiKeyCheck>>,
    /// The web UI's login links; without it the node serves no UI.
    pub ui: Option<Arc<dyn UiLinks>>,
    pub(crate) auth: Authenticator,
    /// One for the node: both listeners serve this state, and what bodies
    /// in flight cost is the one process's memory.
    body_budget: Arc<BodyBudget>,
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
            api_key: None,
            ui: None,
            body_budget: BodyBudget::new(
                http::BODY_BUDGET_BYTES.max(max_body_bytes),
                http::FREE_BYTES_PER_BODY,
            ),
        }
    }

    /// Read request bodies within `budget` (the default:
    /// [`http::BODY_BUDGET_BYTES`], or the configured body limit if larger,
    /// so that one body of any admitted size fits).
    pub fn with_body_budget(mut self, budget: Arc<BodyBudget>) -> Self {
        self.body_budget = budget;
        self
    }

    /// Serve the sync and pub-sub endpoints through `sync`.
    pub fn with_sync(mut self, sync: Arc<dyn SyncEndpoints>) -> Self {
        self.sync = Some(sync);
        self
    }

    /// Serve the OpenAI-compatible gateway on the local API
    /// ([`local_router`]) to clients presenting the key `check` checks.
    pub fn with_api_key(mut self, check: Arc<ApiKeyCheck>) -> Self {
        self.api_key = Some(check);
        self
    }

    /// Hand out the web UI's login links (`/local/v1/ui/link`) from `ui`.
    pub fn with_ui(mut self, ui: Arc<dyn UiLinks>) -> Self {
        self.ui = Some(ui);
        self
    }

    /// Serve chunk bytes (`/blobs/v1/chunks`) through `blobs`.
    pub fn with_blobs(mut self, blobs: Arc<dyn BlobEndpoints>) -> Self {
        self.blobs = Some(blobs);
        self
    }
}

impl SignedSurface for ApiState {
    fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    fn body_budget(&self) -> &Arc<BodyBudget> {
        &self.body_budget
    }

    type Prechecked = Prechecked;

    fn precheck(&self, presented: &Presented<'_>) -> Result<Prechecked, ApiError> {
        self.auth
            .precheck(self.view.as_ref(), &self.metrics, presented)
    }

    fn authenticate<'a>(
        &'a self,
        presented: Presented<'a>,
        prechecked: Prechecked,
        body: &'a Value,
    ) -> impl Future<Output = Result<Caller, ApiError>> + Send + 'a {
        self.auth.authenticate(
            self.view.as_ref(),
            &self.metrics,
            presented,
            prechecked,
            body,
        )
    }
}

type Shared = State<Arc<ApiState>>;

/// The routes; who may use each, and how large a body each reads, is
/// declared by its handler's extractor (`Unsigned`, `SignedGet<OwnKey>`,
/// `Signed<T, Invitee>`, `Signed<T, Member, EventsBody>`, …; members and
/// small bodies by default), and nowhere else. Capability calls take up to
/// the configured `transport.max_body_bytes`. This is the peer port's
/// router; the local API serves [`local_router`].
pub fn router(state: Arc<ApiState>) -> Router {
    finish(endpoints(), state)
}

/// The local API's router: the endpoints of [`router`] and, when the
/// state has a key, the OpenAI-compatible gateway ([`crate::openai`]),
/// which is never served on the peer port.
pub fn local_router(state: Arc<ApiState>) -> Router {
    let routes = match state.api_key {
        Some(_) => endpoints().merge(crate::openai::routes()),
        None => endpoints(),
    };
    finish(routes, state)
}

fn endpoints() -> Router<Arc<ApiState>> {
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
        .route("/local/v1/ui/link", post(local_ui_link))
        .route("/local/v1/ui/pair", post(local_ui_pair))
        .route("/onboarding/v1/redeem", post(onboarding_redeem))
        .route(bulk::CHUNKS_PATH, post(blob_chunks))
}

/// What every request passes around its route: the answers to unknown
/// paths and methods, and the [`gate`].
fn finish(routes: Router<Arc<ApiState>>, state: Arc<ApiState>) -> Router {
    routes
        .method_not_allowed_fallback(wrong_method)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

async fn not_found(_: Unsigned, req: Request) -> Response {
    refusal(
        &req,
        CallError::new(ErrorCode::NotFound, "no such endpoint"),
    )
}

/// A known path asked with another method. Contract §5.5 maps every error
/// code to one status and has none for 405, and a client may act on the
/// status (ours take an error answer only with its code's status): an
/// endpoint is a method and a path, so this is `not_found` with 404, the
/// answer to a path no route takes. axum's `Allow` header stays.
async fn wrong_method(_: Unsigned, req: Request) -> Response {
    refusal(
        &req,
        CallError::new(ErrorCode::NotFound, "no such endpoint for this method"),
    )
}

/// A refusal made before any route, in the shape the asking surface's
/// clients read: OpenAI's for the gateway, the contract's elsewhere.
fn refusal(req: &Request, e: CallError) -> Response {
    if crate::openai::owns(req.uri().path(), req.extensions()) {
        if e.code == ErrorCode::NotFound {
            return crate::openai::GatewayError::no_such_endpoint(format!(
                "{}: the gateway serves GET /v1/models, POST /v1/chat/completions and POST /v1/embeddings",
                e.message
            ))
            .into_response();
        }
        return crate::openai::GatewayError::from(e).into_response();
    }
    ApiError::from(e).into_response()
}

async fn health(State(s): Shared, _: Unsigned) -> Response {
    axum::Json(local::Health {
        status: "ok".into(),
        node_id: s.key.node_id(),
    })
    .into_response()
}

async fn ready(State(s): Shared, _: Unsigned) -> Response {
    let (ready, details) = s.view.readiness();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(details)).into_response()
}

async fn manifest(State(s): Shared, _: Unsigned) -> Response {
    axum::Json(s.view.node_manifest()).into_response()
}

async fn community_manifest(State(s): Shared, _: SignedGet) -> axum::Json<Value> {
    axum::Json(s.view.community_manifest())
}

async fn metrics(State(s): Shared, _: SignedGet) -> Response {
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
    _: SignedGet,
    Query(q): Query<TraceQuery>,
) -> axum::Json<local::Traces> {
    let n =
        q.n.unwrap_or(50)
            .min(hearthnet_base::constants::TRACE_RING_BUFFER);
    axum::Json(local::Traces {
        traces: s.bus.recent_traces(n, q.capability.as_deref()),
    })
}

async fn local_status(
    State(s): Shared,
    _: SignedGet<OwnKey>,
) -> Result<axum::Json<Value>, ApiError> {
    // Status reads the blob store's manifests and sizes from disk: keep
    // that off the runtime's threads.
    let view = s.view.clone();
    tokio::task::spawn_blocking(move || view.status())
        .await
        .map(axum::Json)
        .map_err(|e| ApiError::internal(format!("status failed: {e}")))
}

async fn local_caps(State(s): Shared, _: SignedGet<OwnKey>) -> axum::Json<local::Caps> {
    axum::Json(local::Caps {
        capabilities: s.bus.entries(),
    })
}

/// A capability call (Contract §5.1): signed by a member for the
/// capability its headers name, with any JSON body.
struct CapabilityCall {
    caller: Caller,
    body: Value,
    /// What our headers ask for besides the signed ones (read here, so
    /// the handler needs no copy of the headers).
    timeout: Option<Duration>,
    wants_stream: bool,
    target: Option<NodeId>,
    session: Option<SessionId>,
    /// Held while the handler runs: until the answer, or until a stream
    /// starts.
    reservation: BodyReservation,
}

impl FromRequest<Arc<ApiState>> for CapabilityCall {
    type Rejection = ApiError;

    async fn from_request(req: Request, s: &Arc<ApiState>) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let signed =
            http::read_signed(s, &parts, body, None, Access::Member, s.max_body_bytes).await?;
        let headers = &parts.headers;
        Ok(Self {
            caller: signed.caller,
            body: signed.value,
            timeout: headers
                .get(request::TIMEOUT_MS)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis),
            wants_stream: headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/event-stream")),
            target: target_node(headers)?,
            session: session(headers)?,
            reservation: signed.reservation,
        })
    }
}

/// Our `X-HearthNet-Target-Node` header, if present.
fn target_node(headers: &HeaderMap) -> Result<Option<NodeId>, CallError> {
    let Some(value) = headers.get(request::TARGET_NODE) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| CallError::bad_request("the target node header is not text"))?;
    NodeId::parse(text).map(Some).map_err(|e| {
        CallError::bad_request(format!("{} is not a NodeID: {e}", request::TARGET_NODE))
    })
}

/// Our `X-HearthNet-Session` header, if present.
fn session(headers: &HeaderMap) -> Result<Option<SessionId>, CallError> {
    let Some(value) = headers.get(request::SESSION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| CallError::bad_request("the session header is not text"))?;
    SessionId::parse(text)
        .map(Some)
        .map_err(|e| CallError::bad_request(format!("{}: {e}", request::SESSION)))
}

async fn bus_call(
    State(s): Shared,
    CapabilityCall {
        caller,
        body,
        timeout,
        wants_stream,
        target,
        session,
        reservation: _held,
    }: CapabilityCall,
) -> Result<Response, ApiError> {
    let version = caller
        .headers
        .version
        .parse::<Version>()
        .map_err(|e| CallError::bad_request(e.to_string()))?;
    let trace_id = caller.headers.request_id.clone();
    let call = InboundCall {
        capability: caller.headers.capability,
        version,
        body,
        caller: caller.id,
        caller_level: caller.level,
        trace_id: trace_id.clone(),
        timeout,
        stream: wants_stream,
        target,
        session,
    };
    let stream = s.bus.call(call)?;
    if stream.is_streaming() {
        let mut resp = Response::new(crate::sse::body(stream));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        insert_identity(h, &trace_id, &s.key);
        return Ok(resp);
    }
    // Contract §5.2: answers of capabilities declared as mutating are
    // signed (their callers must verify); for the others signing is
    // optional and costs a signature per call, so we skip it.
    let must_sign = stream.must_sign();
    let value = stream.outcome().await?;
    if must_sign {
        return Ok(signed_json(&s.key, &trace_id, value));
    }
    let mut resp = axum::Json(value).into_response();
    insert_identity(resp.headers_mut(), &trace_id, &s.key);
    Ok(resp)
}

fn insert_identity(h: &mut HeaderMap, request_id: &str, key: &DeviceKey) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(request::REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&key.node_id().full()) {
        h.insert(request::FROM, v);
    }
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

/// What every request passes before its route: the local API's `Host`
/// allow-list, then over TLS the strangers' gate; an error answer, from
/// here or from the route, carries the request's id. One middleware, not
/// three: each layer costs an allocation and a boxed future per request.
async fn gate(State(s): Shared, req: Request, next: axum::middleware::Next) -> Response {
    let id = req.headers().get(request::REQUEST_ID).cloned();
    let resp = match local_host_refusal(&req) {
        Some(refusal) => refusal,
        None => members_only_over_tls(&s, req, next).await,
    };
    http::with_request_id_on_error(resp, id)
}

/// Over TLS, a device that is not (or no longer) a member reaches nothing
/// but the routes that declare [`Invitee`] access (redemption), not even
/// the unsigned endpoints: its request is marked a [`Stranger`], and an
/// answer that no such route admitted is replaced by the refusal.
async fn members_only_over_tls(
    s: &ApiState,
    mut req: Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(PeerIdentity(peer)) = req.extensions().get::<PeerIdentity>().copied() else {
        return next.run(req).await;
    };
    if s.view.level_of(&peer) != hearthnet_base::TrustLevel::Unknown {
        return next.run(req).await;
    }
    let stranger = Stranger::new(peer);
    req.extensions_mut().insert(stranger.clone());
    let resp = next.run(req).await;
    if stranger.admitted() {
        resp
    } else {
        stranger.refusal().into_response()
    }
}

/// The refusal of a request to the local API that does not name a
/// loopback address or `localhost` in its `Host`, with the API's port or
/// none. A web page the
/// owner's browser opens can make the browser send requests to loopback
/// under the page's own domain name (DNS rebinding) and read the answers
/// as same-origin; only its `Host` gives it away. Refused as
/// `unauthorized`: the request is well formed, but its sender (a web
/// origin) may not use this API; and with 401 a client reports a refusal
/// of who is asking, which is what it is, where `bad_request` would send
/// one looking for a fault in the request.
fn local_host_refusal(req: &Request) -> Option<Response> {
    let LocalApi { port } = req.extensions().get::<LocalApi>().copied()?;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if host.is_some_and(|host| http::names_loopback(host, port)) {
        return None;
    }
    Some(refusal(
        req,
        CallError::new(
            ErrorCode::Unauthorized,
            "the local API answers only requests addressed to a loopback address or localhost (Host)",
        ),
    ))
}

fn sync_of(s: &ApiState) -> Result<Arc<dyn SyncEndpoints>, ApiError> {
    s.sync.clone().ok_or_else(|| {
        CallError::new(ErrorCode::NotImplemented, "this node keeps no event log").into()
    })
}

async fn onboarding_redeem(
    State(s): Shared,
    Signed { caller, body, .. }: Signed<Redeem, Invitee>,
) -> Result<axum::Json<Redeemed>, ApiError> {
    // The signer: over TLS, authentication made sure it is also the
    // device the connection proved.
    let answer = sync_of(&s)?
        .redeem(caller.id, body.invite, body.joined)
        .await?;
    Ok(axum::Json(answer))
}

async fn sync_heads(State(s): Shared, _: SignedGet) -> Result<axum::Json<Heads>, ApiError> {
    Ok(axum::Json(sync_of(&s)?.heads().await))
}

async fn sync_events(
    State(s): Shared,
    Signed { body, .. }: Signed<EventsPush, Member, EventsBody>,
) -> Result<axum::Json<EventsReport>, ApiError> {
    let sync = sync_of(&s)?;
    if body.community_id.is_some_and(|c| c != s.auth.community()) {
        return Err(CallError::new(ErrorCode::Unauthorized, "events of another community").into());
    }
    Ok(axum::Json(sync.receive(body.events).await?))
}

async fn sync_reconcile(
    State(s): Shared,
    Signed { body, .. }: Signed<Reconcile, Member, SyncBody>,
) -> Result<axum::Json<Reconcile>, ApiError> {
    let answer = sync_of(&s)?.reconcile(body.message.0).await?;
    Ok(axum::Json(Reconcile {
        message: Hex(answer),
    }))
}

async fn sync_fetch(
    State(s): Shared,
    Signed { body, .. }: Signed<FetchRequest, Member, SyncBody>,
) -> Result<axum::Json<FetchAnswer>, ApiError> {
    let hashes = body.hashes.into_iter().map(|h| h.0).collect();
    let events = sync_of(&s)?.fetch(hashes).await?;
    Ok(axum::Json(FetchAnswer { events }))
}

/// `POST /blobs/v1/chunks` (members): chunks of a blob as raw bytes
/// ([`bulk`]); errors before the first byte are ordinary JSON answers.
async fn blob_chunks(
    State(s): Shared,
    Signed { caller, body, .. }: Signed<ChunksRequest>,
) -> Result<Response, ApiError> {
    let blobs = s
        .blobs
        .clone()
        .ok_or_else(|| CallError::new(ErrorCode::NotFound, "this node serves no chunks"))?;
    let chunks = blobs.chunks(caller.id, body).await?;
    let mut resp = Response::new(bulk::body(chunks));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(bulk::CONTENT_TYPE),
    );
    Ok(resp)
}

async fn pubsub_subscribe(
    State(s): Shared,
    SignedGet { caller, .. }: SignedGet,
    Query(q): Query<SubscribeQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let sync = sync_of(&s)?;
    let timeout = Duration::from_secs(q.timeout.unwrap_or(30).min(60));
    let answer = sync
        .subscribe(caller.id, q.topic, q.last_seq.unwrap_or(0), timeout)
        .await?;
    Ok(axum::Json(answer))
}

/// A fresh one-time login link to the web UI (`hearthnet ui link`).
async fn local_ui_link(
    State(s): Shared,
    _: Signed<Value, OwnKey>,
) -> Result<axum::Json<local::UiLink>, ApiError> {
    let ui = s.ui.as_ref().ok_or_else(|| {
        CallError::new(
            ErrorCode::NotFound,
            "this node serves no web UI (--no-ui or ui.enabled = false)",
        )
    })?;
    Ok(axum::Json(ui.login_link()))
}

/// A fresh pairing code for a device on the LAN (`hearthnet ui pair`).
async fn local_ui_pair(
    State(s): Shared,
    _: Signed<Value, OwnKey>,
) -> Result<axum::Json<local::UiPairing>, ApiError> {
    let pairing = s.ui.as_ref().and_then(|ui| ui.pairing()).ok_or_else(|| {
        CallError::new(
            ErrorCode::NotFound,
            "this node does not offer its web UI on the LAN (set ui.lan_enabled = true in config.toml and restart it)",
        )
    })?;
    Ok(axum::Json(pairing))
}

async fn local_sync(
    State(s): Shared,
    Signed { body, .. }: Signed<SyncNow, OwnKey>,
) -> Result<axum::Json<Value>, ApiError> {
    let report = sync_of(&s)?.sync_now(body.peer, body.protocol).await?;
    Ok(axum::Json(report))
}

#[cfg(test)]
mod tests;
