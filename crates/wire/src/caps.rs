//! The bodies of capability calls (Contract §4) that one of our crates
//! serves and another calls, so the provider and its caller share one
//! type. The bus still carries them as JSON; a caller decodes an answer
//! with [`crate::from_value`] and the name in [`names`].

use hearthnet_base::{CommunityId, NodeId, Timestamp, TrustLevel};
use serde::{Deserialize, Serialize};

/// What a caller says when it decodes these (the `document` of
/// [`crate::DecodeError`]).
pub mod names {
    pub const INVITE: &str = "the node's answer to community.invite";
    pub const PROPOSAL: &str = "a proposal of a co-signed change";
    pub const PROPOSAL_ANSWER: &str = "the node's answer to community.proposal.create or .cosign";
    pub const SUBMITTED: &str = "the node's answer to community.proposal.submit";
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

/// Which co-signed membership change a proposal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProposalKind {
    /// `community.member.revoked`, with a `reason`.
    Revoke,
    /// `community.member.demoted`, with a `new_level`.
    Demote,
}

/// A membership change being passed from member to member for
/// co-signatures (`community.proposal.*`): the event's data as its
/// co-signers sign it, and the signatures gathered so far. Nothing in it
/// is trusted: every node judges the signatures again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// The form of this document (1).
    pub v: u32,
    pub community_id: CommunityId,
    pub kind: ProposalKind,
    /// The nonce that makes this change's signatures serve no other.
    pub client_id: String,
    pub target_node_id: NodeId,
    /// A revocation's reason: `compromised`, `inactive`,
    /// `policy_violation` or `other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A demotion's new level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_level: Option<TrustLevel>,
    /// A revocation's last event of the target that the proposer's node
    /// knew: the target keeps it and what it links to, nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_last_event_id: Option<String>,
    #[serde(default)]
    pub co_signers: Vec<CoSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoSignature {
    pub node_id: NodeId,
    /// Ed25519 over the change's co-signed payload.
    pub signature: String,
}

/// `community.proposal.create@1.0` and `.cosign@1.0`'s answer: the
/// proposal, and how it stands against its quorum in the answering node's
/// view of the community.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalAnswer {
    pub output: ProposalStanding,
    #[serde(default)]
    pub meta: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalStanding {
    pub proposal: Proposal,
    /// The proposal as text (`hearthnet-proposal://v1/…`), to pass on or
    /// show as a QR code.
    pub text: String,
    /// Co-signatures the change needs.
    pub needed: u64,
    /// Co-signatures that count.
    pub signed: u64,
    /// Co-signatures still missing (0: it can be submitted).
    pub missing: u64,
    /// The lowest level a co-signer may have.
    pub signer_level: TrustLevel,
    /// Members who may still co-sign.
    pub may_sign: Vec<NodeId>,
    /// Co-signatures that do not count, and why.
    pub not_counted: Vec<NotCounted>,
    /// The standing in plain words.
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotCounted {
    /// The signer as written in the proposal.
    pub node_id: String,
    pub why: String,
}

/// `community.proposal.submit@1.0`'s answer: the event written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmittedAnswer {
    pub output: Submitted,
    #[serde(default)]
    pub meta: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    pub event_id: String,
    pub lamport: u64,
    pub event_type: String,
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
