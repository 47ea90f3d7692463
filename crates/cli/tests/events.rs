//! The community's event log across real nodes: mutual TLS on loopback,
//! partition and heal, refusals, forged events, crash safety.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::community::{open_log, rejected_reasons, state_dir};
use common::{RunningNode, Sandbox, peer_client};
use hearthnet_base::event::{Event, NewEvent};
use hearthnet_base::{CommunityId, DeviceKey, Timestamp};
use hearthnet_client::CallReply;
use serde_json::{Value, json};

struct Member {
    sb: Sandbox,
    key: DeviceKey,
}

/// A founder and `n` more members, set up offline: the founder's
/// community files are copied to each, and every log holds the invites
/// and joins of all of them (as after onboarding).
fn found_community(n: usize, level: &str) -> (CommunityId, Vec<Member>) {
    let founder = Sandbox::new();
    founder.init_non_interactive("founder");
    let founder_key = founder.key();
    let community = CommunityId::of_root(founder_key.node_id());
    let mut members = vec![Member {
        sb: founder,
        key: founder_key.clone(),
    }];
    for i in 0..n {
        let sb = Sandbox::new();
        let (key, _) = hearthnet_identity::KeyStore::new(sb.data_dir().join("keys"))
            .load_or_create()
            .unwrap();
        std::fs::create_dir_all(sb.config_file().parent().unwrap()).unwrap();
        std::fs::write(
            sb.config_file(),
            format!(
                "[identity]\ndisplay_name = \"member{i}\"\n\n[community]\ncommunity_id = \"{}\"\n",
                community.full()
            ),
        )
        .unwrap();
        let from = state_dir(&members[0].sb, community);
        let to = state_dir(&sb, community);
        std::fs::create_dir_all(&to).unwrap();
        for f in ["manifest.json", "genesis.json"] {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
        members.push(Member { sb, key });
    }
    let mut admissions = Vec::new();
    for (i, m) in members.iter().enumerate().skip(1) {
        let at = 2 * i as u64 - 1;
        let invite = Event::create(
            NewEvent {
                community_id: community,
                lamport: at,
                event_type: "community.member.invited",
                data: json!({"author_prev": null, "invitee_node_id": m.key.node_id(), "display_name": "m", "initial_level": level,
                             "expires_at": Timestamp::now().plus_seconds(3600)}),
            },
            &founder_key,
        )
        .unwrap();
        let joined = Event::create(
            NewEvent {
                community_id: community,
                lamport: at + 1,
                event_type: "community.member.joined",
                data: json!({"author_prev": null, "invite_event_id": invite.event_id, "node_manifest": {}}),
            },
            &m.key,
        )
        .unwrap();
        admissions.push(invite.to_value());
        admissions.push(joined.to_value());
    }
    for m in &members {
        let log = open_log(&m.sb, community);
        assert_eq!(
            log.append_received_blocking(admissions.clone())
                .unwrap()
                .accepted,
            admissions.len() as u64
        );
    }
    (community, members)
}

fn peer_addr(sb: &Sandbox) -> String {
    sb.peer_addr()
}

fn append(sb: &Sandbox, title: &str) -> Value {
    let body = json!({"input": {"event_type": "market.post.created",
        "data": {"client_id": title, "category": "offer", "title": title, "body": "b", "ttl_seconds": 60}}});
    match sb
        .client()
        .call("experimental.event.append", "1.0", &body, false, None)
        .unwrap()
    {
        CallReply::Json(v) => v["output"].clone(),
        CallReply::Stream(_) => panic!("not a stream"),
    }
}

fn sync(sb: &Sandbox, peer: &str, protocol: &str) -> common::Run {
    sb.run(
        &["sync", "--peer", peer, "--protocol", protocol, "--json"],
        None,
    )
}

fn event_ids(sb: &Sandbox, community: CommunityId) -> BTreeSet<String> {
    let log = open_log(sb, community);
    let ids = log
        .query_blocking(hearthnet_events::Query::default())
        .unwrap();
    ids.into_iter().map(|e| e.event.event_id).collect()
}

/// A signed `market.post.created` by `key` at `lamport`.
fn market_post(community: CommunityId, key: &DeviceKey, lamport: u64, title: &str) -> Value {
    Event::create(NewEvent { community_id: community, lamport, event_type: "market.post.created",
        data: json!({"author_prev": null, "client_id": title, "category": "offer", "title": title, "body": "b", "ttl_seconds": 60}) }, key)
        .unwrap()
        .to_value()
}

/// The author of filler post `i`: a hundred posts per member after the
/// founder, within the live-post cap (rules revision 6).
fn poster(members: &[Member], i: u64) -> DeviceKey {
    members[1 + (i / 100) as usize].key.clone()
}

/// `events` pushed by `key` to the node at `addr` over TLS: the answer's
/// body, or the error.
fn push_events(
    addr: &str,
    key: &DeviceKey,
    community: CommunityId,
    events: Vec<Value>,
) -> Result<Value, hearthnet_transport::peer_client::PeerError> {
    common::runtime().block_on(async {
        let client = peer_client(key, community);
        client
            .post(addr, None, "/sync/v1/events", &json!({"events": events}))
            .await
            .map(|reply| reply.body)
    })
}

fn partition_write_heal(protocol: &str) {
    let (community, members) = found_community(2, "member");
    let mut nodes: Vec<RunningNode> = members.iter().map(|m| m.sb.start_node(&[])).collect();
    let addrs: Vec<String> = members.iter().map(|m| peer_addr(&m.sb)).collect();

    // Apart, every node writes; their Lamport values interleave (each
    // starts from the same head), the case head-based sync loses.
    let writers: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let sb_home = m.sb.home().to_path_buf();
            std::thread::spawn(move || {
                let sb = Sandbox::at(&sb_home);
                let lamports: Vec<u64> = (0..15)
                    .map(|k| {
                        append(&sb, &format!("n{i}-{k}"))["lamport"]
                            .as_u64()
                            .unwrap()
                    })
                    .collect();
                lamports
            })
        })
        .collect();
    let lamports: Vec<Vec<u64>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(
        lamports[0], lamports[1],
        "the same Lamport values on both sides"
    );

    // Heal: rounds until every node holds the same set, within a bound.
    let started = Instant::now();
    let order = [(0, 1), (1, 2), (2, 0), (0, 2), (1, 0), (2, 1)];
    let mut converged = false;
    while started.elapsed() < Duration::from_secs(30) {
        for (from, to) in order {
            let r = sync(&members[from].sb, &addrs[to], protocol);
            assert_eq!(r.code, 0, "{r:?}");
            assert!(
                r.stdout.contains(if protocol == "v2" {
                    "negentropy/1"
                } else {
                    "heads/1"
                }),
                "{r:?}"
            );
        }
        let heads: Vec<u64> = members.iter().map(|m| m.sb.event_count()).collect();
        if heads.iter().all(|c| *c == heads[0]) && heads[0] == 1 + 4 + 45 {
            converged = true;
            break;
        }
    }
    eprintln!("{protocol}: converged in {:?}", started.elapsed());
    assert!(converged, "no convergence within 30 s");
    // Each node counts the peers it reached, in /ready and /metrics.
    let (_, ready) = members[0].sb.client().readiness().unwrap();
    assert_eq!(ready.peers, 2, "{ready:?}");
    let metrics = members[0].sb.client().get_text("/metrics").unwrap();
    assert!(metrics.contains("hearthnet_nodes_online 2"), "{metrics}");
    // Each node reports its sync state per peer.
    let status: Value =
        serde_json::from_str(&members[0].sb.run(&["status", "--json"], None).stdout).unwrap();
    let peers = status["sync"]["peers"].as_object().unwrap();
    assert_eq!(peers.len(), 2, "{status}");
    for (addr, state) in peers {
        assert!(addrs.contains(addr));
        assert!(state["rounds"].as_u64().unwrap() >= 1);
        assert_eq!(
            state["protocol"],
            if protocol == "v2" {
                "negentropy/1"
            } else {
                "heads/1"
            }
        );
        assert!(state["last_ok"].is_string());
    }
    for n in &mut nodes {
        assert_eq!(n.terminate().0, Some(0));
    }
    let sets: Vec<BTreeSet<String>> = members
        .iter()
        .map(|m| event_ids(&m.sb, community))
        .collect();
    assert_eq!(sets[0].len(), 50);
    assert_eq!(sets[0], sets[1]);
    assert_eq!(sets[1], sets[2]);
}

