//! How a page uses a service: a capability called on the node's bus
//! in-process, as the node's own key (the way the OpenAI gateway calls
//! it), so the bus picks the provider here or at a neighbour and the
//! own-only capabilities (`chat.send`, `market.post`, ...) accept it. The
//! browser never holds a key; a failure reaches the person in plain words
//! ([`CallFailure`], the wire's error codes translated by
//! [`crate::text::Text::error_for`]).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use hearthnet_bus::{CallError, CallStream, InboundCall, Version};
use serde_json::Value;

use crate::UiState;
use crate::text::{TEXT, Text};

/// A call that failed, as a person reads it: what went wrong in plain
/// words, and the service's own message for whoever wants the details.
#[derive(Debug, Clone)]
pub struct CallFailure {
    /// The plain-word explanation and what to do ([`Text::error_for`]).
    pub advice: &'static str,
    /// The service's message (English, technical), shown under the advice.
    pub detail: String,
}

impl CallFailure {
    /// A form refused before any call: `advice` says what to change.
    pub fn refused(advice: &'static str) -> Self {
        Self {
            advice,
            detail: String::new(),
        }
    }
}

/// A fragment that would not render: the person gets [`Text::failed`].
impl From<askama::Error> for CallFailure {
    fn from(e: askama::Error) -> Self {
        Self {
            advice: TEXT.failed,
            detail: e.to_string(),
        }
    }
}

impl From<CallError> for CallFailure {
    fn from(e: CallError) -> Self {
        Self {
            advice: TEXT.error_for(e.code),
            detail: e.message,
        }
    }
}

#[derive(Template)]
#[template(path = "failure.html")]
struct FailureFragment<'a> {
    t: &'static Text,
    f: &'a CallFailure,
}

impl CallFailure {
    /// The alert fragment a form swaps in where its feedback goes.
    pub fn fragment(&self) -> String {
        FailureFragment { t: &TEXT, f: self }
            .render()
            .unwrap_or_else(|_| self.advice.to_owned())
    }
}

/// A failed form gets its alert with status 200, so htmx swaps it into
/// the page like any answer (an error status would be dropped).
impl IntoResponse for CallFailure {
    fn into_response(self) -> Response {
        (StatusCode::OK, Html(self.fragment())).into_response()
    }
}

impl UiState {
    /// Start `capability@1.0` with `body` as this node; `stream` asks for
    /// its frames (for `llm.chat` token by token).
    pub fn start_call(
        &self,
        capability: &str,
        body: Value,
        stream: bool,
    ) -> Result<CallStream, CallFailure> {
        let own = self.bus.node_id();
        let call = InboundCall {
            stream,
            ..InboundCall::new(
                capability,
                Version::new(1, 0),
                body,
                own,
                self.view.level_of(&own),
            )
        };
        Ok(self.bus.call(call)?)
    }

    /// Call `capability@1.0` with `body` as this node and wait for its
    /// answer.
    pub async fn call(&self, capability: &str, body: Value) -> Result<Value, CallFailure> {
        Ok(self.start_call(capability, body, false)?.outcome().await?)
    }

    /// [`Self::call`], its answer read as `T` (`document` names it when
    /// it does not read).
    pub async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        capability: &str,
        document: &'static str,
        body: Value,
    ) -> Result<T, CallFailure> {
        let answer = self.call(capability, body).await?;
        hearthnet_wire::from_value(document, answer).map_err(|e| CallFailure {
            advice: TEXT.error_for(hearthnet_base::ErrorCode::InternalError),
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use hearthnet_base::ErrorCode;

    use super::*;

    #[test]
    fn every_wire_error_has_its_own_plain_words() {
        let advice: Vec<&str> = ErrorCode::ALL.iter().map(|c| TEXT.error_for(*c)).collect();
        for (i, a) in advice.iter().enumerate() {
            assert!(!a.is_empty());
            assert!(!a.contains('_'), "a wire code leaked into the words: {a}");
            assert!(!advice[..i].contains(a), "two codes share the words `{a}`");
        }
    }

    #[test]
    fn a_failure_shows_the_advice_and_escapes_the_detail() {
        let f = CallFailure::from(CallError::new(
            ErrorCode::RateLimited,
            "<script>alert(1)</script>",
        ));
        let html = f.fragment();
        assert!(
            html.contains(TEXT.error_for(ErrorCode::RateLimited)),
            "{html}"
        );
        assert!(html.contains("role=\"alert\""), "{html}");
        assert!(!html.contains("<script>"), "{html}");
    }
}
