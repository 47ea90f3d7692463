//! Invites and joining (M13) between real nodes over loopback TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::{Sandbox, decode_qr_png, invite};
use serde_json::{Value, json};

fn fresh_device(name: &str) -> (Sandbox, String) {
    let sb = Sandbox::new();
    let card = sb.identity_card(name);
    (sb, card)
}

#[test]
fn an_invited_device_joins_and_receives_the_history() {
    let founder = Sandbox::new();
    founder.init_non_interactive("founder");
    let _a = founder.start_node(&[]);
    founder.write_history(5);

    // Bob redeems from the saved QR code.
    let (bob, card) = fresh_device("Bob");
    let (text, png) = invite(&founder, &card, &[]);
    assert_eq!(decode_qr_png(&png), text);
    let joined = bob.run(&["invite", "redeem", png.to_str().unwrap()], None);
    assert_eq!(joined.code, 0, "{joined:?}");
    assert!(
        joined.stderr.contains("joined \"founder's community\""),
        "{joined:?}"
    );
    let config = std::fs::read_to_string(bob.config_file()).unwrap();
    assert!(config.contains("community_id"), "{config}");

    // His node fetches the history from the inviter by itself.
    let _b = bob.start_node(&[]);
    let want = founder.event_count();
    common::wait_until(Duration::from_secs(20), "bob has the history", || {
        bob.event_count() == want
    });
    let bob_status: Value =
        serde_json::from_str(&bob.run(&["status", "--json"], None).stdout).unwrap();
    assert_eq!(bob_status["community"]["members"], 2);
    // The inviter, a static peer since the redemption, is a verified peer.
    bob.wait_for_peers(1);
    let status: Value = serde_json::from_str(&bob.run(&["status", "--json"], None).stdout).unwrap();
    let peers = status["peers"].as_array().cloned().unwrap_or_default();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0]["short_id"], founder.key().node_id().short());
    assert_eq!(peers[0]["sources"], json!(["static"]));

    // The same invite cannot be used again, even by its addressee on a
    // device that forgot it joined; nor by anyone else.
    let again = Sandbox::new();
    std::fs::create_dir_all(again.data_dir().join("keys")).unwrap();
    std::fs::copy(
        bob.data_dir().join("keys/device.ed25519"),
        again.data_dir().join("keys/device.ed25519"),
    )
    .unwrap();
    let replay = again.run(&["invite", "redeem", &text], None);
    assert_eq!(replay.code, 4, "{replay:?}");
    assert!(replay.stderr.contains("already used"), "{replay:?}");
    let (carol, _) = fresh_device("Carol");
    let stolen = carol.run(&["invite", "redeem", &text], None);
    assert_eq!(stolen.code, 4, "{stolen:?}");
    assert!(stolen.stderr.contains("addressed to"), "{stolen:?}");
}

#[test]
fn a_headless_device_joins_with_init_join_alone() {
    let founder = Sandbox::new();
    founder.init_non_interactive("founder");
    let _a = founder.start_node(&[]);
    founder.write_history(3);

    let pi = Sandbox::new();
    // No key yet: nothing to show, and the way to make one is named.
    let none = pi.run(&["identity"], None);
    assert_eq!(none.code, 1, "{none:?}");
    assert!(none.stderr.contains("hearthnet init --join"), "{none:?}");
    // `init --join` makes the key and shows the card without reading stdin;
    // `identity` shows it again (captured: the card's text alone).
    let card = pi.identity_card("pi");
    let again = pi.run(&["identity"], None);
    assert_eq!(
        (again.code, again.stdout.trim()),
        (0, card.as_str()),
        "{again:?}"
    );
    assert!(
        !pi.config_file().exists() || {
            let config = std::fs::read_to_string(pi.config_file()).unwrap();
            !config.contains("community_id")
        }
    );

    // A damaged invite is refused with 4 and leaves the device unjoined.
    let (text, _) = invite(&founder, &card, &[]);
    let mut damaged = text.clone().into_bytes();
    let at = damaged.len() / 2;
    damaged[at] = if damaged[at] == b'A' { b'B' } else { b'A' };
    let refused = pi.run(
        &["init", "--join", &String::from_utf8(damaged).unwrap()],
        None,
    );
    assert_eq!(refused.code, 4, "{refused:?}");
    let joined = pi.run(&["init", "--join", &text], None);
    assert_eq!(joined.code, 0, "{joined:?}");
    assert!(
        joined.stderr.contains("joined \"founder's community\""),
        "{joined:?}"
    );
    // The same key, the same card: joining made no new identity.
    assert_eq!(pi.run(&["identity"], None).stdout.trim(), card);
    let _b = pi.start_node(&[]);
    let want = founder.event_count();
    common::wait_until(
        Duration::from_secs(20),
        "the device has the history",
        || pi.event_count() == want,
    );
}

