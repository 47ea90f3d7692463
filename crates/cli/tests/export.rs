//! `hearthnet export` (spec §3.9) and `export --verify`: the signed ZIP,
//! with the node running and stopped, tampering found, hostile archives
//! refused within bounds, and a disk without room.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use common::{Run, Sandbox, needs};
use serde_json::Value;

fn entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut entry = zip.by_index(i).unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (entry.name().unwrap().into_owned(), bytes)
        })
        .collect()
}

fn write_zip(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

fn export(sb: &Sandbox, out: &Path) -> Run {
    sb.run(&["export", "--out", out.to_str().unwrap()], None)
}

fn verify(sb: &Sandbox, path: &Path) -> Run {
    sb.run(&["export", "--verify", path.to_str().unwrap()], None)
}

fn entry<'a>(entries: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &entries.iter().find(|(n, _)| n == name).expect(name).1
}

#[test]
fn test_export_zip_is_signed_and_parseable() {
    let sb = Sandbox::new();
    sb.init_non_interactive("exporter");
    let mut node = sb.start_node(&[]);
    let posted = sb.run(
        &["market", "post", "Fresh eggs", "--category", "offer"],
        None,
    );
    assert_eq!(posted.code, 0, "{posted:?}");
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("grandmas-bread.txt");
    std::fs::write(&recipe, "flour, water, salt, time").unwrap();
    let added = sb.run(&["file", "add", recipe.to_str().unwrap(), "--pin"], None);
    assert_eq!(added.code, 0, "{added:?}");
    let cid = added.stdout.trim().to_owned();
    node.terminate();

    let out = dir.path().join("export.zip");
    let run = export(&sb, &out);
    assert_eq!(run.code, 0, "{run:?}");
    let entries = entries(&out);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "identity.json",
        "community-manifest.json",
        "events/authored.jsonl",
        "chat/messages.jsonl",
        "files/pinned.json",
        "market/posts.jsonl",
        "settings/config.toml",
        "export-manifest.json",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    let node_id = sb.key().node_id();
    let manifest: Value = serde_json::from_slice(entry(&entries, "export-manifest.json")).unwrap();
    hearthnet_base::verify_value(&manifest, &node_id).unwrap();
    for (name, bytes) in &entries {
        if name != "export-manifest.json" {
            let expected = format!("blake3:{}", blake3::hash(bytes).to_hex());
            assert_eq!(manifest["entries"][name], expected.as_str(), "{name}");
        }
    }
    let authored = String::from_utf8(entry(&entries, "events/authored.jsonl").to_vec()).unwrap();
    assert!(authored.lines().count() >= 2, "{authored}");
    for line in authored.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["author"], node_id.full().as_str(), "{line}");
    }
    let pinned: Value = serde_json::from_slice(entry(&entries, "files/pinned.json")).unwrap();
    assert_eq!(
        pinned["pinned"],
        serde_json::json!([{"cid": cid, "name": "grandmas-bread.txt"}]),
        "the pinned file by its CID and the name it was added under"
    );
    let posts = String::from_utf8(entry(&entries, "market/posts.jsonl").to_vec()).unwrap();
    assert_eq!(posts.lines().count(), 1, "{posts}");
    assert!(posts.contains("Fresh eggs"), "{posts}");
    let run = verify(&sb, &out);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn the_export_holds_our_conversations_opened_and_only_ours() {
    let founder = Sandbox::new();
    founder.init_non_interactive("founder");
    let mut node = founder.start_node(&[]);
    let neighbour = common::community::member(&founder, "neighbour");
    let to = neighbour.key().node_id().full();
    let sent = founder.run(&["chat", "send", &to, "The soup needs more thyme"], None);
    assert_eq!(sent.code, 0, "{sent:?}");
    node.terminate();

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export.zip");
    let run = export(&founder, &out);
    assert_eq!(run.code, 0, "{run:?}");
    let ours = entries(&out);
    let chat = String::from_utf8(entry(&ours, "chat/messages.jsonl").to_vec()).unwrap();
    let messages: Vec<Value> = chat
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(messages.len(), 1, "{chat}");
    assert_eq!(messages[0]["body"], "The soup needs more thyme");
    assert_eq!(messages[0]["from"], founder.key().node_id().full().as_str());
    assert_eq!(messages[0]["to"], to.as_str());
    let authored = String::from_utf8_lossy(entry(&ours, "events/authored.jsonl"));
    assert!(
        authored.contains("chat.message.sent") && !authored.contains("thyme"),
        "the event itself stays sealed: {authored}"
    );
    assert_eq!(verify(&founder, &out).code, 0);

    // The neighbour's own export, made before it ever ran, holds no
    // conversation: the message has not reached its log.
    let theirs = dir.path().join("theirs.zip");
    assert_eq!(export(&neighbour, &theirs).code, 0);
    assert!(entry(&entries(&theirs), "chat/messages.jsonl").is_empty());
}

