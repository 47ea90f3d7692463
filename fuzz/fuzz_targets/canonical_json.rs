//! Canonical JSON (Contract §1.2, RFC 8785), differentially against an
//! independent implementation, `serde_json_canonicalizer`.
//!
//! Asserts, for every JSON text serde_json reads:
//! - ours gives byte for byte what the reference gives;
//! - the output is JSON whose own canonical form is itself (idempotent);
//! - `object_to_canonical_bytes` agrees with `to_canonical_bytes`.
//!
//! The one input class skipped: numbers our contract refuses (integers
//! beyond ±(2^53 − 1), §1.1), for which ours returns `IntegerOutOfRange` by
//! design and the reference prints the integer. Refusing them is the only
//! allowed outcome there, and that is asserted instead.
//!
//! A known, documented difference in idempotence: a *float* whose value is
//! an integer beyond 2^53 (say `1e16` or `9007199254740993.0`) is accepted
//! and canonicalised, as RFC 8785 says, to its digits (`10000000000000000`);
//! read back, those digits are an *integer* beyond 2^53, which our
//! canonicaliser refuses (RELIABILITY.md discusses what this means for the
//! contract). The idempotence check accepts exactly that refusal and
//! nothing else.
#![no_main]

use hearthnet_base::canonical::{
    CanonicalError, MAX_SAFE_INTEGER, Member, object_to_canonical_bytes, to_canonical_bytes,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Whether some number in `value` is an integer out of the contract's range.
fn has_unsafe_integer(value: &Value) -> bool {
    match value {
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.unsigned_abs() > MAX_SAFE_INTEGER,
            (None, Some(_)) => true,
            (None, None) => false,
        },
        Value::Array(items) => items.iter().any(has_unsafe_integer),
        Value::Object(map) => map.values().any(has_unsafe_integer),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(value) = hearthnet_fuzz::json(data) else {
        return;
    };
    let ours = match to_canonical_bytes(&value) {
        Ok(bytes) => bytes,
        Err(CanonicalError::IntegerOutOfRange { .. }) => {
            assert!(
                has_unsafe_integer(&value),
                "refused without an unsafe integer"
            );
            return;
        }
        Err(e @ CanonicalError::NonFiniteNumber { .. }) => {
            panic!("serde_json produced a non-finite number: {e}")
        }
    };
    assert!(!has_unsafe_integer(&value), "accepted an unsafe integer");

    let reference = serde_json_canonicalizer::to_vec(&value).expect("the reference refused");
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&reference),
        "ours and RFC 8785 reference differ"
    );

    let read_back: Value = serde_json::from_slice(&ours).expect("canonical output is not JSON");
    match to_canonical_bytes(&read_back) {
        Ok(again) => assert_eq!(ours, again, "canonical form is not idempotent"),
        // The documented float-as-big-integer case only.
        Err(CanonicalError::IntegerOutOfRange { .. }) => {
            assert!(has_unsafe_integer(&read_back));
        }
        Err(e) => panic!("canonical output does not canonicalise: {e}"),
    }

    if let Value::Object(map) = &value {
        let mut members: Vec<(&str, Member<'_>)> = map
            .iter()
            .map(|(k, v)| (k.as_str(), Member::Json(v)))
            .collect();
        let direct = object_to_canonical_bytes(&mut members).expect("members refused");
        assert_eq!(direct, ours, "object_to_canonical_bytes disagrees");
    }
});
