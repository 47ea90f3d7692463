//! BLAKE3 identifiers (Contract §1.4): `blake3:` + 64 lowercase hex digits.
//! Used for CIDs, schema hashes and content ids.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const BLAKE3_PREFIX: &str = "blake3:";

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blake3Id([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a BLAKE3 id: expected `blake3:` followed by 64 lowercase hex digits")]
pub struct Blake3IdError(pub String);

impl Blake3Id {
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn parse(text: &str) -> Result<Self, Blake3IdError> {
        let err = || Blake3IdError(text.to_owned());
        let hex = text.strip_prefix(BLAKE3_PREFIX).ok_or_else(err)?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err());
        }
        let hash = blake3::Hash::from_hex(hex).map_err(|_| err())?;
        Ok(Self(*hash.as_bytes()))
    }

    /// The first 16 hex digits, for display only (§1.4).
    pub fn short(&self) -> String {
        let full = self.to_string();
        full[..BLAKE3_PREFIX.len() + 16].to_owned()
    }
}

impl fmt::Display for Blake3Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{BLAKE3_PREFIX}{}",
            blake3::Hash::from_bytes(self.0).to_hex()
        )
    }
}

impl fmt::Debug for Blake3Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

impl Serialize for Blake3Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Blake3Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_and_round_trip() {
        // BLAKE3 of the empty input, from the BLAKE3 reference vectors.
        let id = Blake3Id::of(b"");
        assert_eq!(
            id.to_string(),
            "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(Blake3Id::parse(&id.to_string()).unwrap(), id);
        assert_eq!(id.short(), "blake3:af1349b9f5f9a1a6");
        assert!(
            Blake3Id::parse(
                "blake3:AF1349B9F5F9A1A6A0404DEA36DCC9499BCB25C9ADC112B7CC9A93CAE41F3262"
            )
            .is_err()
        );
        assert!(Blake3Id::parse("sha256:00").is_err());
    }
}
