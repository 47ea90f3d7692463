//! Emergency: what the internet checks say, what still works without
//! the internet and what is paused until it is back.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Extension, State};
use axum::response::Html;
use axum::routing::get;
use hearthnet_wire::local::Status;

use super::{Banner, Chrome, Page, PageError, status};
use crate::UiState;
use crate::access::Session;
use crate::text::{TEXT, Text};

pub(super) fn routes() -> Router<Arc<UiState>> {
    Router::new().route(Page::Emergency.href(), get(emergency))
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
struct EmergencyPage {
    t: &'static Text,
    chrome: Chrome,
    e: EmergencyView,
}

async fn emergency(
    State(ui): State<Arc<UiState>>,
    Extension(session): Extension<Session>,
) -> Result<Html<String>, PageError> {
    let s = status(&ui).await?;
    let page = EmergencyPage {
        t: &TEXT,
        chrome: Chrome::of(Page::Emergency, &session, &s),
        e: EmergencyView::of(&s, ui.bus.withdrawn_names()),
    };
    Ok(Html(page.render()?))
}
