//! The `community.*` capabilities (Contract §4.17–§4.18) a node serves:
//! [`Invites`] (`community.invite@1.0`) and [`MembershipChanges`]
//! (`community.revoke@1.0`, our `community.demote@1.0`, and the
//! `community.proposal.*` flow that gathers their co-signatures, with its
//! text form in [`proposal`]). Each writes an event, or gives a signature,
//! of this node's, so only the node's own key may call them; the event log
//! decides whether the author may write them.

pub mod changes;
pub mod proposal;

pub use changes::MembershipChanges;

use std::sync::Arc;
use std::time::Duration;

use hearthnet_base::{DeviceKey, ErrorCode, NodeId, Stability, Timestamp, TrustLevel};
use hearthnet_bus::{Call, CallError, Capability, CapabilityDescriptor, Service, Trust};
use hearthnet_events::EventLog;
use hearthnet_identity::Endpoint;
use hearthnet_onboarding::{Invite, InviteRequest};
use hearthnet_wire::caps::{InviteAnswer, InviteMeta, InviteOutput};
use serde_json::{Value, json};

/// `community.invite@1.0`: record a `community.member.invited` event
/// authored by this node and hand back the signed invite for the invitee.
///
/// Only the node's own key may call it: the event is this node's, so the
/// invite right used is its owner's (Contract §3.2 "member with invite
/// right"; the log checks that right).
pub struct Invites {
    pub log: EventLog,
    pub key: DeviceKey,
    /// Where the invitee reaches us (the bound peer port).
    pub endpoints: Vec<Endpoint>,
}

/// Default lifetime of an invite (M13 §4.3).
const DEFAULT_TTL_SECONDS: i64 = 24 * 3600;

/// A `community.*` capability of this node's own key: it writes an event
/// this node authors.
pub(crate) fn own_event(name: &str, input: Value) -> CapabilityDescriptor {
    CapabilityDescriptor {
        stability: Stability::Stable,
        trust: Trust::SelfOnly,
        timeout: Duration::from_secs(10),
        mutating: true,
        ..CapabilityDescriptor::new(name, input)
    }
}

impl Service for Invites {
    fn name(&self) -> &'static str {
        "community"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        let descriptor = CapabilityDescriptor {
            response_schema: Some(json!({
                "type": "object",
                "properties": {"output": {"type": "object", "properties": {"invite_blob": {"type": "string"}}}}
            })),
            idempotent: false,
            ..own_event(
                "community.invite",
                json!({"type": "object", "required": ["invitee_node_id"], "properties": {
                    "invitee_node_id": {"type": "string"},
                    "display_name": {"type": "string"},
                    "initial_level": {"enum": ["member", "trusted"]},
                    "expires_at": {"type": "string", "format": "date-time"}
                }}),
            )
        };
        vec![Capability::new(descriptor, &self, Self::invite)]
    }
}

impl Invites {
    async fn invite(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let input = &call.input;
        let invitee = input["invitee_node_id"]
            .as_str()
            .and_then(|s| NodeId::parse(s).ok())
            .ok_or_else(|| {
                CallError::bad_request("input.invitee_node_id must be a full node id (ed25519:…)")
            })?;
        let level = match input["initial_level"].as_str().unwrap_or("member") {
            "member" => TrustLevel::Member,
            "trusted" => TrustLevel::Trusted,
            other => {
                return Err(CallError::bad_request(format!(
                    "initial_level is member or trusted, not {other}"
                )));
            }
        };
        let expires_at = match input["expires_at"].as_str() {
            Some(t) => Timestamp::parse(t).map_err(|e| CallError::bad_request(e.to_string()))?,
            None => Timestamp::now().plus_seconds(DEFAULT_TTL_SECONDS),
        };
        if expires_at <= Timestamp::now() {
            return Err(CallError::bad_request("expires_at is in the past"));
        }
        let display_name = input["display_name"].as_str().unwrap_or_default();
        let event = self
            .log
            .append_local(
                "community.member.invited",
                json!({"invitee_node_id": invitee, "display_name": display_name,
                       "initial_level": level, "expires_at": expires_at}),
                &self.key,
            )
            .await
            .map_err(refused)?;
        let view = self.log.view();
        let invite = Invite::create(
            InviteRequest {
                community_id: view.community_id,
                community_name: &view.name,
                invitee,
                level,
                bootstrap_endpoints: self.endpoints.clone(),
                expires_at,
                invite_event_id: &event.event_id,
                invite_lamport: event.lamport,
            },
            &self.key,
        )
        .map_err(|e| CallError::new(e.code(), e.to_string()))?;
        let answer = InviteAnswer {
            output: InviteOutput {
                invite_blob: invite.encode(),
            },
            meta: InviteMeta {
                event_id: event.event_id,
                lamport: event.lamport,
                expires_at: Some(expires_at),
                ms: None,
            },
        };
        serde_json::to_value(answer)
            .map_err(|e| CallError::new(ErrorCode::InternalError, e.to_string()))
    }
}

/// The caller hears why the log refused its event, by the log's own
/// mapping of reasons to contract codes.
pub(crate) fn refused(e: hearthnet_events::EventLogError) -> CallError {
    CallError::new(e.error_code(), e.to_string())
}