#[test]
fn init_joins_with_an_invite_and_bad_invites_fail_with_4() {
    let founder = Sandbox::new();
    founder.init_non_interactive("founder");
    let _a = founder.start_node(&[]);

    let (eve, card) = fresh_device("Eve");
    let (text, _) = invite(&founder, &card, &["--level", "trusted"]);
    // A flipped character anywhere in the payload breaks it.
    let prefix = "hearthnet://v1/".len();
    for i in [
        prefix,
        prefix + 40,
        text.len() / 2,
        text.len() - 20,
        text.len() - 1,
    ] {
        let mut forged = text.clone().into_bytes();
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let refused = eve.run(&["invite", "redeem", &forged], None);
        assert_eq!(refused.code, 4, "flip at {i}: {refused:?}");
    }
    // The join path of init.
    let joined = eve.run(&["init"], Some(&format!("Eve\n\njoin\n{text}\n")));
    assert_eq!(joined.code, 0, "{joined:?}");
    assert!(joined.stderr.contains("as trusted"), "{joined:?}");

    // An invite that has expired.
    let (dave, card) = fresh_device("Dave");
    // Five seconds: shorter, a loaded machine's node got it already past.
    let (short_lived, _) = invite(&founder, &card, &["--ttl", "0.0014"]);
    let expires_at = hearthnet_onboarding::Invite::decode(&short_lived)
        .unwrap()
        .expires_at;
    common::wait_until(Duration::from_secs(20), "the invite expires", || {
        hearthnet_base::Timestamp::now() > expires_at
    });
    let late = dave.run(&["invite", "redeem", &short_lived], None);
    assert_eq!(late.code, 4, "{late:?}");
    assert!(late.stderr.contains("expired"), "{late:?}");
}

#[test]
fn a_malformed_answer_from_the_inviter_exits_1_naming_the_field() {
    // An inviter (here a stand-in over plain HTTP) that takes the
    // redemption but answers without the community manifest: a bad answer
    // (1), not a bad invite (4), and nothing of it is kept.
    let (frank, _) = fresh_device("Frank");
    let inviter = hearthnet_base::DeviceKey::generate();
    let community = hearthnet_base::CommunityId::of_root(inviter.node_id());
    let (addr, server) =
        common::stand_in(move |_| json!({"community_id": community, "events": []}));
    let invite = hearthnet_onboarding::Invite::create(
        hearthnet_onboarding::InviteRequest {
            community_id: community,
            community_name: "stand-in",
            invitee: frank.key().node_id(),
            level: hearthnet_base::TrustLevel::Member,
            bootstrap_endpoints: vec![hearthnet_identity::Endpoint {
                transport: "http".into(),
                host: addr.ip().to_string(),
                port: addr.port(),
            }],
            expires_at: hearthnet_base::Timestamp::now().plus_seconds(600),
            invite_event_id: "01HXRSTANDIN0000000000000",
            invite_lamport: 1,
        },
        &inviter,
    )
    .unwrap();
    let run = frank.run(&["invite", "redeem", &invite.encode()], None);
    let request = server.join().unwrap();
    assert!(
        request.starts_with("POST /onboarding/v1/redeem "),
        "{request}"
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("field `genesis_manifest`: missing field"),
        "{run:?}"
    );
    let config = std::fs::read_to_string(frank.config_file()).unwrap_or_default();
    assert!(!config.contains("community_id"), "{config}");
}

#[test]
fn invite_create_with_a_malformed_answer_exits_1_naming_the_field() {
    let founder = Sandbox::new();
    founder.init_non_interactive("founder");
    let invitee = hearthnet_base::DeviceKey::generate().node_id();
    let server = common::stand_in_node(
        &founder,
        |_| json!({"output": {"invite": "hearthnet://v1/x"}, "meta": {"event_id": "01HXR", "lamport": 1}}),
    );
    let run = founder.run(&["invite", "create", "--node-id", &invitee.full()], None);
    let request = server.join().unwrap();
    assert!(request.starts_with("POST /bus/v1/call "), "{request}");
    assert!(
        request
            .to_lowercase()
            .contains("x-hearthnet-capability: community.invite"),
        "{request}"
    );
    assert_eq!(run.code, 1, "a bad answer: {run:?}");
    assert!(
        run.stderr.contains(
            "the node's answer to community.invite: field `output.invite_blob`: missing field"
        ),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "no invite shown: {run:?}");
}
