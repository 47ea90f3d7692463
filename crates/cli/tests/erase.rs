//! `hearthnet erase` (spec §3.10): the spec's order and flags, the three
//! confirmations, a running node stopped first, and a hostile
//! configuration that must not make it remove anything outside
//! HearthNet's own directories.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Sandbox, wait_until};

fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// Set `key` of `[section]` in the sandbox's config file to `value`.
fn set_config(sb: &Sandbox, section: &str, key: &str, value: &str) {
    let path = sb.config_file();
    let mut config: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let table = config
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    table
        .as_table_mut()
        .unwrap()
        .insert(key.to_owned(), toml::Value::String(value.to_owned()));
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
}

/// A file that belongs to the user, not to HearthNet.
fn precious(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("precious.txt");
    std::fs::write(&file, b"mine").unwrap();
    file
}

#[test]
fn test_erase_keep_keys() {
    let sb = Sandbox::new();
    sb.init_non_interactive("keeper");
    let node_id = sb.key().node_id();
    let communities = sb.data_dir().join("communities");
    assert!(std::fs::read_dir(&communities).unwrap().next().is_some());
    // The QR codes shown: an invite's (a credential), the identity card's,
    // and beside them a picture that is not HearthNet's.
    let invite_qr = sb.data_dir().join("invite-abcd1234.png");
    let card_qr = sb.data_dir().join("node-id.png");
    let other = sb.data_dir().join("holiday.png");
    for png in [&invite_qr, &card_qr, &other] {
        std::fs::write(png, b"\x89PNG").unwrap();
    }
    let run = sb.run(&["erase", "--keep-keys", "--yes"], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!exists(&communities), "{run:?}");
    assert!(
        !exists(&invite_qr),
        "an invite's QR code is removed: {run:?}"
    );
    assert!(card_qr.exists(), "the card's QR code stays with the key");
    assert!(other.exists(), "what is not HearthNet's stays");
    assert!(sb.key_file().exists(), "the device key is kept");
    assert!(run.stderr.contains("removed"), "a summary: {run:?}");
    // Start over with the same identity.
    sb.init_non_interactive("keeper");
    assert_eq!(sb.key().node_id(), node_id);
    assert!(std::fs::read_dir(&communities).unwrap().next().is_some());
}

#[test]
fn erase_without_keep_keys_removes_the_key_and_init_makes_a_new_identity() {
    let sb = Sandbox::new();
    sb.init_non_interactive("gone");
    let node_id = sb.key().node_id();
    let card_qr = sb.data_dir().join("node-id.png");
    std::fs::write(&card_qr, b"\x89PNG").unwrap();
    let run = sb.run(&["erase", "--yes"], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!exists(&sb.data_dir().join("keys")));
    assert!(!exists(&card_qr), "the card's QR code goes with the key");
    sb.init_non_interactive("gone");
    assert_ne!(sb.key().node_id(), node_id);
}

#[test]
fn a_refused_confirmation_or_end_of_input_exits_2_and_removes_nothing() {
    let sb = Sandbox::new();
    sb.init_non_interactive("careful");
    for answers in [Some("no\n"), Some("yes\nyes\nnope\n"), Some("yes\n"), None] {
        let run = sb.run(&["erase"], answers);
        assert_eq!(run.code, 2, "{answers:?}: {run:?}");
        assert!(sb.key_file().exists(), "{answers:?}");
        assert!(
            std::fs::read_dir(sb.data_dir().join("communities"))
                .unwrap()
                .next()
                .is_some()
        );
    }
    let run = sb.run(&["erase"], Some("yes\nyes\nyes\n"));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!sb.key_file().exists());
}

#[test]
fn erase_stops_a_running_node_first() {
    let sb = Sandbox::new();
    sb.init_non_interactive("running");
    let mut node = sb.start_node(&[]);
    let run = sb.run(&["erase", "--yes", "--keep-keys"], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("stopping the running node"), "{run:?}");
    let child = node.child.as_mut().unwrap();
    wait_until(Duration::from_secs(5), "the node to exit", || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(!exists(&sb.data_dir().join("communities")));
    assert_eq!(sb.run(&["status"], None).code, 3);
}

#[test]
fn erase_refuses_to_follow_a_symlink_out_of_its_directories() {
    let sb = Sandbox::new();
    sb.init_non_interactive("linked");
    let outside = tempfile::tempdir().unwrap();
    let file = precious(&outside.path().join("dir"));
    // A link inside the blob store to a directory outside, and the log
    // directory itself a link to one.
    let blobs = sb.data_dir().join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::os::unix::fs::symlink(outside.path().join("dir"), blobs.join("link")).unwrap();
    let log = sb.home().join(".local/state/hearthnet/log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&log);
    std::os::unix::fs::symlink(outside.path().join("dir"), &log).unwrap();

    let run = sb.run(&["erase", "--yes"], None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(file.exists(), "the link's target is left alone: {run:?}");
    assert!(
        !exists(&blobs.join("link")) && !exists(&log),
        "the links go"
    );
}

#[test]
fn erase_refuses_directories_configured_outside_hearthnet_and_removes_nothing() {
    let sb = Sandbox::new();
    sb.init_non_interactive("hostile");
    let outside = tempfile::tempdir().unwrap();
    let file = precious(outside.path());
    let home_file = precious(sb.home());
    let home = sb.home().display().to_string();
    let hostile = [
        ("file", "blobs_dir", outside.path().display().to_string()),
        ("file", "blobs_dir", "/".to_owned()),
        // HearthNet's own, but it holds what must stay (the runtime
        // directory, the config): refused, not wiped whole.
        ("file", "blobs_dir", sb.data_dir().display().to_string()),
        ("observability", "log_dir", home.clone()),
        (
            "rag",
            "corpora_dir",
            format!("{home}/.local/share/hearthnet/../../.."),
        ),
    ];
    let config = std::fs::read_to_string(sb.config_file()).unwrap();
    for (section, key, value) in hostile {
        std::fs::write(sb.config_file(), &config).unwrap();
        set_config(&sb, section, key, &value);
        let run = sb.run(&["erase", "--yes"], None);
        assert_eq!(run.code, 1, "{key} = {value}: {run:?}");
        assert!(run.stderr.contains("nothing was removed"), "{run:?}");
        assert!(file.exists() && home_file.exists(), "{key} = {value}");
        assert!(
            sb.key_file().exists(),
            "nothing at all goes: {key} = {value}"
        );
    }
}

#[test]
fn erase_refuses_a_data_directory_that_is_home_or_root() {
    for target in ["home", "/"] {
        let sb = Sandbox::new();
        let home_file = precious(sb.home());
        let data = sb.data_dir();
        std::fs::create_dir_all(data.parent().unwrap()).unwrap();
        let to = if target == "home" {
            sb.home().to_path_buf()
        } else {
            "/".into()
        };
        std::os::unix::fs::symlink(&to, &data).unwrap();
        let run = sb.run(&["erase", "--yes"], None);
        assert_eq!(run.code, 1, "{target}: {run:?}");
        assert!(run.stderr.contains("nothing was removed"), "{run:?}");
        assert!(home_file.exists());
    }
    // XDG_DATA_HOME=/ makes the data directory /hearthnet, which is
    // HearthNet's; $HOME itself can only be reached through a link.
}
