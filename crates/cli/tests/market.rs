//! The marketplace (M06) between real nodes on loopback TLS: a post made on
//! one node reaches the others by sync, is found by meaning where an
//! embedding model is in reach and by its words where none is, and is gone
//! everywhere once its author expires it; an expiry by a member who may not
//! write it is refused by every node's log, not only by the service.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::community::{chain, rejected_reasons};
use common::{RunningNode, Sandbox, models, peer_client};
use hearthnet_base::event::{Event, NewEvent};
use hearthnet_base::{CommunityId, DeviceKey};
use serde_json::{Value, json};

/// A founder and `members` who joined by invite, all running; member
/// `with_model` serves `embed.text` with MiniLM.
fn community(members: usize, with_model: Option<usize>) -> (Vec<Sandbox>, Vec<RunningNode>) {
    let embed_dir = models::minilm().display().to_string();
    chain(members, |i| {
        if with_model == Some(i) {
            vec![
                ("HEARTHNET_EMBEDDING_MODEL", "all-minilm-l6-v2".to_owned()),
                ("HEARTHNET_EMBEDDING_MODEL_DIR", embed_dir.clone()),
            ]
        } else {
            Vec::new()
        }
    })
}

fn json_of(sb: &Sandbox, args: &[&str]) -> Value {
    let run = sb.run(args, None);
    assert_eq!(run.code, 0, "{args:?}: {run:?}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"))
}

