//! The documents that cross a process boundary as JSON — the local API's
//! answers and the peer protocols' requests and answers — as serde types
//! that the server and the client share, so the two sides cannot drift.
//!
//! Architecture invariant: plain data and its (de)serialisation only; no
//! IO, no async, no dependency on any crate of ours but `base`. Decoding a
//! peer's or the node's answer goes through [`decode`], whose error names
//! the field that was wrong.

pub mod caps;
pub mod local;
pub mod peer;
pub mod rag;

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
    serde_path_to_error::deserialize(&mut de).map_err(|e| DecodeError::new(document, e))
}

/// Decode an already parsed JSON value as `T`, naming the failing field.
pub fn from_value<T: DeserializeOwned>(
    document: &'static str,
    value: serde_json::Value,
) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| DecodeError::new(document, e))
}

impl DecodeError {
    /// serde reports a missing field at the struct that lacks it: name the
    /// field itself, so `community.members` is what the reader sees.
    fn new(document: &'static str, e: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(field, _)| field.to_owned());
        match missing {
            Some(field) => Self {
                document,
                path: if path == "." {
                    field
                } else {
                    format!("{path}.{field}")
                },
                message: "missing field".to_owned(),
            },
            None => Self {
                document,
                path,
                message,
            },
        }
    }
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

    #[test]
    fn a_missing_field_is_named_itself() {
        let e = decode::<Doc>("a test document", br#"{"inner": {}}"#)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("a test document: field `inner.head`: missing field")
        );
        let e = from_value::<Doc>("a test document", serde_json::json!({}))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("a test document: field `inner`: missing field")
        );
    }
}
