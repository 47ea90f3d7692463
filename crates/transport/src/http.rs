//! The typed HTTP layer the node's surfaces share: [`ApiError`], the one
//! error type, which becomes the Contract §5.4 error body with its §5.5
//! status; the extractors [`Signed`] and [`SignedGet`], which authenticate
//! the signed request (§5.1) for the requested path and the access the
//! handler declares by a marker type ([`Member`], [`OwnKey`],
//! [`Invitee`]), checking all that needs no body before reading a body
//! bounded by the route's [`BodyLimit`] within [`BODY_READ_TIMEOUT`], and
//! decode a typed body naming the failing field; [`BodyBudget`], the
//! node's budget of body bytes in flight, drawn before a body is read and
//! given back when it is dropped; [`Unsigned`], the declaration of an
//! endpoint without a signature; [`Query`], a query string decoded the
//! same way. Over mutual TLS a device that is not a member gets answers
//! only from routes that declare [`Invitee`] ([`Stranger`]).
//!
//! A surface uses it by making its router state a [`SignedSurface`]: how
//! large a body may be and how to authenticate. Handlers then return
//! `Result<_, ApiError>` and use `?`.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;

use axum::response::{IntoResponse, Response};
use hearthnet_base::ErrorCode;
use hearthnet_base::request::REQUEST_ID;
use hearthnet_bus::CallError;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use crate::auth::{Access, Caller, Presented};
use crate::server::PeerIdentity;

/// Why a request got no (successful) answer.
#[derive(Debug)]
pub enum ApiError {
    /// Answered with the contract's error body and status.
    Call(CallError),
    /// Over the hard rate limit (X01 §7): the connection is closed without
    /// an answer.
    DropConnection,
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        Self::Call(e)
    }
}

impl From<hearthnet_wire::DecodeError> for ApiError {
    fn from(e: hearthnet_wire::DecodeError) -> Self {
        Self::Call(CallError::bad_request(e.to_string()))
    }
}

impl ApiError {
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Call(CallError::new(ErrorCode::InternalError, message))
    }
}

/// Marks a response whose connection the server closes instead of
/// answering.
#[derive(Clone, Copy)]
pub(crate) struct DropConnection;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Call(e) => {
                let status = StatusCode::from_u16(e.code.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                (status, axum::Json(e.to_body())).into_response()
            }
            Self::DropConnection => {
                let mut resp = StatusCode::TOO_MANY_REQUESTS.into_response();
                resp.extensions_mut().insert(DropConnection);
                resp
            }
        }
    }
}

/// An error answer carries the request's `X-HearthNet-Request-Id`
/// (§5.4), `id`, whichever step refused it.
pub fn with_request_id_on_error(
    mut resp: Response,
    id: Option<axum::http::HeaderValue>,
) -> Response {
    let failed = resp.status().is_client_error() || resp.status().is_server_error();
    if let Some(id) = id.filter(|_| failed) {
        resp.headers_mut().entry(REQUEST_ID).or_insert(id);
    }
    resp
}

/// What a surface's router state provides for signed requests.
pub trait SignedSurface: Send + Sync + 'static {
    /// The largest request body read, in bytes.
    fn max_body_bytes(&self) -> usize;
    /// The budget the bodies of all its requests are read within.
    fn body_budget(&self) -> &Arc<BodyBudget>;
    /// What a precheck hands on to [`Self::authenticate`].
    type Prechecked: Send;
    /// Refuse before the body is read what would be refused whatever the
    /// body. Passing admits nothing: [`Self::authenticate`] decides.
    fn precheck(&self, presented: &Presented<'_>) -> Result<Self::Prechecked, ApiError>;
    /// Accept the request that passed its precheck, with its body, or say
    /// why not.
    fn authenticate<'a>(
        &'a self,
        presented: Presented<'a>,
        prechecked: Self::Prechecked,
        body: &'a Value,
    ) -> impl Future<Output = Result<Caller, ApiError>> + Send + 'a;
}

impl<T: SignedSurface> SignedSurface for Arc<T> {
    fn max_body_bytes(&self) -> usize {
        T::max_body_bytes(self)
    }

    fn body_budget(&self) -> &Arc<BodyBudget> {
        T::body_budget(self)
    }

    type Prechecked = T::Prechecked;

    fn precheck(&self, presented: &Presented<'_>) -> Result<Self::Prechecked, ApiError> {
        T::precheck(self, presented)
    }

    fn authenticate<'a>(
        &'a self,
        presented: Presented<'a>,
        prechecked: Self::Prechecked,
        body: &'a Value,
    ) -> impl Future<Output = Result<Caller, ApiError>> + Send + 'a {
        T::authenticate(self, presented, prechecked, body)
    }
}

