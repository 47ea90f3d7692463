//! The co-signing flow that removes or demotes a member: start a
//! proposal (`community.proposal.create`), co-sign one passed on as text
//! (`community.proposal.cosign`), submit one that has enough signatures
//! (`community.proposal.submit`). Each step shows how many signatures
//! are missing and who may still give them.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Html;
use hearthnet_base::NodeId;
use hearthnet_wire::caps::{ProposalAnswer, SubmittedAnswer, names};
use serde_json::{Value, json};

use super::name_of;
use crate::UiState;
use crate::calls::CallFailure;
use crate::pages::{Done, Form, status};
use crate::text::{TEXT, Text};

const SCHEME: &str = "hearthnet-proposal";
/// A proposal with a dozen co-signatures is some 3 KB; the form's body is
/// bounded at 16 KiB anyway.
const MAX_PROPOSAL_CHARS: usize = 12 * 1024;
const REASONS: [&str; 4] = ["compromised", "inactive", "policy_violation", "other"];

struct Signer {
    name: String,
    short_id: String,
}

struct NotCountedView {
    short_id: String,
    why: String,
}

#[derive(Template)]
#[template(path = "settings_standing.html")]
struct StandingFragment {
    t: &'static Text,
    explanation: String,
    needed: u64,
    signed: u64,
    missing: u64,
    may_sign: Vec<Signer>,
    not_counted: Vec<NotCountedView>,
    text: String,
    /// Its QR code, when the text fits in one.
    qr: Option<String>,
}

/// The form's pasted proposal, checked to be one before the node sees it.
fn proposal_text(form: &Form) -> Result<String, CallFailure> {
    let t = &TEXT.settings;
    let text = form.field("proposal");
    if text.len() > MAX_PROPOSAL_CHARS {
        return Err(CallFailure::refused(t.refused_too_long));
    }
    hearthnet_onboarding::decode_link(text, SCHEME)
        .filter(Value::is_object)
        .ok_or(CallFailure::refused(t.refused_not_a_proposal))?;
    Ok(text.to_owned())
}

/// What `create` asks for, checked.
fn create_input(form: &Form) -> Result<Value, CallFailure> {
    let t = &TEXT.settings;
    let target =
        NodeId::parse(form.field("target")).map_err(|_| CallFailure::refused(t.refused_target))?;
    match form.field("kind") {
        "revoke" => {
            let reason = form.field("reason");
            if !REASONS.contains(&reason) {
                return Err(CallFailure::refused(t.refused_reason));
            }
            Ok(json!({"kind": "revoke", "target_node_id": target, "reason": reason}))
        }
        "demote" => match form.field("new_level") {
            level @ ("member" | "trusted") => {
                Ok(json!({"kind": "demote", "target_node_id": target, "new_level": level}))
            }
            _ => Err(CallFailure::refused(t.refused_level)),
        },
        _ => Err(CallFailure::refused(t.refused_kind)),
    }
}

/// Call `capability` with `input` and show the proposal's standing.
async fn standing(
    ui: &UiState,
    capability: &str,
    input: Value,
) -> Result<Html<String>, CallFailure> {
    let answer: ProposalAnswer = ui
        .call_as(
            capability,
            names::PROPOSAL_ANSWER,
            json!({"params": {}, "input": input}),
        )
        .await?;
    let s = answer.output;
    // Names are a courtesy: without the status, the IDs alone.
    let known = status(ui).await.ok();
    let may_sign = s
        .may_sign
        .iter()
        .map(|id| Signer {
            name: known
                .as_ref()
                .and_then(|k| name_of(k, id))
                .unwrap_or_default(),
            short_id: id.short(),
        })
        .collect();
    let fragment = StandingFragment {
        t: &TEXT,
        explanation: s.explanation,
        needed: s.needed,
        signed: s.signed,
        missing: s.missing,
        may_sign,
        not_counted: s
            .not_counted
            .into_iter()
            .map(|n| NotCountedView {
                short_id: n.node_id,
                why: n.why,
            })
            .collect(),
        qr: super::invite::qr_data_url(&s.text),
        text: s.text,
    };
    Ok(Html(fragment.render()?))
}

pub(super) async fn create(
    State(ui): State<Arc<UiState>>,
    body: Bytes,
) -> Result<Html<String>, CallFailure> {
    let input = create_input(&Form::parse(&body))?;
    standing(&ui, "community.proposal.create", input).await
}

pub(super) async fn cosign(
    State(ui): State<Arc<UiState>>,
    body: Bytes,
) -> Result<Html<String>, CallFailure> {
    let text = proposal_text(&Form::parse(&body))?;
    standing(&ui, "community.proposal.cosign", json!({"proposal": text})).await
}

pub(super) async fn submit(
    State(ui): State<Arc<UiState>>,
    body: Bytes,
) -> Result<Html<String>, CallFailure> {
    let text = proposal_text(&Form::parse(&body))?;
    let done: SubmittedAnswer = ui
        .call_as(
            "community.proposal.submit",
            names::SUBMITTED,
            json!({"params": {}, "input": {"proposal": text}}),
        )
        .await?;
    let t = &TEXT.settings;
    let what = match done.output.event_type.as_str() {
        "community.member.revoked" => t.submitted_revoked,
        "community.member.demoted" => t.submitted_demoted,
        _ => t.submitted_other,
    };
    let message = format!("{what} {}", t.submitted_sync);
    Ok(Html(Done { message }.render()?))
}
