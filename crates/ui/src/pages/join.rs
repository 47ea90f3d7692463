//! Join: how a new device joins, and a check of a pasted invite. A device
//! that is not yet a member runs no node (`hearthnet run` refuses until
//! it has joined), so it has no UI of its own: it joins from its terminal
//! (`hearthnet init --join INVITE`). This page, on any member's node,
//! explains the steps and reads an invite back (its community, inviter,
//! invitee, level and expiry, its signature checked) without using it up.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::response::Html;
use axum::routing::{get, post};
use hearthnet_base::{NodeId, Timestamp};
use hearthnet_onboarding::{IdentityCard, Invite, OnboardingError};
use hearthnet_wire::local::Status;

use super::{Chrome, Form, Page, PageError, status};
use crate::UiState;
use crate::access::Session;
use crate::calls::CallFailure;
use crate::text::{TEXT, Text};

/// Invites are under 900 characters; anything far longer is not one.
const MAX_INVITE_CHARS: usize = 4096;

pub(super) fn routes() -> Router<Arc<UiState>> {
    Router::new()
        .route(Page::Join.href(), get(join))
        .route("/join/check", post(check))
}

#[derive(Template)]
#[template(path = "join.html")]
struct JoinPage {
    t: &'static Text,
    chrome: Chrome,
}

async fn join(
    State(ui): State<Arc<UiState>>,
    Extension(session): Extension<Session>,
) -> Result<Html<String>, PageError> {
    let s = status(&ui).await?;
    let page = JoinPage {
        t: &TEXT,
        chrome: Chrome::of(Page::Join, &session, &s),
    };
    Ok(Html(page.render()?))
}

#[derive(Template)]
#[template(path = "join_invite.html")]
struct InviteFacts {
    t: &'static Text,
    expired: bool,
    /// Its device is a member of this node's community already.
    joined: bool,
    community: String,
    community_id: String,
    inviter: String,
    invitee: String,
    level: &'static str,
    expires_at: String,
    endpoints: Vec<String>,
    text: String,
}

/// A node as this node knows it: `name (short id)`, or the short id.
fn known_as(s: Option<&Status>, node: &NodeId) -> String {
    match s.and_then(|s| super::settings::name_of(s, node)) {
        Some(name) => format!("{name} ({})", node.short()),
        None => node.short(),
    }
}

/// The pasted invite, decoded and its signature checked.
fn read_invite(form: &Form) -> Result<(Invite, String), CallFailure> {
    let t = &TEXT.settings;
    let text = form.field("invite");
    if text.len() > MAX_INVITE_CHARS {
        return Err(CallFailure::refused(t.refused_too_long));
    }
    if IdentityCard::decode(text).is_some() {
        return Err(CallFailure::refused(t.refused_card_not_invite));
    }
    match Invite::decode(text) {
        Ok(invite) => Ok((invite, text.to_owned())),
        Err(OnboardingError::InviteInvalid(_)) => {
            Err(CallFailure::refused(t.refused_not_an_invite))
        }
        Err(e) => Err(CallFailure {
            advice: t.refused_invite_damaged,
            detail: e.to_string(),
        }),
    }
}

async fn check(State(ui): State<Arc<UiState>>, body: Bytes) -> Result<Html<String>, CallFailure> {
    let (invite, text) = read_invite(&Form::parse(&body))?;
    let s = status(&ui).await.ok();
    let facts = InviteFacts {
        t: &TEXT,
        expired: Timestamp::now() > invite.expires_at,
        joined: s
            .as_ref()
            .is_some_and(|s| s.community.id == invite.community_id)
            && ui
                .view
                .members()
                .iter()
                .any(|m| m.node_id == invite.invitee_node_id),
        community: invite.community_name.clone(),
        community_id: invite.community_id.short(),
        inviter: known_as(s.as_ref(), &invite.inviter_node_id),
        invitee: known_as(s.as_ref(), &invite.invitee_node_id),
        level: super::settings::level_words(invite.initial_level),
        expires_at: invite.expires_at.to_string(),
        endpoints: invite
            .bootstrap_endpoints
            .iter()
            .map(|e| format!("{}:{}", e.host, e.port))
            .collect(),
        text,
    };
    Ok(Html(facts.render()?))
}