#[test]
fn three_nodes_converge_after_a_partition_by_reconciliation() {
    partition_write_heal("v2");
}

#[test]
fn three_nodes_converge_after_a_partition_by_the_v1_fallback() {
    partition_write_heal("v1");
}

#[test]
fn strangers_revoked_members_and_other_communities_are_refused() {
    let (community, members) = found_community(4, "trusted");
    let [a, b, c, d, revoked] = &members[..] else {
        unreachable!()
    };
    // Revoke the last member: three trusted co-signers.
    let intent = json!({"client_id": "r1", "target_node_id": revoked.key.node_id(), "reason": "compromised", "author_prev": null});
    let payload = hearthnet_events::cosigned_payload("community.member.revoked", &intent);
    let cosign = |k: &DeviceKey| json!({"node_id": k.node_id(), "signature": k.sign_canonical(&payload).unwrap()});
    let mut data = intent.clone();
    data["co_signers"] = json!([cosign(&a.key), cosign(&b.key), cosign(&c.key)]);
    for m in [a, b, c, d] {
        let log = open_log(&m.sb, community);
        let e = Event::create(
            NewEvent {
                community_id: community,
                lamport: 20,
                event_type: "community.member.revoked",
                data: data.clone(),
            },
            &a.key,
        )
        .unwrap();
        let _ = log.append_received_blocking(vec![e.to_value()]).unwrap();
    }
    let node_a = a.sb.start_node(&[]);
    let addr_a = peer_addr(&a.sb);
    let before = event_ids(&a.sb, community);

    // A revoked member (its own log does not know it was revoked).
    let revoked_before = event_ids(&revoked.sb, community);
    let node_r = revoked.sb.start_node(&[]);
    let r = sync(&revoked.sb, &addr_a, "v2");
    assert_ne!(r.code, 0, "{r:?}");
    // A key that was never admitted, talking TLS to A directly: refused
    // in the handshake, before any request is read.
    let outsider = DeviceKey::generate();
    let rt = common::runtime();
    let refused = rt.block_on(async {
        let client = peer_client(&outsider, community);
        client.get(&addr_a, None, "/sync/v1/heads").await
    });
    assert!(refused.is_err(), "an outsider got an answer");
    // The same request from a member works, so the refusal is about the key.
    let admitted = rt.block_on(async {
        let client = peer_client(&b.key, community);
        client.get(&addr_a, None, "/sync/v1/heads").await
    });
    assert_eq!(admitted.unwrap().body["community_id"], json!(community));
    // A node of another community.
    let (other_community, others) = found_community(0, "member");
    let stranger = &others[0];
    let node_s = stranger.sb.start_node(&[]);
    let r2 = sync(&stranger.sb, &addr_a, "v1");
    assert_ne!(r2.code, 0, "{r2:?}");
    drop((node_r, node_s, node_a));
    assert_eq!(
        event_ids(&a.sb, community),
        before,
        "nothing was written to A"
    );
    assert_eq!(
        event_ids(&revoked.sb, community),
        revoked_before,
        "nothing was served to the revoked member"
    );
    let stranger_ids = event_ids(&stranger.sb, other_community);
    assert!(
        stranger_ids.iter().all(|id| !before.contains(id)),
        "nothing of A's log was served"
    );
}

