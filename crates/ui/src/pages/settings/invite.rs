//! Inviting a device: `community.invite` as this node for the device
//! whose identity card (or bare device ID) was pasted, answered with the
//! invite's text and its QR code as a PNG data URL (the CSP allows
//! `img-src data:`).

use std::sync::Arc;

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Html;
use hearthnet_base::{NodeId, Timestamp};
use hearthnet_onboarding::{IdentityCard, Qr};
use hearthnet_wire::caps::{self, InviteAnswer};
use serde_json::json;

use crate::UiState;
use crate::calls::CallFailure;
use crate::pages::Form;
use crate::text::{TEXT, Text};

/// Where a picture of a device's identity card is sent (its bytes as the
/// body, read within `qr::MAX_PICTURE_BYTES`).
pub const CARD_SCAN_PATH: &str = "/settings/invite/scan";
/// A card is some 150 characters; anything far longer is not one.
const MAX_CARD_CHARS: usize = 1024;
const MAX_NAME_CHARS: usize = 64;
/// The validities offered, in hours: an hour, a day, a week.
const VALIDITY_HOURS: [u32; 3] = [1, 24, 168];
/// Pixels per QR module: an invite's code (about 110 modules with its
/// quiet zone) stays under 500 px and scans from a screen.
const QR_SCALE: usize = 4;

/// What the form asks for, checked.
struct InviteRequest {
    invitee: NodeId,
    name: String,
    level: &'static str,
    expires_at: Timestamp,
}

impl InviteRequest {
    fn read(form: &Form) -> Result<Self, CallFailure> {
        let t = &TEXT.settings;
        let card = form.field("card");
        if card.chars().count() > MAX_CARD_CHARS {
            return Err(CallFailure::refused(t.refused_not_a_card));
        }
        let card_name = IdentityCard::decode(card).map(|c| c.display_name);
        let invitee = IdentityCard::node_id_from_text(card)
            .ok_or(CallFailure::refused(t.refused_not_a_card))?;
        let name = match form.field("name") {
            "" => card_name.unwrap_or_default(),
            given => given.to_owned(),
        };
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(CallFailure::refused(t.refused_name_too_long));
        }
        if name.chars().any(char::is_control) {
            return Err(CallFailure::refused(t.refused_name_control));
        }
        let level = match form.field("level") {
            "member" => "member",
            "trusted" => "trusted",
            _ => return Err(CallFailure::refused(t.refused_level)),
        };
        let hours = form
            .field("hours")
            .parse::<u32>()
            .ok()
            .filter(|h| VALIDITY_HOURS.contains(h))
            .ok_or(CallFailure::refused(t.refused_validity))?;
        Ok(Self {
            invitee,
            name,
            level,
            expires_at: Timestamp::now().plus_seconds(i64::from(hours) * 3600),
        })
    }
}

#[derive(Template)]
#[template(path = "settings_invite.html")]
struct InviteFragment {
    t: &'static Text,
    for_whom: String,
    until: String,
    text: String,
    qr: Option<String>,
}

/// The PNG of `text`'s QR code as a data URL; `None` when `text` is too
/// long for one.
pub(crate) fn qr_data_url(text: &str) -> Option<String> {
    let png = Qr::new(text).ok()?.to_png(QR_SCALE).ok()?;
    Some(format!(
        "data:image/png;base64,{}",
        data_encoding::BASE64.encode(&png)
    ))
}

pub(super) async fn create(
    State(ui): State<Arc<UiState>>,
    body: Bytes,
) -> Result<Html<String>, CallFailure> {
    let request = InviteRequest::read(&Form::parse(&body))?;
    let answer: InviteAnswer = ui
        .call_as(
            "community.invite",
            caps::names::INVITE,
            json!({"params": {}, "input": {
                "invitee_node_id": request.invitee,
                "display_name": request.name,
                "initial_level": request.level,
                "expires_at": request.expires_at,
            }}),
        )
        .await?;
    let text = answer.output.invite_blob;
    let qr = qr_data_url(&text);
    let for_whom = match request.name.as_str() {
        "" => request.invitee.short(),
        name => format!("{name} ({})", request.invitee.short()),
    };
    let fragment = InviteFragment {
        t: &TEXT,
        for_whom,
        until: request.expires_at.to_string(),
        text,
        qr,
    };
    Ok(Html(fragment.render()?))
}

#[derive(Template)]
#[template(path = "settings_card_scanned.html")]
struct CardScanned {
    t: &'static Text,
    card: String,
    who: String,
}

/// A picture of the new device's card, its QR code read on the node: the
/// answer puts the card into the invite form's field (`data-fills`).
pub(super) async fn scan_card(
    State(ui): State<Arc<UiState>>,
    body: Body,
) -> Result<Html<String>, CallFailure> {
    let card = crate::picture::read_code(&ui.pictures, body).await?;
    let refused = || CallFailure::refused(TEXT.settings.refused_not_a_card);
    if card.chars().count() > MAX_CARD_CHARS {
        return Err(refused());
    }
    let node = IdentityCard::node_id_from_text(&card).ok_or_else(refused)?;
    let who = match IdentityCard::decode(&card).map(|c| c.display_name) {
        Some(name) if !name.is_empty() => format!("{name} ({})", node.short()),
        _ => node.short(),
    };
    Ok(Html(
        CardScanned {
            t: &TEXT,
            card,
            who,
        }
        .render()?,
    ))
}
