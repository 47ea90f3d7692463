//! A membership change passed around for co-signatures: its text form
//! (`hearthnet-proposal://v1/<base64url of canonical JSON>`, small enough
//! for a QR code), the bounds every proposal is held to before any work is
//! done on it, and the event it becomes once its quorum is reached.

use std::collections::BTreeSet;

use hearthnet_base::TrustLevel;
use hearthnet_base::crypto::verify_canonical;
use hearthnet_wire::caps::{Proposal, ProposalKind, names};
use serde_json::{Value, json};

/// The scheme of a proposal's text form.
pub const SCHEME: &str = "hearthnet-proposal";
/// The form of the proposal document this release writes and reads.
pub const VERSION: u32 = 1;
/// The longest proposal text accepted: with 32 co-signers it still fits.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;
/// The most co-signatures a proposal may carry (no policy asks near this).
pub const MAX_CO_SIGNERS: usize = 32;
/// `data.client_id` of a co-signed change, as the log bounds it.
pub const MAX_CLIENT_ID: usize = 128;
/// An event id, as `community.revoke` bounds `target_last_event_id`.
pub const MAX_EVENT_ID: usize = 64;
/// An Ed25519 signature is 86 characters of base64url; room for padding.
pub const MAX_SIGNATURE: usize = 128;
/// The reasons a revocation may give (Contract §4.18).
pub const REASONS: [&str; 4] = ["compromised", "inactive", "policy_violation", "other"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProposalError {
    #[error("a proposal is at most {MAX_TEXT_BYTES} bytes; this one has {0}")]
    TooLong(usize),
    #[error("expected text starting with `{SCHEME}://v1/`")]
    NotAProposal,
    #[error("the proposal's payload does not decode (base64url of JSON)")]
    Garbled,
    #[error("{0}")]
    Malformed(String),
    #[error("the proposal is for community {theirs}, and this node is in {ours}")]
    OtherCommunity { theirs: String, ours: String },
    #[error("{0} signed the proposal twice")]
    DuplicateSigner(String),
    #[error(
        "the co-signature of {0} does not verify: the proposal was changed after it was signed"
    )]
    BadSignature(String),
}

/// A proposal from its text form, or from its JSON object (what the web
/// UI and `hearthnet call` hand over), bounded before it is decoded.
pub fn from_input(input: &Value) -> Result<Proposal, ProposalError> {
    let value = match input {
        Value::String(text) => {
            if text.len() > MAX_TEXT_BYTES {
                return Err(ProposalError::TooLong(text.len()));
            }
            if !text.trim().starts_with(&format!("{SCHEME}://v1/")) {
                return Err(ProposalError::NotAProposal);
            }
            hearthnet_onboarding::decode_link(text, SCHEME).ok_or(ProposalError::Garbled)?
        }
        Value::Object(_) => {
            // The text's bound, applied to the object: what it would
            // encode to is at most 3/4 of the text.
            let signers = input["co_signers"].as_array().map_or(0, Vec::len);
            if signers > MAX_CO_SIGNERS {
                return Err(too_many(signers));
            }
            let size = input.to_string().len();
            if size > MAX_TEXT_BYTES * 3 / 4 {
                return Err(ProposalError::TooLong(size));
            }
            input.clone()
        }
        _ => {
            return Err(ProposalError::Malformed(
                "a proposal is its text (hearthnet-proposal://v1/…) or its JSON object".into(),
            ));
        }
    };
    let signers = value["co_signers"].as_array().map_or(0, Vec::len);
    if signers > MAX_CO_SIGNERS {
        return Err(too_many(signers));
    }
    let proposal: Proposal = hearthnet_wire::from_value(names::PROPOSAL, value)
        .map_err(|e| ProposalError::Malformed(e.to_string()))?;
    check(&proposal)?;
    Ok(proposal)
}

fn too_many(n: usize) -> ProposalError {
    ProposalError::Malformed(format!(
        "a proposal carries at most {MAX_CO_SIGNERS} co-signatures; this one has {n}"
    ))
}

fn malformed(message: impl Into<String>) -> ProposalError {
    ProposalError::Malformed(message.into())
}

