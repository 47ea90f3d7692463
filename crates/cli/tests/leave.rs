//! `hearthnet leave` (M13 §5.2): the node stops, the community's data is
//! archived, the key kept, and `init` starts over with the same identity.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::{Sandbox, wait_until};

fn community_dirs(sb: &Sandbox) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(sb.data_dir().join("communities"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn leave_then_status() {
    let sb = Sandbox::new();
    sb.init_non_interactive("leaver");
    let node_id = sb.key().node_id();
    let mut node = sb.start_node(&[]);
    let before = community_dirs(&sb);
    assert_eq!(before.len(), 1);

    let run = sb.run(&["leave", "--yes"], None);
    assert_eq!(run.code, 0, "{run:?}");
    let child = node.child.as_mut().unwrap();
    wait_until(Duration::from_secs(5), "the node to exit", || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    let status = sb.run(&["status"], None);
    assert_eq!(status.code, 3, "{status:?}");
    assert_eq!(community_dirs(&sb), vec![format!("{}.archived", before[0])]);
    let archived = sb
        .data_dir()
        .join("communities")
        .join(format!("{}.archived", before[0]));
    assert!(archived.join("events.sqlite").exists());
    assert!(sb.key_file().exists());
    // Nothing left to leave; then start over with the same key.
    assert_eq!(sb.run(&["leave", "--yes"], None).code, 1);
    sb.init_non_interactive("leaver");
    assert_eq!(sb.key().node_id(), node_id);
    assert_eq!(community_dirs(&sb).len(), 2);
}

#[test]
fn a_refused_leave_exits_2_and_changes_nothing() {
    let sb = Sandbox::new();
    sb.init_non_interactive("stayer");
    let before = community_dirs(&sb);
    for answer in [Some("no\n"), None] {
        let run = sb.run(&["leave"], answer);
        assert_eq!(run.code, 2, "{run:?}");
        assert_eq!(community_dirs(&sb), before);
    }
    let _node = sb.start_node(&[]);
    assert!(sb.status().is_some());
}
