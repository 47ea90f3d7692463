//! Files (M07) between real nodes on loopback TLS: the blob store, the
//! `file` commands, verified fetch from several holders, resume, GC and a
//! full disk.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::community::{FAST_SYNC, chain};
use common::{RunningNode, Sandbox, invite, peer_client};
use hearthnet_base::{CommunityId, DeviceKey};
use hearthnet_transport::peer_client::PeerError;
use serde_json::{Value, json};

const CHUNK: usize = 262_144;

/// Deterministic, incompressible-looking bytes (never committed).
fn write_data(path: &Path, len: usize, seed: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut left = len;
    let mut block = vec![0u8; 1 << 16];
    while left > 0 {
        for b in block.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        let n = left.min(block.len());
        file.write_all(&block[..n]).unwrap();
        left -= n;
    }
    file.flush().unwrap();
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (
        std::io::BufReader::new(std::fs::File::open(a).unwrap()),
        std::io::BufReader::new(std::fs::File::open(b).unwrap()),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let na = fa.read(&mut ba).unwrap();
        let mut nb = 0;
        while nb < na {
            let n = fb.read(&mut bb[nb..na]).unwrap();
            if n == 0 {
                return false;
            }
            nb += n;
        }
        if ba[..na] != bb[..na] {
            return false;
        }
        if na == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
    }
}

fn add(sb: &Sandbox, path: &Path, extra: &[&str]) -> String {
    let mut args = vec!["file", "add", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let run = sb.run(&args, None);
    assert_eq!(run.code, 0, "{run:?}");
    // Piped: no progress bar, just the summary.
    assert!(
        !run.stderr.contains("eta") && !run.stderr.contains('\r'),
        "{run:?}"
    );
    run.stdout.trim().to_owned()
}

fn get(sb: &Sandbox, cid: &str, out: &Path) -> common::Run {
    sb.run(&["file", "get", cid, "--out", out.to_str().unwrap()], None)
}

fn ls(sb: &Sandbox) -> Vec<Value> {
    let run = sb.run(&["file", "ls", "--json"], None);
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str(&run.stdout).unwrap()
}

/// A founder and `members` who joined by invite, all running.
fn community(members: usize) -> (Vec<Sandbox>, Vec<RunningNode>) {
    chain(members, |_| Vec::new())
}

/// `file get` once the advertisement has synced (it no longer says
/// nobody has it), at most 20 s.
fn get_when_known(sb: &Sandbox, cid: &str, out: &Path) -> common::Run {
    let mut run = None;
    common::wait_until(
        Duration::from_secs(20),
        "someone is known to hold it",
        || run.insert(get(sb, cid, out)).code != 6,
    );
    run.expect("ran at least once")
}

#[test]
fn files_round_trip_at_every_size_and_travel_between_nodes() {
    let (nodes, _running) = community(2);
    let dir = tempfile::tempdir().unwrap();
    let mut cids = Vec::new();
    for (i, len) in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7]
        .into_iter()
        .enumerate()
    {
        let input = dir.path().join(format!("in-{len}"));
        write_data(&input, len, i as u64);
        let cid = add(&nodes[0], &input, &[]);
        assert!(cid.starts_with("blake3:") && cid.len() == 71, "{cid}");
        let out = dir.path().join(format!("out-{len}"));
        let run = get(&nodes[0], &cid, &out);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(same_bytes(&input, &out), "{len} bytes differ");
        cids.push(cid);
    }
    let unique: std::collections::BTreeSet<&String> = cids.iter().collect();
    assert_eq!(unique.len(), cids.len());

    // A 5 MiB file added on A reaches B and C, byte for byte: B gets it,
    // C pins it (which fetches it), then writes it out from its own copy.
    let input = dir.path().join("shared");
    write_data(&input, 5 * 1024 * 1024 + 3, 99);
    let cid = add(&nodes[0], &input, &[]);
    let out = dir.path().join("shared-b");
    let run = get_when_known(&nodes[1], &cid, &out);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("fetched from"), "{run:?}");
    assert!(same_bytes(&input, &out));
    // It travelled as raw chunk records, not as `file.read` frames.
    let raw = |sb: &Sandbox, direction: &str| -> u64 {
        let text = sb.client().get_text("/metrics").unwrap();
        let name = format!("hearthnet_raw_chunk_bytes_total{{direction=\"{direction}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(name.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(
        raw(&nodes[0], "served") >= 5 * 1024 * 1024,
        "A served no raw chunks"
    );
    assert!(
        raw(&nodes[1], "fetched") >= 5 * 1024 * 1024,
        "B fetched no raw chunks"
    );
    // C learns of the advertisement by its own sync, not B's: pin once
    // someone is known to hold it there (exit 6 until then).
    let mut pinned = None;
    common::wait_until(Duration::from_secs(20), "C knows someone holds it", || {
        pinned
            .insert(nodes[2].run(&["file", "pin", &cid], None))
            .code
            != 6
    });
    let pinned = pinned.expect("ran at least once");
    assert_eq!(pinned.code, 0, "{pinned:?}");
    assert!(pinned.stderr.contains("fetched from"), "{pinned:?}");
    let out = dir.path().join("shared-c");
    let run = get(&nodes[2], &cid, &out);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains("fetched from"), "{run:?}");
    assert!(same_bytes(&input, &out));
    for sb in &nodes[1..] {
        let held = ls(sb);
        let blob = held.iter().find(|b| b["cid"] == cid.as_str()).unwrap();
        assert_eq!(blob["pinned"], sb.home() == nodes[2].home());
    }
    // Unknown CIDs and bad arguments fail clearly.
    let nobody = get(
        &nodes[1],
        &format!("blake3:{}", "0".repeat(64)),
        &dir.path().join("x"),
    );
    assert_eq!(nobody.code, 6, "{nobody:?}");
    let garbled = nodes[1].run(&["file", "get", "blake3:xyz"], None);
    assert_eq!(garbled.code, 2, "{garbled:?}");
    let missing = nodes[1].run(&["file", "add", "/nonexistent/file"], None);
    assert_eq!(missing.code, 2, "{missing:?}");
}