/// The event ids `market ls` shows on `sb`.
fn listed(sb: &Sandbox) -> Vec<String> {
    json_of(sb, &["market", "ls", "--json"])["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// `market search --json` on `sb`: how it ranked, and the event ids.
fn search(sb: &Sandbox, query: &str) -> (String, Vec<String>) {
    let found = json_of(sb, &["market", "search", query, "--json"]);
    let ids = found["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["event_id"].as_str().unwrap().to_owned())
        .collect();
    (found["meta"]["retrieval"].as_str().unwrap().to_owned(), ids)
}

fn eventually(what: &str, check: impl FnMut() -> bool) {
    common::wait_until(Duration::from_secs(30), what, check);
}

/// `events` pushed by `key` to the node at `addr`: the answer's body.
fn push(addr: &str, key: &DeviceKey, community: CommunityId, events: Vec<Value>) -> Value {
    common::runtime().block_on(async {
        peer_client(key, community)
            .post(addr, None, "/sync/v1/events", &json!({"events": events}))
            .await
            .unwrap()
            .body
    })
}

#[test]
fn a_post_travels_is_found_with_and_without_embeddings_and_expires_everywhere() {
    // A (founder) has no embedding model and no neighbour it dials; B
    // serves MiniLM; C dials A and B, so reaches B's model.
    let (nodes, _running) = community(2, Some(1));
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    c.wait_for_peers(2);

    let posted = json_of(
        a,
        &[
            "market",
            "post",
            "Water canister, 20 litres",
            "--body",
            "I need a canister to keep drinking water in until tomorrow.",
            "--category",
            "request",
            "--tag",
            "water",
            "--tag",
            "Emergency",
            "--location",
            "51.5,6.2,Issum",
            "--json",
        ],
    );
    let id = posted["event_id"].as_str().unwrap().to_owned();
    for (title, body) in [
        (
            "Children's bicycle",
            "A 20 inch bike with a basket, free to collect.",
        ),
        ("Fresh bread", "Sourdough loaves baked this morning."),
    ] {
        let other = a.run(&["market", "post", title, "--body", body], None);
        assert_eq!(other.code, 0, "{other:?}");
    }
    assert_eq!(listed(a).len(), 3);

    // Listed on B and C once synced, exactly as A wrote it.
    for sb in [b, c] {
        eventually("the posts reached the member", || listed(sb).len() == 3);
    }
    let on_c = json_of(c, &["market", "ls", "--json", "--tag", "water"]);
    let post = &on_c["posts"][0];
    assert_eq!(post["event_id"], id.as_str());
    assert_eq!(post["author"], json!(a.key().node_id()));
    assert_eq!(post["category"], "request");
    assert_eq!(post["tags"], json!(["water", "emergency"]));
    assert_eq!(
        post["location"],
        json!({"lat": 51.5, "lng": 6.2, "label": "Issum"})
    );

    // Found by meaning where a model is in reach (B's own; C's neighbour's),
    // by its words on A.
    let query = "a container to store drinking water";
    for (sb, how) in [(b, "semantic"), (c, "semantic"), (a, "full_text")] {
        let (retrieval, ids) = search(sb, query);
        assert_eq!(retrieval, how, "{ids:?}");
        assert_eq!(ids.first(), Some(&id), "{how}: {ids:?}");
    }
    let (_, by_meaning) = search(b, "somewhere to buy a loaf");
    assert_ne!(by_meaning.first(), Some(&id), "{by_meaning:?}");

    // B, a member and not the author, may not expire A's post: its own
    // node's service refuses, and an expiry B signs itself is refused by
    // every node's log.
    let refused = b.run(&["market", "expire", &id, "--reason", "stale"], None);
    assert_eq!(refused.code, 4, "{refused:?}");
    assert!(refused.stderr.contains("trusted"), "{refused:?}");
    let community = b.status().unwrap().community.id;
    let lamport = posted["lamport"].as_u64().unwrap() + 100;
    let forged = Event::create(
        NewEvent {
            community_id: community,
            lamport,
            event_type: "market.post.expired",
            data: json!({"author_prev": null, "client_id": "forged", "target_event_id": id,
                         "reason": "stale"}),
        },
        &b.key(),
    )
    .unwrap()
    .to_value();
    for sb in [a, b, c] {
        let reply = push(&sb.peer_addr(), &b.key(), community, vec![forged.clone()]);
        assert_eq!(reply["accepted"], 0, "{reply}");
        assert_eq!(rejected_reasons(&reply), ["unauthorized"], "{reply}");
    }
    for sb in [a, b, c] {
        assert!(listed(sb).contains(&id), "the post stays up");
    }

    // A, its author, expires it: gone from every node's list and search.
    let expired = a.run(&["market", "expire", &id, "--reason", "fulfilled"], None);
    assert_eq!(expired.code, 0, "{expired:?}");
    for sb in [a, b, c] {
        eventually("the expiry reached the member", || {
            !listed(sb).contains(&id)
        });
        let (_, ids) = search(sb, query);
        assert!(!ids.contains(&id), "{ids:?}");
        assert_eq!(listed(sb).len(), 2);
    }
}

#[test]
fn bad_input_is_refused_and_posts_survive_a_restart() {
    let sb = Sandbox::new();
    sb.init_non_interactive("solo");
    let mut node = sb.start_node(&[]);
    let long_title = "x".repeat(201);
    let many_tags: Vec<String> = (0..17).map(|i| format!("t{i}")).collect();
    let mut too_many = vec!["market", "post", "tags"];
    for tag in &many_tags {
        too_many.extend(["--tag", tag.as_str()]);
    }
    let long_body = "y".repeat(4_001);
    for (args, says) in [
        (vec!["market", "post", long_title.as_str()], "input.title"),
        (
            vec!["market", "post", "t", "--body", long_body.as_str()],
            "input.body",
        ),
        (too_many, "input.tags has 17 tags"),
        (vec!["market", "post", "t", "--ttl", "31d"], "--ttl"),
        (
            vec!["market", "post", "t", "--location", "91,6"],
            "latitude",
        ),
        (
            vec!["market", "post", "t", "--location", "Issum"],
            "--location",
        ),
    ] {
        let run = sb.run(&args, None);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains(says), "{args:?}: {run:?}");
    }
    let unknown = sb.run(&["market", "expire", "01JNOSUCHPOST0000000000000"], None);
    assert_eq!(unknown.code, 6, "{unknown:?}");

    let id = sb.run(
        &[
            "market",
            "post",
            "Kanister",
            "--ttl",
            "2h",
            "--client-id",
            "k1",
        ],
        None,
    );
    assert_eq!(id.code, 0, "{id:?}");
    let again = sb.run(&["market", "post", "Kanister", "--client-id", "k1"], None);
    assert_eq!(
        again.stdout, id.stdout,
        "the same client id is the same post"
    );
    node.terminate();
    let _node = sb.start_node(&[]);
    assert_eq!(
        listed(&sb),
        [id.stdout.trim()],
        "the post survived the restart"
    );

    // For people: a table on stdout, how it ranked on stderr.
    let table = sb.run(&["market", "ls"], None);
    assert_eq!(table.code, 0, "{table:?}");
    assert!(table.stdout.starts_with("EVENT ID"), "{table:?}");
    assert!(table.stdout.contains(id.stdout.trim()) && table.stdout.contains("Kanister"));
    let found = sb.run(&["market", "search", "kanister"], None);
    assert_eq!(found.code, 0, "{found:?}");
    assert!(found.stdout.contains("Kanister"), "{found:?}");
    assert!(found.stderr.contains("ranked by the words"), "{found:?}");
    assert!(found.stderr.contains("hint:"), "{found:?}");
}