/// Who may use a route, declared by the handler's extractor type.
pub trait Required: Send + Sync + 'static {
    const ACCESS: Access;
}

/// Any member of the community.
pub struct Member;
/// Only this node's own key.
pub struct OwnKey;
/// A device redeeming an invite addressed to it (not a member yet).
pub struct Invitee;

impl Required for Member {
    const ACCESS: Access = Access::Member;
}
impl Required for OwnKey {
    const ACCESS: Access = Access::OwnKey;
}
impl Required for Invitee {
    const ACCESS: Access = Access::Invitee;
}

/// How large a route's request body may be, declared by its extractor's
/// type next to its access (`Signed<T, A, L>`), so no handler checks it.
/// The surface's [`SignedSurface::max_body_bytes`] stays a ceiling.
pub trait BodyLimit: Send + Sync + 'static {
    const BYTES: usize;
}

/// Small documents: redemptions, commands, chunk requests. The default,
/// so that a route needing more has to say so.
pub struct SmallBody;
/// A sync message: a reconciliation frame (at most 60,000 bytes, sent in
/// hex) or a batch of event hashes to fetch (500 of 32 bytes).
pub struct SyncBody;
/// A push of events (`/sync/v1/events`).
pub struct EventsBody;

impl BodyLimit for SmallBody {
    const BYTES: usize = 64 * 1024;
}
impl BodyLimit for SyncBody {
    const BYTES: usize = 256 * 1024;
}
impl BodyLimit for EventsBody {
    const BYTES: usize = hearthnet_wire::peer::MAX_PUSH_BYTES;
}

/// Marks a request whose connection (mutual TLS) proved a device that is
/// not a member of the community: the surface's gate sets it. Such a
/// request is answered only by a route whose extractor declares
/// [`Invitee`] access, once it authenticated the request; the gate refuses
/// every other answer, so a route that declares nothing is closed too.
#[derive(Clone)]
pub struct Stranger {
    peer: hearthnet_base::NodeId,
    admitted: Arc<AtomicBool>,
}

impl Stranger {
    pub fn new(peer: hearthnet_base::NodeId) -> Self {
        Self {
            peer,
            admitted: Arc::default(),
        }
    }

    /// Whether a route admitting invitees authenticated the request.
    pub fn admitted(&self) -> bool {
        self.admitted.load(Ordering::Acquire)
    }

    pub fn refusal(&self) -> ApiError {
        CallError::new(
            ErrorCode::Unauthorized,
            format!("{} is not a member of this community", self.peer.short()),
        )
        .into()
    }
}

/// Refuse at once, before any body is read, a stranger's request (see
/// [`Stranger`]) to a route whose access does not admit invitees.
pub fn admit_connection(parts: &Parts, access: Access) -> Result<(), ApiError> {
    match parts.extensions.get::<Stranger>() {
        Some(stranger) if access != Access::Invitee => Err(stranger.refusal()),
        _ => Ok(()),
    }
}

/// A request without a signature (`/health`, `/ready`, `/manifest`, and
/// the answers to requests no route takes): anyone on loopback, only
/// members' connections over TLS.
pub struct Unsigned;

impl<S: Send + Sync> FromRequestParts<S> for Unsigned {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        admit_connection(parts, Access::Member).map(|()| Self)
    }
}

fn too_large(limit: usize) -> ApiError {
    CallError::bad_request(format!(
        "the body is larger than {limit} bytes or was cut off"
    ))
    .into()
}

/// How long the whole body of a request may take to arrive once its
/// headers did: a client that dribbles its body would otherwise hold a
/// connection slot, and the buffer of what it sent, for as long as it
/// likes. 16 MiB (the largest body) in 10 s needs 1.6 MB/s, which any
/// LAN and loopback exceed.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The bytes of request bodies a node holds at once, beyond a free
/// allowance per body: without it, members alone could pin memory up to
/// their connection caps times the body limits (64 pushes of 4 MiB at once
/// are 256 MiB before parsing). A request whose body would go over it is
/// refused as `capacity_exceeded` before the body is read (declared
/// length) or as soon as it would (a chunked body, counted as it arrives);
/// a [`BodyReservation`] gives its bytes back when dropped.
///
/// The first `free_per_body` bytes of every body (by default
/// [`FREE_BYTES_PER_BODY`]) are not counted,
/// so that ordinary small requests (a call, a sync message, a redemption)
/// are never refused because large bodies are in flight: what they can pin
/// together is bounded by the connection caps instead.
pub struct BodyBudget {
    total: usize,
    free_per_body: usize,
    used: AtomicUsize,
}

