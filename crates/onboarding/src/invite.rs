//! Invites (M13 §3.1): signed by a member, addressed to one NodeID, with
//! an expiry. Redemption proves possession of the invitee's key (node).

use hearthnet_base::{
    CommunityId, DeviceKey, ErrorCode, NodeId, SignatureError, Timestamp, TrustLevel, sign_value,
    verify_value,
};
use hearthnet_identity::Endpoint;
use serde::{Deserialize, Serialize};

pub const SCHEME: &str = "hearthnet";
pub const INVITE_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub schema_version: u32,
    pub community_id: CommunityId,
    pub community_name: String,
    pub inviter_node_id: NodeId,
    pub invitee_node_id: NodeId,
    pub initial_level: TrustLevel,
    pub bootstrap_endpoints: Vec<Endpoint>,
    pub expires_at: Timestamp,
    /// The `community.member.invited` event this invite stands for; the
    /// joiner's `community.member.joined` names it.
    pub invite_event_id: String,
    /// Its Lamport: the joined event comes after it.
    pub invite_lamport: u64,
    pub signature: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OnboardingError {
    #[error("this is not a HearthNet invite: {0}")]
    InviteInvalid(String),
    #[error("the invite is damaged or was altered ({0}); ask the inviter for a new one")]
    Garbled(String),
    #[error("the invite's signature does not check out ({0}); ask the inviter for a new one")]
    BadSignature(SignatureError),
    #[error("the invite expired at {expires_at}; ask the inviter for a new one")]
    InviteExpired { expires_at: Timestamp },
    #[error(
        "the invite is addressed to {addressee}, but this device is {us}; give the inviter this device's id"
    )]
    InviteeMismatch { addressee: String, us: String },
    #[error("an invite may grant `member` or `trusted`, not `{0}`")]
    BadLevel(TrustLevel),
    /// Making an invite: its document could not be signed (a field the
    /// canonical form refuses, such as a Lamport beyond 2^53).
    #[error("cannot sign the invite: {0}")]
    Sign(#[source] SignatureError),
    /// Making an invite: the signed document does not read back as one.
    #[error("the signed invite does not read back: {0}")]
    Encode(#[source] serde_json::Error),
}

impl OnboardingError {
    /// The contract error code this failure is reported as.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InviteInvalid(_) | Self::BadLevel(_) => ErrorCode::BadRequest,
            Self::BadSignature(_) | Self::Garbled(_) => ErrorCode::InvalidSignature,
            Self::InviteExpired { .. } => ErrorCode::Expired,
            Self::InviteeMismatch { .. } => ErrorCode::Unauthorized,
            Self::Sign(_) | Self::Encode(_) => ErrorCode::InternalError,
        }
    }
}

/// What an inviter decides about a new invite.
pub struct InviteRequest<'a> {
    pub community_id: CommunityId,
    pub community_name: &'a str,
    pub invitee: NodeId,
    pub level: TrustLevel,
    pub bootstrap_endpoints: Vec<Endpoint>,
    pub expires_at: Timestamp,
    pub invite_event_id: &'a str,
    pub invite_lamport: u64,
}

impl Invite {
    /// Sign a new invite as `inviter`.
    pub fn create(
        request: InviteRequest<'_>,
        inviter: &DeviceKey,
    ) -> Result<Self, OnboardingError> {
        if !matches!(request.level, TrustLevel::Member | TrustLevel::Trusted) {
            return Err(OnboardingError::BadLevel(request.level));
        }
        let unsigned = serde_json::json!({
            "schema_version": INVITE_SCHEMA_VERSION,
            "community_id": request.community_id,
            "community_name": request.community_name,
            "inviter_node_id": inviter.node_id(),
            "invitee_node_id": request.invitee,
            "initial_level": request.level,
            "bootstrap_endpoints": request.bootstrap_endpoints,
            "expires_at": request.expires_at,
            "invite_event_id": request.invite_event_id,
            "invite_lamport": request.invite_lamport,
        });
        let signed = sign_value(unsigned, inviter).map_err(OnboardingError::Sign)?;
        serde_json::from_value(signed).map_err(OnboardingError::Encode)
    }

    /// `hearthnet://v1/<base64url of the canonical JSON>`.
    pub fn encode(&self) -> String {
        crate::encode_link(&serde_json::json!(self), SCHEME)
    }