/// The raw chunk route our nodes fetch through (`/blobs/v1/chunks`): the
/// asked chunks' exact bytes to a member, clear refusals of bad requests,
/// nothing for a key outside the community.
#[test]
fn raw_chunks_go_to_members_only_and_exactly_as_asked() {
    let (nodes, _running) = community(1);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_data(&input, 3 * CHUNK + 5, 11);
    let cid = add(&nodes[0], &input, &[]);
    let bytes = std::fs::read(&input).unwrap();
    let big_input = dir.path().join("big");
    // More than the socket buffers hold (receive buffers grow to 32 MiB).
    write_data(&big_input, 320 * CHUNK, 12);
    let big_cid = add(&nodes[0], &big_input, &[]);
    let status: Value =
        serde_json::from_str(&nodes[0].run(&["status", "--json"], None).stdout).unwrap();
    let community: CommunityId = serde_json::from_value(status["community"]["id"].clone()).unwrap();
    let holder = nodes[0].key().node_id();
    let addr = nodes[0].peer_addr();
    let wait = Duration::from_secs(10);
    let rt = common::runtime();
    rt.block_on(async {
        let member = peer_client(&nodes[1].key(), community);
        let asked = json!({"cid": cid, "chunks": [1, 3]});
        let mut reader = member.chunks(&addr, holder, &asked, wait).await.unwrap();
        let mut got = Vec::new();
        while let Some(item) = reader.next().await {
            got.push(item.unwrap());
        }
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, &got[0].1[..]), (1, &bytes[CHUNK..2 * CHUNK]));
        assert_eq!((got[1].0, &got[1].1[..]), (3, &bytes[3 * CHUNK..]));

        let unknown = format!("blake3:{}", "0".repeat(64));
        for (request, expected) in [
            (json!({"cid": cid, "chunks": [2, 2]}), 400),
            (json!({"cid": cid, "chunks": [4]}), 400),
            (json!({"chunks": [0]}), 400),
            (json!({"cid": unknown}), 404),
        ] {
            match member.chunks(&addr, holder, &request, wait).await.err() {
                Some(PeerError::Refused { status, body, .. }) => {
                    assert_eq!(status, expected, "{request}: {body}");
                    assert!(body.contains("\"error\""), "{body}");
                }
                other => panic!("{request}: {other:?}"),
            }
        }
        // Two streams at once per caller: a third is told to come back
        // (a blob larger than what buffers hold, so the first two are
        // still being served while nobody reads them).
        let big = json!({"cid": big_cid});
        let held = [
            member.chunks(&addr, holder, &big, wait).await.unwrap(),
            member.chunks(&addr, holder, &big, wait).await.unwrap(),
        ];
        match member.chunks(&addr, holder, &big, wait).await.err() {
            Some(PeerError::Refused {
                status: 429, body, ..
            }) => {
                assert!(
                    body.contains("capacity_exceeded") && body.contains("retry_after_ms"),
                    "{body}"
                );
            }
            other => panic!("a third stream: {other:?}"),
        }
        // Streams given up free their slots.
        drop(held);
        let started = Instant::now();
        while member
            .chunks(&addr, holder, &json!({"cid": cid, "chunks": [0]}), wait)
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "slots never came back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let outsider = peer_client(&DeviceKey::generate(), community);
        let refused = outsider
            .chunks(&addr, holder, &json!({"cid": cid}), wait)
            .await
            .err();
        assert!(
            matches!(
                refused,
                Some(PeerError::Refused {
                    status: 401 | 403,
                    ..
                })
            ),
            "an outsider: {refused:?}"
        );
    });
}

