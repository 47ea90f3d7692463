//! The bodies of capability calls (Contract §4) that one of our crates
//! serves and another calls, so the provider and its caller share one
//! type. The bus still carries them as JSON; a caller decodes an answer
//! with [`crate::from_value`] and the name in [`names`].

use hearthnet_base::Timestamp;
use serde::{Deserialize, Serialize};

/// What a caller says when it decodes these (the `document` of
/// [`crate::DecodeError`]).
pub mod names {
    pub const INVITE: &str = "the node's answer to community.invite";
}

/// `community.invite@1.0`'s answer (Contract §4.17).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteAnswer {
    pub output: InviteOutput,
    pub meta: InviteMeta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteOutput {
    /// The signed invite as text (ours: `hearthnet://v1/…`), what the
    /// invitee scans or pastes.
    pub invite_blob: String,
}

/// The `community.member.invited` event the invite is bound to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteMeta {
    pub event_id: String,
    pub lamport: u64,
    /// Ours: when the invite expires. Absent in the contract's form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The contract's; our node does not send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::from_value;
    use serde_json::json;

    #[test]
    fn an_invite_answer_keeps_its_json_and_reads_the_contracts_form() {
        let expires_at = Timestamp::parse("2026-05-27T00:00:00Z").unwrap();
        let ours = InviteAnswer {
            output: InviteOutput {
                invite_blob: "hearthnet://v1/abc".into(),
            },
            meta: InviteMeta {
                event_id: "01HXR".into(),
                lamport: 4310,
                expires_at: Some(expires_at),
                ms: None,
            },
        };
        assert_eq!(
            serde_json::to_value(&ours).unwrap(),
            json!({"output": {"invite_blob": "hearthnet://v1/abc"},
                   "meta": {"event_id": "01HXR", "lamport": 4310, "expires_at": "2026-05-27T00:00:00Z"}})
        );
        // The contract's example (§4.17).
        let theirs: InviteAnswer = from_value(
            names::INVITE,
            json!({"output": {"invite_blob": "ed25519:x"},
                   "meta": {"event_id": "01HXR", "lamport": 4310, "ms": 3}}),
        )
        .unwrap();
        assert_eq!((theirs.meta.ms, theirs.meta.expires_at), (Some(3), None));
    }

    #[test]
    fn a_malformed_invite_answer_names_its_field() {
        let e = from_value::<InviteAnswer>(
            names::INVITE,
            json!({"output": {"invite": "hearthnet://v1/abc"}, "meta": {"event_id": "01HXR", "lamport": 1}}),
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "the node's answer to community.invite: field `output.invite_blob`: missing field"
            )
        );
        let e = from_value::<InviteAnswer>(
            names::INVITE,
            json!({"output": {"invite_blob": 7}, "meta": {"event_id": "01HXR", "lamport": 1}}),
        )
        .err()
        .map(|e| e.path);
        assert_eq!(e.as_deref(), Some("output.invite_blob"));
    }
}
