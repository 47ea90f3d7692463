//! Gathering co-signatures with `hearthnet proposal`: real nodes, each
//! co-signing with its own key through its own CLI, the change submitted
//! once its quorum is reached and applied by every member.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::community::chain_at;
use common::{Run, Sandbox, wait_until};
use serde_json::Value;

fn members(sb: &Sandbox) -> usize {
    sb.status().map_or(0, |s| s.community.members)
}

fn sync(sb: &Sandbox, peer: &str) -> Run {
    sb.run(&["sync", "--peer", peer], None)
}

#[test]
fn a_revocation_gathered_through_the_co_signing_flow_takes_effect_on_every_node() {
    let (nodes, _running) = chain_at(&["trusted", "trusted", "member"], |_| Vec::new());
    let [founder, t1, t2, target] = &nodes[..] else {
        unreachable!()
    };
    for sb in &nodes {
        wait_until(
            Duration::from_secs(30),
            "every node knows every member",
            || members(sb) == 4,
        );
    }
    let target_id = target.key().node_id().full();

    // t1 proposes; its node co-signs at once.
    let proposed = t1.run(
        &["proposal", "revoke", &target_id, "--reason", "compromised"],
        None,
    );
    assert_eq!(proposed.code, 0, "{proposed:?}");
    let text = proposed.stdout.trim().to_owned();
    assert!(text.starts_with("hearthnet-proposal://v1/"), "{proposed:?}");
    assert!(
        proposed.stderr.contains("1 of 3 co-signatures"),
        "{proposed:?}"
    );
    assert!(proposed.stderr.contains("2 still missing"), "{proposed:?}");
    for may in [founder, t2] {
        let short = may.key().node_id().short();
        assert!(
            proposed.stderr.contains(&short),
            "{short} may sign: {proposed:?}"
        );
    }

    // Submitting now is refused, saying what is missing; nothing is written.
    let early = t1.run(&["proposal", "submit", &text], None);
    assert_eq!(early.code, 4, "{early:?}");
    assert!(early.stderr.contains("2 still missing"), "{early:?}");
    assert_eq!(members(t1), 4);

    // t2 co-signs from standard input, the founder from a file.
    let second = t2.run(&["proposal", "cosign", "-"], Some(&text));
    assert_eq!(second.code, 0, "{second:?}");
    assert!(second.stderr.contains("1 still missing"), "{second:?}");
    let file = founder.home().join("proposal.txt");
    std::fs::write(&file, &second.stdout).unwrap();
    let third = founder.run(
        &["proposal", "cosign", file.to_str().unwrap(), "--json"],
        None,
    );
    assert_eq!(third.code, 0, "{third:?}");
    let standing: Value = serde_json::from_str(&third.stdout).unwrap();
    assert_eq!(standing["missing"], 0, "{standing}");
    assert_eq!(standing["signed"], 3, "{standing}");
    assert!(
        standing["explanation"]
            .as_str()
            .unwrap()
            .contains("ready to submit"),
        "{standing}"
    );

    // The proposer submits; every node applies it and refuses the key.
    let submitted = t1.run(
        &["proposal", "submit", standing["text"].as_str().unwrap()],
        None,
    );
    assert_eq!(submitted.code, 0, "{submitted:?}");
    for sb in [founder, t1, t2] {
        wait_until(
            Duration::from_secs(30),
            "the revocation reaches every node",
            || members(sb) == 3,
        );
        let refused = sync(target, &sb.peer_addr());
        assert_ne!(refused.code, 0, "{refused:?}");
        assert!(
            refused.stderr.contains("not a member") || refused.stderr.contains("revoked"),
            "{refused:?}"
        );
    }
    // Submitting the same proposal again changes nothing: its target is
    // gone.
    let again = t2.run(
        &["proposal", "submit", standing["text"].as_str().unwrap()],
        None,
    );
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("is revoked"), "{again:?}");
}

#[test]
fn a_proposal_below_its_quorum_is_refused_with_the_missing_count() {
    let (nodes, _running) = chain_at(&["member"], |_| Vec::new());
    let [founder, member] = &nodes[..] else {
        unreachable!()
    };
    wait_until(
        Duration::from_secs(30),
        "the founder knows the member",
        || members(founder) == 2,
    );
    let member_id = member.key().node_id().full();
    let proposed = founder.run(&["proposal", "revoke", &member_id, "--json"], None);
    assert_eq!(proposed.code, 0, "{proposed:?}");
    let standing: Value = serde_json::from_str(&proposed.stdout).unwrap();
    assert_eq!(
        (
            &standing["needed"],
            &standing["signed"],
            &standing["missing"]
        ),
        (&Value::from(3), &Value::from(1), &Value::from(2)),
        "{standing}"
    );
    assert_eq!(standing["may_sign"], Value::Array(Vec::new()), "{standing}");
    let text = standing["text"].as_str().unwrap();
    let refused = founder.run(&["proposal", "submit", text], None);
    assert_eq!(refused.code, 4, "{refused:?}");
    assert!(refused.stderr.contains("2 still missing"), "{refused:?}");
    assert!(
        refused.stderr.contains("Nobody else may co-sign"),
        "{refused:?}"
    );
    // The member may not co-sign (and could not sign its own revocation).
    let member_signs = member.run(&["proposal", "cosign", text], None);
    assert_eq!(member_signs.code, 4, "{member_signs:?}");
    // Text that is no proposal is a usage error, before the node is asked.
    let garbage = founder.run(&["proposal", "cosign", "not-a-proposal"], None);
    assert_eq!(garbage.code, 2, "{garbage:?}");
    assert_eq!(members(founder), 2);
}
