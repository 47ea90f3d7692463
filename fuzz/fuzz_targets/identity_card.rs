//! Identity cards (`hearthnet-id://v1/…`, M13 §4.4) and the identifier
//! forms they and every signed document carry: NodeID, CommunityID, BLAKE3
//! ids.
//!
//! Asserts: a decoded card re-encodes to a link that decodes to the same
//! card; `node_id_from_text` yields an id whose full form reads back; each
//! identifier that parses has exactly one spelling (printing it gives the
//! input back), and its short form has the documented shape.
#![no_main]

use hearthnet_base::{Blake3Id, CommunityId, NodeId};
use hearthnet_onboarding::IdentityCard;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(card) = IdentityCard::decode(text) {
        let link = card.encode();
        assert!(link.starts_with("hearthnet-id://v1/"));
        assert_eq!(IdentityCard::decode(&link).as_ref(), Some(&card));
        assert_eq!(
            IdentityCard::node_id_from_text(text),
            Some(card.node_id_full)
        );
    }
    if let Some(id) = IdentityCard::node_id_from_text(text) {
        assert_eq!(NodeId::parse(&id.full()), Ok(id));
    }
    if let Ok(id) = NodeId::parse(text) {
        assert_eq!(id.full(), text, "a second spelling of a node id");
        let short = id.short();
        assert_eq!(short.len(), "ed25519:".len() + 19, "{short}");
        // Whether the key is usable is a separate, non-panicking question.
        let _ = id.verifying_key();
    }
    if let Ok(id) = CommunityId::parse(text) {
        assert_eq!(id.full(), text, "a second spelling of a community id");
        assert_eq!(CommunityId::of_root(id.root_key()), id);
    }
    if let Ok(id) = Blake3Id::parse(text) {
        assert_eq!(id.to_string(), text, "a second spelling of a BLAKE3 id");
        assert!(id.to_string().starts_with(&id.short()));
    }
});
