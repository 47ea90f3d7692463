//! Settings: this node's profile, inviting a device (with the invite's
//! QR code), the members and their levels, the co-signing flow that
//! removes or demotes one, the AI models and services here and nearby,
//! and the gateway key. Each form posts to its own route
//! ([`invite`], [`proposal`], [`gateway`]) and gets back a fragment: the
//! outcome, or a [`crate::calls::CallFailure`] in plain words.

mod gateway;
mod invite;
mod pairing;
pub(crate) use invite::{CARD_SCAN_PATH, qr_data_url};
mod proposal;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Extension, State};
use axum::response::Html;
use axum::routing::{get, post};
use hearthnet_base::{NodeId, TrustLevel};
use hearthnet_wire::local::{MemberStatus, Status};

use super::{Chrome, Page, PageError, status};
use crate::UiState;
use crate::access::Session;
use crate::text::{TEXT, Text};

pub(super) fn routes() -> Router<Arc<UiState>> {
    Router::new()
        .route(Page::Settings.href(), get(settings))
        .route("/settings/invite", post(invite::create))
        .route(invite::CARD_SCAN_PATH, post(invite::scan_card))
        .route("/settings/proposal/create", post(proposal::create))
        .route("/settings/proposal/cosign", post(proposal::cosign))
        .route("/settings/proposal/submit", post(proposal::submit))
        .route("/settings/gateway-key", post(gateway::make))
        .route("/settings/pair", post(pairing::make))
}

/// What a person calls a node: its display name where this node knows it
/// (itself, a neighbour), else nothing.
pub(super) fn name_of(s: &Status, node: &NodeId) -> Option<String> {
    if *node == s.node.id {
        return Some(s.node.display_name.clone());
    }
    s.peers
        .iter()
        .find(|p| p.node_id == *node)
        .map(|p| p.display_name.clone())
}

/// A level in the page's words.
pub(super) fn level_words(level: TrustLevel) -> &'static str {
    match level {
        TrustLevel::Member => TEXT.settings.level_member,
        TrustLevel::Trusted => TEXT.settings.level_trusted,
        TrustLevel::Anchor => TEXT.settings.level_anchor,
        TrustLevel::Unknown => TrustLevel::Unknown.as_str(),
    }
}

struct MemberRow {
    name: String,
    this_node: bool,
    node_id: String,
    short_id: String,
    level: &'static str,
    since: String,
}

/// The members, highest level first: shown live, and the choices of the
/// co-signing form.
pub struct Members {
    rows: Vec<MemberRow>,
}

impl Members {
    pub fn of(ui: &UiState, s: &Status) -> Self {
        let mut members: Vec<MemberStatus> = ui.view.members();
        members.sort_by(|a, b| b.level.cmp(&a.level).then(a.node_id.cmp(&b.node_id)));
        let rows = members
            .into_iter()
            .map(|m| MemberRow {
                name: name_of(s, &m.node_id).unwrap_or_default(),
                this_node: m.node_id == s.node.id,
                node_id: m.node_id.full(),
                short_id: m.node_id.short(),
                level: level_words(m.level),
                since: m.added_at.to_string().chars().take(10).collect(),
            })
            .collect();
        Self { rows }
    }

    /// Those another member could propose to remove or demote.
    fn others(&self) -> impl Iterator<Item = &MemberRow> {
        self.rows.iter().filter(|r| !r.this_node)
    }
}

#[derive(Template)]
#[template(path = "settings_members.html")]
pub struct MembersFragment {
    pub t: &'static Text,
    pub m: Members,
}

struct ModelRow {
    model: String,
    serves: String,
    place: String,
}

/// Which node offers which AI capabilities (`llm.*`, `embed.*`, `rag.*`).
struct AiServices {
    node: String,
    names: Vec<String>,
}

fn is_ai(capability: &str) -> bool {
    ["llm.", "embed.", "rag."]
        .iter()
        .any(|p| capability.starts_with(p))
}

fn ai_services(s: &Status) -> Vec<AiServices> {
    let here = AiServices {
        node: TEXT.settings.ai_here.to_owned(),
        names: s
            .capabilities
            .names
            .iter()
            .filter(|c| is_ai(c))
            .cloned()
            .collect(),
    };
    let peers = s.peers.iter().map(|p| AiServices {
        node: format!("{} ({})", p.display_name, p.short_id),
        names: p
            .capabilities
            .iter()
            .filter(|c| is_ai(c))
            .cloned()
            .collect(),
    });
    std::iter::once(here)
        .chain(peers)
        .filter(|a| !a.names.is_empty())
        .collect()
}

fn model_rows(s: &Status) -> Vec<ModelRow> {
    s.models
        .iter()
        .map(|m| {
            let mut places = Vec::new();
            if m.local {
                places.push(TEXT.settings.model_here.to_owned());
            }
            if m.neighbours > 0 {
                places.push(format!(
                    "{} {}",
                    m.neighbours, TEXT.settings.model_neighbours
                ));
            }
            ModelRow {
                model: m.model.clone(),
                serves: m.capabilities.join(", "),
                place: places.join(", "),
            }
        })
        .collect()
}

struct Profile {
    name: String,
    node_id: String,
    profile: String,
    community: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    t: &'static Text,
    chrome: Chrome,
    profile: Profile,
    members: MembersFragment,
    models: Vec<ModelRow>,
    ai: Vec<AiServices>,
    gateway: gateway::GatewayFragment,
    pairing: pairing::PairingFragment,
    max_picture: usize,
}

async fn settings(
    State(ui): State<Arc<UiState>>,
    Extension(session): Extension<Session>,
) -> Result<Html<String>, PageError> {
    let s = status(&ui).await?;
    let page = SettingsPage {
        t: &TEXT,
        chrome: Chrome::of(Page::Settings, &session, &s),
        profile: Profile {
            name: s.node.display_name.clone(),
            node_id: s.node.id.full(),
            profile: s.node.profile.as_str().to_owned(),
            community: s.community.name.clone(),
        },
        members: MembersFragment {
            t: &TEXT,
            m: Members::of(&ui, &s),
        },
        models: model_rows(&s),
        ai: ai_services(&s),
        gateway: gateway::GatewayFragment::now(&ui, &s).await,
        pairing: pairing::PairingFragment::now(&ui),
        max_picture: hearthnet_onboarding::qr::MAX_PICTURE_BYTES,
    };
    Ok(Html(page.render()?))
}

#[cfg(test)]
mod tests;
