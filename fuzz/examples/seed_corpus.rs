//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/`
//! from real samples: `cargo run --example seed_corpus` in `fuzz/`. Seeds
//! that carry a timestamp or a random id differ between runs; the checked-in
//! corpus is one such run (then minimised with `cargo fuzz cmin`).

use std::path::{Path, PathBuf};

use hearthnet_base::event::{Event, NewEvent};
use hearthnet_base::request::SignedHeaders;
use hearthnet_base::{Blake3Id, CommunityId, DeviceKey, Timestamp, TrustLevel};
use hearthnet_blobs::{ChunkRef, Manifest};
use hearthnet_discovery::Announcement;
use hearthnet_events::sync::{IdSet, Initiator, answer};
use hearthnet_fuzz::key;
use hearthnet_identity::Endpoint;
use hearthnet_onboarding::{IdentityCard, Invite, InviteRequest};
use hearthnet_wire::local::samples;
use hearthnet_wire::peer::{
    ChunksRequest, EventsPush, EventsReport, FetchAnswer, FetchRequest, Heads, Hex, Reconcile,
    Redeem, Redeemed, Rejection, SubscribeQuery, SyncNow,
};
use serde_json::{Value, json};

struct Corpus(PathBuf);

impl Corpus {
    fn put(&self, target: &str, name: &str, bytes: impl AsRef<[u8]>) {
        let dir = self.0.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn event(key: &DeviceKey, community: CommunityId, lamport: u64, kind: &str, data: Value) -> Value {
    Event::create(
        NewEvent {
            community_id: community,
            lamport,
            event_type: kind,
            data,
        },
        key,
    )
    .unwrap()
    .to_value()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let c = Corpus(root.clone());
    let founder = key(1);
    let stranger = key(8);
    let signer = key(7);
    let community = CommunityId::of_root(founder.node_id());
    let now = Timestamp::now();
    let later = Timestamp::parse("2030-01-01T00:00:00Z").unwrap();

    // canonical_json: the signing vectors' payloads and a few edges.
    let vectors: Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors/signing.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for case in vectors["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        c.put("canonical_json", name, case["payload"].as_str().unwrap());
    }
    for (i, text) in [
        r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}"#,
        r#"{"\uff61":1,"\ud83d\ude00":2,"a":3,"":[{}]}"#,
        "[9007199254740991,-9007199254740991,9007199254740992,1e16,5e-324,-0.0]",
        "\"\\u0000\\u001f\\b\\f\\n\\r\\t\\\"\\\\\\u007f\\u2028\"",
    ]
    .iter()
    .enumerate()
    {
        c.put("canonical_json", &format!("edge-{i}"), text);
    }

    // timestamp
    for (i, t) in [
        "2026-05-26T08:14:22Z",
        "2026-05-26T08:14:22.281Z",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:60Z",
        "2026-05-26T10:14:22+02:00",
        "2026-05-26t08:14:22z",
    ]
    .iter()
    .enumerate()
    {
        c.put("timestamp", &format!("seed-{i}"), t);
    }

    // event and event_log
    let invited = event(
        &founder,
        community,
        1,
        "community.member.invited",
        json!({"invitee_node_id": stranger.node_id(), "display_name": "Tablet",
               "initial_level": "member", "expires_at": later}),
    );
    let joined = event(
        &stranger,
        community,
        2,
        "community.member.joined",
        json!({"invite_event_id": invited["event_id"], "node_manifest": {}}),
    );
    let samples_of_types = [
        event(
            &founder,
            community,
            3,
            "market.post.created",
            json!({"client_id": "c1", "category": "offer", "title": "Wasserkanister 20 l",
                   "body": "abzugeben", "ttl_seconds": 86400}),
        ),
        event(
            &founder,
            community,
            4,
            "chat.message.sent",
            json!({"client_id": "c2", "recipient": stranger.node_id(), "body": "hallo"}),
        ),
        event(
            &founder,
            community,
            5,
            "file.cid.pinned",
            json!({"cid": Blake3Id::of(b"x")}),
        ),
        event(
            &founder,
            community,
            6,
            "community.member.promoted",
            json!({"target_node_id": stranger.node_id(), "new_level": "trusted", "co_signers": []}),
        ),
        event(
            &founder,
            community,
            7,
            "community.member.revoked",
            json!({"target_node_id": stranger.node_id(), "reason": "lost", "co_signers": []}),
        ),
        event(
            &founder,
            community,
            8,
            "community.policy.updated",
            json!({"policy": {"quorum": 2}}),
        ),
    ];
    c.put(
        "event_log",
        "admission",
        serde_json::to_vec(&json!([invited, joined])).unwrap(),
    );
    c.put(
        "event_log",
        "invited",
        serde_json::to_vec(&invited).unwrap(),
    );
    c.put("event_log", "joined", serde_json::to_vec(&joined).unwrap());
    for (i, e) in samples_of_types.iter().enumerate() {
        c.put(
            "event_log",
            &format!("type-{i}"),
            serde_json::to_vec(e).unwrap(),
        );
    }
    c.put(
        "event_log",
        "batch",
        serde_json::to_vec(&Value::Array(samples_of_types.to_vec())).unwrap(),
    );
    let by_signer = event(
        &signer,
        community,
        9,
        "market.post.created",
        json!({"client_id": "c3", "category": "ask", "title": "t", "body": "b", "ttl_seconds": 60}),
    );
    c.put("event", "signed", serde_json::to_vec(&by_signer).unwrap());
    c.put("event", "invited", serde_json::to_vec(&invited).unwrap());
    let mut fraction = by_signer.clone();
    fraction["wall_clock"] = json!("2026-05-26T08:14:22.5Z");
    c.put("event", "fraction", serde_json::to_vec(&fraction).unwrap());

    // blob_manifest
    for (i, sizes) in [vec![], vec![5], vec![262_144, 262_144, 1]]
        .into_iter()
        .enumerate()
    {
        let chunks = sizes
            .iter()
            .enumerate()
            .map(|(n, &s)| ChunkRef {
                cid: Blake3Id::of(&[n as u8]),
                size_bytes: s,
            })
            .collect();
        c.put(
            "blob_manifest",
            &format!("manifest-{i}"),
            serde_json::to_vec(&Manifest::new(chunks).to_wire()).unwrap(),
        );
    }

    // chunk_frames
    let record = |index: u32, bytes: &[u8]| {
        let mut r = vec![1u8];
        r.extend_from_slice(&index.to_be_bytes());
        r.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        r.extend_from_slice(bytes);
        r
    };
    let mut body = vec![3u8];
    body.extend(record(0, b"abc"));
    body.extend(record(7, b""));
    body.push(0);
    c.put("chunk_frames", "chunks", &body);
    let error = br#"{"error":"NOT_FOUND","message":"no such blob"}"#;
    let mut body = vec![1u8];
    body.extend(record(2, b"xyz"));
    body.push(2);
    body.extend_from_slice(&(error.len() as u32).to_be_bytes());
    body.extend_from_slice(error);
    c.put("chunk_frames", "error", &body);
    c.put(
        "chunk_frames",
        "cut",
        [0u8, 1, 0, 0, 0, 1, 0, 0, 0, 9, b'a'],
    );

    // invite
    let invite = Invite::create(
        InviteRequest {
            community_id: community,
            community_name: "Niederrhein Demo",
            invitee: stranger.node_id(),
            level: TrustLevel::Member,
            bootstrap_endpoints: vec![Endpoint {
                transport: "https".into(),
                host: "192.168.188.25".into(),
                port: 7443,
            }],
            expires_at: later,
            invite_event_id: "01HXR3F7J8Q2W0KQ5M1N9ZB6TC",
            invite_lamport: 1,
        },
        &signer,
    )
    .unwrap();
    c.put("invite", "link", invite.encode());
    c.put("invite", "document", serde_json::to_vec(&invite).unwrap());
    c.put("invite", "garbled", "hearthnet://v1/eyJhIjoxfQ");

    // identity_card
    let card = IdentityCard {
        node_id_full: stranger.node_id(),
        display_name: "Hannes' Tablet".into(),
    };
    c.put("identity_card", "card", card.encode());
    c.put("identity_card", "node", stranger.node_id().full());
    c.put("identity_card", "short", stranger.node_id().short());
    c.put("identity_card", "community", community.full());
    c.put("identity_card", "blake3", Blake3Id::of(b"x").to_string());

    // udp_announcement and mdns_txt
    let caps: Vec<String> = ["llm.chat", "file.read", "experimental.echo"]
        .map(String::from)
        .to_vec();
    let a = Announcement::new(founder.node_id().short(), community.short(), 7443, &caps);
    c.put("udp_announcement", "announcement", a.to_datagram());
    c.put(
        "udp_announcement",
        "fields",
        b"node\xffcommunity\xffllm.chat\xfffile.read",
    );
    let mut txt = 7443u16.to_be_bytes().to_vec();
    for (k, v) in a.to_txt("garage.local") {
        txt.extend_from_slice(format!("{k}={v}\n").as_bytes());
    }
    c.put("mdns_txt", "txt", txt);

    // signed_headers
    let body = json!({"params": {}, "input": {"text": "hallo"}});
    let h =
        SignedHeaders::sign_at(&signer, community, "experimental.echo", "1.0", &body, now).unwrap();
    let mut text: Vec<u8> = h
        .to_pairs()
        .iter()
        .map(|(_, v)| format!("{v}\n"))
        .collect::<String>()
        .into_bytes();
    text.push(0xff);
    text.extend(serde_json::to_vec(&body).unwrap());
    c.put("signed_headers", "headers", text);

    // sse_frames
    c.put("sse_frames", "stream",
        ": comment\nevent: token\ndata: {\"text\":\"Sie \"}\n\nevent: token\ndata: {\"text\":\"x\"}\n\nevent: done\ndata: {\"ms\":3}\n\n");
    c.put(
        "sse_frames",
        "error",
        "event: error\r\ndata: {\"error\":\"TIMEOUT\",\r\ndata: \"message\":\"late\"}\r\n\r\n",
    );
    c.put(
        "sse_frames",
        "cut",
        "event: token\ndata: plain text\n\nevent: tok",
    );

    // sync_messages: selector byte, then the document.
    let id = invited["event_id"].as_str().unwrap().to_owned();
    let docs: Vec<Value> = vec![
        serde_json::to_value(Heads {
            community_id: community,
            head: 9,
            sync: vec!["negentropy/1".into()],
            by_community: [(community.full(), 9)].into(),
        })
        .unwrap(),
        serde_json::to_value(EventsPush {
            community_id: Some(community),
            events: vec![invited.clone()],
        })
        .unwrap(),
        serde_json::to_value(EventsReport {
            accepted: 1,
            duplicates: 0,
            rejected: 1,
            rejected_reasons: vec![Rejection {
                event_id: id.clone(),
                reason: "invalid_signature".into(),
                detail: "x".into(),
            }],
            new_head_lamport: 9,
        })
        .unwrap(),
        serde_json::to_value(Reconcile {
            message: Hex(vec![0x61, 0x00, 0xff]),
        })
        .unwrap(),
        serde_json::to_value(FetchRequest {
            hashes: vec![Hex(vec![7; 32])],
        })
        .unwrap(),
        serde_json::to_value(FetchAnswer {
            events: vec![joined.clone()],
        })
        .unwrap(),
        serde_json::to_value(Redeem {
            invite: invite.encode(),
            joined: joined.clone(),
        })
        .unwrap(),
        serde_json::to_value(Redeemed {
            community_id: community,
            genesis_manifest: json!({}),
            events: vec![invited.clone()],
        })
        .unwrap(),
        serde_json::to_value(SyncNow {
            peer: "192.168.1.2:7443".into(),
            protocol: Some("v2".into()),
        })
        .unwrap(),
        serde_json::to_value(ChunksRequest {
            cid: Blake3Id::of(b"x"),
            chunks: Some(vec![0, 2]),
        })
        .unwrap(),
        serde_json::to_value(SubscribeQuery {
            topic: "chat.message.x".into(),
            last_seq: Some(-1),
            timeout: Some(30),
        })
        .unwrap(),
        serde_json::to_value(samples::status("127.0.0.1:7080".parse().unwrap())).unwrap(),
    ];
    for (i, doc) in docs.iter().enumerate() {
        let mut bytes = vec![i as u8];
        bytes.extend(serde_json::to_vec(doc).unwrap());
        c.put("sync_messages", &format!("doc-{i:02}"), bytes);
    }
    c.put("sync_messages", "hex", b"\x0c00ff10ab");

    // reconcile: real messages between two close sets.
    let ours: Vec<(u64, String)> = (0..300).map(|i| (i, format!("e{i:020}"))).collect();
    let mut theirs = ours.clone();
    theirs.retain(|(l, _)| l % 7 != 0);
    theirs.push((5, format!("p{:020}", 5)));
    theirs.sort();
    let (a, b) = (IdSet::new(&ours).unwrap(), IdSet::new(&theirs).unwrap());
    let (mut init, first) = Initiator::new(&a).unwrap();
    let reply = answer(&b, &first).unwrap();
    c.put("reconcile", "first", &first);
    c.put("reconcile", "reply", &reply);
    if let Some(next) = init.step(&reply).unwrap() {
        c.put("reconcile", "next", &next);
    }

    // config_file: the defaults as written, and a few edits with overrides.
    let defaults = hearthnet_config::Config::default().to_toml().unwrap();
    c.put("config_file", "defaults", &defaults);
    c.put("config_file", "empty", "");
    c.put("config_file", "overrides",
        b"[transport]\nport = 7443\n\xffHEARTHNET_TRANSPORT_PORT=7444\nHEARTHNET_OBSERVABILITY_LOG_LEVEL=debug\n");
    c.put(
        "config_file",
        "removed",
        "[identity]\nauto_generate = true\n",
    );
    eprintln!("seed corpus written to {}", root.display());
}
