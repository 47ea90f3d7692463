//! Signed request headers (Contract §5.1, `X-HearthNet-*`), read with
//! `SignedHeaders::from_lookup`, and the envelope their signature covers.
//!
//! The input is up to seven header values (lines) and, after a `0xff`
//! byte, a JSON body. Asserts: parsing never panics; parsed headers write
//! (`to_pairs`) headers that parse to the same; building the signed
//! message never panics, and a signature that verifies binds its body. Then the
//! same fields signed by a real key: the headers read back, the signature
//! verifies for this body and for no other, and not under another
//! capability.
#![no_main]

use std::collections::HashMap;

use hearthnet_base::request::{
    CAPABILITY, CAPABILITY_VERSION, COMMUNITY, FROM, REQUEST_ID, SIGNATURE, SignedHeaders,
    TIMESTAMP,
};
use hearthnet_base::{CommunityId, Timestamp};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const NAMES: [&str; 7] = [
    CAPABILITY,
    CAPABILITY_VERSION,
    REQUEST_ID,
    FROM,
    COMMUNITY,
    TIMESTAMP,
    SIGNATURE,
];

fuzz_target!(|data: &[u8]| {
    let (head, body) = hearthnet_fuzz::split(data);
    let head = String::from_utf8_lossy(head);
    let values: HashMap<&str, &str> = NAMES.iter().copied().zip(head.lines()).collect();
    let body: Value = hearthnet_fuzz::json(body).unwrap_or_else(|| json!({}));

    if let Ok(h) = SignedHeaders::from_lookup(|n| values.get(n).copied()) {
        let pairs: HashMap<&str, String> = h.to_pairs().into_iter().collect();
        let again = SignedHeaders::from_lookup(|n| pairs.get(n).map(String::as_str));
        assert_eq!(again.as_ref(), Ok(&h));
        // A signature from the input verifies for its body only (seeds
        // carry real ones).
        if let Ok(message) = h.signed_message(&body)
            && message.verify().is_ok()
        {
            let other = h
                .signed_message(&json!({"other": body}))
                .expect("signed message");
            assert!(
                other.verify().is_err(),
                "a signature verified for two bodies"
            );
        }
    }

    // The same fields, signed.
    let key = hearthnet_fuzz::key(7);
    let community = CommunityId::of_root(hearthnet_fuzz::key(1).node_id());
    let field = |name: &str| values.get(name).copied().unwrap_or("");
    let when = Timestamp::parse(field(TIMESTAMP)).unwrap_or_else(|_| Timestamp::from_unix(0));
    let Ok(h) = SignedHeaders::sign_at(
        &key,
        community,
        field(CAPABILITY),
        field(CAPABILITY_VERSION),
        &body,
        when,
    ) else {
        // Only a body the canonical form refuses (integers beyond 2^53).
        assert!(hearthnet_base::to_canonical_bytes(&body).is_err());
        return;
    };
    let pairs: HashMap<&str, String> = h.to_pairs().into_iter().collect();
    let parsed = SignedHeaders::from_lookup(|n| pairs.get(n).map(String::as_str))
        .expect("signed headers read back");
    assert_eq!(parsed, h);
    let message = parsed.signed_message(&body).expect("signed message");
    assert!(message.verify().is_ok(), "a real signature does not verify");
    let other = json!({"other": body});
    let tampered = parsed.signed_message(&other).expect("signed message");
    assert!(
        tampered.verify().is_err(),
        "the signature does not bind the body"
    );
    let mut moved = parsed;
    moved.capability.push('x');
    let moved = moved.signed_message(&body).expect("signed message");
    assert!(
        moved.verify().is_err(),
        "the signature does not bind the capability"
    );
});
