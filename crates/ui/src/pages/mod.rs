//! The pages: one module each. A handler gathers what it shows from the
//! node (its status document, the bus's capabilities through
//! [`crate::calls`]), shapes it into a view of plain strings, and renders
//! a template that extends `base.html` with the page's [`Chrome`] (menu,
//! banner, CSRF token, which live stream it follows). Only pages that
//! exist are in the menu ([`Page::ALL`]).

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use hearthnet_base::NodeId;
use hearthnet_transport::http::{ApiError, Query};
use hearthnet_wire::local::Status;
use serde::Deserialize;

use crate::UiState;
use crate::access::{self, Door, Guarded, Session};
use crate::calls::CallFailure;
use crate::text::{TEXT, Text};

mod ask;
mod emergency;
mod files;
mod home;
mod join;
mod market;
mod messages;
mod pair;
mod running;
mod settings;

pub use emergency::{EmergencyFragment, EmergencyView};
pub use home::{Neighbourhood, NeighbourhoodFragment};
pub(crate) use join::{InviteFacts, read_invite};
pub use market::market_fragment;
pub use messages::conversations_fragment;
#[cfg(test)]
pub use running::PER_SESSION;
pub use running::Running;
pub(crate) use settings::{CARD_SCAN_PATH, qr_data_url};
pub use settings::{Members, MembersFragment};

pub const LOGIN_PATH: &str = "/login";
pub const LOGOUT_PATH: &str = "/logout";
pub use pair::PAIR_PATH;

pub(crate) fn routes() -> Router<Arc<UiState>> {
    Router::new()
        .merge(home::routes())
        .merge(emergency::routes())
        .merge(settings::routes())
        .merge(join::routes())
        .merge(ask::routes())
        .merge(files::routes())
        .merge(running::routes())
        .merge(market::routes())
        .merge(messages::routes())
        .route(LOGIN_PATH, get(login::<UiState>))
        .merge(pair::routes())
        .route(LOGOUT_PATH, post(logout::<UiState>))
        .fallback(not_found)
}

/// Why a page could not be shown: the person gets [`Text::failed`], the
/// log gets the cause.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("the node's status: {0}")]
    Status(String),
    #[error("rendering: {0}")]
    Render(#[from] askama::Error),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        tracing::warn!(error = %self, "a UI page failed");
        plain_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT.failed_title,
            TEXT.failed,
        )
    }
}

#[derive(Template)]
#[template(path = "plain.html")]
struct Plain<'a> {
    t: &'static Text,
    title: &'a str,
    message: &'a str,
}

/// A page with a title and one message, needing no session or asset (the
/// refusals, the login's outcome).
pub fn plain_page(status: StatusCode, title: &str, message: &str) -> Response {
    let page = Plain {
        t: &TEXT,
        title,
        message,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_owned()).into_response(),
    }
}

pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The pages; those in the menu are [`Page::ALL`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Page {
    Home,
    Ask,
    Files,
    Messages,
    Market,
    Emergency,
    Settings,
    /// Not in the menu: Settings links it, for a device about to join.
    Join,
}

impl Page {
    /// The menu, in its order.
    pub const ALL: [Page; 7] = [
        Page::Home,
        Page::Ask,
        Page::Messages,
        Page::Market,
        Page::Files,
        Page::Emergency,
        Page::Settings,
    ];

    pub fn href(self) -> &'static str {
        match self {
            Page::Home => "/",
            Page::Ask => "/ask",
            Page::Files => "/files",
            Page::Messages => "/messages",
            Page::Market => "/market",
            Page::Emergency => "/emergency",
            Page::Settings => "/settings",
            Page::Join => "/join",
        }
    }

    /// Its menu label, which is also its title.
    pub fn label(self) -> &'static str {
        match self {
            Page::Home => TEXT.nav_home,
            Page::Ask => TEXT.nav_ask,
            Page::Files => TEXT.nav_files,
            Page::Messages => TEXT.nav_messages,
            Page::Market => TEXT.nav_market,
            Page::Emergency => TEXT.nav_emergency,
            Page::Settings => TEXT.nav_settings,
            Page::Join => TEXT.settings.join_title,
        }
    }

    /// The page's name in `GET /events?page=`: which fragments its live
    /// stream carries besides the banner (`live::page_fragments`).
    pub fn live_name(self) -> &'static str {
        match self {
            Page::Home => "home",
            Page::Ask => "ask",
            Page::Files => "files",
            Page::Messages => "messages",
            Page::Market => "market",
            Page::Emergency => "emergency",
            Page::Settings => "settings",
            Page::Join => "join",
        }
    }

    pub fn by_live_name(name: &str) -> Option<Page> {
        Page::ALL.into_iter().find(|p| p.live_name() == name)
    }
}

