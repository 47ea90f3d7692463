#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report
//! Checks this crate against the checked-in vectors in
//! `testdata/vectors/signing.json`, whose expected values were produced
//! independently of this code (see the file's `about`).

use hearthnet_base::crypto::verify_canonical;
use hearthnet_base::{DeviceKey, NodeId, to_canonical_bytes};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    seed_hex: String,
    node_id_full: String,
    node_id_short: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    payload: String,
    canonical: String,
    signature: String,
}

fn load() -> Vectors {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/vectors/signing.json"
    );
    let text = std::fs::read_to_string(path).expect("vector file readable");
    serde_json::from_str(&text).expect("vector file parses")
}

fn fixed_key(v: &Vectors) -> DeviceKey {
    let seed = data_encoding_hex(&v.seed_hex);
    DeviceKey::from_seed(seed)
}

fn data_encoding_hex(text: &str) -> [u8; 32] {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect();
    bytes.try_into().expect("32 bytes")
}

#[test]
fn identifiers_match_vectors() {
    let v = load();
    let id = fixed_key(&v).node_id();
    assert_eq!(id.full(), v.node_id_full);
    assert_eq!(id.short(), v.node_id_short);
    assert_eq!(NodeId::parse(&v.node_id_full).unwrap(), id);
}

#[test]
fn canonical_bytes_and_signatures_match_vectors() {
    let v = load();
    let key = fixed_key(&v);
    assert!(v.cases.len() >= 4);
    for case in &v.cases {
        let payload: serde_json::Value = serde_json::from_str(&case.payload).unwrap();
        let canonical = to_canonical_bytes(&payload).unwrap();
        assert_eq!(
            String::from_utf8(canonical).unwrap(),
            case.canonical,
            "canonical form of case {}",
            case.name
        );
        assert_eq!(
            key.sign_canonical(&payload).unwrap(),
            case.signature,
            "signature of case {}",
            case.name
        );
        verify_canonical(&payload, &case.signature, &key.node_id()).unwrap();
    }
}

/// The §5.1 envelope is written without building it as a JSON value; the
/// independent signature over the vector's canonical form must check out
/// against headers carrying the same fields.
#[test]
fn signed_request_headers_verify_against_the_envelope_vector() {
    use hearthnet_base::request::SignedHeaders;
    use hearthnet_base::{CommunityId, Timestamp};

    let v = load();
    let case = v
        .cases
        .iter()
        .find(|c| c.name == "request_envelope")
        .expect("an envelope case");
    let envelope: serde_json::Value = serde_json::from_str(&case.payload).unwrap();
    let text = |field: &str| envelope[field].as_str().unwrap().to_owned();
    let headers = SignedHeaders {
        capability: text("capability"),
        version: text("version"),
        request_id: text("request_id"),
        from: NodeId::parse(&text("from")).unwrap(),
        community: CommunityId::parse(&text("community")).unwrap(),
        timestamp: Timestamp::parse(&text("timestamp")).unwrap(),
        signature: case.signature.clone(),
    };
    let body = &envelope["body"];
    headers.signed_message(body).unwrap().verify().unwrap();
    let mut other = body.clone();
    other["input"]["text"] = "hallo!".into();
    assert!(headers.signed_message(&other).unwrap().verify().is_err());
}
