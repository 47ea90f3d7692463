//! Identifier forms of the GLOSSARY: NodeID (full and short) and CommunityID.
//!
//! The full NodeID *is* the Ed25519 public key (`ed25519:` + base64url
//! without padding of the 32 bytes), so holding a NodeID is enough to check
//! a signature or a TLS certificate; there is no trust on first use.
//!
//! The short form is for people only. The GLOSSARY describes it both as
//! "the first 8 bytes, base32" and as `XXXX-XXXX-XXXX-XXXX` (16 characters of
//! `[A-Z2-7]`, M01's test regex). Eight bytes give only 13 base32 characters,
//! so we keep the documented *format*, which is what people see and what
//! other implementations' tests match, and encode the first 10 bytes (80
//! bits, exactly 16 characters). Short forms never appear in protocol fields.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Prefix of every key-derived identifier and signature on the wire.
pub const ED25519_PREFIX: &str = "ed25519:";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("`{0}` is not a node id: it must start with `ed25519:`")]
    MissingPrefix(String),
    #[error(
        "`{0}` is a short node id; protocol fields need the full form (ed25519:<43 base64url chars>)"
    )]
    ShortForm(String),
    #[error("`{0}` is not a node id: the part after `ed25519:` is not base64url without padding")]
    BadEncoding(String),
    #[error("`{input}` is not a node id: it encodes {len} bytes, an Ed25519 public key has 32")]
    WrongLength { input: String, len: usize },
    #[error("`{0}` is not a valid Ed25519 public key")]
    NotOnCurve(String),
    #[error("`{0}` is a key of small order, for which anyone can make signatures")]
    WeakKey(String),
}

/// A node's identity: its 32-byte Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; 32]);

impl NodeId {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `ed25519:<base64url-nopad>`: the form used in every protocol field.
    pub fn full(&self) -> String {
        format!("{ED25519_PREFIX}{}", BASE64URL_NOPAD.encode(&self.0))
    }

    /// `ed25519:XXXX-XXXX-XXXX-XXXX`: for display only.
    pub fn short(&self) -> String {
        let encoded = BASE32_NOPAD.encode(&self.0[..10]);
        let groups: Vec<&str> = (0..4).map(|i| &encoded[i * 4..i * 4 + 4]).collect();
        format!("{ED25519_PREFIX}{}", groups.join("-"))
    }

    /// Parse the full form; the short form is refused with a clear error.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let rest = text
            .strip_prefix(ED25519_PREFIX)
            .ok_or_else(|| IdError::MissingPrefix(text.to_owned()))?;
        if rest.len() == 19 && rest.as_bytes().get(4) == Some(&b'-') {
            return Err(IdError::ShortForm(text.to_owned()));
        }
        let bytes = BASE64URL_NOPAD
            .decode(rest.as_bytes())
            .map_err(|_| IdError::BadEncoding(text.to_owned()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| IdError::WrongLength {
                input: text.to_owned(),
                len: b.len(),
            })?;
        // Whether the bytes are a point on the curve is checked where the
        // key is used ([`NodeId::verifying_key`]), so a signed request pays
        // for one point decompression, not two.
        Ok(Self(bytes))
    }

    /// The key as a curve point. Decompressing it is a tenth of the cost
    /// of checking a signed request, and the same few members sign nearly
    /// everything, so recent keys are kept (bounded: a flood of strangers'
    /// keys only empties the cache).
    pub fn verifying_key(&self) -> Result<ed25519_dalek::VerifyingKey, IdError> {
        type Keys = HashMap<[u8; 32], ed25519_dalek::VerifyingKey>;
        const KEPT: usize = 4096;
        static KEYS: LazyLock<Mutex<Keys>> = LazyLock::new(Default::default);
        if let Some(key) = KEYS.lock().get(&self.0).copied() {
            return Ok(key);
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .map_err(|_| IdError::NotOnCurve(self.full()))?;
        if key.is_weak() {
            return Err(IdError::WeakKey(self.full()));
        }
        let mut keys = KEYS.lock();
        if keys.len() >= KEPT {
            keys.clear();
        }
        keys.insert(self.0, key);
        Ok(key)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl FromStr for NodeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full())
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A community's identity: the full NodeID form of its root public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommunityId(NodeId);

impl CommunityId {
    /// The community whose root key is `root`.
    pub fn of_root(root: NodeId) -> Self {
        Self(root)
    }

    pub fn root_key(&self) -> NodeId {
        self.0
    }

    pub fn full(&self) -> String {
        self.0.full()
    }

    pub fn short(&self) -> String {
        self.0.short()
    }

    pub fn parse(text: &str) -> Result<Self, IdError> {
        NodeId::parse(text).map(Self)
    }
}

impl fmt::Display for CommunityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full())
    }
}

impl fmt::Debug for CommunityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommunityId({})", self.short())
    }
}

impl FromStr for CommunityId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::DeviceKey;

    #[test]
    fn keys_of_small_order_are_refused() {
        // The neutral element (y = 1): every signature "verifies" for it.
        let mut neutral = [0u8; 32];
        neutral[0] = 1;
        assert!(matches!(
            NodeId::from_bytes(neutral).verifying_key(),
            Err(IdError::WeakKey(_))
        ));
        assert!(DeviceKey::generate().node_id().verifying_key().is_ok());
    }

    #[test]
    fn short_form_matches_the_documented_pattern() {
        for _ in 0..50 {
            let short = DeviceKey::generate().node_id().short();
            let body = short.strip_prefix("ed25519:").unwrap();
            let groups: Vec<&str> = body.split('-').collect();
            assert_eq!(groups.len(), 4, "{short}");
            for g in groups {
                assert_eq!(g.len(), 4);
                assert!(
                    g.bytes()
                        .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
                );
            }
        }
    }

    #[test]
    fn full_form_round_trips_and_short_form_is_refused() {
        let id = DeviceKey::generate().node_id();
        assert_eq!(NodeId::parse(&id.full()).unwrap(), id);
        assert_eq!(id.full().len(), 8 + 43);
        assert!(matches!(
            NodeId::parse(&id.short()),
            Err(IdError::ShortForm(_))
        ));
        assert!(matches!(
            NodeId::parse("abc"),
            Err(IdError::MissingPrefix(_))
        ));
        assert!(matches!(
            NodeId::parse("ed25519:AAAA"),
            Err(IdError::WrongLength { .. })
        ));
        assert!(matches!(
            NodeId::parse("ed25519:!!!"),
            Err(IdError::BadEncoding(_))
        ));
    }
}
