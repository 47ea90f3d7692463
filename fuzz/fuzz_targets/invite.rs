//! Invites (`hearthnet://v1/…`, M13 §3.1), read with `Invite::decode`.
//!
//! Any input is tried as invite text: never a panic, and an invite that
//! decodes was signed by its inviter. Then the input, if a JSON object, is
//! taken as an invite document, signed by a real key as its inviter and
//! made into a link as `Invite::encode` does. Asserts: that link decodes
//! exactly when the document is an invite of schema version 1, a decoded
//! invite re-encodes to a link that decodes to the same invite whenever
//! the signed document was the invite's own encoding, and a link whose
//! document was changed after signing is refused.
#![no_main]

use data_encoding::BASE64URL_NOPAD;
use hearthnet_base::{sign_value, to_canonical_bytes, verify_value};
use hearthnet_onboarding::{Invite, OnboardingError};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fn link(document: &Value) -> Option<String> {
    let bytes = to_canonical_bytes(document).ok()?;
    Some(format!("hearthnet://v1/{}", BASE64URL_NOPAD.encode(&bytes)))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(invite) = Invite::decode(text)
    {
        let again = Invite::decode(&invite.encode());
        assert!(again.is_ok() || matches!(again, Err(OnboardingError::BadSignature(_))));
    }

    let Some(Value::Object(mut document)) = hearthnet_fuzz::json(data) else {
        return;
    };
    let key = hearthnet_fuzz::key(7);
    document.insert("inviter_node_id".into(), json!(key.node_id()));
    let Ok(signed) = sign_value(Value::Object(document), &key) else {
        return;
    };
    let Some(text) = link(&signed) else {
        return;
    };
    let as_invite = serde_json::from_value::<Invite>(signed.clone());
    match Invite::decode(&text) {
        Ok(invite) => {
            assert_eq!(as_invite.as_ref().ok(), Some(&invite));
            assert_eq!(invite.schema_version, 1);
            assert!(verify_value(&signed, &invite.inviter_node_id).is_ok());
            if serde_json::to_value(&invite).ok().as_ref() == Some(&signed) {
                assert_eq!(Invite::decode(&invite.encode()).ok(), Some(invite.clone()));
            }
            let mut changed = signed.clone();
            changed["invite_lamport"] = json!(invite.invite_lamport ^ 1);
            if let Some(text) = link(&changed) {
                assert!(Invite::decode(&text).is_err(), "a changed invite decodes");
            }
        }
        Err(e) => assert!(
            as_invite.is_err() || as_invite.is_ok_and(|i| i.schema_version != 1),
            "a signed invite was refused: {e}"
        ),
    }
});
