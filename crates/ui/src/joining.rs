//! The join page of a device that has a key but no community yet, which
//! `hearthnet run` serves in place of the full UI (joining mode): this
//! device's identity card as text and QR code, for a member to invite it
//! with, and the invite it gets back, pasted or scanned (a picture of its
//! QR code, from a phone's camera or a file, read on the node), shown
//! with its facts and a button that redeems it ([`Redeemer`], the node's
//! join path, the one `hearthnet init --join` takes).
//!
//! Behind the same gate as the full UI (one-time login link, session,
//! `Host`, `Origin` and CSRF checks); every other path answers with the
//! join page (GET) or a refusal. Once the device has joined, the node
//! starts in full on the same listener with these sessions
//! ([`Joining::access`]), so the browser goes on to Home logged in.

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::future::BoxFuture;
use hearthnet_base::ErrorCode;
use hearthnet_bus::CallError;
use hearthnet_onboarding::IdentityCard;
use hearthnet_onboarding::qr::MAX_PICTURE_BYTES;
use hearthnet_transport::http::BodyBudget;
use hearthnet_wire::local::UiLink;

use crate::access::{self, Access, Guarded, Session};
use crate::calls::CallFailure;
use crate::pages::{self, Chrome, Done, Form, InviteFacts, PageError, plain_page, read_invite};
use crate::text::{TEXT, Text};

/// Where the picture of an invite's QR code is sent (its bytes as the
/// body, read by the handler within [`MAX_PICTURE_BYTES`]).
pub const SCAN_PATH: &str = "/join/scan";

/// Redeems an invite's text for this device: the node's join path. The
/// answer is the community's name; a failure carries the contract code
/// the person's words are chosen by.
pub type Redeemer =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<String, CallError>> + Send + Sync>;

/// What the node hands the join page.
pub struct JoiningParts {
    /// This device's card: its full ID and display name.
    pub card: IdentityCard,
    /// Where the listener is bound.
    pub addr: SocketAddr,
    pub redeem: Redeemer,
}

/// The join page of one device; cheap to clone.
#[derive(Clone)]
pub struct Joining {
    state: Arc<JoiningState>,
}

pub(crate) struct JoiningState {
    access: Arc<Access>,
    budget: Arc<BodyBudget>,
    pairing_budget: Arc<BodyBudget>,
    /// One picture at a time, held from its first byte to its decoding.
    pictures: Arc<BodyBudget>,
    card: IdentityCard,
    origin: String,
    redeem: Redeemer,
    /// Held while an invite is redeemed, so a double click redeems once;
    /// the community's name once the device has joined.
    joined: tokio::sync::Mutex<Option<String>>,
}

impl Joining {
    pub fn new(parts: JoiningParts) -> Self {
        Self {
            state: Arc::new(JoiningState {
                access: Arc::default(),
                budget: BodyBudget::new(crate::BODY_BUDGET_BYTES, 0),
                // No LAN door here: nothing to pair.
                pairing_budget: BodyBudget::new(0, 0),
                pictures: crate::picture::budget(),
                card: parts.card,
                origin: crate::origin(parts.addr),
                redeem: parts.redeem,
                joined: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The router, gate included; serve it with
    /// `hearthnet_transport::Serving::local()`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(page))
            .route("/join/check", post(check))
            .route(SCAN_PATH, post(scan))
            .route("/join/redeem", post(redeem))
            .route(pages::LOGIN_PATH, get(pages::login::<JoiningState>))
            .route(pages::LOGOUT_PATH, post(pages::logout::<JoiningState>))
            .merge(crate::assets::routes())
            .fallback(elsewhere)
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                access::gate::<JoiningState>,
            ))
            .with_state(self.state.clone())
    }

    /// A fresh one-time login link.
    pub fn login_link(&self) -> UiLink {
        crate::login_link(&self.state.access, &self.state.origin)
    }

    /// The logins and sessions, for the full UI to take over
    /// ([`crate::Parts::access`]).
    pub fn access(&self) -> Arc<Access> {
        self.state.access.clone()
    }
}

impl Guarded for JoiningState {
    fn access(&self) -> &Access {
        &self.access
    }

    fn budget(&self) -> &Arc<BodyBudget> {
        &self.budget
    }

