//! Schema hashes of capability descriptors (Contract §11).

use serde_json::{Value, json};

use crate::canonical::{CanonicalError, to_canonical_bytes};
use crate::hash::Blake3Id;

/// BLAKE3 of the canonical JSON of the descriptor's name, version and
/// schemas. Two implementations with equal hashes speak identically.
pub fn schema_hash(
    name: &str,
    version: &str,
    request_schema: &Value,
    response_schema: Option<&Value>,
    stream_schema: Option<&Value>,
) -> Result<Blake3Id, CanonicalError> {
    let doc = json!({
        "name": name,
        "version": version,
        "request_schema": request_schema,
        "response_schema": response_schema,
        "stream_schema": stream_schema,
    });
    Ok(Blake3Id::of(&to_canonical_bytes(&doc)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ignores_key_order_and_number_spelling() {
        let a: Value =
            serde_json::from_str(r#"{"type":"object","maxItems":256.0,"required":["texts"]}"#)
                .unwrap();
        let b: Value =
            serde_json::from_str(r#"{"required":["texts"],"maxItems":256,"type":"object"}"#)
                .unwrap();
        let ha = schema_hash("embed.text", "1.0", &a, None, None).unwrap();
        let hb = schema_hash("embed.text", "1.0", &b, None, None).unwrap();
        assert_eq!(ha, hb);
        assert_ne!(
            ha,
            schema_hash("embed.text", "1.1", &a, None, None).unwrap()
        );
    }
}
