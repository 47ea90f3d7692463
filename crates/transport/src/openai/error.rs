//! The gateway's one error type, answered in OpenAI's shape
//! (`{"error": {"message", "type", "param", "code"}}`) with the HTTP
//! status OpenAI's clients act on: they retry 408, 429 and 5xx (honouring
//! `retry-after-ms` / `retry-after`) and raise the rest at once.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearthnet_base::ErrorCode;
use hearthnet_bus::CallError;
use serde_json::json;

/// Why a gateway request got no answer.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayError {
    pub status: StatusCode,
    /// OpenAI's `type`: `invalid_request_error`, `permission_error`,
    /// `rate_limit_error` or `server_error`.
    pub kind: &'static str,
    /// OpenAI's `code`: ours (`invalid_api_key`, `model_not_found`, …) or
    /// the contract's error code the provider answered.
    pub code: Option<&'static str>,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// What was wrong and what to do.
    pub message: String,
    /// When a retry may succeed, from the bus's `retry_after_ms`.
    pub retry_after_ms: Option<u64>,
}

impl GatewayError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            code: None,
            param: None,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// A request that cannot be served as sent (400), `param` naming the
    /// field at fault.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        e.param = Some(param.to_owned());
        e
    }

    /// A body that is not what the endpoint reads (400), no field named.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// No key, or not the node's (401).
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
            .code("invalid_api_key")
    }

    /// A model nobody offers (404).
    pub fn model_not_found(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
            .code("model_not_found");
        e.param = Some("model".to_owned());
        e
    }

    /// A path or method the gateway does not serve (404).
    pub fn no_such_endpoint(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message).code("unknown_url")
    }

    /// A body over the gateway's limit (413).
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!(
                "the request body is larger than {limit} bytes: send fewer or shorter messages or inputs"
            ),
        )
        .code("request_too_large")
    }

    /// A body that did not arrive in time (408).
    pub fn slow_body(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            message,
        )
    }

    /// A body that is not declared as JSON (415).
    pub fn media_type(found: Option<&str>) -> Self {
        let found = found.map_or_else(|| "none".to_owned(), |f| format!("`{f}`"));
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            format!("the body must be sent as `Content-Type: application/json` (found {found})"),
        )
        .code("unsupported_media_type")
    }

    /// The node failed on its side (500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// A provider's answer this gateway cannot read (502).
    pub fn bad_answer(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "server_error", message)
    }

    /// The `error` member of the body, also the data of a stream's error
    /// event.
    pub fn to_body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl From<CallError> for GatewayError {
    /// A refusal of the bus or the provider, with the status an OpenAI
    /// client expects and a word on what to do where the contract's
    /// message does not say it.
    fn from(e: CallError) -> Self {
        use StatusCode as S;
        let (status, kind, advice) = match e.code {
            ErrorCode::BadRequest | ErrorCode::SchemaMismatch => {
                (S::BAD_REQUEST, "invalid_request_error", "")
            }
            ErrorCode::NotFound => {
                return Self::model_not_found(format!(
                    "{}: `GET /v1/models` lists the models the community serves now",
                    e.message
                ));
            }
            ErrorCode::CapacityExceeded | ErrorCode::RateLimited => (
                S::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "; every provider is busy: retry after the time in `retry-after-ms`",
            ),
            ErrorCode::Timeout => (
                S::GATEWAY_TIMEOUT,
                "server_error",
                "; ask for fewer tokens (`max_tokens`) or retry later",
            ),
            ErrorCode::Partition => (
                S::SERVICE_UNAVAILABLE,
                "server_error",
                "; no provider can be reached now: retry later",
            ),
            ErrorCode::NotImplemented => (
                S::BAD_GATEWAY,
                "server_error",
                "; the provider cannot serve this model (`hearthnet doctor` on that node says why)",
            ),
            // Never about the key (the gateway checks that itself): the
            // `Host` allow-list, or a neighbour refusing this node.
            ErrorCode::Unauthorized | ErrorCode::InvalidSignature => {
                (S::UNAUTHORIZED, "invalid_request_error", "")
            }
            ErrorCode::Revoked | ErrorCode::Expired => (S::FORBIDDEN, "permission_error", ""),
            ErrorCode::InternalError => (S::INTERNAL_SERVER_ERROR, "server_error", ""),
        };
        let mut out =
            Self::new(status, kind, format!("{}{advice}", e.message)).code(e.code.as_str());
        out.retry_after_ms = e.retry_after_ms;
        out
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.to_body())).into_response();
        if let Some(ms) = self.retry_after_ms {
            let h = resp.headers_mut();
            // Both: OpenAI's clients read the first, everyone the second.
            if let Ok(v) = HeaderValue::from_str(&ms.to_string()) {
                h.insert("retry-after-ms", v);
            }
            if let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).to_string()) {
                h.insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_errors_get_the_statuses_openai_clients_act_on() {
        let status = |code| GatewayError::from(CallError::new(code, "why")).status;
        assert_eq!(status(ErrorCode::BadRequest), StatusCode::BAD_REQUEST);
        assert_eq!(status(ErrorCode::SchemaMismatch), StatusCode::BAD_REQUEST);
        assert_eq!(status(ErrorCode::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            status(ErrorCode::CapacityExceeded),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(status(ErrorCode::Timeout), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            status(ErrorCode::Partition),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(ErrorCode::NotImplemented), StatusCode::BAD_GATEWAY);
        assert_eq!(status(ErrorCode::Unauthorized), StatusCode::UNAUTHORIZED);
        assert_eq!(status(ErrorCode::Revoked), StatusCode::FORBIDDEN);
        assert_eq!(
            status(ErrorCode::InternalError),
            StatusCode::INTERNAL_SERVER_ERROR
        );

        let unknown = GatewayError::from(CallError::new(ErrorCode::NotFound, "nobody offers it"));
        assert_eq!(unknown.code, Some("model_not_found"));
        assert!(unknown.message.contains("GET /v1/models"));
    }

    #[tokio::test]
    async fn the_body_is_openais_and_a_retry_time_goes_in_both_headers() {
        let busy = CallError::new(ErrorCode::CapacityExceeded, "all busy").retry_after(1500);
        let resp = GatewayError::from(busy).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()["retry-after-ms"], "1500");
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body,
            json!({"error": {
                "message": "all busy; every provider is busy: retry after the time in `retry-after-ms`",
                "type": "rate_limit_error",
                "param": null,
                "code": "capacity_exceeded",
            }})
        );
    }
}
