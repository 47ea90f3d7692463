//! Exit codes: spec §6 and SYSTEM.md item 5, in this one place. Every
//! command returns an [`ExitStatus`] or a [`CliError`] carrying one.

use hearthnet_base::ErrorCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0
    Success,
    /// 1: generic error (see stderr); also a wire `internal_error`.
    Failure,
    /// 2: the user aborted, or bad usage (`bad_request`, `schema_mismatch`).
    Usage,
    /// 3: no running node to talk to.
    NoNode,
    /// 4: authentication or signature failure.
    Auth,
    /// 5: disk full or capacity exceeded.
    Capacity,
    /// 6: nobody offers it (`not_found`, `not_implemented`).
    NotFound,
    /// 7: try again later (`timeout`, `partition`).
    Unavailable,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::NoNode => 3,
            Self::Auth => 4,
            Self::Capacity => 5,
            Self::NotFound => 6,
            Self::Unavailable => 7,
        }
    }
}

impl From<ErrorCode> for ExitStatus {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::BadRequest | ErrorCode::SchemaMismatch => Self::Usage,
            ErrorCode::InvalidSignature
            | ErrorCode::Unauthorized
            | ErrorCode::Revoked
            | ErrorCode::Expired => Self::Auth,
            ErrorCode::CapacityExceeded | ErrorCode::RateLimited => Self::Capacity,
            ErrorCode::NotFound | ErrorCode::NotImplemented => Self::NotFound,
            ErrorCode::Timeout | ErrorCode::Partition => Self::Unavailable,
            ErrorCode::InternalError => Self::Failure,
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

/// A failed command: what to tell the user, and which code to exit with.
#[derive(Debug)]
pub struct CliError {
    pub status: ExitStatus,
    pub error: anyhow::Error,
}

impl CliError {
    pub fn new(status: ExitStatus, error: impl Into<anyhow::Error>) -> Self {
        Self {
            status,
            error: error.into(),
        }
    }

    pub fn aborted() -> Self {
        Self::new(ExitStatus::Usage, anyhow::anyhow!("aborted"))
    }
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(error: E) -> Self {
        Self::new(ExitStatus::Failure, error)
    }
}

impl CliError {
    /// A failed exchange with the node, with the exit code its kind maps to.
    pub fn from_client(e: hearthnet_client::ClientError) -> Self {
        use hearthnet_client::ClientError;
        let status = match &e {
            ClientError::NotRunning { .. } => ExitStatus::NoNode,
            ClientError::Wire(w) => ExitStatus::from(w.code),
            ClientError::Key(hearthnet_identity::KeyError::Permissions { .. }) => ExitStatus::Auth,
            // Spec §3.3: a bad response, e.g. a document missing a field.
            ClientError::BadResponse { .. } | ClientError::Decode(_) => ExitStatus::Failure,
            _ => ExitStatus::Failure,
        };
        Self::new(status, e)
    }

    /// A stream's terminal `error` frame, with the exit code its wire
    /// error maps to.
    pub fn from_error_frame(data: &serde_json::Value) -> Self {
        match hearthnet_client::parse_wire_error(data) {
            Some(wire) => Self::new(
                ExitStatus::from(wire.code),
                anyhow::anyhow!("{}: {}", wire.code, wire.message),
            ),
            None => Self::new(
                ExitStatus::Failure,
                anyhow::anyhow!("malformed error frame: {data}"),
            ),
        }
    }

    /// A stream that stopped before its `done` or `error` frame.
    /// Reading a streamed answer failed midway.
    pub fn stream_broke(e: impl std::fmt::Display) -> Self {
        Self::new(
            ExitStatus::Unavailable,
            anyhow::anyhow!("the stream broke: {e}"),
        )
    }

    pub fn stream_cut() -> Self {
        Self::new(
            ExitStatus::Unavailable,
            anyhow::anyhow!(
                "the stream ended without a done or error frame; the node may have gone away"
            ),
        )
    }
}

pub type CliResult = Result<ExitStatus, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incomplete_document_is_a_bad_answer_naming_the_field() {
        let mut status = serde_json::to_value(hearthnet_wire::local::samples::status(
            ([127, 0, 0, 1], 7080).into(),
        ))
        .unwrap();
        status["events"]
            .as_object_mut()
            .unwrap()
            .remove("head_lamport");
        let e = hearthnet_wire::from_value::<hearthnet_wire::local::Status>(
            hearthnet_wire::local::names::STATUS,
            status,
        )
        .unwrap_err();
        let err = CliError::from_client(e.into());
        assert_eq!(err.status.code(), 1);
        assert_eq!(
            err.error.to_string(),
            "the node's status: field `events.head_lamport`: missing field"
        );
    }

    #[test]
    fn every_wire_error_maps_as_system_md_item_5_says() {
        let expected = [
            ("bad_request", 2),
            ("schema_mismatch", 2),
            ("invalid_signature", 4),
            ("unauthorized", 4),
            ("revoked", 4),
            ("expired", 4),
            ("capacity_exceeded", 5),
            ("rate_limited", 5),
            ("not_found", 6),
            ("not_implemented", 6),
            ("timeout", 7),
            ("partition", 7),
            ("internal_error", 1),
        ];
        assert_eq!(expected.len(), ErrorCode::ALL.len());
        for (name, code) in expected {
            let error: ErrorCode = name.parse().unwrap();
            assert_eq!(ExitStatus::from(error).code(), code, "{name}");
        }
    }
}