#[test]
fn forged_events_from_a_member_are_rejected_over_the_wire() {
    let (community, members) = found_community(1, "member");
    let (a, b) = (&members[0], &members[1]);
    let _node = a.sb.start_node(&[]);
    let addr = peer_addr(&a.sb);
    let before = event_ids(&a.sb, community);
    let post =
        |key: &DeviceKey, lamport: u64, title: &str| market_post(community, key, lamport, title);
    let mut bad_sig = post(&b.key, 10, "x");
    bad_sig["signature"] = post(&b.key, 10, "y")["signature"].clone();
    let mut tampered = post(&b.key, 11, "original");
    tampered["data"]["title"] = json!("changed");
    let other = DeviceKey::generate();
    let wrong_community = Event::create(NewEvent { community_id: CommunityId::of_root(other.node_id()), lamport: 12,
        event_type: "market.post.created", data: json!({"author_prev": null, "client_id": "w", "category": "offer", "title": "w", "body": "b", "ttl_seconds": 60}) }, &b.key)
        .unwrap().to_value();
    let non_member = post(&other, 13, "stranger");
    let oversized = post(&b.key, 14, &"x".repeat(100_000));
    // The jump of issue 13: from a head near 0 to just under a million.
    let absurd = post(&b.key, 999_999, "far ahead");
    let forged = vec![
        bad_sig,
        tampered,
        wrong_community,
        non_member,
        oversized,
        absurd,
    ];

    let rt = common::runtime();
    let reply = rt.block_on(async {
        let client = peer_client(&b.key, community);
        client
            .post(&addr, None, "/sync/v1/events", &json!({"events": forged}))
            .await
    });
    let reply = reply.unwrap();
    assert_eq!(reply.peer, Some(a.key.node_id()), "TLS proved who answered");
    assert_eq!(reply.body["accepted"], 0, "{}", reply.body);
    assert_eq!(reply.body["rejected"], 6, "{}", reply.body);
    assert_eq!(
        rejected_reasons(&reply.body),
        [
            "invalid_signature",
            "invalid_signature",
            "lamport_ahead",
            "too_large",
            "unknown_author",
            "wrong_community"
        ]
    );
    let metrics = a.sb.client().get_text("/metrics").unwrap();
    assert!(
        metrics.contains("hearthnet_events_rejected_total{reason=\"invalid_signature\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hearthnet_events_rejected_total{reason=\"lamport_ahead\"} 1"),
        "{metrics}"
    );
    drop(_node);
    assert_eq!(event_ids(&a.sb, community), before, "none was stored");
}

