//! Pairing a phone: a code for a device of the household on the LAN, as
//! `hearthnet ui pair` gives it, or how to turn the LAN listener on.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::response::Html;

use crate::UiState;
use crate::pages::PageError;
use crate::text::{TEXT, Text};

/// The pairing section: whether the UI is offered on the LAN, and a code
/// just made.
#[derive(Template)]
#[template(path = "settings_pairing.html")]
pub(super) struct PairingFragment {
    t: &'static Text,
    offered: bool,
    fresh: Option<hearthnet_wire::local::UiPairing>,
}

impl PairingFragment {
    pub(super) fn now(ui: &UiState) -> Self {
        Self {
            t: &TEXT,
            offered: ui.lan.is_some(),
            fresh: None,
        }
    }
}

pub(super) async fn make(State(ui): State<Arc<UiState>>) -> Result<Html<String>, PageError> {
    let fragment = PairingFragment {
        fresh: ui.pairing(),
        ..PairingFragment::now(&ui)
    };
    Ok(Html(fragment.render()?))
}
