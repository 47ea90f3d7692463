//! Why the log refused an event: a closed set of reasons, each with the
//! string peers see in `rejected_reasons` (and metrics in their `reason`
//! label), and the one mapping to the contract error a local author gets.

use std::fmt;

use hearthnet_base::ErrorCode;

/// Why an event was refused; `code` is stable, `detail` is for people.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reject {
    pub code: RejectCode,
    pub detail: String,
}

impl Reject {
    pub fn new(code: RejectCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// One variant per reason an event is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// Its canonical JSON is over the size limit.
    TooLarge,
    /// Not an event envelope at all.
    Malformed,
    InvalidSignature,
    WrongCommunity,
    /// An envelope revision or event type this release does not know.
    SchemaUnknown,
    /// `data` lacks a required field or has one of the wrong kind.
    BadData,
    /// Its wall clock is further ahead of ours than the allowed skew.
    ClockAhead,
    /// Its Lamport is absurdly far beyond our head.
    LamportAhead,
    /// The author was not a member at the event's point of history.
    UnknownAuthor,
    /// The author was revoked before the event's point of history.
    RevokedAuthor,
    /// A member, but not allowed to write this event (invite, level,
    /// co-signatures, root-only changes).
    Unauthorized,
    /// Valid, but storing it failed on this node.
    DbError,
    /// Another envelope is already stored under its event id: authors
    /// choose ids, so a second envelope under one id is a split of the
    /// log, never a duplicate.
    ConflictingId,
    /// A market or chat event older than the retention window (X02 §5.4):
    /// pruned here, so not taken back.
    PastRetention,
    /// Its author already wrote as many events (or bytes) stamped that day
    /// as one author may: the one refusal that depends on what arrived
    /// first, and only for an author beyond its quota.
    QuotaExceeded,
}

impl RejectCode {
    pub const ALL: [RejectCode; 15] = [
        Self::TooLarge,
        Self::Malformed,
        Self::InvalidSignature,
        Self::WrongCommunity,
        Self::SchemaUnknown,
        Self::BadData,
        Self::ClockAhead,
        Self::LamportAhead,
        Self::UnknownAuthor,
        Self::RevokedAuthor,
        Self::Unauthorized,
        Self::DbError,
        Self::ConflictingId,
        Self::PastRetention,
        Self::QuotaExceeded,
    ];

    /// The form peers receive in `rejected_reasons`: part of the sync
    /// protocol, so never renamed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed => "malformed",
            Self::InvalidSignature => "invalid_signature",
            Self::WrongCommunity => "wrong_community",
            Self::SchemaUnknown => "schema_unknown",
            Self::BadData => "bad_data",
            Self::ClockAhead => "clock_ahead",
            Self::LamportAhead => "lamport_ahead",
            Self::UnknownAuthor => "unknown_author",
            Self::RevokedAuthor => "revoked_author",
            Self::Unauthorized => "unauthorized",
            Self::DbError => "db_error",
            Self::ConflictingId => "conflicting_id",
            Self::PastRetention => "past_retention",
            Self::QuotaExceeded => "quota_exceeded",
        }
    }

    /// The contract error (§9) of a caller whose event this refused: what
    /// is wrong with the event itself is `bad_request`, who may write it
    /// is a matter of trust, and a failure to store it is ours.
    pub fn error_code(self) -> ErrorCode {
        match self {
            Self::TooLarge
            | Self::Malformed
            | Self::WrongCommunity
            | Self::SchemaUnknown
            | Self::BadData
            | Self::ClockAhead
            | Self::LamportAhead
            | Self::ConflictingId
            | Self::PastRetention => ErrorCode::BadRequest,
            Self::QuotaExceeded => ErrorCode::RateLimited,
            Self::InvalidSignature => ErrorCode::InvalidSignature,
            Self::UnknownAuthor | Self::Unauthorized => ErrorCode::Unauthorized,
            Self::RevokedAuthor => ErrorCode::Revoked,
            Self::DbError => ErrorCode::InternalError,
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RejectCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms_are_the_ones_peers_already_know() {
        let forms: Vec<&str> = RejectCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            forms,
            [
                "too_large",
                "malformed",
                "invalid_signature",
                "wrong_community",
                "schema_unknown",
                "bad_data",
                "clock_ahead",
                "lamport_ahead",
                "unknown_author",
                "revoked_author",
                "unauthorized",
                "db_error",
                "conflicting_id",
                "past_retention",
                "quota_exceeded",
            ]
        );
        let json = serde_json::to_value(Reject::new(RejectCode::ClockAhead, "by 400 s"));
        assert_eq!(
            json.ok(),
            Some(serde_json::json!({"code": "clock_ahead", "detail": "by 400 s"}))
        );
    }

    #[test]
    fn a_local_author_gets_the_contract_code_of_the_reason() {
        let code = |c: RejectCode| c.error_code();
        assert_eq!(code(RejectCode::BadData), ErrorCode::BadRequest);
        assert_eq!(code(RejectCode::ClockAhead), ErrorCode::BadRequest);
        assert_eq!(
            code(RejectCode::InvalidSignature),
            ErrorCode::InvalidSignature
        );
        assert_eq!(code(RejectCode::Unauthorized), ErrorCode::Unauthorized);
        assert_eq!(code(RejectCode::UnknownAuthor), ErrorCode::Unauthorized);
        assert_eq!(code(RejectCode::RevokedAuthor), ErrorCode::Revoked);
        assert_eq!(code(RejectCode::DbError), ErrorCode::InternalError);
    }
}