#[test]
fn an_export_with_one_byte_changed_fails_verification() {
    let sb = Sandbox::new();
    sb.init_non_interactive("tamper");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export.zip");
    assert_eq!(export(&sb, &out).code, 0);
    let original = entries(&out);

    // One byte of an entry's content, the archive otherwise well formed.
    let mut changed = original.clone();
    let settings = changed
        .iter_mut()
        .find(|(n, _)| n == "settings/config.toml")
        .unwrap();
    settings.1[0] ^= 1;
    let tampered = dir.path().join("content.zip");
    write_zip(&tampered, &changed);
    let run = verify(&sb, &tampered);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("settings/config.toml"), "{run:?}");

    // One byte of the stored file itself.
    let mut raw = std::fs::read(&out).unwrap();
    let start = {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
        zip.by_index(0).unwrap().data_start().unwrap() as usize
    };
    raw[start + 2] ^= 0x40;
    let flipped = dir.path().join("flipped.zip");
    std::fs::write(&flipped, &raw).unwrap();
    let run = verify(&sb, &flipped);
    assert_eq!(run.code, 4, "{run:?}");

    // The manifest's signature.
    let mut forged = original.clone();
    let manifest = forged
        .iter_mut()
        .find(|(n, _)| n == "export-manifest.json")
        .unwrap();
    let mut doc: Value = serde_json::from_slice(&manifest.1).unwrap();
    doc["created_at"] = "2020-01-01T00:00:00Z".into();
    manifest.1 = serde_json::to_vec(&doc).unwrap();
    let path = dir.path().join("forged.zip");
    write_zip(&path, &forged);
    let run = verify(&sb, &path);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("signature"), "{run:?}");

    // An entry added that the manifest does not list.
    let mut extra = original;
    extra.push(("extra.txt".into(), b"x".to_vec()));
    let path = dir.path().join("extra.zip");
    write_zip(&path, &extra);
    let run = verify(&sb, &path);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("extra.txt"), "{run:?}");
}

#[test]
fn verify_refuses_hostile_archives_within_bounds() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let slip = dir.path().join("slip.zip");
    write_zip(&slip, &[("../../evil".into(), b"x".to_vec())]);
    let run = verify(&sb, &slip);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("leaves the archive"), "{run:?}");

    let many = dir.path().join("many.zip");
    let entries: Vec<(String, Vec<u8>)> =
        (0..10_001).map(|i| (format!("e{i}"), Vec::new())).collect();
    write_zip(&many, &entries);
    let run = verify(&sb, &many);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("10001 entries"), "{run:?}");

    // The count an archive's end record declares is checked before the
    // central directory is read: a small file claiming 65,535 entries.
    let mut liar = std::fs::read(&slip).unwrap();
    let end = liar.len() - 22;
    assert_eq!(liar[end..end + 4], [0x50, 0x4b, 0x05, 0x06]);
    liar[end + 8..end + 12].copy_from_slice(&[0xff; 4]);
    let path = dir.path().join("liar.zip");
    std::fs::write(&path, &liar).unwrap();
    let run = verify(&sb, &path);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("65535 entries"), "{run:?}");

    let garbage = dir.path().join("garbage.zip");
    std::fs::write(&garbage, b"not a zip at all").unwrap();
    assert_eq!(verify(&sb, &garbage).code, 1);
    assert_eq!(verify(&sb, &dir.path().join("missing.zip")).code, 1);
}

#[test]
fn export_works_with_the_node_running() {
    let sb = Sandbox::new();
    sb.init_non_interactive("live");
    let _node = sb.start_node(&[]);
    let posted = sb.run(&["market", "post", "Ladder to lend"], None);
    assert_eq!(posted.code, 0, "{posted:?}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live.zip");
    let run = export(&sb, &out);
    assert_eq!(run.code, 0, "{run:?}");
    let entries = entries(&out);
    assert!(String::from_utf8_lossy(entry(&entries, "market/posts.jsonl")).contains("Ladder"));
    assert_eq!(verify(&sb, &out).code, 0);
    // Still serving.
    assert!(sb.status().is_some());
}

#[test]
fn export_refuses_when_the_disk_has_no_room() {
    let sb = Sandbox::new();
    sb.init_non_interactive("full");
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    needs::program("unshare", "util-linux");
    let probe = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .output()
        .unwrap();
    if !probe.status.success() {
        needs::cannot_run_here("no private mount namespace can be made here (needs CAP_SYS_ADMIN)");
        return;
    }
    // A 64 KiB tmpfs, filled before the export starts.
    let script = format!(
        "mount -t tmpfs -o size=64k tmpfs '{dir}' && (head -c 1000000 /dev/zero > '{dir}/fill' || true) \
         && exec '{bin}' export --out '{dir}/export.zip'",
        dir = small.display(),
        bin = env!("CARGO_BIN_EXE_hearthnet"),
    );
    let run = Run::from(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env_clear()
            .env("HOME", sb.home())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("not enough free space"), "{run:?}");
}

#[test]
fn an_export_replaces_nothing() {
    let sb = Sandbox::new();
    sb.init_non_interactive("twice");
    // A file already at `--out` is left as it is.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mine.zip");
    std::fs::write(&out, b"someone's file").unwrap();
    let run = export(&sb, &out);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("exists"), "{run:?}");
    assert_eq!(std::fs::read(&out).unwrap(), b"someone's file");
    // The default name: a second export of the day takes the next one.
    let first = sb.run(&["export"], None);
    let second = sb.run(&["export"], None);
    assert_eq!((first.code, second.code), (0, 0), "{first:?} {second:?}");
    let (first, second) = (first.stdout.trim(), second.stdout.trim());
    assert!(second.ends_with("-2.zip"), "{second}");
    assert_ne!(first, second);
    for path in [first, second] {
        assert_eq!(verify(&sb, Path::new(path)).code, 0, "{path}");
    }
}
