//! The pages: each handler gathers what it shows from the node (its
//! status document, the bus), shapes it into a view of plain strings, and
//! renders a template that extends `base.html`. Only pages that exist are
//! in the menu.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use hearthnet_transport::http::{ApiError, Query};
use hearthnet_wire::local::Status;
use serde::Deserialize;

use crate::UiState;
use crate::access::{self, Session};
use crate::text::{TEXT, Text};

pub const LOGIN_PATH: &str = "/login";
/// Calls shown under "Recent activity".
const ACTIVITY_ROWS: usize = 12;

pub(crate) fn routes() -> Router<Arc<UiState>> {
    Router::new()
        .route("/", get(home))
        .route("/emergency", get(emergency))
        .route(LOGIN_PATH, get(login))
        .route("/logout", post(logout))
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    Home,
    Emergency,
}

fn nav(current: Page) -> Vec<NavItem> {
    [
        ("/", TEXT.nav_home, Page::Home),
        ("/emergency", TEXT.nav_emergency, Page::Emergency),
    ]
    .into_iter()
    .map(|(href, label, page)| NavItem {
        href,
        label,
        current: page == current,
    })
    .collect()
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

struct PeerView {
    name: String,
    short_id: String,
    capabilities: Vec<String>,
}

struct ActivityView {
    capability: String,
    result: String,
    place: &'static str,
    ms: String,
}

struct HomeView {
    name: String,
    node_id: String,
    profile: String,
    community: String,
    community_id: String,
    members: usize,
    uptime: String,
    capabilities: Vec<String>,
    peers: Vec<PeerView>,
    activity: Vec<ActivityView>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    t: &'static Text,
    title: &'static str,
    nav: Vec<NavItem>,
    csrf: &'a str,
    banner: Banner,
    home: HomeView,
}

async fn home(
    State(ui): State<Arc<UiState>>,
    Extension(session): Extension<Session>,
) -> Result<Html<String>, PageError> {
    let s = status(&ui).await?;
    let activity = ui
        .bus
        .recent_traces(ACTIVITY_ROWS, None)
        .into_iter()
        .rev()
        .map(|t| ActivityView {
            capability: t.capability,
            result: t.result,
            place: if t.is_local {
                TEXT.activity_here
            } else {
                TEXT.activity_neighbour
            },
            ms: format!("{:.0}", t.ms),
        })
        .collect();
    let home = HomeView {
        name: s.node.display_name.clone(),
        node_id: s.node.id.full(),
        profile: s.node.profile.as_str().to_owned(),
        community: s.community.name.clone(),
        community_id: s.community.short_id.clone(),
        members: s.community.members,
        uptime: TEXT.duration(s.uptime_seconds),
        capabilities: s.capabilities.names.clone(),
        peers: s
            .peers
            .iter()
            .map(|p| PeerView {
                name: p.display_name.clone(),
                short_id: p.short_id.clone(),
                capabilities: p.capabilities.clone(),
            })
            .collect(),
        activity,
    };
    let page = HomePage {
        t: &TEXT,
        title: TEXT.home_title,
        nav: nav(Page::Home),
        csrf: &session.csrf,
        banner: Banner::of(&s),
        home,
    };
    Ok(Html(page.render()?))
}

pub struct ProbeView {
    pub target: String,
    pub reachable: bool,
}

/// What emergency mode means now: the detector's view and what the bus
/// still offers or took away.
pub struct EmergencyView {
    pub watched: bool,
    pub class: &'static str,
    pub held: String,
    pub probes: Vec<ProbeView>,
    pub still_works: Vec<String>,
    pub withdrawn: Vec<String>,
}

impl EmergencyView {
    pub fn of(status: &Status, withdrawn: Vec<String>) -> Self {
        let banner = Banner::of(status);
        let e = status.emergency.as_ref();
        Self {
            watched: e.is_some(),
            class: banner.class,
            held: banner.since,
            probes: e
                .map(|e| {
                    e.probes
                        .iter()
                        .map(|p| ProbeView {
                            target: p.target.clone(),
                            reachable: p.reachable,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            still_works: status.capabilities.names.clone(),
            withdrawn,
        }
    }
}

#[derive(Template)]
#[template(path = "emergency_details.html")]
pub struct EmergencyFragment {
    pub t: &'static Text,
    pub e: EmergencyView,
}

#[derive(Template)]
#[template(path = "emergency.html")]
struct EmergencyPage<'a> {
    t: &'static Text,
    title: &'static str,
    nav: Vec<NavItem>,
    csrf: &'a str,
    banner: Banner,
    e: EmergencyView,
}

async fn emergency(
    State(ui): State<Arc<UiState>>,
    Extension(session): Extension<Session>,
) -> Result<Html<String>, PageError> {
    let s = status(&ui).await?;
    let page = EmergencyPage {
        t: &TEXT,
        title: TEXT.emergency_title,
        nav: nav(Page::Emergency),
        csrf: &session.csrf,
        banner: Banner::of(&s),
        e: EmergencyView::of(&s, ui.bus.withdrawn_names()),
    };
    Ok(Html(page.render()?))
}

#[derive(Deserialize)]
struct LoginQuery {
    token: String,
}

/// Spend a one-time link: a session cookie and on to Home (the token
/// leaves the address bar), or a page that says how to get a new link.
async fn login(
    State(ui): State<Arc<UiState>>,
    query: Result<Query<LoginQuery>, ApiError>,
) -> Response {
    let cookie = query.ok().and_then(|Query(q)| ui.access.redeem(&q.token));
    let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&access::session_cookie(&c)).ok())
    else {
        return plain_page(
            StatusCode::UNAUTHORIZED,
            TEXT.login_failed_title,
            TEXT.login_failed,
        );
    };
    let mut resp = Redirect::to("/").into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    resp
}

async fn logout(
    State(ui): State<Arc<UiState>>,
    Extension(session): Extension<Session>,
) -> Response {
    ui.access.end(&session);
    let mut resp = plain_page(StatusCode::OK, TEXT.logged_out_title, TEXT.logged_out);
    if let Ok(v) = HeaderValue::from_str(&access::cleared_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn not_found() -> Response {
    plain_page(StatusCode::NOT_FOUND, TEXT.not_found_title, TEXT.not_found)
}
