//! The documents that cross a process boundary as JSON — the local API's
//! answers and the peer protocols' requests and answers — as serde types
//! that the server and the client share, so the two sides cannot drift.
//!
//! Architecture invariant: plain data and its (de)serialisation only; no
//! IO, no async, no dependency on any crate of ours but `base`. Decoding a
//! peer's or the node's answer goes through [`decode`], whose error names
//! the field that was wrong.

pub mod peer;

use serde::de::DeserializeOwned;

/// A document that did not have the expected shape.
#[derive(Debug, thiserror::Error)]
#[error("{document}: field `{path}`: {message}")]
pub struct DecodeError {
    /// What was being read, e.g. "the node's status".
    pub document: &'static str,
    /// Where in the document, as a dotted path (`.` for the whole).
    pub path: String,
    pub message: String,
}

/// Decode `bytes` as `T`, naming the failing field on error.
pub fn decode<T: DeserializeOwned>(document: &'static str, bytes: &[u8]) -> Result<T, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| DecodeError {
        document,
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// Decode an already parsed JSON value as `T`, naming the failing field.
pub fn from_value<T: DeserializeOwned>(
    document: &'static str,
    value: serde_json::Value,
) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| DecodeError {
        document,
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Doc {
        #[allow(dead_code)]
        inner: Inner,
    }
    #[derive(Debug, serde::Deserialize)]
    struct Inner {
        #[allow(dead_code)]
        head: u64,
    }

    #[test]
    fn errors_name_the_field() {
        let e = decode::<Doc>("a test document", br#"{"inner": {"head": "x"}}"#)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "a test document: field `inner.head`: invalid type: string \"x\", expected u64 at line 1 column 22"
            )
        );
    }
}