#[test]
fn a_second_envelope_under_a_stored_event_id_is_refused_over_the_wire() {
    let (community, members) = found_community(1, "member");
    let (a, b) = (&members[0], &members[1]);
    let node = a.sb.start_node(&[]);
    let addr = peer_addr(&a.sb);
    let original = market_post(community, &b.key, 10, "original");
    let first = push_events(&addr, &b.key, community, vec![original.clone()]).unwrap();
    assert_eq!(first["accepted"], 1, "{first}");
    // The same id, validly signed by its author, another envelope.
    let mut squat = market_post(community, &b.key, 11, "squatter");
    squat["event_id"] = original["event_id"].clone();
    let squat = hearthnet_base::sign_value(squat, &b.key).unwrap();
    let reply = push_events(&addr, &b.key, community, vec![squat, original.clone()]).unwrap();
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(reply["duplicates"], 1, "only the same envelope: {reply}");
    assert_eq!(reply["rejected"], 1, "{reply}");
    assert_eq!(rejected_reasons(&reply), ["conflicting_id"]);
    assert_eq!(
        reply["rejected_reasons"][0]["event_id"],
        original["event_id"]
    );
    let metrics = a.sb.client().get_text("/metrics").unwrap();
    assert!(
        metrics.contains("hearthnet_events_rejected_total{reason=\"conflicting_id\"} 1"),
        "{metrics}"
    );
    drop(node);
    let stored = open_log(&a.sb, community)
        .query_blocking(hearthnet_events::Query {
            event_type: Some("market.post.created".into()),
            ..hearthnet_events::Query::default()
        })
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].json, original, "the first envelope stays");
}