    /// Parse an invite link and check that its inviter signed it.
    pub fn decode(text: &str) -> Result<Self, OnboardingError> {
        if !text.trim().starts_with(&format!("{SCHEME}://v1/")) {
            return Err(OnboardingError::InviteInvalid(
                "expected text starting with `hearthnet://v1/`".into(),
            ));
        }
        // It claims to be an invite; one that does not decode was altered.
        let value = crate::decode_link(text, SCHEME)
            .ok_or_else(|| OnboardingError::Garbled("its payload does not decode".into()))?;
        let invite: Invite = serde_json::from_value(value.clone())
            .map_err(|e| OnboardingError::Garbled(e.to_string()))?;
        if invite.schema_version != INVITE_SCHEMA_VERSION {
            return Err(OnboardingError::InviteInvalid(format!(
                "schema_version {} is not supported",
                invite.schema_version
            )));
        }
        verify_value(&value, &invite.inviter_node_id).map_err(OnboardingError::BadSignature)?;
        Ok(invite)
    }

    /// Check that this invite may be redeemed by `us` at `now`.
    pub fn check_for(&self, us: &NodeId, now: Timestamp) -> Result<(), OnboardingError> {
        if &self.invitee_node_id != us {
            return Err(OnboardingError::InviteeMismatch {
                addressee: self.invitee_node_id.short(),
                us: us.short(),
            });
        }
        if now > self.expires_at {
            return Err(OnboardingError::InviteExpired {
                expires_at: self.expires_at,
            });
        }
        if !matches!(self.initial_level, TrustLevel::Member | TrustLevel::Trusted) {
            return Err(OnboardingError::BadLevel(self.initial_level));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearthnet_identity::{CommunityPolicy, Genesis};

    fn setup() -> (DeviceKey, Genesis, DeviceKey, Timestamp) {
        let founder = DeviceKey::generate();
        let genesis =
            Genesis::create(&founder, "Niederrhein Demo", CommunityPolicy::default()).unwrap();
        (
            founder,
            genesis,
            DeviceKey::generate(),
            Timestamp::parse("2026-05-26T08:00:00Z").unwrap(),
        )
    }

    fn invite(founder: &DeviceKey, g: &Genesis, invitee: NodeId, now: Timestamp) -> Invite {
        invite_at(founder, g, invitee, now, 1).unwrap()
    }

    fn invite_at(
        founder: &DeviceKey,
        g: &Genesis,
        invitee: NodeId,
        now: Timestamp,
        invite_lamport: u64,
    ) -> Result<Invite, OnboardingError> {
        Invite::create(
            InviteRequest {
                community_id: g.manifest.community_id,
                community_name: &g.manifest.name,
                invitee,
                level: TrustLevel::Member,
                bootstrap_endpoints: vec![Endpoint {
                    transport: "https".into(),
                    host: "192.168.188.25".into(),
                    port: 7443,
                }],
                expires_at: now.plus_seconds(86_400),
                invite_event_id: "01HXR3F7J8Q2W0KQ5M1N9ZB6TC",
                invite_lamport,
            },
            founder,
        )
    }

    #[test]
    fn an_invite_that_cannot_be_signed_is_our_failure_not_a_bad_signature() {
        let (founder, g, guest, now) = setup();
        // Beyond 2^53: the canonical form refuses it rather than round it.
        let err = invite_at(&founder, &g, guest.node_id(), now, u64::MAX).unwrap_err();
        assert!(matches!(err, OnboardingError::Sign(_)), "{err:?}");
        assert_eq!(err.code(), ErrorCode::InternalError);
    }

    #[test]
    fn round_trip_and_size_fits_a_qr_code() {
        let (founder, g, guest, now) = setup();
        let inv = invite(&founder, &g, guest.node_id(), now);
        let text = inv.encode();
        assert!(text.starts_with("hearthnet://v1/"));
        // Version 40 at error correction M holds 2331 bytes; stay well below
        // so phone cameras read it from a terminal.
        assert!(text.len() < 900, "invite is {} bytes", text.len());
        let back = Invite::decode(&text).unwrap();
        assert_eq!(back, inv);
        back.check_for(&guest.node_id(), now).unwrap();
    }

    #[test]
    fn expired_foreign_and_tampered_invites_are_refused() {
        let (founder, g, guest, now) = setup();
        let inv = invite(&founder, &g, guest.node_id(), now);
        assert!(matches!(
            inv.check_for(&guest.node_id(), now.plus_seconds(86_401)),
            Err(OnboardingError::InviteExpired { .. })
        ));
        let other = DeviceKey::generate().node_id();
        let err = inv.check_for(&other, now).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Unauthorized);

        let mut value = serde_json::json!(inv);
        value["initial_level"] = serde_json::json!("trusted");
        let forged = crate::encode_link(&value, SCHEME);
        assert!(matches!(
            Invite::decode(&forged),
            Err(OnboardingError::BadSignature(_))
        ));
        assert!(matches!(
            Invite::decode("hello"),
            Err(OnboardingError::InviteInvalid(_))
        ));
    }
}
