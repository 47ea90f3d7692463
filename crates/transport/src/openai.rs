//! The OpenAI-compatible gateway (SYSTEM.md item 8): `GET /v1/models`,
//! `GET /v1/models/{id}`, `POST /v1/chat/completions` (streamed or not)
//! and `POST /v1/embeddings`, on the local API only, so that the official
//! `openai` client libraries, Open WebUI or LangChain use the community's
//! models unchanged.
//!
//! Owns: the bearer-key check of these routes (such clients cannot sign
//! requests; the key is `hearthnet_identity::api_key`'s), reading their
//! bodies (JSON only, [`MAX_BODY_BYTES`]), calling the bus as the node
//! itself, exactly as the CLI's signed calls do, so the bus picks the
//! provider, this node or a neighbour, and the answers and refusals in
//! OpenAI's shapes ([`GatewayError`]). What a document means on each side
//! is [`translate`]'s, in pure functions.
//!
//! The key opens these routes and nothing else: every other endpoint
//! still wants a signed request. The local API's `Host` allow-list
//! applies here as everywhere (a web page cannot use the gateway through
//! DNS rebinding), and a browser's cross-origin request is refused too:
//! a JSON body and an `Authorization` header both need a CORS preflight,
//! which nothing here answers.

mod error;
pub mod translate;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use hearthnet_base::ErrorCode;
use hearthnet_base::request::SessionId;
use hearthnet_bus::{CallError, CallStream, InboundCall, Item, Version};
use hearthnet_identity::{ApiKeyCheck, ApiKeyError};
use serde_json::Value;

pub use error::GatewayError;
use translate::{Completion, EMBED_BATCH, EMBED_TEXT, LLM_CHAT};

use crate::http::{self, ApiError, BodyReservation, SignedSurface};
use crate::routes::ApiState;
use crate::server::LocalApi;

/// The largest request body the gateway reads. A chat request carries the
/// whole conversation each time; the largest context our models take
/// (128 K tokens, about 0.5 MB of text) fits several times over with JSON
/// escaping, and so do 256 embedding inputs of 8,192 characters. Bodies
/// are bounded by the configured `transport.max_body_bytes` too.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Where the gateway lives: OpenAI's clients append their paths to a base
/// URL ending in `/v1`.
const PREFIX: &str = "/v1/";

type Shared = State<Arc<ApiState>>;

/// The gateway's routes; [`crate::local_router`] mounts them on the local
/// API, never on the peer port.
pub(crate) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
}

/// Whether a request to `path` with these `extensions` is the gateway's:
/// under `/v1/` on the local API. Its refusals, also those made before
/// any route (the `Host` allow-list, an unknown path or method), are then
/// in OpenAI's shape, which its clients can read.
pub(crate) fn owns(path: &str, extensions: &axum::http::Extensions) -> bool {
    path.starts_with(PREFIX) && extensions.get::<LocalApi>().is_some()
}

/// A request that presented the node's local API key.
struct KeyHolder;

impl FromRequestParts<Arc<ApiState>> for KeyHolder {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &Arc<ApiState>) -> Result<Self, Response> {
        // Mounted on the local API only; should the routes ever be served
        // elsewhere, they answer there as if they did not exist.
        let (Some(_), Some(check)) = (parts.extensions.get::<LocalApi>(), s.api_key.as_ref())
        else {
            return Err(
                ApiError::from(CallError::new(ErrorCode::NotFound, "no such endpoint"))
                    .into_response(),
            );
        };
        check_key(check, &parts.headers)
            .map(|()| Self)
            .map_err(IntoResponse::into_response)
    }
}