#[test]
fn a_file_over_one_gibibyte_round_trips() {
    let sb = Sandbox::new();
    sb.init_non_interactive("big");
    let _node = sb.start_node(&[]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big");
    let len = (1usize << 30) + 1;
    write_data(&input, len, 7);
    let started = Instant::now();
    let cid = add(&sb, &input, &["--pin"]);
    let added = started.elapsed();
    let out = dir.path().join("big-out");
    let run = get(&sb, &cid, &out);
    assert_eq!(run.code, 0, "{run:?}");
    eprintln!(
        "1 GiB + 1 B: add {added:?}, get {:?}",
        started.elapsed() - added
    );
    assert_eq!(std::fs::metadata(&out).unwrap().len(), len as u64);
    assert!(same_bytes(&input, &out));
    let listed = ls(&sb);
    let blob = listed.iter().find(|b| b["cid"] == cid.as_str()).unwrap();
    assert_eq!(blob["chunks"], 4097);
    assert_eq!(blob["pinned"], true);
}

fn chunk_files(blobs: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for shard in std::fs::read_dir(blobs).into_iter().flatten().flatten() {
        if shard.file_name().len() != 2 {
            continue;
        }
        for f in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.file_name().to_string_lossy().ends_with(".bin") {
                found.push(f.path());
            }
        }
    }
    found
}

#[test]
fn a_corrupted_chunk_is_caught_and_the_fetch_completes_from_another_holder() {
    let (nodes, mut running) = community(2);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("doc");
    write_data(&input, 8 * CHUNK, 5);
    let cid = add(a, &input, &[]);
    let run = get_when_known(b, &cid, &dir.path().join("at-b"));
    assert_eq!(run.code, 0, "{run:?}");
    // C must know of B's copy, or A's would be the only one it could try.
    eventually("B offers its copy", || offered(b, &cid) == Some(true));
    let want = b.event_count();
    eventually("C has heard of B's copy", || c.event_count() >= want);
    wait_for_offer(c, "file.read", b);

    // The disk under A rots: every chunk of A's copy now has wrong bytes.
    let chunks = chunk_files(&a.data_dir().join("blobs"));
    assert_eq!(chunks.len(), 8);
    for chunk in &chunks {
        let mut bytes = std::fs::read(chunk).unwrap();
        bytes[100] ^= 0xff;
        std::fs::write(chunk, bytes).unwrap();
    }
    // C (static peers A and B) fetches: A is caught at its first chunk,
    // B supplies the rest, and the bytes are right.
    let out = dir.path().join("at-c");
    let run = get_when_known(c, &cid, &out);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(same_bytes(&input, &out));
    let quarantined = std::fs::read_dir(a.data_dir().join("blobs/quarantine"))
        .unwrap()
        .count();
    assert!(quarantined >= 1, "A quarantined what it found damaged");

    // A itself reads its copy: the damage is found, the chunks come back
    // from its peers, and the file written is whole. (Without discovery on
    // loopback, A learns of B and C as static peers.)
    drop(running.remove(0));
    let list = format!("[\"{}\",\"{}\"]", b.peer_addr(), c.peer_addr());
    let _a = a.start_node(&[FAST_SYNC, ("HEARTHNET_DISCOVERY_STATIC_PEERS", &list)]);
    a.wait_for_peers(2);
    let out = dir.path().join("at-a");
    let run = get(a, &cid, &out);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(same_bytes(&input, &out));
}

