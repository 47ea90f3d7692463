//! Join, on a member's node: how a new device joins, and a check of a
//! pasted invite (its community, inviter, invitee, level and expiry, its
//! signature checked) without using it up. The new device's own page
//! ([`crate::joining`]) reads invites and shows their facts with the same
//! code ([`read_invite`], [`InviteFacts`]), and offers to join.

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

/// An invite's facts as a person reads them: on a member's node with
/// whether its device joined already and the command that uses it; on
/// the new device with the button that does.
#[derive(Template)]
#[template(path = "join_invite.html")]
pub(crate) struct InviteFacts {
    t: &'static Text,
    expired: bool,
    /// Why this device cannot use it, in plain words; empty when it can
    /// (or, on a member's node, when that is not for here to say).
    problem: &'static str,
    /// Its device is a member of this node's community already.
    joined: bool,
    /// Shown on the device it is for, which may join with it here.
    on_new_device: bool,
    community: String,
    community_id: String,
    inviter: String,
    invitee: String,
    level: &'static str,
    expires_at: String,
    endpoints: Vec<String>,
    text: String,
}

impl InviteFacts {
    /// The facts of `invite` (read from `text`), its nodes named by
    /// `name`.
    fn of(invite: &Invite, text: String, name: impl Fn(&NodeId) -> String) -> Self {
        let expired = Timestamp::now() > invite.expires_at;
        Self {
            t: &TEXT,
            expired,
            problem: if expired {
                TEXT.settings.join_expired
            } else {
                ""
            },
            joined: false,
            on_new_device: false,
            community: invite.community_name.clone(),
            community_id: invite.community_id.short(),
            inviter: name(&invite.inviter_node_id),
            invitee: name(&invite.invitee_node_id),
            level: super::settings::level_words(invite.initial_level),
            expires_at: invite.expires_at.to_string(),
            endpoints: invite
                .bootstrap_endpoints
                .iter()
                .map(|e| format!("{}:{}", e.host, e.port))
                .collect(),
            text,
        }
    }

    /// On the new device `us`: whether it may join with it, and why not.
    pub(crate) fn on_device(invite: &Invite, text: String, us: &NodeId) -> Self {
        let mut facts = Self::of(invite, text, |node| match node == us {
            true => format!("{} ({})", TEXT.join.this_device, node.short()),
            false => node.short(),
        });
        facts.on_new_device = true;
        if invite.invitee_node_id != *us {
            facts.problem = TEXT.join.for_another_device;
        }
        facts
    }
}

/// A node as this node knows it: `name (short id)`, or the short id.
fn known_as(s: Option<&Status>, node: &NodeId) -> String {
    match s.and_then(|s| super::settings::name_of(s, node)) {
        Some(name) => format!("{name} ({})", node.short()),
        None => node.short(),
    }
}

/// The invite in `text` (pasted, or read off a QR code), decoded and its
/// signature checked.
pub(crate) fn read_invite(text: &str) -> Result<Invite, CallFailure> {
    let t = &TEXT.settings;
    let text = text.trim();
    if text.len() > MAX_INVITE_CHARS {
        return Err(CallFailure::refused(t.refused_too_long));
    }
    if IdentityCard::decode(text).is_some() {
        return Err(CallFailure::refused(t.refused_card_not_invite));
    }
    match Invite::decode(text) {
        Ok(invite) => Ok(invite),
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
    let form = Form::parse(&body);
    let invite = read_invite(form.field("invite"))?;
    let s = status(&ui).await.ok();
    let mut facts = InviteFacts::of(&invite, form.field("invite").to_owned(), |node| {
        known_as(s.as_ref(), node)
    });
    facts.joined = s
        .as_ref()
        .is_some_and(|s| s.community.id == invite.community_id)
        && ui
            .view
            .members()
            .iter()
            .any(|m| m.node_id == invite.invitee_node_id);
    Ok(Html(facts.render()?))
}
