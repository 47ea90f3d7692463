//! Discovery (M02) and remote capabilities (M03 §5) between real nodes on a
//! LAN made of network namespaces, a bridge and veth pairs (common/netns).
//! Skipped, with a message, where namespaces cannot be created.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::netns::Lan;
use common::{RunningNode, Sandbox, invite, wait_until};
use serde_json::{Value, json};

fn discovery_env(mdns: bool, udp: bool) -> Vec<(&'static str, &'static str)> {
    let on = |b: bool| if b { "true" } else { "false" };
    vec![
        ("HEARTHNET_TRANSPORT_PEER_HOST", "0.0.0.0"),
        // Joining wrote the inviter in as a static peer: forget it, so
        // only discovery can find anyone.
        ("HEARTHNET_DISCOVERY_STATIC_PEERS", "[]"),
        ("HEARTHNET_DISCOVERY_MDNS_ENABLED", on(mdns)),
        ("HEARTHNET_DISCOVERY_UDP_ENABLED", on(udp)),
    ]
}

/// A founder on the LAN's first host and `n - 1` members who joined by
/// invite, one per further host. No node is left running.
fn community(lan: &Lan, n: usize) -> Vec<Sandbox> {
    community_at_level(lan, n, "member")
}

fn community_at_level(lan: &Lan, n: usize, level: &str) -> Vec<Sandbox> {
    let founder = Sandbox::in_netns(&lan.nodes[0]);
    founder.init_non_interactive("founder");
    let mut members = Vec::new();
    {
        let _inviting = founder.start_node(&[("HEARTHNET_TRANSPORT_PEER_HOST", "0.0.0.0")]);
        for i in 1..n {
            let sb = Sandbox::in_netns(&lan.nodes[i]);
            let card = sb.identity_card(&format!("member{i}"));
            let (text, _) = invite(&founder, &card, &["--level", level]);
            let joined = sb.run(&["invite", "redeem", &text], None);
            assert_eq!(joined.code, 0, "{joined:?}");
            members.push(sb);
        }
    }
    let mut all = vec![founder];
    all.extend(members);
    all
}

fn status(sb: &Sandbox) -> Value {
    let run = sb.run(&["status", "--json"], None);
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str(&run.stdout).expect("status JSON")
}

fn short_id(sb: &Sandbox) -> String {
    status(sb)["node"]["short_id"].as_str().unwrap().to_owned()
}

/// One of the node's discovery counters (`status --json`).
fn counter(sb: &Sandbox, name: &str) -> u64 {
    status(sb)["discovery"]["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}"))
}

/// Short ids of the peers a node has verified.
fn peers(sb: &Sandbox) -> BTreeSet<String> {
    status(sb)["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["short_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Start every node, then wait until each has verified all the others.
fn start_and_meet(nodes: &[Sandbox], env: &[(&str, &str)]) -> (Vec<RunningNode>, Duration) {
    let started = Instant::now();
    let running: Vec<RunningNode> = nodes.iter().map(|sb| sb.start_node(env)).collect();
    let ids: Vec<String> = nodes.iter().map(short_id).collect();
    for (i, sb) in nodes.iter().enumerate() {
        let others: BTreeSet<String> = ids
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, id)| id.clone())
            .collect();
        wait_until(
            Duration::from_secs(45),
            "every node sees every other",
            || peers(sb) == others,
        );
    }
    (running, started.elapsed())
}