/// Whether `p` is a well-formed proposal: its fields within bounds and
/// fitting its kind, each signer once.
pub fn check(p: &Proposal) -> Result<(), ProposalError> {
    if p.v != VERSION {
        return Err(malformed(format!(
            "proposal form {} is not supported (this node reads {VERSION})",
            p.v
        )));
    }
    let id = &p.client_id;
    if id.is_empty() || id.len() > MAX_CLIENT_ID || id.chars().any(char::is_control) {
        return Err(malformed(format!(
            "client_id is 1 to {MAX_CLIENT_ID} characters without control characters"
        )));
    }
    if p.co_signers.len() > MAX_CO_SIGNERS {
        return Err(too_many(p.co_signers.len()));
    }
    match p.kind {
        ProposalKind::Revoke => {
            if !p.reason.as_deref().is_some_and(|r| REASONS.contains(&r)) {
                return Err(malformed(format!(
                    "a revocation's reason is one of {}",
                    REASONS.join(", ")
                )));
            }
            if p.new_level.is_some() {
                return Err(malformed("a revocation has no new_level"));
            }
        }
        ProposalKind::Demote => {
            if !matches!(p.new_level, Some(TrustLevel::Member | TrustLevel::Trusted)) {
                return Err(malformed(
                    "a demotion's new_level is member or trusted (removal is revocation)",
                ));
            }
            if p.reason.is_some() || p.target_last_event_id.is_some() {
                return Err(malformed(
                    "a demotion has a new_level, and no reason or target_last_event_id",
                ));
            }
        }
    }
    if p.target_last_event_id
        .as_ref()
        .is_some_and(|e| e.is_empty() || e.len() > MAX_EVENT_ID)
    {
        return Err(malformed(format!(
            "target_last_event_id is an event id of at most {MAX_EVENT_ID} characters"
        )));
    }
    let mut seen = BTreeSet::new();
    for c in &p.co_signers {
        if c.signature.is_empty() || c.signature.len() > MAX_SIGNATURE {
            return Err(malformed(format!(
                "the co-signature of {} is not a signature",
                c.node_id.short()
            )));
        }
        if !seen.insert(c.node_id) {
            return Err(ProposalError::DuplicateSigner(c.node_id.short()));
        }
    }
    Ok(())
}

/// The proposal as text.
pub fn encode(p: &Proposal) -> String {
    hearthnet_onboarding::encode_link(&json!(p), SCHEME)
}

/// The type of the event the proposal becomes.
pub fn event_type(kind: ProposalKind) -> &'static str {
    match kind {
        ProposalKind::Revoke => "community.member.revoked",
        ProposalKind::Demote => "community.member.demoted",
    }
}

/// The event's data without its co-signatures: what co-signers sign
/// (through `cosigned_payload`).
pub fn intent(p: &Proposal) -> Value {
    let mut data = json!({"client_id": p.client_id, "target_node_id": p.target_node_id});
    match p.kind {
        ProposalKind::Revoke => {
            data["reason"] = json!(p.reason);
            if let Some(last) = &p.target_last_event_id {
                data["target_last_event_id"] = json!(last);
            }
        }
        ProposalKind::Demote => data["new_level"] = json!(p.new_level),
    }
    data
}

/// The event's data with its co-signatures.
pub fn event_data(p: &Proposal) -> Value {
    let mut data = intent(p);
    data["co_signers"] = json!(p.co_signers);
    data
}

/// What co-signers of `p` sign.
pub fn payload(p: &Proposal) -> Value {
    hearthnet_events::cosigned_payload(event_type(p.kind), &intent(p))
}

