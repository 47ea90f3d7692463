//! The closed set of wire error codes (Contract §9) and their HTTP statuses
//! (§5.5). The CLI's exit codes for them live with the CLI's exit status,
//! the one other place that knows them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    SchemaMismatch,
    InvalidSignature,
    Unauthorized,
    Revoked,
    Expired,
    NotFound,
    NotImplemented,
    Timeout,
    Partition,
    CapacityExceeded,
    RateLimited,
    InternalError,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 13] = [
        Self::BadRequest,
        Self::SchemaMismatch,
        Self::InvalidSignature,
        Self::Unauthorized,
        Self::Revoked,
        Self::Expired,
        Self::NotFound,
        Self::NotImplemented,
        Self::Timeout,
        Self::Partition,
        Self::CapacityExceeded,
        Self::RateLimited,
        Self::InternalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::SchemaMismatch => "schema_mismatch",
            Self::InvalidSignature => "invalid_signature",
            Self::Unauthorized => "unauthorized",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::NotFound => "not_found",
            Self::NotImplemented => "not_implemented",
            Self::Timeout => "timeout",
            Self::Partition => "partition",
            Self::CapacityExceeded => "capacity_exceeded",
            Self::RateLimited => "rate_limited",
            Self::InternalError => "internal_error",
        }
    }

    /// HTTP status of a non-stream error response (§5.5).
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest | Self::SchemaMismatch => 400,
            Self::InvalidSignature | Self::Unauthorized => 401,
            Self::Revoked => 403,
            Self::NotFound => 404,
            Self::Timeout => 408,
            Self::Expired => 410,
            Self::RateLimited | Self::CapacityExceeded => 429,
            Self::InternalError => 500,
            Self::NotImplemented => 501,
            Self::Partition => 503,
        }
    }

    /// Whether the code says the provider itself failed, so it counts
    /// against the provider's health (M03 §5.5). The caller's own mistakes
    /// and refusals before the call ran do not. `partition` is not here:
    /// from this node's own provider it means our shutdown, from a peer
    /// that the peer is unreachable, and only the router knows which.
    pub fn is_provider_failure(self) -> bool {
        matches!(
            self,
            Self::InternalError | Self::Timeout | Self::NotImplemented
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a contract error code")]
pub struct UnknownErrorCode(pub String);

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownErrorCode(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_serde() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert!("teapot".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn only_failures_inside_the_provider_count_against_it() {
        let failures: Vec<ErrorCode> = ErrorCode::ALL
            .into_iter()
            .filter(|c| c.is_provider_failure())
            .collect();
        assert_eq!(
            failures,
            [
                ErrorCode::NotImplemented,
                ErrorCode::Timeout,
                ErrorCode::InternalError
            ]
        );
    }
}
