//! Home: this node, its community, the neighbours and what each offers
//! (the live topology), and the recent calls.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Extension, State};
use axum::response::Html;
use axum::routing::get;
use hearthnet_wire::local::Status;

use super::{Chrome, Page, PageError, status};
use crate::UiState;
use crate::access::Session;
use crate::text::{TEXT, Text};

/// Calls shown under "Recent activity".
const ACTIVITY_ROWS: usize = 12;

pub(super) fn routes() -> Router<Arc<UiState>> {
    Router::new().route(Page::Home.href(), get(home))
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

struct NodeFacts {
    name: String,
    node_id: String,
    profile: String,
    community: String,
    community_id: String,
    members: usize,
    uptime: String,
    capabilities: Vec<String>,
}

/// What changes while Home is open: the neighbours and the calls, sent
/// again by the live stream.
pub struct Neighbourhood {
    peers: Vec<PeerView>,
    activity: Vec<ActivityView>,
}

impl Neighbourhood {
    pub fn of(ui: &UiState, s: &Status) -> Self {
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
        Self {
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
        }
    }
}

#[derive(Template)]
#[template(path = "home_live.html")]
pub struct NeighbourhoodFragment {
    pub t: &'static Text,
    pub n: Neighbourhood,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    t: &'static Text,
    chrome: Chrome,
    node: NodeFacts,
    n: Neighbourhood,
}

async fn home(
    State(ui): State<Arc<UiState>>,
    Extension(session): Extension<Session>,
) -> Result<Html<String>, PageError> {
    let s = status(&ui).await?;
    let node = NodeFacts {
        name: s.node.display_name.clone(),
        node_id: s.node.id.full(),
        profile: s.node.profile.as_str().to_owned(),
        community: s.community.name.clone(),
        community_id: s.community.short_id.clone(),
        members: s.community.members,
        uptime: TEXT.duration(s.uptime_seconds),
        capabilities: s.capabilities.names.clone(),
    };
    let page = HomePage {
        t: &TEXT,
        chrome: Chrome::of(Page::Home, &session, &s),
        node,
        n: Neighbourhood::of(&ui, &s),
    };
    Ok(Html(page.render()?))
}
