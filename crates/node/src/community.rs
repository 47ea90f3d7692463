//! The `community.*` capabilities (Contract §4.17–§4.18) this node serves.
//! `community.invite@1.0` and `community.revoke@1.0`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use hearthnet_base::{DeviceKey, ErrorCode, NodeId, Stability, Timestamp, TrustLevel};
use hearthnet_bus::{Call, CallError, CapabilityDescriptor, Service, Trust, Version};
use hearthnet_events::EventLog;
use hearthnet_identity::Endpoint;
use hearthnet_onboarding::{Invite, InviteRequest};
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
    /// Where the invitee reaches us; set once the peer listener is bound.
    pub endpoints: Arc<std::sync::OnceLock<Vec<Endpoint>>>,
}

/// Default lifetime of an invite (M13 §4.3).
const DEFAULT_TTL_SECONDS: i64 = 24 * 3600;

impl Service for Invites {
    fn descriptors(&self) -> Vec<CapabilityDescriptor> {
        vec![CapabilityDescriptor {
            name: "community.invite".into(),
            version: Version::new(1, 0),
            stability: Stability::Stable,
            request_schema: json!({
                "type": "object",
                "properties": {"input": {"type": "object", "required": ["invitee_node_id"], "properties": {
                    "invitee_node_id": {"type": "string"},
                    "display_name": {"type": "string"},
                    "initial_level": {"enum": ["member", "trusted"]},
                    "expires_at": {"type": "string", "format": "date-time"}
                }}}
            }),
            response_schema: Some(json!({
                "type": "object",
                "properties": {"output": {"type": "object", "properties": {"invite_blob": {"type": "string"}}}}
            })),
            stream_schema: None,
            params: json!({}),
            max_concurrent: 4,
            trust: Trust::SelfOnly,
            timeout: Duration::from_secs(10),
            idempotent: false,
        }]
    }

    fn handle(self: Arc<Self>, call: Call) -> BoxFuture<'static, Result<Value, CallError>> {
        Box::pin(async move {
            let input = &call.input;
            let invitee = input["invitee_node_id"]
                .as_str()
                .and_then(|s| NodeId::parse(s).ok())
                .ok_or_else(|| {
                    CallError::bad_request(
                        "input.invitee_node_id must be a full node id (ed25519:…)",
                    )
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
                Some(t) => {
                    Timestamp::parse(t).map_err(|e| CallError::bad_request(e.to_string()))?
                }
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
                    bootstrap_endpoints: self.endpoints.get().cloned().unwrap_or_default(),
                    expires_at,
                    invite_event_id: &event.event_id,
                    invite_lamport: event.lamport,
                },
                &self.key,
            )
            .map_err(|e| CallError::new(e.code(), e.to_string()))?;
            Ok(json!({
                "output": {"invite_blob": invite.encode()},
                "meta": {"event_id": event.event_id, "lamport": event.lamport, "expires_at": expires_at}
            }))
        })
    }
}

/// `community.revoke@1.0`: record a `community.member.revoked` event
/// authored by this node, carrying the co-signatures of at least
/// `min_signatures_to_revoke` distinct trusted members over
/// `{client_id, target_node_id, reason}`; the log checks them. Only the
/// node's own key may call it, for the same reason as invites.
pub struct Revocations {
    pub log: EventLog,
    pub key: DeviceKey,
}

impl Service for Revocations {
    fn descriptors(&self) -> Vec<CapabilityDescriptor> {
        vec![CapabilityDescriptor {
            name: "community.revoke".into(),
            version: Version::new(1, 0),
            stability: Stability::Stable,
            request_schema: json!({
                "type": "object",
                "properties": {"input": {"type": "object", "required": ["client_id", "target_node_id", "reason", "co_signers"], "properties": {
                    "client_id": {"type": "string"},
                    "target_node_id": {"type": "string"},
                    "reason": {"enum": ["compromised", "inactive", "policy_violation", "other"]},
                    "co_signers": {"type": "array", "items": {"type": "object", "required": ["node_id", "signature"]}}
                }}}
            }),
            response_schema: Some(json!({"type": "object"})),
            stream_schema: None,
            params: json!({}),
            max_concurrent: 4,
            trust: Trust::SelfOnly,
            timeout: Duration::from_secs(10),
            idempotent: true,
        }]
    }

    fn handle(self: Arc<Self>, call: Call) -> BoxFuture<'static, Result<Value, CallError>> {
        Box::pin(async move {
            let input = &call.input;
            let field = |k: &str| {
                input[k].as_str().map(str::to_owned).ok_or_else(|| {
                    CallError::bad_request(format!("input.{k} (a string) is required"))
                })
            };
            let (client_id, target, reason) = (
                field("client_id")?,
                field("target_node_id")?,
                field("reason")?,
            );
            if !matches!(
                reason.as_str(),
                "compromised" | "inactive" | "policy_violation" | "other"
            ) {
                return Err(CallError::bad_request(
                    "reason is compromised, inactive, policy_violation or other",
                ));
            }
            let co_signers = input["co_signers"].clone();
            if !co_signers.is_array() {
                return Err(CallError::bad_request("input.co_signers must be an array"));
            }
            let data = json!({"client_id": client_id, "target_node_id": target, "reason": reason, "co_signers": co_signers});
            let event = self
                .log
                .append_local("community.member.revoked", data, &self.key)
                .await
                .map_err(refused)?;
            Ok(
                json!({"output": {"event_id": event.event_id, "lamport": event.lamport}, "meta": {}}),
            )
        })
    }
}

/// The log refusing an event is the caller not being allowed to write it.
fn refused(e: hearthnet_events::EventLogError) -> CallError {
    match e {
        hearthnet_events::EventLogError::Rejected(r) => {
            CallError::new(ErrorCode::Unauthorized, format!("{}: {}", r.code, r.detail))
        }
        other => CallError::new(ErrorCode::InternalError, other.to_string()),
    }
}
