//! Signed HTTP requests (Contract §5.1): the `X-HearthNet-*` headers and
//! the synthetic envelope their signature covers.
//!
//! For endpoints other than `/bus/v1/call` (SYSTEM.md item 4) the
//! `capability` is the request path, `version` is `"1.0"` and `body` is the
//! JSON body, `{}` for a GET.
//!
//! Also owns what the v1 envelope leaves out: the query string and our
//! `X-HearthNet-Timeout-Ms` / `X-HearthNet-Target-Node` /
//! `X-HearthNet-Session` headers, covered
//! when present by a second signature in headers a v1 node ignores
//! ([`Extras`], [`COVERS`], [`COVERS_SIGNATURE`]), so the v1 envelope and
//! its signature stay exactly what the contract says.

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
/// Our extension: the caller's name for a multi-turn conversation, whose
/// calls go to one provider while it can serve them (M03 §5.6; honoured
/// for the node's own calls).
pub const SESSION: &str = "x-hearthnet-session";

const MAX_SESSION_ID_CHARS: usize = 128;

/// A caller's name for one conversation: 1 to 128 characters of
/// `A-Z a-z 0-9 . _ : -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "a session id is 1 to {MAX_SESSION_ID_CHARS} characters of letters, digits and . _ : - (got {0:?})"
)]
pub struct SessionIdError(String);

impl SessionId {
    pub fn parse(text: &str) -> Result<Self, SessionIdError> {
        let fits = (1..=MAX_SESSION_ID_CHARS).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
        if fits {
            Ok(Self(text.to_owned()))
        } else {
            let shown: String = text.chars().take(MAX_SESSION_ID_CHARS).collect();
            Err(SessionIdError(shown))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Our extension: what beyond the v1 envelope the request's signer
/// covered, as `name=digest` items (see [`Extras`]).
pub const COVERS: &str = "x-hearthnet-covers";
/// Our extension: the signer's signature over [`COVERS`], bound to the
/// request's v1 signature.
pub const COVERS_SIGNATURE: &str = "x-hearthnet-covers-signature";

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

/// One part of a request outside the v1 envelope that a signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    Query,
    TimeoutMs,
    TargetNode,
    Session,
}

impl Extra {
    /// In the order they are listed in [`COVERS`].
    pub const ALL: [Self; 4] = [
        Self::Query,
        Self::TimeoutMs,
        Self::TargetNode,
        Self::Session,
    ];

    /// The item's name in [`COVERS`].
    fn key(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::TimeoutMs => TIMEOUT_MS,
            Self::TargetNode => TARGET_NODE,
            Self::Session => SESSION,
        }
    }
}

impl std::fmt::Display for Extra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Query => "the query string",
            Self::TimeoutMs => "X-HearthNet-Timeout-Ms",
            Self::TargetNode => "X-HearthNet-Target-Node",
            Self::Session => "X-HearthNet-Session",
        })
    }
}

/// What a request carries beyond the v1 envelope, as sent: the query
/// string (without `?`; an empty one counts as none) and the values of
/// our headers. A v1 node neither sends nor checks them; a request
/// carrying any of them is accepted only if its signer covered exactly
/// these values ([`Extras::covers`], [`Extras::covered_message`]).
///
/// Why a second signature instead of more members in the envelope: a node
/// of the contract's v1 (or one of ours from before) rebuilds exactly the
/// seven members of §5.1, and would refuse every request whose signature
/// covered more; our peers send `X-HearthNet-Timeout-Ms` with every call.
/// With the extras in headers it ignores, such a node still checks the v1
/// signature and serves the call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras<'a> {
    pub query: Option<&'a str>,
    pub timeout_ms: Option<&'a str>,
    pub target_node: Option<&'a str>,
    pub session: Option<&'a str>,
}

/// Why the extras of a request are not what its signer covered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoverError {
    #[error("{0} is not covered by a signature")]
    NotCovered(Extra),
    #[error("{0} was removed after signing")]
    Removed(Extra),
    #[error("{0} was changed after signing")]
    Changed(Extra),
    #[error("header {COVERS} is malformed")]
    Malformed,
    #[error("header {COVERS} is there without {COVERS_SIGNATURE}")]
    MissingSignature,
    #[error("the covers signature: {0}")]
    Signature(#[from] SignatureError),
}