#[test]
fn a_push_carries_at_most_a_thousand_events() {
    let (community, members) = found_community(11, "member");
    let (a, b) = (&members[0], &members[1]);
    let node = a.sb.start_node(&[]);
    let addr = peer_addr(&a.sb);
    let before = event_ids(&a.sb, community);
    let events: Vec<Value> = (0..1_001)
        .map(|i| market_post(community, &poster(&members, i), 10 + i, &format!("p{i}")))
        .collect();
    match push_events(&addr, &b.key, community, events.clone()) {
        Err(hearthnet_transport::peer_client::PeerError::Refused { status, body, .. }) => {
            assert_eq!(status, 400, "{body}");
            assert!(body.contains("bad_request"), "{body}");
            assert!(body.contains("at most 1000 events"), "{body}");
        }
        other => panic!("a push of 1,001 events was not refused: {other:?}"),
    }
    // The same events in two pushes under the cap are taken.
    let first = push_events(&addr, &b.key, community, events[..1_000].to_vec()).unwrap();
    assert_eq!(first["accepted"], 1_000, "{first}");
    let rest = push_events(&addr, &b.key, community, events[1_000..].to_vec()).unwrap();
    assert_eq!(rest["accepted"], 1, "{rest}");
    drop(node);
    assert_eq!(event_ids(&a.sb, community).len(), before.len() + 1_001);
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let sb = Sandbox::new();
    sb.init_non_interactive("crash");
    let key = sb.key();
    let community = CommunityId::of_root(key.node_id());
    let mut acknowledged = BTreeSet::new();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut random = move |limit: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % limit
    };
    let rounds = 50;
    let started = Instant::now();
    for round in 0..rounds {
        let mut node = sb.start_node(&[]);
        let client = sb.client();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut k = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let body = json!({"input": {"event_type": "file.cid.unpinned",
                        "data": {"cid": hearthnet_base::Blake3Id::of(format!("{round}-{k}").as_bytes())}}});
                    match client.call("experimental.event.append", "1.0", &body, false, None) {
                        Ok(CallReply::Json(v)) => {
                            acked.push(v["output"]["event_id"].as_str().unwrap().to_owned())
                        }
                        _ => break,
                    }
                    k += 1;
                }
                acked
            })
        };
        std::thread::sleep(Duration::from_millis(20 + random(150)));
        let pid = rustix::process::Pid::from_raw(node.pid()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
        let _ = node.child.take().map(|mut c| c.wait());
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        acknowledged.extend(writer.join().unwrap());
    }
    let log = open_log(&sb, community);
    assert_eq!(log.integrity_check_blocking().unwrap(), Ok(()));
    let stored: BTreeSet<String> = log
        .query_blocking(hearthnet_events::Query::default())
        .unwrap()
        .into_iter()
        .map(|e| e.event.event_id)
        .collect();
    let missing: Vec<&String> = acknowledged.difference(&stored).collect();
    eprintln!(
        "{rounds} kill rounds in {:?}: {} acknowledged appends, all checked",
        started.elapsed(),
        acknowledged.len()
    );
    assert!(acknowledged.len() > rounds, "the writer made progress");
    assert!(missing.is_empty(), "lost after SIGKILL: {missing:?}");
}

#[test]
fn pubsub_long_poll_delivers_new_events() {
    let sb = Sandbox::new();
    sb.init_non_interactive("pubsub");
    let node = sb.start_node(&[]);
    let connected_before = connections_to(node.api.port());
    let waiter = {
        let home = sb.home().to_path_buf();
        std::thread::spawn(move || {
            let client = Sandbox::at(&home).client();
            let started = Instant::now();
            let query = [
                ("topic", "marketplace.post.created".to_owned()),
                ("last_seq", "0".into()),
                ("timeout", "10".into()),
            ];
            let reply = client.get("/pubsub/v1/subscribe", &query).unwrap();
            (reply, started.elapsed())
        })
    };
    common::wait_until(Duration::from_secs(5), "the poll is connected", || {
        !connections_to(node.api.port()).is_subset(&connected_before)
    });
    // A second poll of the quiet topic, sent after the first: once it has
    // timed out, the first has been held at least as long with nothing to
    // deliver.
    let query = [
        ("topic", "marketplace.post.created".to_owned()),
        ("last_seq", "0".into()),
        ("timeout", "1".into()),
    ];
    let quiet = sb.client().get("/pubsub/v1/subscribe", &query).unwrap();
    assert_eq!(quiet["timeout"], true, "{quiet}");
    assert!(!waiter.is_finished(), "the first poll is held");
    append(&sb, "Wasserkanister");
    let (reply, waited) = waiter.join().unwrap();
    assert!(
        waited < Duration::from_secs(8),
        "it returned when the event came, before its 10 s ({waited:?})"
    );
    let messages = reply["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{reply}");
    assert_eq!(messages[0]["payload"]["data"]["title"], "Wasserkanister");
    let last_seq = reply["last_seq"].as_i64().unwrap();
    let query = [
        ("topic", "marketplace.post.created".to_owned()),
        ("last_seq", last_seq.to_string()),
        ("timeout", "1".into()),
    ];
    let quiet = sb.client().get("/pubsub/v1/subscribe", &query).unwrap();
    assert_eq!(quiet["timeout"], true, "{quiet}");
}