/// What every page shows around its content: the title, the menu with
/// the page marked, the banner, the session's CSRF token for htmx and
/// the forms, and the live stream it follows.
pub struct Chrome {
    pub title: &'static str,
    pub nav: Vec<NavItem>,
    pub csrf: String,
    /// `None` on the join page of a device not yet a member.
    pub banner: Option<Banner>,
    /// Empty: no live stream.
    pub live: &'static str,
}

impl Chrome {
    pub fn of(page: Page, session: &Session, status: &Status) -> Self {
        Self {
            title: page.label(),
            nav: Page::ALL
                .into_iter()
                .map(|p| NavItem {
                    href: p.href(),
                    label: p.label(),
                    current: p == page,
                })
                .collect(),
            csrf: session.csrf.clone(),
            banner: Some(Banner::of(status)),
            live: page.live_name(),
        }
    }

    /// The join page of a device that is not a member yet: it has no
    /// other page, no internet watch and nothing live.
    pub fn joining(title: &'static str, session: &Session) -> Self {
        Self {
            title,
            nav: Vec::new(),
            csrf: session.csrf.clone(),
            banner: None,
            live: "",
        }
    }
}

/// The online / degraded / offline line at the top of every page.
pub struct Banner {
    /// `online`, `degraded`, `offline` or `unwatched`: a CSS class and the
    /// `data-mode` tests read.
    pub class: &'static str,
    pub text: &'static str,
    pub since: String,
}

impl Banner {
    pub fn of(status: &Status) -> Self {
        let Some(e) = &status.emergency else {
            return Self {
                class: "unwatched",
                text: TEXT.banner_unwatched,
                since: String::new(),
            };
        };
        let (class, text) = match e.mode.as_str() {
            "offline" => ("offline", TEXT.banner_offline),
            "degraded" => ("degraded", TEXT.banner_degraded),
            _ => ("online", TEXT.banner_online),
        };
        Self {
            class,
            text,
            since: TEXT.duration(e.held_seconds),
        }
    }
}

#[derive(Template)]
#[template(path = "banner.html")]
pub struct BannerFragment {
    pub t: &'static Text,
    pub banner: Banner,
}

/// The routes whose body is a file's bytes, read by their handler as it
/// arrives (up to [`MAX_UPLOAD_BYTES`]) instead of by the gate; the gate
/// still checks the session, the `Origin` and the CSRF header first.
pub const UPLOAD_PATHS: [&str; 3] = [files::UPLOAD_PATH, ask::INGEST_PATH, messages::ATTACH_PATH];
pub use files::MAX_UPLOAD_BYTES;

#[derive(Template)]
#[template(
    source = r#"<div class="alert" role="alert"><p>{{ message }}</p></div>"#,
    ext = "html"
)]
struct Alert<'a> {
    message: &'a str,
}

/// A service's answer decoded, or a failure naming what did not fit.
pub fn decoded<T: serde::de::DeserializeOwned>(
    what: &'static str,
    value: serde_json::Value,
) -> Result<T, CallFailure> {
    hearthnet_wire::from_value(what, value).map_err(|e| {
        CallFailure::from(hearthnet_bus::CallError::new(
            hearthnet_base::ErrorCode::InternalError,
            e.to_string(),
        ))
    })
}

/// The `.done` feedback of a form that worked.
pub fn done(message: &str) -> String {
    Done {
        message: message.to_owned(),
    }
    .render()
    .unwrap_or_default()
}