/// The default [`BodyBudget`] of a node: two of the largest bodies the
/// default configuration admits (16 MiB), or eight full event pushes.
/// Parsed, a body takes about two to three times its size, so this keeps
/// what bodies in flight cost under ~100 MiB.
pub const BODY_BUDGET_BYTES: usize = 32 * 1024 * 1024;
/// What of each body the [`BodyBudget`] does not count: the default body
/// limit ([`SmallBody`]); the 512 connections of a listener can pin at
/// most 32 MiB with bodies that small.
pub const FREE_BYTES_PER_BODY: usize = SmallBody::BYTES;

impl BodyBudget {
    /// A budget of `total` bytes, the first `free_per_body` of every body
    /// not counted.
    pub fn new(total: usize, free_per_body: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            free_per_body,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes counted at the moment.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// A reservation covering a body of `bytes` (nothing yet for `0`), or
    /// `capacity_exceeded`.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Result<BodyReservation, ApiError> {
        let mut reservation = BodyReservation {
            budget: self.clone(),
            counted: 0,
        };
        reservation.cover(bytes)?;
        Ok(reservation)
    }

    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|after| *after <= self.total)
            })
            .is_ok()
    }

    fn refusal(&self, bytes: usize) -> ApiError {
        CallError::new(
            ErrorCode::CapacityExceeded,
            format!(
                "the node is reading as many request bodies as it holds at once ({} bytes): a body of {bytes} bytes must wait",
                self.total
            ),
        )
        .retry_after(1000)
        .into()
    }
}

/// Bytes of one body counted in a [`BodyBudget`], given back when dropped.
pub struct BodyReservation {
    budget: Arc<BodyBudget>,
    counted: usize,
}

impl BodyReservation {
    /// Grow to cover a body of `bytes` in all, or `capacity_exceeded`
    /// (keeping what was covered until dropped).
    pub fn cover(&mut self, bytes: usize) -> Result<(), ApiError> {
        let needed = bytes.saturating_sub(self.budget.free_per_body);
        if needed <= self.counted {
            return Ok(());
        }
        if !self.budget.take(needed - self.counted) {
            return Err(self.budget.refusal(bytes));
        }
        self.counted = needed;
        Ok(())
    }
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.counted, Ordering::AcqRel);
    }
}

/// Read a JSON body of at most `limit` bytes, arriving within
/// [`BODY_READ_TIMEOUT`], its bytes covered by `reservation` as they
/// arrive.
pub async fn read_json(
    body: Body,
    limit: usize,
    reservation: &mut BodyReservation,
) -> Result<Value, ApiError> {
    let bytes = read_bytes(body, limit, reservation).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| CallError::bad_request(format!("the body is not JSON: {e}")).into())
}

/// The bytes of a body of at most `limit` bytes, arriving within
/// [`BODY_READ_TIMEOUT`], covered by `reservation` as they arrive. The
/// refusals: `bad_request` over `limit` (or cut off), `capacity_exceeded`
/// over the budget, `timeout` too slow.
pub async fn read_bytes(
    body: Body,
    limit: usize,
    reservation: &mut BodyReservation,
) -> Result<axum::body::Bytes, ApiError> {
    tokio::time::timeout(BODY_READ_TIMEOUT, collect(body, limit, reservation))
        .await
        .map_err(|_| {
            CallError::new(
                ErrorCode::Timeout,
                format!(
                    "the body did not arrive within {} s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            )
        })?
}

/// The bytes of `body`, refused once more than `limit` or more than
/// `reservation` can cover. A body that came in one frame (most do) is
/// not copied.
async fn collect(
    body: Body,
    limit: usize,
    reservation: &mut BodyReservation,
) -> Result<axum::body::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut frames: Vec<axum::body::Bytes> = Vec::new();
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| too_large(limit))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total += data.len();
        if total > limit {
            return Err(too_large(limit));
        }
        reservation.cover(total)?;
        frames.push(data);
    }
    Ok(match frames.len() {
        1 => frames.swap_remove(0),
        _ => frames.concat().into(),
    })
}

fn presented<'a>(parts: &'a Parts, endpoint: Option<&'a str>, access: Access) -> Presented<'a> {
    Presented {
        headers: &parts.headers,
        query: parts.uri.query(),
        endpoint,
        access,
        connection: parts.extensions.get::<PeerIdentity>().copied(),
    }
}

