//! Direct messages between real nodes (M10, Contract §4.15–§4.16): direct
//! delivery, store-and-forward through an anchor while the recipient is
//! away, receipts, `history` on both sides and `--follow`, what a third
//! member and the anchor can (not) see, and the refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::community::{FAST_SYNC, member};
use common::{RunningNode, Sandbox, peer_client, wait_until};
use hearthnet_base::event::{Event, NewEvent};
use hearthnet_base::{CommunityId, DeviceKey, NodeId};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

/// Start `sb` with `peers` (running) as its static peers.
fn start(sb: &Sandbox, peers: &[&Sandbox]) -> RunningNode {
    let list: Vec<String> = peers
        .iter()
        .map(|p| format!("\"{}\"", p.peer_addr()))
        .collect();
    let list = format!("[{}]", list.join(","));
    sb.start_node(&[FAST_SYNC, ("HEARTHNET_DISCOVERY_STATIC_PEERS", &list)])
}

fn id(sb: &Sandbox) -> NodeId {
    sb.key().node_id()
}

fn community_of(sb: &Sandbox) -> CommunityId {
    sb.client().status().expect("the node answers").community.id
}

/// `chat send` to `to`: the node's answer.
fn send(from: &Sandbox, to: NodeId, text: &str) -> Value {
    let run = from.run(&["chat", "send", &to.full(), text, "--json"], None);
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str(&run.stdout).expect("one JSON object")
}

/// `chat history [peer] --json`: the messages.
fn history(sb: &Sandbox, peer: Option<NodeId>) -> Vec<Value> {
    let mut args = vec!["chat".to_owned(), "history".to_owned(), "--json".to_owned()];
    args.extend(peer.map(|p| p.full()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = sb.run(&args, None);
    assert_eq!(run.code, 0, "{run:?}");
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn bodies(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect()
}

/// Whether any file under `dir` holds `needle` (the SQLite database, its
/// WAL, snapshots: everything the node keeps).
fn disk_holds(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            disk_holds(&path, needle)
        } else {
            std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        }
    })
}

