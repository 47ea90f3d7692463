//! The gateway key (`hearthnet api-key`): whether one exists, and making
//! or replacing it, the new key shown once. The running node reads the
//! key file on each gateway request, so a new key holds at once.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Html;
use hearthnet_identity::{ApiKeyError, ApiKeyFile};
use hearthnet_wire::local::Status;

use crate::UiState;
use crate::calls::CallFailure;
use crate::pages::{Form, status};
use crate::text::{TEXT, Text};

/// What the key file holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyState {
    /// The node was started without a key file to manage.
    Unmanaged,
    Missing,
    Present,
    /// Unreadable, readable by others, or not a key: replacing it helps.
    Unusable,
}

async fn key_state(file: Option<&ApiKeyFile>) -> KeyState {
    let Some(file) = file.cloned() else {
        return KeyState::Unmanaged;
    };
    let read = tokio::task::spawn_blocking(move || file.load()).await;
    match read {
        Ok(Ok(_)) => KeyState::Present,
        Ok(Err(ApiKeyError::Missing { .. })) => KeyState::Missing,
        _ => KeyState::Unusable,
    }
}

/// The gateway section: the key's state and its button, and a key just
/// made, shown this once.
#[derive(Template)]
#[template(path = "settings_gateway.html")]
pub(super) struct GatewayFragment {
    t: &'static Text,
    state: KeyState,
    base_url: String,
    fresh: Option<String>,
    failure: Option<CallFailure>,
}

impl GatewayFragment {
    pub(super) async fn now(ui: &UiState, s: &Status) -> Self {
        Self {
            t: &TEXT,
            state: key_state(ui.api_key.as_ref()).await,
            base_url: format!("http://{}/v1", s.api),
            fresh: None,
            failure: None,
        }
    }

    fn unmanaged(&self) -> bool {
        self.state == KeyState::Unmanaged
    }

    fn present(&self) -> bool {
        self.state == KeyState::Present
    }

    fn unusable(&self) -> bool {
        self.state == KeyState::Unusable
    }
}

/// `action=create` makes a key where there is none; `action=rotate`
/// (with `confirm=yes`) replaces it. The answer is the whole section
/// again: the new key shown once, or why nothing was made.
pub(super) async fn make(
    State(ui): State<Arc<UiState>>,
    body: Bytes,
) -> Result<Html<String>, CallFailure> {
    let outcome = new_key(&ui, &Form::parse(&body)).await;
    let s = status(&ui).await.map_err(|e| CallFailure {
        advice: TEXT.failed,
        detail: e.to_string(),
    })?;
    let mut section = GatewayFragment::now(&ui, &s).await;
    match outcome {
        Ok(fresh) => section.fresh = fresh,
        Err(f) => section.failure = Some(f),
    }
    Ok(Html(section.render()?))
}

/// The key made, or `None` when creating found one already there
/// (another tab, the CLI): then nothing new is shown.
async fn new_key(ui: &UiState, form: &Form) -> Result<Option<String>, CallFailure> {
    let t = &TEXT.settings;
    let file = ui
        .api_key
        .clone()
        .ok_or(CallFailure::refused(t.gateway_unavailable))?;
    let rotate = match form.field("action") {
        "create" => false,
        "rotate" if form.field("confirm") == "yes" => true,
        "rotate" => return Err(CallFailure::refused(t.refused_rotate_unconfirmed)),
        _ => return Err(CallFailure::refused(t.refused_action)),
    };
    let made = tokio::task::spawn_blocking(move || match rotate {
        true => file.rotate().map(Some),
        false => file
            .load_or_create()
            .map(|(key, created)| created.then_some(key)),
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()));
    let key = made.map_err(|detail| CallFailure {
        advice: t.refused_key_file,
        detail,
    })?;
    Ok(key.map(|k| k.as_str().to_owned()))
}