/// Read the JSON body of a signed request of `parts` and authenticate the
/// request with it, refusing first, without reading a byte of the body,
/// whatever can be refused without it: a declared length over `limit`,
/// then all the surface's checks but the signature, then a share of the
/// surface's [`BodyBudget`] for the declared length. `endpoint` is what
/// the signature must name as its `capability`: the path for plain
/// endpoints, `None` where the headers name a capability.
pub async fn read_signed<S: SignedSurface>(
    state: &S,
    parts: &Parts,
    body: Body,
    endpoint: Option<&str>,
    access: Access,
    limit: usize,
) -> Result<SignedBody, ApiError> {
    admit_connection(parts, access)?;
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let prechecked = state.precheck(&presented(parts, endpoint, access))?;
    // Drawn after the precheck: a stranger's request never reaches it.
    let declared = declared.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut reservation = state.body_budget().reserve(declared)?;
    let value = read_json(body, limit, &mut reservation).await?;
    let caller = authenticate(state, parts, endpoint, prechecked, &value, access).await?;
    Ok(SignedBody {
        caller,
        value,
        reservation,
    })
}

/// An authenticated request's caller and JSON body, with the body's
/// share of the [`BodyBudget`], given back when this (or the
/// reservation, if kept apart) is dropped.
pub struct SignedBody {
    pub caller: Caller,
    pub value: Value,
    pub reservation: BodyReservation,
}

/// Authenticate the request of `parts`, admitted over its connection and
/// prechecked, carrying `body`. `endpoint` is what the signature must name as its
/// `capability`: the path for plain endpoints, `None` where the headers
/// name a capability.
async fn authenticate<S: SignedSurface>(
    state: &S,
    parts: &Parts,
    endpoint: Option<&str>,
    prechecked: S::Prechecked,
    body: &Value,
    access: Access,
) -> Result<Caller, ApiError> {
    let caller = state
        .authenticate(presented(parts, endpoint, access), prechecked, body)
        .await?;
    // Only here, with the access the route declared, does a stranger's
    // request earn an answer.
    if let Some(stranger) = parts.extensions.get::<Stranger>() {
        stranger.admitted.store(true, Ordering::Release);
    }
    Ok(caller)
}

/// A signed request with a JSON body of type `T` of at most `L` bytes,
/// from a caller with access `A`. The signature must name the path as requested, which is
/// what the client signed (for a route with parameters, the concrete
/// path). Signed routes must not sit under `Router::nest`, which strips
/// the prefix from the path handlers see.
pub struct Signed<T, A = Member, L = SmallBody> {
    pub caller: Caller,
    pub body: T,
    /// Held while the handler has the body.
    _reservation: BodyReservation,
    access: PhantomData<(A, L)>,
}

impl<S, T, A, L> FromRequest<S> for Signed<T, A, L>
where
    S: SignedSurface,
    T: DeserializeOwned + Send,
    A: Required,
    L: BodyLimit,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let limit = L::BYTES.min(state.max_body_bytes());
        let SignedBody {
            caller,
            value,
            reservation,
        } = read_signed(
            state,
            &parts,
            body,
            Some(parts.uri.path()),
            A::ACCESS,
            limit,
        )
        .await?;
        // Decoded only once authenticated: strangers learn nothing of the
        // expected shape.
        let body = hearthnet_wire::from_value("the request body", value)?;
        Ok(Self {
            caller,
            body,
            _reservation: reservation,
            access: PhantomData,
        })
    }
}

/// A signed request without a body (a GET: the signed body is `{}`), from
/// a caller with access `A`.
pub struct SignedGet<A = Member> {
    pub caller: Caller,
    access: PhantomData<A>,
}

impl<S, A> FromRequestParts<S> for SignedGet<A>
where
    S: SignedSurface,
    A: Required,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let empty = Value::Object(serde_json::Map::new());
        let endpoint = Some(parts.uri.path());
        admit_connection(parts, A::ACCESS)?;
        let prechecked = state.precheck(&presented(parts, endpoint, A::ACCESS))?;
        let caller = authenticate(state, parts, endpoint, prechecked, &empty, A::ACCESS).await?;
        Ok(Self {
            caller,
            access: PhantomData,
        })
    }
}

/// A query string decoded as `T`; a malformed one is `bad_request`.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::try_from_uri(&parts.uri)
            .map(|q| Self(q.0))
            .map_err(|e| CallError::bad_request(format!("the query: {}", e.body_text())).into())
    }
}

