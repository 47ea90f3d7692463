//! Co-signed membership changes: [`MembershipChanges`] serves
//! `community.revoke@1.0` and `community.demote@1.0` (the event with its
//! co-signatures, gathered by whatever means) and the flow that gathers
//! them, `community.proposal.create`, `.cosign` and `.submit`. Every one
//! is the node's own key's: the signature given, or the event written, is
//! this node's.

use std::sync::Arc;

use hearthnet_base::{ErrorCode, NodeId, TrustLevel};
use hearthnet_bus::{Call, CallError, Capability, Service};
use hearthnet_events::{CommunityView, EventLog, Tally};
use hearthnet_wire::caps::{
    CoSignature, NotCounted, Proposal, ProposalAnswer, ProposalKind, ProposalStanding, Submitted,
    SubmittedAnswer,
};
use serde_json::{Value, json};

use crate::proposal::{self, MAX_CLIENT_ID, MAX_CO_SIGNERS, MAX_EVENT_ID, MAX_TEXT_BYTES, REASONS};
use crate::{own_event, refused};

/// The co-signed membership changes this node authors or signs.
pub struct MembershipChanges {
    pub log: EventLog,
    pub key: hearthnet_base::DeviceKey,
}

/// The schema of a `co_signers` list, bounded like a proposal's.
fn co_signers_schema() -> Value {
    json!({"type": "array", "maxItems": MAX_CO_SIGNERS,
           "items": {"type": "object", "required": ["node_id", "signature"]}})
}

/// A proposal given as its text or its object.
fn proposal_input() -> Value {
    json!({"type": "object", "required": ["proposal"], "properties": {
        "proposal": {"type": ["string", "object"], "maxLength": MAX_TEXT_BYTES}
    }})
}

impl Service for MembershipChanges {
    fn name(&self) -> &'static str {
        "community"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        let revoke = own_event(
            "community.revoke",
            json!({"type": "object", "required": ["client_id", "target_node_id", "reason", "co_signers"], "properties": {
                "client_id": {"type": "string", "maxLength": MAX_CLIENT_ID},
                "target_node_id": {"type": "string"},
                "reason": {"enum": REASONS},
                "target_last_event_id": {"type": "string", "maxLength": MAX_EVENT_ID},
                "co_signers": co_signers_schema()
            }}),
        );
        let demote = own_event(
            "community.demote",
            json!({"type": "object", "required": ["client_id", "target_node_id", "new_level", "co_signers"], "properties": {
                "client_id": {"type": "string", "maxLength": MAX_CLIENT_ID},
                "target_node_id": {"type": "string"},
                "new_level": {"enum": ["member", "trusted"]},
                "co_signers": co_signers_schema()
            }}),
        );
        let create = own_event(
            "community.proposal.create",
            json!({"type": "object", "required": ["kind", "target_node_id"], "properties": {
                "kind": {"enum": ["revoke", "demote"]},
                "target_node_id": {"type": "string", "maxLength": 128},
                "reason": {"enum": REASONS},
                "new_level": {"enum": ["member", "trusted"]},
                "client_id": {"type": "string", "minLength": 1, "maxLength": MAX_CLIENT_ID}
            }}),
        );
        let cosign = own_event("community.proposal.cosign", proposal_input());
        let submit = own_event("community.proposal.submit", proposal_input());
        vec![
            Capability::new(revoke, &self, Self::revoke),
            Capability::new(demote, &self, Self::demote),
            Capability::new(create, &self, Self::create),
            Capability::new(cosign, &self, Self::cosign),
            Capability::new(submit, &self, Self::submit),
        ]
    }
}

fn bad_request(e: impl std::fmt::Display) -> CallError {
    CallError::bad_request(e.to_string())
}

fn internal(e: impl std::fmt::Display) -> CallError {
    CallError::new(ErrorCode::InternalError, e.to_string())
}

impl MembershipChanges {
    /// `community.revoke`: the event as given; the log judges the quorum.
    async fn revoke(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        self.append_given(
            "community.member.revoked",
            &call.input,
            &["reason"],
            &["target_last_event_id"],
        )
        .await
    }

    /// `community.demote`: as `community.revoke`, for a lower level.
    async fn demote(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        self.append_given("community.member.demoted", &call.input, &["new_level"], &[])
            .await
    }