fn sources(sb: &Sandbox) -> BTreeSet<String> {
    status(sb)["peers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["sources"].as_array().unwrap().clone())
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn three_nodes_find_each_other_by_mdns_alone_then_by_udp_alone() {
    let Some(lan) = Lan::create(3) else { return };
    let nodes = community(&lan, 3);

    let (running, took) = start_and_meet(&nodes, &discovery_env(true, false));
    eprintln!("mDNS only: start -> every peer visible on every node in {took:?}");
    for sb in &nodes {
        assert_eq!(sources(sb), BTreeSet::from(["mdns".to_owned()]));
        assert_eq!(status(sb)["discovery"]["udp"]["state"], "disabled");
    }
    drop(running);

    // An access point that filters multicast: mDNS goes dark, UDP
    // discovery still gets through by broadcast.
    lan.drop_multicast();
    let (running, took) = start_and_meet(&nodes, &discovery_env(true, true));
    eprintln!("multicast dropped, UDP: start -> every peer visible on every node in {took:?}");
    for sb in &nodes {
        assert_eq!(sources(sb), BTreeSet::from(["udp".to_owned()]));
        let s = status(sb);
        assert_eq!(s["discovery"]["udp"]["state"], "running", "{s}");
        // Only the LAN interface: not loopback.
        assert_eq!(
            s["discovery"]["udp"]["interfaces"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "{s}"
        );
        assert!(
            s["discovery"]["udp"]["interfaces"][0]
                .as_str()
                .unwrap()
                .starts_with("10.77.0."),
            "{s}"
        );
    }
    drop(running);
}

fn echo(sb: &Sandbox) -> (i32, Value) {
    let run = sb.run(
        &[
            "call",
            "experimental.echo",
            "--body",
            &json!({"input": {"text": "hi"}}).to_string(),
        ],
        None,
    );
    (
        run.code,
        serde_json::from_str(&run.stdout).unwrap_or(Value::Null),
    )
}

#[test]
fn calls_go_to_the_peers_that_offer_them_and_fail_over() {
    let Some(lan) = Lan::create(3) else { return };
    let nodes = community(&lan, 3);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut env = discovery_env(true, true);
    env.push(("HEARTHNET_OBSERVABILITY_DIAGNOSTICS", "false"));
    let _a = a.start_node(&env);
    let env = discovery_env(true, true);
    let node_b = b.start_node(&env);
    let node_c = c.start_node(&env);
    let (b_id, c_id) = (short_id(b), short_id(c));

    // A lists the echo of both neighbours, and has none of its own.
    let remote_echoes = || {
        let run = a.run(&["caps", "--remote-only", "--json"], None);
        let caps: Vec<Value> = serde_json::from_str(&run.stdout).unwrap_or_default();
        assert!(caps.iter().all(|c| c["local"] == false), "{caps:?}");
        caps.iter()
            .filter(|c| c["name"] == "experimental.echo")
            .count()
    };
    wait_until(Duration::from_secs(45), "A sees both echoes", || {
        remote_echoes() == 2
    });
    let local = a.run(&["caps", "--local-only", "--json"], None);
    assert!(!local.stdout.contains("experimental.echo"), "{local:?}");

    let started = Instant::now();
    for _ in 0..4 {
        let (code, out) = echo(a);
        assert_eq!(code, 0, "{out}");
        assert_eq!(out["output"]["text"], "hi");
        let served_by = out["meta"]["node"].as_str().unwrap();
        assert!(served_by == b_id || served_by == c_id, "{out}");
    }
    eprintln!(
        "remote echo across the veth link: {:?} per CLI call",
        started.elapsed() / 4
    );
    let streamed = a.run(
        &[
            "call",
            "experimental.echo",
            "--stream",
            "--body",
            &json!({"input": {"text": "ab", "repeat": 3}}).to_string(),
        ],
        None,
    );
    assert_eq!(streamed.code, 0, "{streamed:?}");
    assert!(streamed.stdout.starts_with("ababab"), "{streamed:?}");

    // B dies: its calls fail over to C, before any frame reached A.
    drop(node_b);
    for _ in 0..4 {
        let (code, out) = echo(a);
        assert_eq!(code, 0, "{out}");
        assert_eq!(out["meta"]["node"], c_id.as_str());
    }

    // C dies too: nobody offers the capability any more (exit 6); at most
    // the first calls see the providers unreachable (exit 7).
    drop(node_c);
    wait_until(
        Duration::from_secs(20),
        "exit 6 once nobody offers it",
        || {
            let (code, out) = echo(a);
            assert!(code == 6 || code == 7, "exit {code}: {out}");
            code == 6
        },
    );
}

#[test]
fn a_node_of_another_community_is_never_a_peer() {
    let Some(lan) = Lan::create(3) else { return };
    let nodes = community(&lan, 2);
    let stranger = Sandbox::in_netns(&lan.nodes[2]);
    stranger.init_non_interactive("stranger");
    let env = discovery_env(true, true);
    let _s = stranger.start_node(&env);
    let (_running, _) = start_and_meet(&nodes, &env);
    // Both sides keep announcing. Each sighting is turned away at the
    // point where a member's would go on to be admitted: once every node
    // has turned away two more since the members met, none became a peer.
    let everyone: Vec<&Sandbox> = nodes.iter().chain([&stranger]).collect();
    let seen: Vec<u64> = everyone
        .iter()
        .map(|sb| counter(sb, "foreign_sightings"))
        .collect();
    for (sb, seen) in everyone.iter().zip(seen) {
        wait_until(
            Duration::from_secs(30),
            "two more sightings of the other community",
            || counter(sb, "foreign_sightings") >= seen + 2,
        );
    }
    let stranger_id = short_id(&stranger);
    for sb in &nodes {
        assert!(!peers(sb).contains(&stranger_id));
    }
    assert!(peers(&stranger).is_empty());

    // It cannot sync with (or call into) the community's nodes either.
    let addr = status(&nodes[1])["peers"][0]["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = stranger.run(&["sync", "--peer", &addr], None);
    assert_ne!(refused.code, 0, "{refused:?}");
}

#[test]
fn doctor_reports_each_discovery_transport() {
    let Some(lan) = Lan::create(1) else { return };
    common::needs::program("python3", "python3");
    let sb = Sandbox::in_netns(&lan.nodes[0]);
    sb.init_non_interactive("doc");
    // Another program holds the UDP discovery port without sharing it.
    let mut holder = std::process::Command::new("ip")
        .args(["netns", "exec", &lan.nodes[0], "python3", "-c"])
        .arg("import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 42424))\nprint('bound', flush=True)\ntime.sleep(120)")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "bound");
    let _node = sb.start_node(&discovery_env(true, true));
    let run = sb.run(&["doctor", "--check", "udp_discovery"], None);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("42424"), "{run:?}");
    assert!(
        run.stdout.contains("python3"),
        "the holder is named: {run:?}"
    );
    wait_until(Duration::from_secs(10), "mDNS publishes", || {
        let mdns = sb.run(&["doctor", "--check", "mdns"], None);
        mdns.code == 0 && mdns.stdout.contains("10.77.0.1")
    });
}

#[test]
fn members_who_join_across_the_lan_find_the_history_by_themselves() {
    let Some(lan) = Lan::create(3) else { return };
    let founder = Sandbox::in_netns(&lan.nodes[0]);
    founder.init_non_interactive("founder");
    let env = discovery_env(true, true);
    let _a = founder.start_node(&env);
    founder.write_history(3);

    // One joins through `init`, the other redeems the saved QR code.
    let by_init = Sandbox::in_netns(&lan.nodes[1]);
    let card = by_init.identity_card("Bob");
    let (text, _) = invite(&founder, &card, &[]);
    let joined = by_init.run(&["init"], Some(&format!("Bob\n\njoin\n{text}\n")));
    assert_eq!(joined.code, 0, "{joined:?}");
    let by_qr = Sandbox::in_netns(&lan.nodes[2]);
    let card = by_qr.identity_card("Carol");
    let (_, png) = invite(&founder, &card, &[]);
    let joined = by_qr.run(&["invite", "redeem", png.to_str().unwrap()], None);
    assert_eq!(joined.code, 0, "{joined:?}");

    // Without static peers, discovery brings them the founder, and sync
    // the history.
    let _b = by_init.start_node(&env);
    let _c = by_qr.start_node(&env);
    let want = founder.event_count();
    for sb in [&by_init, &by_qr] {
        wait_until(Duration::from_secs(30), "the history arrives", || {
            sb.event_count() == want
        });
        assert_eq!(status(sb)["community"]["members"], 3);
    }
}

#[test]
fn a_revoked_member_is_dropped_by_every_node() {
    let Some(lan) = Lan::create(4) else { return };
    let nodes = community_at_level(&lan, 4, "trusted");
    let mut env = discovery_env(true, true);
    env.push(("HEARTHNET_EVENTS_SYNC_INTERVAL_SECONDS", "2"));
    let (mut running, _) = start_and_meet(&nodes, &env);
    let (a, revoked) = (&nodes[0], &nodes[3]);
    let target = revoked.key().node_id();

    // Three trusted members co-sign; the founder's node records it.
    let intent = json!({"client_id": "rev-lan", "target_node_id": target, "reason": "compromised"});
    let payload = hearthnet_events::cosigned_payload("community.member.revoked", &intent);
    let co_signers: Vec<Value> = nodes[..3]
        .iter()
        .map(|sb| {
            let key = sb.key();
            json!({"node_id": key.node_id(), "signature": key.sign_canonical(&payload).unwrap()})
        })
        .collect();
    let mut input = intent.clone();
    input["co_signers"] = json!(co_signers);
    let r = a.run(
        &[
            "call",
            "community.revoke@1.0",
            "--body",
            &json!({"input": input}).to_string(),
        ],
        None,
    );
    assert_eq!(r.code, 0, "{r:?}");

    // Every other node learns it by sync and stops counting it a peer,
    // though it keeps announcing itself.
    let gone = target.short();
    for sb in &nodes[..3] {
        wait_until(
            Duration::from_secs(30),
            "the revoked node is dropped",
            || !peers(sb).contains(&gone),
        );
    }
    // Restarted on a new port (so nobody is still backing off from its
    // address), it announces itself afresh. Once every node has refused
    // its manifest again, none has taken it back.
    drop(running.pop());
    let refused: Vec<u64> = nodes[..3]
        .iter()
        .map(|sb| counter(sb, "manifests_rejected"))
        .collect();
    let _revoked_node = revoked.start_node(&env);
    for (sb, refused) in nodes[..3].iter().zip(refused) {
        wait_until(
            Duration::from_secs(30),
            "the revoked node's manifest is refused again",
            || counter(sb, "manifests_rejected") > refused,
        );
    }
    for sb in &nodes[..3] {
        assert!(!peers(sb).contains(&gone));
        assert_eq!(status(sb)["community"]["members"], 3);
    }
    // Nor does any node answer it.
    let addr = status(&nodes[1])["peers"][0]["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = revoked.run(&["sync", "--peer", &addr], None);
    assert_ne!(refused.code, 0, "{refused:?}");
}