/// Whether `headers` present the key `check` holds, or why not.
fn check_key(check: &ApiKeyCheck, headers: &HeaderMap) -> Result<(), GatewayError> {
    let presented = bearer(headers).ok_or_else(|| {
        GatewayError::unauthenticated(
            "no API key: send `Authorization: Bearer <key>`; `hearthnet api-key` on this machine shows the key",
        )
    })?;
    match check.verify(presented) {
        Ok(true) => Ok(()),
        Ok(false) => Err(GatewayError::unauthenticated(
            "the API key is not this node's: `hearthnet api-key` on this machine shows the current one",
        )),
        Err(e @ ApiKeyError::Missing { .. }) => Err(GatewayError::unauthenticated(e.to_string())),
        // The owner's to fix (the message says how), not the client's.
        Err(e) => Err(GatewayError::internal(e.to_string())),
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A JSON request body, read within [`MAX_BODY_BYTES`] and the node's
/// body budget, after the key was checked (extractors run in order).
struct GatewayJson {
    value: Value,
    /// Held while the handler has the body.
    reservation: BodyReservation,
}

impl FromRequest<Arc<ApiState>> for GatewayJson {
    type Rejection = GatewayError;

    async fn from_request(req: Request, s: &Arc<ApiState>) -> Result<Self, GatewayError> {
        let (parts, body) = req.into_parts();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("(not text)"));
        if !content_type.is_some_and(is_json) {
            return Err(GatewayError::media_type(content_type));
        }
        let limit = MAX_BODY_BYTES.min(s.max_body_bytes());
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(GatewayError::too_large(limit));
        }
        let declared = declared.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let mut reservation = s
            .body_budget()
            .reserve(declared)
            .map_err(|e| read_refusal(e, limit))?;
        let bytes = http::read_bytes(body, limit, &mut reservation)
            .await
            .map_err(|e| read_refusal(e, limit))?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| GatewayError::malformed(format!("the body is not JSON: {e}")))?;
        Ok(Self { value, reservation })
    }
}

/// `application/json`, with parameters (`; charset=utf-8`) or without.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// A refusal of [`http::read_bytes`] or of the body budget, as the
/// gateway answers it.
fn read_refusal(e: ApiError, limit: usize) -> GatewayError {
    match e {
        ApiError::Call(e) => match e.code {
            // The only request fault reading can find: too large, or cut
            // off before its declared end.
            ErrorCode::BadRequest => GatewayError::too_large(limit),
            ErrorCode::Timeout => GatewayError::slow_body(e.message),
            _ => e.into(),
        },
        ApiError::DropConnection => GatewayError::internal("the request could not be read"),
    }
}

/// Call `capability@1.0` with the contract `body` as this node itself, as
/// a signed call from its own key would: the bus picks the provider, here
/// or a neighbour. The trace id names the call in `hearthnet trace`.
fn call_bus(
    s: &ApiState,
    capability: &str,
    body: Value,
    stream: bool,
    session: Option<SessionId>,
) -> Result<(String, CallStream), GatewayError> {
    let own = s.key.node_id();
    let call = InboundCall {
        stream,
        session,
        ..InboundCall::new(
            capability,
            Version::new(1, 0),
            body,
            own,
            s.view.level_of(&own),
        )
    };
    let trace_id = call.trace_id.clone();
    Ok((trace_id, s.bus.call(call)?))
}