    /// Write a co-signed change whose fields the caller gave (the schema
    /// checked their types and bounds): `client_id`, `target_node_id`,
    /// `co_signers`, the `required` ones and any `optional` present.
    async fn append_given(
        &self,
        event_type: &str,
        input: &Value,
        required: &[&str],
        optional: &[&str],
    ) -> Result<Value, CallError> {
        let mut data = json!({});
        for k in ["client_id", "target_node_id", "co_signers"]
            .iter()
            .chain(required)
        {
            data[*k] = input
                .get(*k)
                .cloned()
                .ok_or_else(|| CallError::bad_request(format!("input.{k} is required")))?;
        }
        for k in optional {
            if let Some(v) = input.get(*k) {
                data[*k] = v.clone();
            }
        }
        let submitted = self.append(event_type, data).await?;
        Ok(
            json!({"output": {"event_id": submitted.event_id, "lamport": submitted.lamport}, "meta": {}}),
        )
    }

    async fn append(&self, event_type: &str, data: Value) -> Result<Submitted, CallError> {
        let event = self
            .log
            .append_local(event_type, data, &self.key)
            .await
            .map_err(refused)?;
        Ok(Submitted {
            event_id: event.event_id,
            lamport: event.lamport,
            event_type: event_type.to_owned(),
        })
    }

    /// `community.proposal.create`: a new proposal, signed by this node
    /// when it may co-sign, with its standing.
    async fn create(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let input = &call.input;
        let target = input["target_node_id"]
            .as_str()
            .and_then(|s| NodeId::parse(s).ok())
            .ok_or_else(|| {
                CallError::bad_request("input.target_node_id must be a full node id (ed25519:…)")
            })?;
        let kind = match input["kind"].as_str() {
            Some("demote") => ProposalKind::Demote,
            _ => ProposalKind::Revoke,
        };
        let view = self.log.view();
        let (reason, new_level, target_last_event_id) = match kind {
            ProposalKind::Revoke => {
                let reason = input["reason"].as_str().unwrap_or("other").to_owned();
                // What the target wrote up to now stays; anything it signs
                // after this, or backdated, is refused once the revocation
                // counts (SECURITY.md rule 7).
                let last = self.log.last_event_of(target).await.map_err(refused)?;
                (Some(reason), None, last)
            }
            ProposalKind::Demote => {
                let level = match input["new_level"].as_str() {
                    Some("trusted") => TrustLevel::Trusted,
                    Some("member") => TrustLevel::Member,
                    _ => {
                        return Err(CallError::bad_request(
                            "a demotion needs input.new_level: member or trusted",
                        ));
                    }
                };
                (None, Some(level), None)
            }
        };
        let mut p = Proposal {
            v: proposal::VERSION,
            community_id: view.community_id,
            kind,
            client_id: input["client_id"]
                .as_str()
                .map_or_else(|| ulid::Ulid::new().to_string(), str::to_owned),
            target_node_id: target,
            reason,
            new_level,
            target_last_event_id,
            co_signers: Vec::new(),
        };
        proposal::check(&p).map_err(bad_request)?;
        let tally = Self::tally(&view, &p)?;
        let note = match self.may_sign(&view, &tally) {
            Ok(()) => {
                self.sign(&mut p)?;
                "proposed and co-signed by this node".to_owned()
            }
            Err(why) => format!("proposed; this node cannot co-sign it: {why}"),
        };
        self.answer(&view, p, &note)
    }

    /// `community.proposal.cosign`: this node's signature added to a
    /// proposal of its community.
    async fn cosign(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let view = self.log.view();
        let mut p = Self::received(&view, &call.input)?;
        let me = self.key.node_id();
        let note = if p.co_signers.iter().any(|c| c.node_id == me) {
            "this node had signed it already".to_owned()
        } else {
            let tally = Self::tally(&view, &p)?;
            self.may_sign(&view, &tally)
                .map_err(|why| CallError::new(ErrorCode::Unauthorized, why))?;
            self.sign(&mut p)?;
            "co-signed by this node".to_owned()
        };
        self.answer(&view, p, &note)
    }

    /// `community.proposal.submit`: the change written, once its quorum is
    /// reached; before, refused with what is missing.
    async fn submit(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let view = self.log.view();
        let p = Self::received(&view, &call.input)?;
        let tally = Self::tally(&view, &p)?;
        if !tally.is_met() {
            return Err(CallError::new(
                ErrorCode::Unauthorized,
                format!("not submitted: {}", standing_in_words(&view, &p, &tally)),
            ));
        }
        let submitted = self
            .append(proposal::event_type(p.kind), proposal::event_data(&p))
            .await?;
        serde_json::to_value(SubmittedAnswer {
            output: submitted,
            meta: json!({}),
        })
        .map_err(internal)
    }

