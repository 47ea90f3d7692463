//! Event envelopes (Contract §7.1), read from peers with `Event::verify`.
//!
//! The input as an envelope: never a panic; an envelope that verifies
//! re-encodes to a struct that reads back the same. Then the input, if a
//! JSON object, signed by a real key as its author: it verifies exactly
//! when it is an envelope with a ULID event id, the verified event equals
//! the envelope read as a struct, and changing its Lamport afterwards
//! breaks the signature.
#![no_main]

use hearthnet_base::event::{Event, EventError};
use hearthnet_base::sign_value;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fn check(event: &Event) {
    assert_eq!(event.event_id.len(), 26);
    assert!(event.event_id.parse::<ulid::Ulid>().is_ok());
    let back: Event = serde_json::from_value(event.to_value()).expect("re-encoded event");
    assert_eq!(&back, event);
}

fuzz_target!(|data: &[u8]| {
    let Some(value) = hearthnet_fuzz::json(data) else {
        return;
    };
    if let Ok(event) = Event::verify(&value) {
        check(&event);
    }

    let Value::Object(mut document) = value else {
        return;
    };
    let key = hearthnet_fuzz::key(7);
    document.insert("author".into(), json!(key.node_id()));
    let Ok(signed) = sign_value(Value::Object(document), &key) else {
        return;
    };
    let as_struct = serde_json::from_value::<Event>(signed.clone());
    match Event::verify(&signed) {
        Ok(event) => {
            check(&event);
            assert_eq!(as_struct.ok().as_ref(), Some(&event));
            let mut changed = signed.clone();
            changed["lamport"] = json!(event.lamport ^ 1);
            assert!(matches!(
                Event::verify(&changed),
                Err(EventError::Signature(_))
            ));
        }
        Err(EventError::Malformed(_)) => assert!(as_struct.is_err()),
        Err(EventError::BadEventId(id)) => {
            assert!(as_struct.is_ok());
            assert!(id.len() != 26 || id.parse::<ulid::Ulid>().is_err());
        }
        Err(EventError::Signature(e)) => panic!("a signed envelope was refused: {e}"),
    }
});
