//! The peer protocols' documents (`hearthnet-wire`): event sync (heads,
//! pushes and their reports, reconciliation and fetches), invite
//! redemption, chunk requests, pub-sub queries, and the local API's status
//! that the CLI reads.
//!
//! The first byte picks the document; the rest is its JSON, decoded with
//! `hearthnet_wire::decode` as the server and client do. Asserts: decoding
//! never panics, an error says what is wrong, and an accepted document encodes
//! to JSON that decodes to the same document (decode → encode → decode is
//! the identity), and `Hex` has one spelling.
#![no_main]

use std::fmt::Debug;

use hearthnet_wire::local::Status;
use hearthnet_wire::peer::{
    ChunksRequest, EventsPush, EventsReport, FetchAnswer, FetchRequest, Heads, Hex, Reconcile,
    Redeem, Redeemed, SubscribeQuery, SyncNow,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(bytes: &[u8]) {
    match hearthnet_wire::decode::<T>("fuzzed", bytes) {
        Ok(doc) => {
            let encoded = serde_json::to_vec(&doc).expect("encode");
            let again = hearthnet_wire::decode::<T>("re-encoded", &encoded)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&encoded)));
            assert_eq!(again, doc);
        }
        // The path may be empty: a member named "" is at path "".
        Err(e) => assert!(!e.message.is_empty(), "an error without a message: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 13 {
        0 => round_trip::<Heads>(body),
        1 => round_trip::<EventsPush>(body),
        2 => round_trip::<EventsReport>(body),
        3 => round_trip::<Reconcile>(body),
        4 => round_trip::<FetchRequest>(body),
        5 => round_trip::<FetchAnswer>(body),
        6 => round_trip::<Redeem>(body),
        7 => round_trip::<Redeemed>(body),
        8 => round_trip::<SyncNow>(body),
        9 => round_trip::<ChunksRequest>(body),
        10 => round_trip::<SubscribeQuery>(body),
        11 => round_trip::<Status>(body),
        _ => {
            let text = String::from_utf8_lossy(body);
            if let Some(hex) = Hex::decode(&text) {
                assert_eq!(hex.encode(), text, "a second spelling of hex");
                assert_eq!(hex.0.len() * 2, text.len());
            }
            assert_eq!(
                Hex::decode(&Hex(body.to_vec()).encode()),
                Some(Hex(body.to_vec()))
            );
        }
    }
});
