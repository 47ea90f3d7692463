//! Signed HTTP requests (Contract §5.1): the `X-HearthNet-*` headers and
//! the synthetic envelope their signature covers.
//!
//! For endpoints other than `/bus/v1/call` (SYSTEM.md item 4) the
//! `capability` is the request path, `version` is `"1.0"` and `body` is the
//! JSON body, `{}` for a GET.

use serde_json::Value;

use crate::canonical::{CanonicalError, Member, object_to_canonical_bytes};
use crate::crypto::{DeviceKey, SignatureError, SignedMessage};
use crate::ids::{CommunityId, IdError, NodeId};
use crate::time::{Timestamp, TimestampError};

pub const CAPABILITY: &str = "x-hearthnet-capability";
pub const CAPABILITY_VERSION: &str = "x-hearthnet-capability-version";
pub const REQUEST_ID: &str = "x-hearthnet-request-id";
pub const FROM: &str = "x-hearthnet-from";
pub const COMMUNITY: &str = "x-hearthnet-community";
pub const TIMESTAMP: &str = "x-hearthnet-timestamp";
pub const SIGNATURE: &str = "x-hearthnet-signature";
/// Our extension: the caller's deadline for this call, in milliseconds.
pub const TIMEOUT_MS: &str = "x-hearthnet-timeout-ms";
/// Our extension: the full NodeID of the one node that should serve a
/// call (honoured for the node's own calls).
pub const TARGET_NODE: &str = "x-hearthnet-target-node";

/// The version used for signed requests to plain endpoints.
pub const ENDPOINT_VERSION: &str = "1.0";

/// The signed headers of one request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub capability: String,
    pub version: String,
    pub request_id: String,
    pub from: NodeId,
    pub community: CommunityId,
    pub timestamp: Timestamp,
    pub signature: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("header {0}: {1}")]
    BadId(&'static str, IdError),
    #[error("header {TIMESTAMP}: {0}")]
    BadTimestamp(TimestampError),
}

/// The canonical bytes of the synthetic envelope the signature covers:
/// `{capability, version, request_id, from, community, timestamp, body}`.
fn envelope_bytes(h: &SignedHeaders, body: &Value) -> Result<Vec<u8>, CanonicalError> {
    let (from, community, timestamp) = (h.from.full(), h.community.full(), h.timestamp.to_string());
    object_to_canonical_bytes(&mut [
        ("capability", Member::Text(&h.capability)),
        ("version", Member::Text(&h.version)),
        ("request_id", Member::Text(&h.request_id)),
        ("from", Member::Text(&from)),
        ("community", Member::Text(&community)),
        ("timestamp", Member::Text(&timestamp)),
        ("body", Member::Json(body)),
    ])
}

impl SignedHeaders {
    /// Sign a request for `capability@version` with `body`, stamped now.
    pub fn sign(
        key: &DeviceKey,
        community: CommunityId,
        capability: &str,
        version: &str,
        body: &Value,
    ) -> Result<Self, SignatureError> {
        Self::sign_at(key, community, capability, version, body, Timestamp::now())
    }

    /// Like [`sign`](Self::sign) with an explicit timestamp.
    pub fn sign_at(
        key: &DeviceKey,
        community: CommunityId,
        capability: &str,
        version: &str,
        body: &Value,
        timestamp: Timestamp,
    ) -> Result<Self, SignatureError> {
        let mut headers = Self {
            capability: capability.to_owned(),
            version: version.to_owned(),
            request_id: ulid::Ulid::new().to_string(),
            from: key.node_id(),
            community,
            timestamp,
            signature: String::new(),
        };
        headers.signature = key.sign_bytes(&envelope_bytes(&headers, body)?);
        Ok(headers)
    }

    /// The signature with what it covers, to check later or in a batch.
    pub fn signed_message(&self, body: &Value) -> Result<SignedMessage, SignatureError> {
        SignedMessage::new(envelope_bytes(self, body)?, &self.signature, &self.from)
    }

    /// `(name, value)` pairs to put on the wire.
    pub fn to_pairs(&self) -> [(&'static str, String); 7] {
        [
            (CAPABILITY, self.capability.clone()),
            (CAPABILITY_VERSION, self.version.clone()),
            (REQUEST_ID, self.request_id.clone()),
            (FROM, self.from.full()),
            (COMMUNITY, self.community.full()),
            (TIMESTAMP, self.timestamp.to_string()),
            (SIGNATURE, self.signature.clone()),
        ]
    }

    /// Parse from a header lookup (lower-case names).
    pub fn from_lookup<'a>(
        get: impl Fn(&'static str) -> Option<&'a str>,
    ) -> Result<Self, HeaderError> {
        let need = |name: &'static str| get(name).ok_or(HeaderError::Missing(name));
        Ok(Self {
            capability: need(CAPABILITY)?.to_owned(),
            version: need(CAPABILITY_VERSION)?.to_owned(),
            request_id: need(REQUEST_ID)?.to_owned(),
            from: NodeId::parse(need(FROM)?).map_err(|e| HeaderError::BadId(FROM, e))?,
            community: CommunityId::parse(need(COMMUNITY)?)
                .map_err(|e| HeaderError::BadId(COMMUNITY, e))?,
            timestamp: Timestamp::parse(need(TIMESTAMP)?).map_err(HeaderError::BadTimestamp)?,
            signature: need(SIGNATURE)?.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::to_canonical_bytes;
    use serde_json::json;
    use std::collections::HashMap;

    #[test]
    fn envelope_bytes_are_the_canonical_form_of_the_envelope() {
        let key = DeviceKey::generate();
        let community = CommunityId::of_root(key.node_id());
        let body = json!({"params": {"n": 1.50, "z": [1, {"b": 2, "a": null}]}, "input": {"text": "a \"quoted\"\n\u{e9}\u{1}\u{7f}"}});
        let h = SignedHeaders::sign(&key, community, "chat.send", "1.2", &body).unwrap();
        let as_value = json!({
            "capability": h.capability,
            "version": h.version,
            "request_id": h.request_id,
            "from": h.from,
            "community": h.community,
            "timestamp": h.timestamp,
            "body": body,
        });
        assert_eq!(
            envelope_bytes(&h, &body).unwrap(),
            to_canonical_bytes(&as_value).unwrap()
        );
    }

    #[test]
    fn signed_headers_round_trip_and_bind_the_body() {
        let key = DeviceKey::generate();
        let community = CommunityId::of_root(key.node_id());
        let body = json!({"params": {}, "input": {"text": "hallo"}});
        let h = SignedHeaders::sign(&key, community, "experimental.echo", "1.0", &body).unwrap();
        let map: HashMap<&str, String> = h.to_pairs().into_iter().collect();
        let parsed = SignedHeaders::from_lookup(|n| map.get(n).map(String::as_str)).unwrap();
        assert_eq!(parsed, h);
        parsed.signed_message(&body).unwrap().verify().unwrap();
        assert!(
            parsed
                .signed_message(&json!({"params": {}, "input": {"text": "hallo!"}}))
                .unwrap()
                .verify()
                .is_err()
        );

        let mut other_cap = parsed.clone();
        other_cap.capability = "llm.chat".into();
        assert!(other_cap.signed_message(&body).unwrap().verify().is_err());
        assert_eq!(
            SignedHeaders::from_lookup(|_| None),
            Err(HeaderError::Missing(CAPABILITY))
        );
    }
}