#[test]
fn a_direct_message_travels_through_an_anchor_while_its_recipient_is_away() {
    // C founds the community: its root key, an anchor.
    let c = Sandbox::new();
    c.init_non_interactive("anchor");
    let _c_node = c.start_node(&[FAST_SYNC]);
    let (a, b, d) = (member(&c, "alice"), member(&c, "bob"), member(&c, "dora"));

    // Both online: A reaches B directly; B's follower hears it live.
    let mut b_node = start(&b, &[&c]);
    let mut a_node = start(&a, &[&c, &b]);
    a.wait_for_peers(2);
    let mut follow = b
        .command(&["chat", "history", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chat history --follow");
    let (lines_tx, lines) = mpsc::channel();
    let stdout = follow.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    // The first message reaches the follower (from the history it prints
    // at start or from its wait); the second can only come live.
    let next_line = || -> Value {
        let line = lines
            .recv_timeout(LIMIT)
            .expect("the follower prints the message");
        serde_json::from_str(&line).unwrap()
    };
    for text in ["Hallo Bob, hast du Strom?", "Und Wasser?"] {
        let sent = send(&a, id(&b), text);
        assert_eq!(sent["delivered"], "direct", "{sent}");
        let heard = next_line();
        assert_eq!(heard["body"], text);
        assert_eq!(heard["from"], json!(id(&a)));
    }
    let _ = follow.kill();
    let _ = follow.wait();

    // B reads the conversation (a read receipt); A sees both receipts.
    let at_b = history(&b, Some(id(&a)));
    assert_eq!(bodies(&at_b), ["Hallo Bob, hast du Strom?", "Und Wasser?"]);
    wait_until(LIMIT, "A sees B's delivered and read receipts", || {
        let at_a = history(&a, Some(id(&b)));
        at_a.len() == 2
            && at_a
                .iter()
                .all(|m| m["delivered_at"].is_string() && m["read_at"].is_string())
    });

    // B goes away; A's next message is held by the anchor C.
    b_node.terminate();
    let sent = send(&a, id(&b), "Treffen um 18 Uhr am Brunnen");
    assert_eq!(sent["delivered"], "forwarded", "{sent}");
    let event_id = sent["event_id"].as_str().unwrap().to_owned();
    a_node.terminate();

    // D, a third member, syncs the sealed message from C but cannot read
    // it, nor subscribe to B's topic at C or at its own node.
    let _d_node = start(&d, &[&c]);
    wait_until(LIMIT, "D holds the sealed message", || {
        disk_holds(&d.data_dir(), event_id.as_bytes())
    });
    assert!(history(&d, None).is_empty());
    let topic = [
        ("topic", format!("chat.message.{}", id(&b).full())),
        ("timeout", "0".to_owned()),
    ];
    let refused = d.client().get("/pubsub/v1/subscribe", &topic).unwrap_err();
    assert!(refused.to_string().contains("unauthorized"), "{refused}");
    let at_c = common::runtime().block_on(async {
        let path = format!(
            "/pubsub/v1/subscribe?topic=chat.message.{}&timeout=0",
            id(&b).full()
        );
        peer_client(&d.key(), community_of(&c))
            .get(&c.peer_addr(), None, &path)
            .await
    });
    let Err(refused) = at_c else {
        panic!("C let D subscribe to B's topic");
    };
    assert!(refused.to_string().contains("unauthorized"), "{refused}");

    // B returns, knowing only C, and gets the message from it.
    let _b_node = start(&b, &[&c]);
    wait_until(LIMIT, "B reads the forwarded message", || {
        bodies(&history(&b, Some(id(&a)))).contains(&"Treffen um 18 Uhr am Brunnen".to_owned())
    });
    // B's receipt travels back through C to A when A returns.
    let _a_node = start(&a, &[&c]);
    wait_until(LIMIT, "A sees the forwarded message delivered", || {
        history(&a, Some(id(&b)))
            .iter()
            .any(|m| m["event_id"] == event_id.as_str() && m["delivered_at"].is_string())
    });

    // Neither the anchor nor the third member ever held the plaintext.
    for (who, sb) in [("C", &c), ("D", &d)] {
        for text in ["Treffen um 18 Uhr", "Hallo Bob"] {
            assert!(
                !disk_holds(&sb.data_dir(), text.as_bytes()),
                "{who}'s data holds {text:?}"
            );
        }
        assert!(
            disk_holds(&sb.data_dir(), b"e2e1:"),
            "{who} stores the sealed bodies"
        );
    }
}

#[test]
fn chat_refusals_exit_with_their_codes() {
    let c = Sandbox::new();
    c.init_non_interactive("anchor");
    let _c_node = c.start_node(&[FAST_SYNC]);
    let a = member(&c, "alice");
    let _a_node = start(&a, &[&c]);
    a.wait_for_peers(1);
    let exit = |args: &[&str]| {
        let run = a.run(args, None);
        (run.code, run.stderr)
    };
    let to_c = id(&c).full();

    // Oversized body: usage (bad_request), nothing written.
    let big = "x".repeat(9 * 1024);
    let (code, err) = exit(&["chat", "send", &to_c, &big]);
    assert_eq!(code, 2, "{err}");
    // Not a member: not_found.
    let stranger = DeviceKey::generate().node_id().full();
    let (code, err) = exit(&["chat", "send", &stranger, "hi"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("not a member"), "{err}");
    // Oneself, and a malformed id: usage.
    assert_eq!(exit(&["chat", "send", &id(&a).full(), "hi"]).0, 2);
    let (code, err) = exit(&["chat", "send", "bob", "hi"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("full node id"), "{err}");
    // A neighbour in sight may be named by its short id.
    let short = a.client().status().unwrap().peers[0].short_id.clone();
    let by_short = a.run(&["chat", "send", &short, "kurz", "--json"], None);
    assert_eq!(by_short.code, 0, "{by_short:?}");

    // A message from A to C, then the envelope pushed to C again (a
    // replay): a duplicate, one message.
    let sent = send(&a, id(&c), "einmal");
    assert_eq!(sent["delivered"], "direct", "{sent}");
    wait_until(LIMIT, "C has it", || history(&c, Some(id(&a))).len() == 2);
    let shown = a.run(&["chat", "history", &to_c], None);
    let line = shown.stdout.lines().last().unwrap_or_default().to_owned();
    assert!(line.contains("→") && line.ends_with("einmal"), "{shown:?}");
    let plain = a.run(&["chat", "send", &to_c, "zweimal"], None);
    assert!(plain.stdout.contains("delivered directly"), "{plain:?}");
    wait_until(LIMIT, "C has all", || history(&c, Some(id(&a))).len() == 3);
    let community = community_of(&c);
    // C, the recipient, hears it on its own topic: the envelope as stored.
    let heard = c
        .client()
        .get(
            "/pubsub/v1/subscribe",
            &[
                ("topic", format!("chat.message.{}", id(&c).full())),
                ("timeout", "0".to_owned()),
            ],
        )
        .unwrap();
    let stored = heard["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].clone())
        .find(|p| p["event_id"] == sent["event_id"])
        .unwrap_or_else(|| panic!("C's topic carries the message: {heard}"));
    assert!(
        !stored.to_string().contains("einmal"),
        "the envelope is sealed"
    );
    let push = |from: &DeviceKey, events: Vec<Value>| {
        common::runtime()
            .block_on(async {
                peer_client(from, community)
                    .post(
                        &c.peer_addr(),
                        None,
                        "/sync/v1/events",
                        &json!({"events": events}),
                    )
                    .await
                    .map(|r| r.body)
            })
            .expect("C answers the push")
    };
    let replayed = push(&a.key(), vec![stored.clone()]);
    assert_eq!(replayed["duplicates"], 1, "{replayed}");
    assert_eq!(
        bodies(&history(&c, Some(id(&a)))),
        ["kurz", "einmal", "zweimal"]
    );

    // A forged author: an envelope naming A as author, signed by another
    // key, is refused as invalid_signature.
    let forger = DeviceKey::generate();
    let mut forged = Event::create(
        NewEvent {
            community_id: community,
            lamport: stored["lamport"].as_u64().unwrap() + 1,
            event_type: "chat.message.sent",
            data: json!({"client_id": "forged", "recipient": id(&c), "body": stored["data"]["body"],
                "author_prev": stored["event_id"]}),
        },
        &forger,
    )
    .unwrap()
    .to_value();
    forged["author"] = json!(id(&a));
    let report = push(&a.key(), vec![forged]);
    assert_eq!(
        common::community::rejected_reasons(&report),
        ["invalid_signature"],
        "{report}"
    );
    assert_eq!(history(&c, Some(id(&a))).len(), 3);
}

#[test]
fn an_attachment_travels_by_cid_and_the_recipient_fetches_its_blob() {
    let c = Sandbox::new();
    c.init_non_interactive("anchor");
    let _c_node = c.start_node(&[FAST_SYNC]);
    let a = member(&c, "alice");
    let _a_node = start(&a, &[&c]);
    a.wait_for_peers(1);
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("schaltplan.pdf");
    std::fs::write(&plan, b"%PDF-1.4 the wiring of the pump house").unwrap();

    // C sends (A reaches C, its static peer, to fetch the blob).
    let run = c.run(
        &[
            "chat",
            "send",
            &id(&a).full(),
            "Plan anbei",
            "--attach",
            plan.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{run:?}");
    // C knows A only as a caller, so the message waits for A's next sync.
    let sent: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(sent["delivered"], "queued", "{sent}");
    wait_until(LIMIT, "A gets the message", || {
        history(&a, Some(id(&c))).len() == 1
    });
    let got = history(&a, Some(id(&c)));
    assert_eq!(got[0]["attachments"][0]["name"], "schaltplan.pdf");
    let cid = got[0]["attachments"][0]["cid"].as_str().unwrap().to_owned();

    // A fetches the blob from C by its CID once C's offer has synced.
    let out = dir.path().join("received.pdf");
    wait_until(LIMIT, "A fetches the attachment", || {
        a.run(&["file", "get", &cid, "--out", out.to_str().unwrap()], None)
            .code
            == 0
    });
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&plan).unwrap());

    // A missing file is a usage error before anything is sent.
    let missing = dir.path().join("nope.pdf");
    // C sends (A reaches C, its static peer, to fetch the blob).
    let run = c.run(
        &[
            "chat",
            "send",
            &id(&a).full(),
            "x",
            "--attach",
            missing.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(history(&c, Some(id(&a))).len(), 1);
}