/// `x-request-id`, which OpenAI's clients keep with each answer: the
/// call's trace id, for `hearthnet trace recent`.
fn with_request_id(mut resp: Response, trace_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(trace_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn list_models(State(s): Shared, _: KeyHolder) -> axum::Json<Value> {
    axum::Json(translate::model_list(&s.bus.entries()))
}

async fn get_model(
    State(s): Shared,
    _: KeyHolder,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Value>, GatewayError> {
    let Path(id) = id.map_err(|e| GatewayError::malformed(e.body_text()))?;
    let entries = s.bus.entries();
    if translate::model_ids(&entries).contains(&id.as_str()) {
        return Ok(axum::Json(translate::model_object(&id)));
    }
    Err(GatewayError::model_not_found(format!(
        "no member of the community serves the model `{id}`: `GET /v1/models` lists those that do"
    )))
}

async fn chat_completions(
    State(s): Shared,
    _: KeyHolder,
    GatewayJson {
        value,
        reservation: _held,
    }: GatewayJson,
) -> Result<Response, GatewayError> {
    let chat = translate::chat_call(value)?;
    translate::find_offer(&s.bus.entries(), LLM_CHAT, &chat.model)?;
    let (trace_id, mut stream) = call_bus(&s, LLM_CHAT, chat.body, chat.stream, chat.session)?;
    let completion = Completion {
        id: format!("chatcmpl-{trace_id}"),
        created: unix_now(),
        model: chat.model,
    };
    if !chat.stream {
        let answer = stream.outcome().await?;
        let resp = axum::Json(completion.answer(&answer)?).into_response();
        return Ok(with_request_id(resp, &trace_id));
    }
    // The first item decides the status: a call that fails before its
    // first token (a model that does not load, a prompt too long for it)
    // is answered with its error status, as OpenAI does, not as a stream.
    let first = stream.next().await;
    if let Some(Item::Failed(e)) = first {
        return Err(e.into());
    }
    let mut resp = Response::new(chat_stream(stream, first, completion, chat.include_usage));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(with_request_id(resp, &trace_id))
}

/// One server-sent event carrying `data`.
fn sse_event(data: &Value) -> Vec<u8> {
    // Compact serde_json output never contains a raw newline.
    format!("data: {data}\n\n").into_bytes()
}

/// How a stream of `chat.completion.chunk`s ends well.
const DONE: &[u8] = b"data: [DONE]\n\n";

/// A streamed chat call as it is being answered.
struct ChatStream {
    stream: CallStream,
    /// An item taken before the stream started (`Some(None)`: the end).
    pending: Option<Option<Item>>,
    completion: Completion,
    include_usage: bool,
}

impl ChatStream {
    /// The bytes for `item`, and whether more follow; `None` for a frame
    /// that makes no chunk.
    fn answer(&self, item: Option<Item>) -> Option<(Vec<u8>, bool)> {
        let error = |e: GatewayError| sse_event(&e.to_body());
        match item {
            Some(Item::Frame(f)) if f.event == "token" => {
                Some((sse_event(&self.completion.token_chunk(&f.data)?), true))
            }
            Some(Item::Frame(_)) => None,
            Some(Item::Done(outcome)) => {
                let streamed = self.stream.is_streaming();
                let bytes =
                    match self
                        .completion
                        .last_chunks(&outcome, streamed, self.include_usage)
                    {
                        Ok(chunks) => {
                            let mut bytes: Vec<u8> = chunks.iter().flat_map(sse_event).collect();
                            bytes.extend_from_slice(DONE);
                            bytes
                        }
                        Err(e) => error(e),
                    };
                Some((bytes, false))
            }
            // OpenAI's clients raise an event whose data has an `error`.
            Some(Item::Failed(e)) => Some((error(e.into()), false)),
            None => Some((
                error(GatewayError::internal("the call ended without an outcome")),
                false,
            )),
        }
    }
}

/// The SSE body of a streamed chat call: a chunk with the role, one per
/// `token` frame, the finish (and the usage, if asked), `[DONE]`. Owning
/// the [`CallStream`] means that when the client disconnects and hyper
/// drops the body, the call is cancelled and the model stops generating.
fn chat_stream(
    stream: CallStream,
    first: Option<Item>,
    completion: Completion,
    include_usage: bool,
) -> Body {
    let role = sse_event(&completion.first_chunk());
    let state = ChatStream {
        stream,
        pending: Some(first),
        completion,
        include_usage,
    };
    let rest = futures_util::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        loop {
            let item = match state.pending.take() {
                Some(item) => item,
                None => state.stream.next().await,
            };
            if let Some((bytes, more)) = state.answer(item) {
                return Some((Ok::<_, Infallible>(bytes), more.then_some(state)));
            }
        }
    });
    Body::from_stream(futures_util::stream::once(async move { Ok(role) }).chain(rest))
}

async fn embeddings(
    State(s): Shared,
    _: KeyHolder,
    GatewayJson {
        value,
        reservation: _held,
    }: GatewayJson,
) -> Result<axum::Json<Value>, GatewayError> {
    let call = translate::embed_call(value)?;
    let entries = s.bus.entries();
    let params = translate::find_offer(&entries, EMBED_TEXT, &call.model)?;
    if let Some(dim) = params.get("dim").and_then(Value::as_u64) {
        translate::dimensions_fit(call.dimensions, &call.model, dim)?;
    }
    let mut vectors = Vec::with_capacity(call.texts.len());
    let mut tokens = 0;
    // One call per batch the contract takes, one after the other: the
    // bus may route each to another provider, and a dropped request
    // (the client left) cancels the one running.
    for batch in call.texts.chunks(EMBED_BATCH) {
        let body = translate::embed_body(&call.model, batch);
        let (_, stream) = call_bus(&s, EMBED_TEXT, body, false, None)?;
        let (got, counted) = translate::embed_answer(&stream.outcome().await?, batch.len())?;
        vectors.extend(got);
        tokens += counted;
    }
    if let Some(first) = vectors.first() {
        translate::dimensions_fit(call.dimensions, &call.model, first.len() as u64)?;
    }
    Ok(axum::Json(translate::embedding_list(
        &call.model,
        &vectors,
        call.encoding,
        tokens,
    )))
}