    fn pairing_budget(&self) -> &Arc<BodyBudget> {
        &self.pairing_budget
    }

    fn upload_limit(&self, path: &str) -> Option<u64> {
        (path == SCAN_PATH).then_some(MAX_PICTURE_BYTES as u64)
    }
}

#[derive(Template)]
#[template(path = "join_device.html")]
struct DevicePage {
    t: &'static Text,
    chrome: Chrome,
    card: String,
    /// The card's QR code as a PNG data URL.
    qr: Option<String>,
    max_picture: usize,
}

async fn page(
    State(j): State<Arc<JoiningState>>,
    Extension(session): Extension<Session>,
) -> Result<Response, PageError> {
    if let Some(community) = j.joined.lock().await.clone() {
        return Ok(starting(&community));
    }
    let card = j.card.encode();
    let page = DevicePage {
        t: &TEXT,
        chrome: Chrome::joining(TEXT.join.title, &session),
        qr: pages::qr_data_url(&card),
        card,
        max_picture: MAX_PICTURE_BYTES,
    };
    Ok(Html(page.render()?).into_response())
}

/// Joined, the node starting in full on this address: reload soon.
fn starting(community: &str) -> Response {
    plain_page(
        StatusCode::OK,
        TEXT.join.title,
        &format!("{} {community}. {}", TEXT.join.joined, TEXT.join.starting),
    )
}

/// Anything else: the join page for a page, a refusal for the rest.
async fn elsewhere(
    state: State<Arc<JoiningState>>,
    session: Extension<Session>,
    method: Method,
) -> Response {
    if method == Method::GET || method == Method::HEAD {
        return page(state, session).await.into_response();
    }
    plain_page(StatusCode::NOT_FOUND, TEXT.join.title, TEXT.join.not_here)
}

/// The facts of the invite in `text`, as this device may use it.
fn facts_of(j: &JoiningState, text: &str) -> Result<Html<String>, CallFailure> {
    let invite = read_invite(text)?;
    let facts = InviteFacts::on_device(&invite, text.trim().to_owned(), &j.card.node_id_full);
    Ok(Html(facts.render()?))
}

async fn check(
    State(j): State<Arc<JoiningState>>,
    body: Bytes,
) -> Result<Html<String>, CallFailure> {
    facts_of(&j, Form::parse(&body).field("invite"))
}

/// What reading a picture came to, in the person's words.
/// A picture of the invite's QR code: read within its bound, one at a
/// time, decoded off the runtime's threads.
async fn scan(State(j): State<Arc<JoiningState>>, body: Body) -> Result<Html<String>, CallFailure> {
    let text = crate::picture::read_code(&j.pictures, body).await?;
    facts_of(&j, &text)
}

/// The words for a redemption that failed, by its contract code.
fn redeem_failure(e: CallError) -> CallFailure {
    let w = &TEXT.join;
    let advice = match e.code {
        ErrorCode::Partition | ErrorCode::Timeout => w.inviter_unreachable,
        ErrorCode::Expired => TEXT.settings.join_expired,
        ErrorCode::Unauthorized | ErrorCode::Revoked => w.inviter_refused,
        ErrorCode::NotFound => w.inviter_unaware,
        ErrorCode::InvalidSignature => w.answer_unverified,
        other => TEXT.error_for(other),
    };
    CallFailure {
        advice,
        detail: e.message,
    }
}

/// Redeem the invite; joined, on to Home (`HX-Redirect`), which the node
/// serves on this address as soon as it has started in full.
async fn redeem(State(j): State<Arc<JoiningState>>, body: Bytes) -> Response {
    let text = Form::parse(&body).field("invite").to_owned();
    if let Err(refused) = read_invite(&text) {
        return refused.into_response();
    }
    let mut joined = j.joined.lock().await;
    let community = match joined.clone() {
        Some(community) => community,
        None => match (j.redeem)(text).await {
            Ok(community) => joined.insert(community).clone(),
            Err(e) => return redeem_failure(e).into_response(),
        },
    };
    let mut resp = Done {
        message: format!("{} {community}. {}", TEXT.join.joined, TEXT.join.starting),
    }
    .into_response();
    resp.headers_mut()
        .insert("hx-redirect", HeaderValue::from_static("/"));
    resp
}

#[cfg(test)]
mod tests;