#[test]
fn an_interrupted_fetch_resumes_without_fetching_again() {
    let (nodes, mut running) = community(1);
    let (a, b) = (&nodes[0], &nodes[1]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("movie");
    let chunks = 1024; // 256 MiB
    write_data(&input, chunks * CHUNK, 11);
    let cid = add(a, &input, &[]);
    // Let the advertisement reach B.
    let probe = dir.path().join("probe");
    let started = Instant::now();
    let mut fetching = loop {
        let mut child = b
            .command(&["file", "get", &cid, "--out", probe.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Running until chunks appear: fetching. Exited: B did not know
        // the holder yet (exit 6); try again.
        let t = Instant::now();
        let mut exited = false;
        while t.elapsed() < Duration::from_secs(30) {
            if child.try_wait().unwrap().is_some() {
                exited = true;
                break;
            }
            if !chunk_files(&b.data_dir().join("blobs")).is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !exited {
            break child;
        }
        let _ = child.wait();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "B never started fetching"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Kill B's node midway.
    let mut have = 0;
    let started = Instant::now();
    while have < chunks / 5 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the fetch stalled at {have}"
        );
        have = chunk_files(&b.data_dir().join("blobs")).len();
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut node_b = running.pop().unwrap();
    let _ = node_b.child.as_mut().unwrap().kill();
    let _ = node_b.child.as_mut().unwrap().wait();
    let _ = fetching.kill();
    let _ = fetching.wait();
    let kept = chunk_files(&b.data_dir().join("blobs")).len();
    assert!(
        kept > 0 && kept < chunks,
        "killed midway: {kept} of {chunks}"
    );

    // Restarted, B fetches only what it lacks.
    let list = format!("[\"{}\"]", a.peer_addr());
    let _node_b = b.start_node(&[FAST_SYNC, ("HEARTHNET_DISCOVERY_STATIC_PEERS", &list)]);
    let out = dir.path().join("movie-out");
    let run = get_when_known(b, &cid, &out);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(same_bytes(&input, &out));
    let traces: Vec<Value> = serde_json::from_str(
        &a.run(
            &[
                "trace",
                "recent",
                "1000",
                "--capability",
                "file.read",
                "--json",
            ],
            None,
        )
        .stdout,
    )
    .unwrap();
    // Frames A sent: one manifest per call plus the chunks.
    let frames: u64 = traces
        .iter()
        .map(|t| t["frames"].as_u64().unwrap_or(0))
        .sum();
    let calls = traces.len() as u64;
    let chunks_sent = frames - calls;
    eprintln!(
        "{kept} chunks kept at the kill; A sent {chunks_sent} chunk frames in {calls} calls for {chunks} chunks"
    );
    // Without resume A would send every chunk again (chunks + kept); with
    // it, only the few in flight at the kill are sent twice.
    assert!(
        chunks_sent < (chunks + kept) as u64,
        "the chunks B kept were fetched again: {chunks_sent} sent for {chunks}"
    );
}

/// Make every blob of `sb` look last used an hour ago (GC spares what
/// was used in the last ten minutes).
fn age_blobs(sb: &Sandbox) {
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for shard in std::fs::read_dir(sb.data_dir().join("blobs"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.file_name().to_string_lossy().ends_with(".manifest.json") {
                let file = std::fs::File::options().write(true).open(f.path()).unwrap();
                file.set_modified(hour_ago).unwrap();
            }
        }
    }
}

#[test]
fn gc_never_removes_a_pinned_blob() {
    let sb = Sandbox::new();
    sb.init_non_interactive("gc");
    // A threshold every disk is over: each add collects what it may.
    let _node = sb.start_node(&[("HEARTHNET_FILE_GC_THRESHOLD", "0.000001")]);
    let dir = tempfile::tempdir().unwrap();
    let mut cids = Vec::new();
    for (i, pin) in [true, false, true].into_iter().enumerate() {
        let path = dir.path().join(format!("f{i}"));
        write_data(&path, CHUNK + i, i as u64);
        cids.push(add(&sb, &path, if pin { &["--pin"] } else { &[] }));
        let held: Vec<String> = ls(&sb)
            .iter()
            .map(|b| b["cid"].as_str().unwrap().to_owned())
            .collect();
        // What was just added is never collected at once.
        assert!(held.contains(&cids[i]), "{held:?}");
        age_blobs(&sb);
    }
    let held: Vec<String> = ls(&sb)
        .iter()
        .map(|b| b["cid"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        held.contains(&cids[0]) && held.contains(&cids[2]),
        "pinned blobs stay: {held:?}"
    );
    assert!(
        !held.contains(&cids[1]),
        "the unpinned one is collected: {held:?}"
    );
    // Unpinned, it goes at the next collection.
    let run = sb.run(&["file", "unpin", &cids[0]], None);
    assert_eq!(run.code, 0, "{run:?}");
    let held: Vec<String> = ls(&sb)
        .iter()
        .map(|b| b["cid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(held, vec![cids[2].clone()]);
}

#[test]
fn a_full_disk_during_a_fetch_gives_exit_5() {
    let a = Sandbox::new();
    a.init_non_interactive("roomy");
    let _na = a.start_node(&[]);
    let b = Sandbox::new();
    let card = b.identity_card("cramped");
    let (text, _) = invite(&a, &card, &[]);
    assert_eq!(b.run(&["invite", "redeem", &text], None).code, 0);
    let Some(_nb) = b.start_node_with_small_disk("2m", &[FAST_SYNC]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big");
    write_data(&input, 4 * 1024 * 1024, 4);
    let cid = add(&a, &input, &[]);
    let run = get_when_known(&b, &cid, &dir.path().join("out"));
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("full"), "{run:?}");
}

/// A node of its own whose blob store is a tmpfs of `size`; `None` where
/// mounting is not allowed.
fn node_with_small_disk(name: &str, size: &str) -> Option<(Sandbox, RunningNode)> {
    let sb = Sandbox::new();
    sb.init_non_interactive(name);
    let node = sb.start_node_with_small_disk(size, &[])?;
    Some((sb, node))
}

#[test]
fn a_full_disk_gives_exit_5_and_leaves_the_store_consistent() {
    let Some((sb, _node)) = node_with_small_disk("full", "2m") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    write_data(&small, 512 * 1024, 1);
    let kept = add(&sb, &small, &["--pin"]);
    let big = dir.path().join("big");
    write_data(&big, 4 * 1024 * 1024, 2);
    let run = sb.run(&["file", "add", big.to_str().unwrap()], None);
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("full"), "{run:?}");
    // Only the first blob is there, whole; the failed one left no chunks
    // behind, so there is room again.
    let held = ls(&sb);
    assert_eq!(held.len(), 1, "{held:?}");
    let out = dir.path().join("small-out");
    assert_eq!(get(&sb, &kept, &out).code, 0);
    assert!(same_bytes(&small, &out));
    let another = dir.path().join("another");
    write_data(&another, 256 * 1024, 3);
    add(&sb, &another, &[]);
}

/// A large add fills the disk while earlier batches of it are still
/// being flushed on their own thread: none of it stays.
#[test]
fn a_disk_filling_up_midway_through_a_large_add_leaves_nothing_behind() {
    let Some((sb, _node)) = node_with_small_disk("midway", "40m") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    write_data(&big, 64 * 1024 * 1024, 4);
    let run = sb.run(&["file", "add", big.to_str().unwrap()], None);
    assert_eq!(run.code, 5, "{run:?}");
    assert!(ls(&sb).is_empty());
    // The 30+ MiB the failed add had written are gone: 30 MiB fit again.
    let fits = dir.path().join("fits");
    write_data(&fits, 30 * 1024 * 1024, 5);
    let cid = add(&sb, &fits, &[]);
    let out = dir.path().join("fits-out");
    assert_eq!(get(&sb, &cid, &out).code, 0);
    assert!(same_bytes(&fits, &out));
}

/// Every peer address of `nodes` but `i`'s, as a static-peer list.
fn others(nodes: &[Sandbox], i: usize) -> String {
    let list: Vec<String> = nodes
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, sb)| format!("\"{}\"", sb.peer_addr()))
        .collect();
    format!("[{}]", list.join(","))
}

#[test]
fn put_offers_a_blob_to_a_chosen_node_and_wants_a_trusted_caller() {
    let (nodes, mut running) = community(2);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    // The founder learns of the others as static peers (restarted on the
    // same port, where they know it).
    let list = others(&nodes, 0);
    let port = a.peer_addr().rsplit(':').next().unwrap().to_owned();
    drop(running.remove(0));
    let _a = a.start_node(&[
        FAST_SYNC,
        ("HEARTHNET_DISCOVERY_STATIC_PEERS", &list),
        ("HEARTHNET_TRANSPORT_PEER_PORT", &port),
    ]);
    a.wait_for_peers(2);
    let b_id = b.key().node_id().full();
    // Verified peers reach the bus a moment after the registry: both
    // callers below must know B's file.put before asking it, and B, which
    // takes the chunks from the restarted founder, its file.read.
    for caller in [a, c] {
        wait_for_offer(caller, "file.put", b);
    }
    wait_for_offer(b, "file.read", a);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flyer");
    write_data(&input, 3 * CHUNK + 1, 8);
    let cid = add(a, &input, &[]);
    let read = a.run(
        &[
            "call",
            "file.read",
            "--stream",
            "--body",
            &serde_json::json!({"input": {"cid": cid, "chunks": []}}).to_string(),
        ],
        None,
    );
    assert_eq!(read.code, 0, "{read:?}");
    let manifest: Value = serde_json::from_str(read.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(manifest["event"], "manifest");
    let body = serde_json::json!({"input": {"manifest": manifest["data"]}}).to_string();

    // The founder (an anchor) offers it to B: B needs all four chunks,
    // takes them, and holds the blob.
    let put = |from: &Sandbox| {
        from.run(
            &[
                "call", "file.put", "--node", &b_id, "--stream", "--body", &body,
            ],
            None,
        )
    };
    let first = put(a);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stdout.contains(r#""needed":[0,1,2,3]"#), "{first:?}");
    assert!(ls(b).iter().any(|x| x["cid"] == cid.as_str()));
    let out = dir.path().join("at-b");
    assert_eq!(get(b, &cid, &out).code, 0);
    assert!(same_bytes(&input, &out));
    // Offered again, nothing is needed.
    let again = put(a);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains(r#""needed":[]"#), "{again:?}");
    // A plain member may not push blobs onto another node's disk.
    let refused = put(c);
    assert_eq!(refused.code, 4, "{refused:?}");
    assert!(refused.stderr.contains("unauthorized"), "{refused:?}");
}

/// Where `sb`'s store keeps the file of `cid` ending in `suffix`.
fn blob_file(sb: &Sandbox, cid: &str, suffix: &str) -> PathBuf {
    let hex = cid.trim_start_matches("blake3:");
    sb.data_dir()
        .join("blobs")
        .join(&hex[..2])
        .join(format!("{}{suffix}", &hex[2..]))
}

/// Copy blob `cid` (manifest and chunks) from `from`'s store into `to`'s,
/// as a fetch that completed just before a crash leaves it: held, never
/// offered. Returns the paths of the chunks in `to`'s store.
fn plant_blob(from: &Sandbox, to: &Sandbox, cid: &str) -> Vec<PathBuf> {
    let copy = |cid: &str, suffix: &str| {
        let dst = blob_file(to, cid, suffix);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(blob_file(from, cid, suffix), &dst).unwrap();
        dst
    };
    let manifest_file = copy(cid, ".manifest.json");
    let manifest: Value = serde_json::from_slice(&std::fs::read(manifest_file).unwrap()).unwrap();
    manifest["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| copy(c["cid"].as_str().unwrap(), ".bin"))
        .collect()
}

/// Wait until `what` holds, at most 20 s.
/// Until `caller`'s bus holds `provider`'s offer of `capability`: verified
/// peers reach the bus a moment after the registry.
fn wait_for_offer(caller: &Sandbox, capability: &str, provider: &Sandbox) {
    let node = provider.key().node_id();
    eventually(
        &format!("{capability} of a peer on the caller's bus"),
        || {
            caller
                .client()
                .caps()
                .unwrap()
                .capabilities
                .iter()
                .any(|x| x.name == capability && x.node == node)
        },
    );
}

fn eventually(what: &str, check: impl FnMut() -> bool) {
    common::wait_until(Duration::from_secs(20), what, check);
}

fn offered(sb: &Sandbox, cid: &str) -> Option<bool> {
    ls(sb)
        .iter()
        .find(|b| b["cid"] == cid)
        .map(|b| b["offered"] == true)
}

#[test]
fn start_up_offers_copies_left_unoffered_by_a_crash_and_withdraws_lost_ones() {
    let (nodes, mut running) = community(1);
    let (a, b) = (&nodes[0], &nodes[1]);
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = (dir.path().join("x"), dir.path().join("y"));
    write_data(&x, 3 * CHUNK, 11);
    write_data(&y, 3 * CHUNK, 12);
    let (x_cid, y_cid) = (add(a, &x, &[]), add(a, &y, &[]));
    assert_eq!(offered(a, &x_cid), Some(true));
    eventually("B has A's events", || b.event_count() == a.event_count());
    let before = b.event_count();

    // B stops; its store then holds X whole and Y with a rotten chunk,
    // neither of which the log says B holds. Y was used longer ago, so the
    // start-up pass checks it first: had it been offered, that offer would
    // come before X's.
    drop(running.remove(1));
    plant_blob(a, b, &x_cid);
    let y_chunks = plant_blob(a, b, &y_cid);
    std::fs::File::options()
        .write(true)
        .open(blob_file(b, &y_cid, ".manifest.json"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let mut bytes = std::fs::read(&y_chunks[1]).unwrap();
    bytes[7] ^= 0xff;
    std::fs::write(&y_chunks[1], bytes).unwrap();
    let peers = format!("[\"{}\"]", a.peer_addr());
    let restart =
        |sb: &Sandbox| sb.start_node(&[FAST_SYNC, ("HEARTHNET_DISCOVERY_STATIC_PEERS", &peers)]);
    let node_b = restart(b);
    eventually("B offers X", || offered(b, &x_cid) == Some(true));
    assert_eq!(b.event_count(), before + 1, "Y is not offered");
    assert_eq!(offered(b, &y_cid), Some(false));
    let quarantined = std::fs::read_dir(b.data_dir().join("blobs/quarantine"))
        .unwrap()
        .count();
    assert_eq!(quarantined, 1, "the rotten chunk of Y is set aside");

    // Pinning Y fetches the chunk again from A; then B offers Y too. A's
    // offers reach B's bus a moment after B restarted: pin once they have.
    wait_for_offer(b, "file.read", a);
    let pin = b.run(&["file", "pin", &y_cid], None);
    assert_eq!(pin.code, 0, "{pin:?}");
    eventually("B offers Y", || offered(b, &y_cid) == Some(true));
    eventually("B recorded the second advertisement", || {
        b.event_count() == before + 2
    });

    // X vanishes from B's store while B is down (removed, then a crash
    // before the log heard of it): at start-up B withdraws its offer.
    drop(node_b);
    std::fs::remove_file(blob_file(b, &x_cid, ".manifest.json")).unwrap();
    let _node_b = restart(b);
    eventually("B withdrew X", || b.event_count() == before + 3);
    assert_eq!(offered(b, &x_cid), None);
    assert_eq!(offered(b, &y_cid), Some(true));
}