    /// A proposal from the caller: well formed, for this community, every
    /// signature verifying.
    fn received(view: &CommunityView, input: &Value) -> Result<Proposal, CallError> {
        let p = proposal::from_input(&input["proposal"]).map_err(bad_request)?;
        if p.community_id != view.community_id {
            return Err(bad_request(proposal::ProposalError::OtherCommunity {
                theirs: p.community_id.short(),
                ours: view.community_id.short(),
            }));
        }
        proposal::verify_signatures(&p)
            .map_err(|e| CallError::new(ErrorCode::InvalidSignature, e.to_string()))?;
        Ok(p)
    }

    /// How `p` stands in `view`; an error when the change cannot be (its
    /// target is no member, the level is no demotion) or was made already.
    fn tally(view: &CommunityView, p: &Proposal) -> Result<Tally, CallError> {
        let tally = view
            .tally(proposal::event_type(p.kind), &proposal::event_data(p))
            .map_err(|r| CallError::bad_request(r.detail))?;
        if tally.already_used {
            return Err(CallError::bad_request(
                "this change was made already: its co-signatures were used by an event that counts",
            ));
        }
        Ok(tally)
    }

    /// Whether this node may co-sign the change `tally` judges, or why not.
    fn may_sign(&self, view: &CommunityView, tally: &Tally) -> Result<(), String> {
        let me = self.key.node_id();
        if me == tally.target {
            return Err("it is the target of the change".into());
        }
        let level = view.level_of(&me);
        if level < tally.signer_level {
            return Err(format!(
                "it is {level}, and co-signers must be {} or above",
                tally.signer_level
            ));
        }
        Ok(())
    }

    fn sign(&self, p: &mut Proposal) -> Result<(), CallError> {
        let signature = self
            .key
            .sign_canonical(&proposal::payload(p))
            .map_err(internal)?;
        p.co_signers.push(CoSignature {
            node_id: self.key.node_id(),
            signature,
        });
        Ok(())
    }

    fn answer(&self, view: &CommunityView, p: Proposal, note: &str) -> Result<Value, CallError> {
        let tally = Self::tally(view, &p)?;
        let standing = ProposalStanding {
            text: proposal::encode(&p),
            needed: tally.needed,
            signed: tally.counted.len() as u64,
            missing: tally.missing(),
            signer_level: tally.signer_level,
            may_sign: tally.may_still_sign(view).collect(),
            not_counted: tally
                .not_counted
                .iter()
                .map(|(node_id, why)| NotCounted {
                    node_id: node_id.clone(),
                    why: why.clone(),
                })
                .collect(),
            explanation: format!("{note}. {}", standing_in_words(view, &p, &tally)),
            proposal: p,
        };
        serde_json::to_value(ProposalAnswer {
            output: standing,
            meta: json!({}),
        })
        .map_err(internal)
    }
}

/// What the change is and how far it is from its quorum, in plain words.
fn standing_in_words(view: &CommunityView, p: &Proposal, tally: &Tally) -> String {
    let what = match p.kind {
        ProposalKind::Revoke => format!(
            "revoke {} ({})",
            p.target_node_id.short(),
            p.reason.as_deref().unwrap_or_default()
        ),
        ProposalKind::Demote => format!(
            "demote {} to {}",
            p.target_node_id.short(),
            p.new_level.unwrap_or(TrustLevel::Member)
        ),
    };
    let mut words = format!(
        "To {what}: {} of {} co-signatures from members at {} or above",
        tally.counted.len(),
        tally.needed,
        tally.signer_level
    );
    let missing = tally.missing();
    if missing == 0 {
        words.push_str("; ready to submit (by a trusted member or an anchor)");
        return words;
    }
    if let Some(sponsor) = tally.blocked_by_sponsor() {
        words.push_str(&format!(
            "; every co-signer is {} or was brought in by it, so one more is needed from a member outside its lineage",
            sponsor.short()
        ));
    } else {
        words.push_str(&format!("; {missing} still missing"));
    }
    let may: Vec<String> = tally.may_still_sign(view).map(|n| n.short()).collect();
    if may.is_empty() {
        words.push_str(". Nobody else may co-sign it now");
    } else {
        words.push_str(&format!(". May still sign: {}", may.join(", ")));
    }
    if (may.len() as u64) < missing {
        words.push_str(" (fewer than are missing)");
    }
    words
}

#[cfg(test)]
mod tests;