/// Every co-signature verifies: one that does not means the proposal was
/// altered (or forged), and passing it on would only hide that.
pub fn verify_signatures(p: &Proposal) -> Result<(), ProposalError> {
    let payload = payload(p);
    for c in &p.co_signers {
        verify_canonical(&payload, &c.signature, &c.node_id)
            .map_err(|_| ProposalError::BadSignature(c.node_id.short()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearthnet_base::{CommunityId, DeviceKey};
    use hearthnet_wire::caps::CoSignature;

    fn revocation(signers: &[&DeviceKey]) -> Proposal {
        let root = DeviceKey::generate();
        let mut p = Proposal {
            v: VERSION,
            community_id: CommunityId::of_root(root.node_id()),
            kind: ProposalKind::Revoke,
            client_id: "01JZ0000000000000000000000".into(),
            target_node_id: DeviceKey::generate().node_id(),
            reason: Some("compromised".into()),
            new_level: None,
            target_last_event_id: Some("01JZ0000000000000000000001".into()),
            co_signers: Vec::new(),
        };
        let payload = payload(&p);
        p.co_signers = signers
            .iter()
            .map(|k| CoSignature {
                node_id: k.node_id(),
                signature: k.sign_canonical(&payload).unwrap(),
            })
            .collect();
        p
    }

    #[test]
    fn a_proposal_round_trips_through_its_text_and_fits_a_qr_code() {
        let keys: Vec<DeviceKey> = (0..3).map(|_| DeviceKey::generate()).collect();
        let p = revocation(&keys.iter().collect::<Vec<_>>());
        let text = encode(&p);
        assert!(text.starts_with("hearthnet-proposal://v1/"), "{text}");
        assert_eq!(from_input(&json!(text)).unwrap(), p);
        assert_eq!(from_input(&json!(p)).unwrap(), p);
        verify_signatures(&p).unwrap();
        hearthnet_onboarding::Qr::new(&text).expect("three co-signatures fit a QR code");
        // The event carries exactly what was signed, and the signatures.
        let data = event_data(&p);
        assert_eq!(
            hearthnet_events::cosigned_payload("community.member.revoked", &data),
            payload(&p)
        );
        assert_eq!(data["co_signers"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn each_bad_proposal_is_refused_with_its_reason() {
        let (a, b) = (DeviceKey::generate(), DeviceKey::generate());
        let good = revocation(&[&a, &b]);
        let refused = |v: Value| from_input(&v).unwrap_err().to_string();

        assert!(refused(json!("x".repeat(MAX_TEXT_BYTES + 1))).contains("at most 8192 bytes"));
        assert!(refused(json!("hearthnet://v1/abc")).contains("hearthnet-proposal://v1/"));
        assert!(refused(json!("hearthnet-proposal://v1/!!")).contains("does not decode"));
        assert!(refused(json!(42)).contains("its text"));

        let mut v = json!(good);
        v["surprise"] = json!(1);
        assert!(refused(v).contains("surprise"));
        let mut v = json!(good);
        v["target_node_id"] = json!("ed25519:XXXX-XXXX-XXXX-XXXX");
        assert!(refused(v).contains("target_node_id"));
        let mut v = json!(good);
        v["v"] = json!(2);
        assert!(refused(v).contains("form 2"));
        let mut v = json!(good);
        v["client_id"] = json!("");
        assert!(refused(v).contains("client_id"));
        let mut v = json!(good);
        v["client_id"] = json!("c".repeat(MAX_CLIENT_ID + 1));
        assert!(refused(v).contains("client_id"));
        let mut v = json!(good);
        v["reason"] = json!("dislike");
        assert!(refused(v).contains("reason is one of"));
        let mut v = json!(good);
        v["target_last_event_id"] = json!("e".repeat(MAX_EVENT_ID + 1));
        assert!(refused(v).contains("target_last_event_id"));
        let mut v = json!(good);
        v["kind"] = json!("demote");
        v["new_level"] = json!("anchor");
        assert!(refused(v).contains("member or trusted"));
        let mut v = json!(good);
        v["kind"] = json!("demote");
        v["new_level"] = json!("member");
        assert!(refused(v).contains("no reason"));
        let mut v = json!(good);
        v["co_signers"][1] = v["co_signers"][0].clone();
        assert!(refused(v).contains("twice"));
        let mut v = json!(good);
        v["co_signers"][0]["signature"] = json!("s".repeat(MAX_SIGNATURE + 1));
        assert!(refused(v).contains("not a signature"));
        let mut v = json!(good);
        v["co_signers"] = json!(vec![v["co_signers"][0].clone(); MAX_CO_SIGNERS + 1]);
        assert!(refused(v.clone()).contains("at most 32 co-signatures"));
        // The same bound holds for the text form, before its JSON is read.
        let text = hearthnet_onboarding::encode_link(&v, SCHEME);
        assert!(refused(json!(text)).contains("at most 32 co-signatures"));
    }

    #[test]
    fn a_changed_proposal_no_longer_verifies() {
        let (a, b) = (DeviceKey::generate(), DeviceKey::generate());
        let mut p = revocation(&[&a, &b]);
        p.reason = Some("inactive".into());
        assert_eq!(
            verify_signatures(&p),
            Err(ProposalError::BadSignature(a.node_id().short()))
        );
        let mut p = revocation(&[&a]);
        p.co_signers[0].node_id = b.node_id();
        assert_eq!(
            verify_signatures(&p),
            Err(ProposalError::BadSignature(b.node_id().short()))
        );
    }
}