/// Whether `host` (a `Host` header) is a loopback address or `localhost`,
/// with `port` or no port: the `Host` allow-list of every listener on
/// loopback (the local API, the web UI), which defeats DNS rebinding.
pub fn names_loopback(host: &str, port: u16) -> bool {
    let (name, given_port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((name, "")) => (name, None),
            Some((name, tail)) => match tail.strip_prefix(':') {
                Some(p) => (name, Some(p)),
                None => return false,
            },
            None => return false,
        },
        None => match host.split_once(':') {
            Some((name, p)) => (name, Some(p)),
            None => (host, None),
        },
    };
    let port_ok = given_port.is_none_or(|p| p.parse::<u16>() == Ok(port));
    let loopback = name.eq_ignore_ascii_case("localhost")
        || (host.starts_with('[')
            && name
                .parse::<std::net::Ipv6Addr>()
                .is_ok_and(|ip| ip.is_loopback()))
        || (!host.starts_with('[')
            && name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback()));
    port_ok && loopback
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::{get, post};
    use hearthnet_base::request::SignedHeaders;
    use hearthnet_base::{CommunityId, DeviceKey, TrustLevel};
    use serde_json::json;
    use tower::ServiceExt;

    /// Another surface: it lets everyone in, noting the path and access
    /// each request was checked for.
    struct Open {
        key: DeviceKey,
        checked: parking_lot::Mutex<Vec<(Option<String>, Access)>>,
        budget: Arc<BodyBudget>,
    }

    impl SignedSurface for Open {
        fn max_body_bytes(&self) -> usize {
            64
        }

        fn body_budget(&self) -> &Arc<BodyBudget> {
            &self.budget
        }

        type Prechecked = ();

        fn precheck(&self, _: &Presented<'_>) -> Result<(), ApiError> {
            Ok(())
        }

        async fn authenticate(
            &self,
            presented: Presented<'_>,
            (): (),
            body: &Value,
        ) -> Result<Caller, ApiError> {
            let endpoint = presented.endpoint.unwrap_or_default();
            self.checked
                .lock()
                .push((presented.endpoint.map(str::to_owned), presented.access));
            let community = CommunityId::of_root(self.key.node_id());
            let headers = SignedHeaders::sign(&self.key, community, endpoint, "1.0", body)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(Caller {
                id: self.key.node_id(),
                level: TrustLevel::Member,
                headers,
            })
        }
    }

    #[derive(serde::Deserialize, serde::Serialize)]
    struct Note {
        text: String,
    }

    fn surface() -> (Router, Arc<Open>) {
        let state = Arc::new(Open {
            key: DeviceKey::generate(),
            checked: Default::default(),
            budget: BodyBudget::new(BODY_BUDGET_BYTES, FREE_BYTES_PER_BODY),
        });
        let router = Router::new()
            .route(
                "/notes",
                post(|Signed { body, .. }: Signed<Note, OwnKey>| async move { axum::Json(body) }),
            )
            .route("/whoami", get(|_: SignedGet<Invitee>| async { "you" }))
            .with_state(state.clone());
        (router, state)
    }

    async fn send(router: &Router, req: Request) -> (StatusCode, Value) {
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn post_body(path: &str, body: &str) -> Request {
        Request::post(path)
            .body(Body::from(body.to_owned()))
            .unwrap()
    }

    #[tokio::test]
    async fn a_second_surface_gets_typed_bodies_limits_and_declared_access() {
        let (router, state) = surface();
        let (status, body) = send(&router, post_body("/notes", r#"{"text": "hi"}"#)).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"text": "hi"})));

        let (status, body) = send(&router, post_body("/notes", r#"{"text": 5}"#)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["message"].as_str().unwrap().contains("field `text`"),
            "{body}"
        );

        let long = format!(r#"{{"text": "{}"}}"#, "x".repeat(64));
        let (status, body) = send(&router, post_body("/notes", &long)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("larger than 64 bytes")
        );

        let (status, _) = send(
            &router,
            Request::get("/whoami").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        // The oversized body was refused before authentication.
        let checked = state.checked.lock().clone();
        assert_eq!(
            checked,
            [
                (Some("/notes".to_owned()), Access::OwnKey),
                (Some("/notes".to_owned()), Access::OwnKey),
                (Some("/whoami".to_owned()), Access::Invitee),
            ]
        );
    }

    #[tokio::test]
    async fn errors_become_the_contract_body_with_its_status_and_a_drop_marks_its_answer() {
        for code in ErrorCode::ALL {
            let resp = ApiError::from(CallError::new(code, "why")).into_response();
            assert_eq!(resp.status().as_u16(), code.http_status());
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body, json!({"error": code, "message": "why"}));
        }
        let dropped = ApiError::DropConnection.into_response();
        assert!(dropped.extensions().get::<DropConnection>().is_some());
    }
}