/// The alert of a form refused before any call, in plain words.
pub fn alert(message: &str) -> String {
    Alert { message }.render().unwrap_or_default()
}

/// The node's status document, read off the runtime's threads (it reads
/// the disk).
pub(crate) async fn status(ui: &UiState) -> Result<Status, PageError> {
    let view = ui.view.clone();
    let value = tokio::task::spawn_blocking(move || view.status())
        .await
        .map_err(|e| PageError::Status(e.to_string()))?;
    hearthnet_wire::from_value("the node's status", value)
        .map_err(|e| PageError::Status(e.to_string()))
}

/// A form's success, as the person reads it where its feedback goes.
#[derive(Template)]
#[template(path = "done.html")]
pub(crate) struct Done {
    pub message: String,
}

/// A submitted form's fields (`application/x-www-form-urlencoded`, read
/// by the gate within [`crate::MAX_BODY_BYTES`]).
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The field `name`, trimmed; empty when it was not sent.
    pub fn field(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.trim())
    }

    /// Every field `name` sent, trimmed, in order (a repeated field).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.trim())
    }
}

impl IntoResponse for Done {
    fn into_response(self) -> Response {
        match self.render() {
            Ok(html) => Html(html).into_response(),
            Err(_) => Html(self.message).into_response(),
        }
    }
}

/// A fresh id for one rendering of a form that makes something: a double
/// submit sends it twice and the service makes the thing once.
pub(crate) fn client_id() -> String {
    let mut bytes = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    format!("ui-{}", data_encoding::BASE32HEX_NOPAD.encode(&bytes))
}

/// What the owner calls other nodes: "you", the name a neighbour in
/// reach gives itself, else its short id.
pub(crate) struct Names {
    me: NodeId,
    you: &'static str,
    neighbours: HashMap<NodeId, String>,
}

impl Names {
    pub fn of(status: &Status, you: &'static str) -> Self {
        Self {
            me: status.node.id,
            you,
            neighbours: status
                .peers
                .iter()
                .map(|p| (p.node_id, p.display_name.clone()))
                .collect(),
        }
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn of_node(&self, node: &NodeId) -> String {
        if *node == self.me {
            return self.you.to_owned();
        }
        match self.neighbours.get(node) {
            Some(name) => format!("{name} ({})", node.short()),
            None => node.short(),
        }
    }

    /// The neighbours in reach, by name: whom a message may be written to.
    pub fn neighbours(&self) -> Vec<(NodeId, String)> {
        let mut all: Vec<(NodeId, String)> = self
            .neighbours
            .keys()
            .map(|id| (*id, self.of_node(id)))
            .collect();
        all.sort_by(|a, b| a.1.cmp(&b.1));
        all
    }
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    token: String,
}

/// Spend a one-time link: a session cookie and on to Home (the token
/// leaves the address bar), or a page that says how to get a new link.
pub(crate) async fn login<S: Guarded>(
    State(ui): State<Arc<S>>,
    Extension(door): Extension<Door>,
    query: Result<Query<LoginQuery>, ApiError>,
) -> Response {
    let cookie = query.ok().and_then(|Query(q)| ui.access().redeem(&q.token));
    cookie
        .and_then(|c| to_home_with(&c, &door))
        .unwrap_or_else(|| {
            plain_page(
                StatusCode::UNAUTHORIZED,
                TEXT.login_failed_title,
                TEXT.login_failed,
            )
        })
}

/// On to Home with a new session's cookie set.
fn to_home_with(cookie: &str, door: &Door) -> Option<Response> {
    let cookie = HeaderValue::from_str(&access::session_cookie(cookie, door)).ok()?;
    let mut resp = Redirect::to("/").into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    Some(resp)
}

pub(crate) async fn logout<S: Guarded>(
    State(ui): State<Arc<S>>,
    Extension(session): Extension<Session>,
) -> Response {
    ui.access().end(&session);
    let mut resp = plain_page(StatusCode::OK, TEXT.logged_out_title, TEXT.logged_out);
    if let Ok(v) = HeaderValue::from_str(&access::cleared_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn not_found() -> Response {
    plain_page(StatusCode::NOT_FOUND, TEXT.not_found_title, TEXT.not_found)
}