#[test]
fn a_subscriber_far_behind_gets_bounded_replies_and_in_the_end_everything() {
    let (community, members) = found_community(10, "member");
    let (a, b) = (&members[0], &members[1]);
    let node = a.sb.start_node(&[]);
    let addr = peer_addr(&a.sb);
    let posts: Vec<Value> = (0..1_000)
        .map(|i| market_post(community, &poster(&members, i), 10 + i, &format!("p{i}")))
        .collect();
    let pushed = push_events(&addr, &b.key, community, posts).unwrap();
    assert_eq!(pushed["accepted"], 1_000, "{pushed}");
    // And one more written here afterwards.
    append(&a.sb, "one more");
    let mut titles = BTreeSet::new();
    let mut replies = 0;
    let mut last_seq = 0;
    loop {
        let query = [
            ("topic", "marketplace.post.created".to_owned()),
            ("last_seq", last_seq.to_string()),
            ("timeout", "1".into()),
        ];
        let reply = a.sb.client().get("/pubsub/v1/subscribe", &query).unwrap();
        if reply["timeout"] == true {
            break;
        }
        replies += 1;
        let messages = reply["messages"].as_array().unwrap();
        assert!(
            messages.len() <= 100,
            "{} messages in one reply",
            messages.len()
        );
        for m in messages {
            titles.insert(m["payload"]["data"]["title"].as_str().unwrap().to_owned());
        }
        let next = reply["last_seq"].as_i64().unwrap();
        assert!(next > last_seq, "the cursor moves on: {reply}");
        last_seq = next;
        assert!(replies <= 20, "no end in sight at {last_seq}");
    }
    drop(node);
    assert_eq!(titles.len(), 1_001, "every post, once");
    assert!(replies >= 11, "{replies} replies");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn static_peers_sync_by_themselves_while_both_sides_write() {
    let (community, members) = found_community(1, "member");
    let ports = [free_port(), free_port()];
    let nodes: Vec<RunningNode> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let own = ports[i].to_string();
            let peer = format!("[\"127.0.0.1:{}\"]", ports[1 - i]);
            m.sb.start_node(&[
                ("HEARTHNET_TRANSPORT_PEER_PORT", own.as_str()),
                ("HEARTHNET_DISCOVERY_STATIC_PEERS", peer.as_str()),
                ("HEARTHNET_EVENTS_SYNC_INTERVAL_SECONDS", "1"),
            ])
        })
        .collect();
    // Both sides keep writing while the periodic rounds run.
    let writers: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let home = m.sb.home().to_path_buf();
            std::thread::spawn(move || {
                let sb = Sandbox::at(&home);
                for k in 0..20 {
                    append(&sb, &format!("w{i}-{k}"));
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let expected = 1 + 2 + 40;
    common::wait_until(Duration::from_secs(20), "both logs converge", || {
        members.iter().all(|m| m.sb.event_count() == expected)
    });
    drop(nodes);
    assert_eq!(
        event_ids(&members[0].sb, community),
        event_ids(&members[1].sb, community)
    );
}

#[test]
fn a_revoked_member_loses_access_on_every_node_after_sync() {
    let (_, members) = found_community(3, "trusted");
    let [a, b, c, d] = &members[..] else {
        unreachable!()
    };
    let _na = a.sb.start_node(&[]);
    let _nb = b.sb.start_node(&[]);
    let _nd = d.sb.start_node(&[]);
    let (addr_a, addr_b) = (peer_addr(&a.sb), peer_addr(&b.sb));
    assert_eq!(sync(&d.sb, &addr_b, "v2").code, 0, "D is welcome before");

    let intent =
        json!({"client_id": "rev-1", "target_node_id": d.key.node_id(), "reason": "compromised"});
    let payload = hearthnet_events::cosigned_payload("community.member.revoked", &intent);
    let cosign = |k: &DeviceKey| json!({"node_id": k.node_id(), "signature": k.sign_canonical(&payload).unwrap()});
    let revoke = |signers: Vec<Value>| {
        let mut input = intent.clone();
        input["co_signers"] = json!(signers);
        a.sb.run(
            &[
                "call",
                "community.revoke@1.0",
                "--body",
                &json!({"input": input}).to_string(),
            ],
            None,
        )
    };
    let two = revoke(vec![cosign(&a.key), cosign(&b.key)]);
    assert_eq!(two.code, 4, "two co-signers are not enough: {two:?}");
    let forged = revoke(vec![
        cosign(&a.key),
        cosign(&b.key),
        json!({"node_id": c.key.node_id(), "signature": a.key.sign_canonical(&payload).unwrap()}),
    ]);
    assert_eq!(
        forged.code, 4,
        "a signature that is not C's does not count: {forged:?}"
    );
    let three = revoke(vec![cosign(&a.key), cosign(&b.key), cosign(&c.key)]);
    assert_eq!(three.code, 0, "{three:?}");

    // A refuses D at once; B after it synced with A.
    assert_ne!(sync(&d.sb, &addr_a, "v2").code, 0);
    assert_eq!(sync(&a.sb, &addr_b, "v2").code, 0);
    let refused = sync(&d.sb, &addr_b, "v2");
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused.stderr.contains("not a member") || refused.stderr.contains("revoked"),
        "{refused:?}"
    );
    let status: Value =
        serde_json::from_str(&b.sb.run(&["status", "--json"], None).stdout).unwrap();
    assert_eq!(status["community"]["members"], 3, "{status}");
}

/// Local ports of the established TCP connections (IPv4) to `port`.
fn connections_to(port: u16) -> BTreeSet<u16> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port_of = |field: &str| u16::from_str_radix(field.rsplit(':').next().unwrap(), 16).unwrap();
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| port_of(fields[2]) == port && fields[3] == "01")
        .map(|fields| port_of(fields[1]))
        .collect()
}

#[test]
fn a_peer_client_reuses_one_connection_for_requests_to_one_peer() {
    let (community, members) = found_community(1, "member");
    let (a, b) = (&members[0], &members[1]);
    let _node = a.sb.start_node(&[]);
    let addr = peer_addr(&a.sb);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let rt = common::runtime();
    rt.block_on(async {
        let client = peer_client(&b.key, community);
        let mut used = BTreeSet::new();
        for _ in 0..5 {
            let reply = client.get(&addr, None, "/sync/v1/heads").await.unwrap();
            assert_eq!(reply.peer, Some(a.key.node_id()));
            used.extend(connections_to(port));
        }
        // A refused request leaves the connection usable too.
        assert!(client.get(&addr, None, "/local/v1/status").await.is_err());
        client.get(&addr, None, "/sync/v1/heads").await.unwrap();
        used.extend(connections_to(port));
        assert_eq!(used.len(), 1, "one connection for every request: {used:?}");
        // A connection idle for a while is not trusted to be open still.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        client.get(&addr, None, "/sync/v1/heads").await.unwrap();
        let now = connections_to(port);
        assert!(now.iter().any(|p| !used.contains(p)), "{now:?} vs {used:?}");
    });
}
