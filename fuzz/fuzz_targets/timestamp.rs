//! Contract timestamps (§1.1): RFC 3339, UTC with `Z`, whole seconds.
//!
//! Asserts: a parsed timestamp prints as exactly `YYYY-MM-DDTHH:MM:SSZ`
//! (20 bytes), that text parses back to the same instant (the wire form is
//! a fixed point), the serde form agrees, and the Unix seconds round-trip;
//! an input not ending in `Z` is always refused.
#![no_main]

use hearthnet_base::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = Timestamp::parse(text) else {
        return;
    };
    assert!(text.ends_with('Z'), "accepted {text:?} without Z");
    let shown = t.to_string();
    assert_eq!(shown.len(), 20, "{shown:?}");
    assert_eq!(
        Timestamp::parse(&shown),
        Ok(t),
        "{shown:?} does not read back"
    );
    assert_eq!(Timestamp::from_unix(t.unix()), t);
    let json = serde_json::to_string(&t).expect("serialise");
    assert_eq!(json, format!("\"{shown}\""));
    let back: Timestamp = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, t);
});
