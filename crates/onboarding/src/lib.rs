//! M13: getting a device into a community.
//!
//! Owns the invite (a signed document bound to one invitee's NodeID, carried
//! as `hearthnet://v1/<base64url>`), the fresh-device identity card
//! (`hearthnet-id://v1/<base64url>`, unsigned: it holds only a public key),
//! and QR rendering of either, as terminal block art and as PNG.
//!
//! Redeeming an invite over the network belongs to the node; this crate
//! only builds, encodes and checks documents.

pub mod card;
pub mod invite;
pub mod qr;

pub use card::IdentityCard;
pub use invite::{Invite, InviteRequest, OnboardingError};
pub use qr::Qr;

/// Decode the base64url-without-padding payload of a `scheme://v1/` link
/// (invites, identity cards, and the community's change proposals).
pub fn decode_link(text: &str, scheme: &str) -> Option<serde_json::Value> {
    let body = text.trim().strip_prefix(scheme)?.strip_prefix("://v1/")?;
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(body.as_bytes())
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Encode a document as a `scheme://v1/` link over its canonical JSON, which
/// is also the most compact JSON form (shortest QR code).
pub fn encode_link(value: &serde_json::Value, scheme: &str) -> String {
    let bytes = hearthnet_base::to_canonical_bytes(value)
        .unwrap_or_else(|_| value.to_string().into_bytes());
    format!(
        "{scheme}://v1/{}",
        data_encoding::BASE64URL_NOPAD.encode(&bytes)
    )
}
