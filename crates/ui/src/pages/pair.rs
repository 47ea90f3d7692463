//! Pairing a device of the household on the LAN (a phone): the form where
//! the person types the code `hearthnet ui pair` printed. Open without a
//! session, on the LAN listener only (the gate's `Door::open`).

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::to_home_with;
use crate::UiState;
use crate::access::Door;
use crate::text::{TEXT, Text};

pub const PAIR_PATH: &str = "/pair";
/// The longest code field read: the code is 11 characters, spaces and all
/// a person may add.
const MAX_TYPED: usize = 64;

pub(super) fn routes() -> Router<Arc<UiState>> {
    Router::new().route(PAIR_PATH, get(form).post(pair))
}

#[derive(Template)]
#[template(path = "pair.html")]
struct PairPage {
    t: &'static Text,
    failed: bool,
}

fn page(status: StatusCode, failed: bool) -> Response {
    match (PairPage { t: &TEXT, failed }).render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, TEXT.pair_failed).into_response(),
    }
}

async fn form() -> Response {
    page(StatusCode::OK, false)
}

async fn pair(
    State(ui): State<Arc<UiState>>,
    Extension(door): Extension<Door>,
    form: Bytes,
) -> Response {
    // The gate read the body within the UI's bound.
    let cookie = form_urlencoded::parse(&form)
        .find(|(name, _)| name == "code")
        .filter(|(_, code)| code.len() <= MAX_TYPED)
        .and_then(|(_, code)| ui.access.pair(&code));
    cookie
        .and_then(|c| to_home_with(&c, &door))
        .unwrap_or_else(|| page(StatusCode::UNAUTHORIZED, true))
}