impl<'a> Extras<'a> {
    /// Gather the extras with a header lookup (lower-case names) and the
    /// request's query string.
    pub fn from_lookup(
        get: impl Fn(&'static str) -> Option<&'a str>,
        query: Option<&'a str>,
    ) -> Self {
        Self {
            query: query.filter(|q| !q.is_empty()),
            timeout_ms: get(TIMEOUT_MS),
            target_node: get(TARGET_NODE),
            session: get(SESSION),
        }
    }

    fn value(&self, extra: Extra) -> Option<&'a str> {
        match extra {
            Extra::Query => self.query,
            Extra::TimeoutMs => self.timeout_ms,
            Extra::TargetNode => self.target_node,
            Extra::Session => self.session,
        }
    }

    /// A value's digest in [`COVERS`]: the first 128 bits of its BLAKE3
    /// hash, in hex. Finding another value with the same digest takes
    /// ~2^128 hashes.
    fn digest(value: &str) -> String {
        let mut first = [0u8; 16];
        blake3::Hasher::new()
            .update(value.as_bytes())
            .finalize_xof()
            .fill(&mut first);
        first.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The [`COVERS`] text for these extras, `None` when there are none:
    /// `name=digest` items joined by `, `, in [`Extra::ALL`]'s order.
    pub fn covers_text(&self) -> Option<String> {
        let items: Vec<String> = Extra::ALL
            .into_iter()
            .filter_map(|extra| {
                self.value(extra)
                    .map(|v| format!("{}={}", extra.key(), Self::digest(v)))
            })
            .collect();
        (!items.is_empty()).then(|| items.join(", "))
    }

    /// What the covers signature signs: the [`COVERS`] text bound to the
    /// request's v1 signature (so to its capability, id, sender, time and
    /// body), in canonical form, with a `kind` no other signed document has.
    fn covered_bytes(covers: &str, request_signature: &str) -> Result<Vec<u8>, CanonicalError> {
        object_to_canonical_bytes(&mut [
            ("kind", Member::Text(COVERS)),
            ("covers", Member::Text(covers)),
            ("request_signature", Member::Text(request_signature)),
        ])
    }

    /// The two header pairs that cover these extras for the request signed
    /// as `signed`, signed with `key` (the same key); none when there are
    /// no extras, so such a request is a plain v1 one.
    pub fn covers(
        &self,
        key: &DeviceKey,
        signed: &SignedHeaders,
    ) -> Result<Vec<(&'static str, String)>, SignatureError> {
        let Some(covers) = self.covers_text() else {
            return Ok(Vec::new());
        };
        let signature = key.sign_bytes(&Self::covered_bytes(&covers, &signed.signature)?);
        Ok(vec![(COVERS, covers), (COVERS_SIGNATURE, signature)])
    }

    /// Check the [`COVERS`] text received (`covers`) against these extras
    /// as received, naming the first that differs, without any signature
    /// check; then the covers signature (`signature`) to check against the
    /// sender's key, or `None` for a request with no extras and no covers.
    pub fn covered_message(
        &self,
        signed: &SignedHeaders,
        covers: Option<&str>,
        signature: Option<&str>,
    ) -> Result<Option<SignedMessage>, CoverError> {
        let expected = self.covers_text();
        let Some(covers) = covers else {
            return match Extra::ALL.into_iter().find(|e| self.value(*e).is_some()) {
                Some(extra) => Err(CoverError::NotCovered(extra)),
                None => Ok(None),
            };
        };
        if expected.as_deref() != Some(covers) {
            return Err(self.first_difference(covers));
        }
        let signature = signature.ok_or(CoverError::MissingSignature)?;
        let bytes = Self::covered_bytes(covers, &signed.signature)
            .map_err(|e| CoverError::Signature(e.into()))?;
        Ok(Some(SignedMessage::new(bytes, signature, &signed.from)?))
    }

    /// Why `covers` is not the text these extras make.
    fn first_difference(&self, covers: &str) -> CoverError {
        let mut listed: Vec<(Extra, &str)> = Vec::new();
        for item in covers.split(", ") {
            let parsed = item.split_once('=').and_then(|(name, digest)| {
                let extra = Extra::ALL.into_iter().find(|e| e.key() == name)?;
                Some((extra, digest))
            });
            match parsed {
                Some(entry) if !listed.iter().any(|(e, _)| *e == entry.0) => listed.push(entry),
                _ => return CoverError::Malformed,
            }
        }
        for extra in Extra::ALL {
            let covered = listed.iter().find(|(e, _)| *e == extra).map(|(_, d)| *d);
            match (self.value(extra), covered) {
                (Some(_), None) => return CoverError::NotCovered(extra),
                (None, Some(_)) => return CoverError::Removed(extra),
                (Some(v), Some(d)) if Self::digest(v) != d => return CoverError::Changed(extra),
                _ => {}
            }
        }
        // Same items and digests in another order or spacing.
        CoverError::Malformed
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

    /// Headers as a map, for lookups.
    fn lookup(pairs: &[(&'static str, String)]) -> HashMap<&'static str, String> {
        pairs.iter().cloned().collect()
    }

    #[test]
    fn extras_are_covered_when_present_and_every_tampering_is_named() {
        let key = DeviceKey::generate();
        let community = CommunityId::of_root(key.node_id());
        let h = SignedHeaders::sign(&key, community, "/trace/recent", "1.0", &json!({})).unwrap();
        let sent = Extras {
            query: Some("n=5&capability=llm.chat"),
            timeout_ms: Some("3000"),
            target_node: Some("ed25519:someone"),
            session: Some("chat-7"),
        };
        let covers = lookup(&sent.covers(&key, &h).unwrap());
        let (text, sig) = (
            covers.get(COVERS).map(String::as_str),
            covers.get(COVERS_SIGNATURE).map(String::as_str),
        );
        let message = sent.covered_message(&h, text, sig).unwrap().unwrap();
        message.verify().unwrap();

        let tampered = [
            (
                Extras {
                    query: Some("n=500&capability=llm.chat"),
                    ..sent.clone()
                },
                CoverError::Changed(Extra::Query),
            ),
            (
                Extras {
                    timeout_ms: Some("1"),
                    ..sent.clone()
                },
                CoverError::Changed(Extra::TimeoutMs),
            ),
            (
                Extras {
                    target_node: Some("ed25519:other"),
                    ..sent.clone()
                },
                CoverError::Changed(Extra::TargetNode),
            ),
            (
                Extras {
                    session: Some("chat-8"),
                    ..sent.clone()
                },
                CoverError::Changed(Extra::Session),
            ),
            (
                Extras {
                    session: None,
                    ..sent.clone()
                },
                CoverError::Removed(Extra::Session),
            ),
            (
                Extras {
                    query: None,
                    ..sent.clone()
                },
                CoverError::Removed(Extra::Query),
            ),
            (
                Extras {
                    timeout_ms: None,
                    ..sent.clone()
                },
                CoverError::Removed(Extra::TimeoutMs),
            ),
        ];
        for (received, why) in tampered {
            assert_eq!(received.covered_message(&h, text, sig).err(), Some(why));
        }
        // Added to a request that covered none: not covered.
        let plain = Extras::default();
        assert!(
            plain.covers(&key, &h).unwrap().is_empty(),
            "no extras, a v1 request"
        );
        assert!(plain.covered_message(&h, None, None).unwrap().is_none());
        let added = Extras {
            timeout_ms: Some("99"),
            ..Extras::default()
        };
        assert_eq!(
            added.covered_message(&h, None, None).err(),
            Some(CoverError::NotCovered(Extra::TimeoutMs))
        );

        // A covers text rewritten to match the tampered value fails the
        // covers signature.
        let forged = Extras {
            timeout_ms: Some("1"),
            ..sent.clone()
        };
        let forged_text = forged.covers_text().unwrap();
        let message = forged
            .covered_message(&h, Some(&forged_text), sig)
            .unwrap()
            .unwrap();
        assert!(message.verify().is_err());
        // The covers signature of one request does not cover another's.
        let other =
            SignedHeaders::sign(&key, community, "/trace/recent", "1.0", &json!({})).unwrap();
        let message = sent.covered_message(&other, text, sig).unwrap().unwrap();
        assert!(message.verify().is_err());
        assert_eq!(
            sent.covered_message(&h, Some("query=00"), sig).err(),
            Some(CoverError::Changed(Extra::Query))
        );
        assert_eq!(
            sent.covered_message(&h, Some("what"), sig).err(),
            Some(CoverError::Malformed)
        );
        assert_eq!(
            sent.covered_message(&h, text, None).err(),
            Some(CoverError::MissingSignature)
        );
    }

    #[test]
    fn session_ids_are_short_plain_names() {
        for good in ["a", "chat-7", "conv:01HXR.2_x", &"x".repeat(128)] {
            assert_eq!(SessionId::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "has space", "new\nline", "ümlaut", &"x".repeat(129)] {
            assert!(SessionId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
