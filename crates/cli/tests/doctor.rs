//! `hearthnet doctor` against the real binary with real failures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{Run, Sandbox, needs};

fn check_line<'a>(run: &'a Run, name: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no line for {name}: {run:?}"))
}

/// Run `hearthnet doctor` with the data directory replaced by a fresh tmpfs
/// mounted with `options`, inside a private mount namespace, so nothing
/// outside this one process sees the mount. `fill` fills it up first.
/// `None` where mounting is not allowed (see `needs::cannot_run_here`).
fn doctor_on_tmpfs(sb: &Sandbox, options: &str, fill: bool) -> Option<Run> {
    let data = sb.data_dir();
    let fill_cmd = if fill {
        format!(
            "head -c 1048576 /dev/zero > '{}/filler' 2>/dev/null;",
            data.display()
        )
    } else {
        String::new()
    };
    let script = format!(
        "mount -t tmpfs -o {options} tmpfs '{}' || exit 99; {fill_cmd} exec '{}' doctor",
        data.display(),
        env!("CARGO_BIN_EXE_hearthnet")
    );
    needs::program("unshare", "util-linux");
    let run = Run::from(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env_clear()
            .env("HOME", sb.home())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .output()
            .expect("run unshare"),
    );
    if run.code == 99 || run.stderr.contains("unshare failed") {
        needs::cannot_run_here(&format!(
            "cannot mount a tmpfs in a private mount namespace (needs CAP_SYS_ADMIN): {}",
            run.stderr.trim()
        ));
        return None;
    }
    Some(run)
}

#[test]
fn test_doctor_exit_code_reflects_failures() {
    let sb = Sandbox::new();
    sb.init_non_interactive("doc");
    let healthy = sb.run(&["doctor"], None);
    for name in [
        "keys_present",
        "keys_loadable",
        "key_permissions",
        "config_valid",
        "data_dir_writable",
        "clock",
    ] {
        assert!(check_line(&healthy, name).starts_with('✓'), "{healthy:?}");
    }

    // A key others can read.
    std::fs::set_permissions(sb.key_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = sb.run(&["doctor"], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(check_line(&run, "key_permissions").starts_with('✗'));
    assert!(
        run.stdout
            .contains(&format!("fix: chmod 600 {}", sb.key_file().display())),
        "{run:?}"
    );
    std::fs::set_permissions(sb.key_file(), std::fs::Permissions::from_mode(0o600)).unwrap();

    // A bad config.
    let good = std::fs::read_to_string(sb.config_file()).unwrap();
    std::fs::write(
        sb.config_file(),
        good.replace("[bus]", "[bus]\nprefer_locale = true"),
    )
    .unwrap();
    let run = sb.run(&["doctor", "--check", "config_valid"], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        check_line(&run, "config_valid").contains("bus.prefer_locale"),
        "{run:?}"
    );
    assert!(run.stdout.contains("fix: edit"), "{run:?}");
    std::fs::write(sb.config_file(), good).unwrap();
    assert_eq!(sb.run(&["doctor", "--check", "config_valid"], None).code, 0);
}

#[test]
fn read_only_and_full_data_dirs_fail_their_checks() {
    let sb = Sandbox::new();
    sb.init_non_interactive("doc");
    if !needs::is_root() {
        // Permission bits stop a normal user, so they make a real failure.
        std::fs::set_permissions(sb.data_dir(), std::fs::Permissions::from_mode(0o555)).unwrap();
        let run = sb.run(&["doctor", "--check", "data_dir_writable"], None);
        std::fs::set_permissions(sb.data_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(run.code, 1, "{run:?}");
        return;
    }
    // Root ignores permission bits: use a read-only and a full filesystem.
    let Some(read_only) = doctor_on_tmpfs(&sb, "ro,size=1m", false) else {
        return;
    };
    assert_eq!(read_only.code, 1, "{read_only:?}");
    let line = check_line(&read_only, "data_dir_writable");
    assert!(
        line.starts_with('✗') && line.contains("Read-only file system"),
        "{read_only:?}"
    );

    let full = doctor_on_tmpfs(&sb, "size=256k", true).expect("mount worked a moment ago");
    assert_eq!(full.code, 1, "{full:?}");
    assert!(check_line(&full, "disk_space").starts_with('✗'), "{full:?}");
    let line = check_line(&full, "data_dir_writable");
    assert!(
        line.starts_with('✗') && line.contains("No space left"),
        "{full:?}"
    );
    assert!(full.stdout.contains("fix: free at least 1 GiB"), "{full:?}");
}

#[test]
fn a_port_held_by_another_program_is_named() {
    let sb = Sandbox::new();
    sb.init_non_interactive("doc");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let run = sb.run_with_env(
        &["doctor", "--check", "api_port"],
        &[("HEARTHNET_TRANSPORT_API_PORT", &port)],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("(pid {})", std::process::id())),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("fix: stop that process, or set transport.api_port"),
        "{run:?}"
    );
}

#[test]
fn json_output_and_missing_keys() {
    let sb = Sandbox::new();
    let run = sb.run(&["doctor", "--json"], None);
    assert_eq!(run.code, 1, "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let checks = report["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "keys_present",
            "keys_loadable",
            "key_permissions",
            "config_valid",
            "data_dir_writable",
            "disk_space",
            "api_port",
            "peer_port",
            "mdns_socket",
            "clock",
            "embedding_model",
            "llm_backend_reachable"
        ]
    );
    assert_eq!(checks[0]["ok"], false);
    assert_eq!(checks[0]["fix"], "run `hearthnet init`");
}

#[test]
fn plain_output_when_piped_and_bad_check_name_is_usage() {
    let sb = Sandbox::new();
    let mut cmd = sb.command(&["doctor"]);
    cmd.env_remove("NO_COLOR");
    let out = cmd.output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains('\x1b'),
        "no colour codes when piped"
    );

    let run = sb.run(&["doctor", "--check", "flux_capacitor"], None);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("keys_present"), "{run:?}");
}

#[test]
fn running_checks_join_when_a_node_answers() {
    let sb = Sandbox::new();
    sb.init_non_interactive("doc");
    let healthy = sb.start_node(&[]);
    let run = sb.run(&["doctor"], None);
    for name in [
        "event_log",
        "peers_visible",
        "sync_recency",
        "recent_error_rate",
        "mdns",
        "udp_discovery",
    ] {
        assert!(check_line(&run, name).starts_with('✓'), "{name}: {run:?}");
    }
    // The sandbox keeps discovery off the host's network.
    assert!(
        check_line(&run, "udp_discovery").contains("off (discovery.udp_enabled = false)"),
        "{run:?}"
    );
    assert!(
        check_line(&run, "event_log").contains("head Lamport 0, 1 events"),
        "{run:?}"
    );
    drop(healthy);

    // A peer that never answers, and a provider that keeps timing out.
    let _node = sb.start_node(&[
        ("HEARTHNET_DISCOVERY_STATIC_PEERS", "[\"127.0.0.1:1\"]"),
        ("HEARTHNET_EVENTS_SYNC_INTERVAL_SECONDS", "1"),
    ]);
    let slow = r#"{"input": {"text": "x", "repeat": 2, "interval_ms": 1000}}"#;
    for _ in 0..3 {
        assert_eq!(
            sb.run(
                &[
                    "call",
                    "experimental.echo",
                    "--timeout",
                    "0.05",
                    "--body",
                    slow
                ],
                None
            )
            .code,
            7
        );
    }
    let run = sb.run(&["doctor"], None);
    assert_eq!(run.code, 1, "{run:?}");
    let line = check_line(&run, "sync_recency");
    assert!(
        line.starts_with('✗') && line.contains("127.0.0.1:1: last good sync never"),
        "{run:?}"
    );
    assert!(
        check_line(&run, "peers_visible").starts_with('✗'),
        "{run:?}"
    );
    let line = check_line(&run, "recent_error_rate");
    assert!(
        line.starts_with('✗') && line.contains("3 of the last 3 calls"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("fix: see `hearthnet trace recent`"),
        "{run:?}"
    );
}

#[test]
fn a_running_check_without_a_node_says_how_to_start_one() {
    let sb = Sandbox::new();
    sb.init_non_interactive("doc");
    let run = sb.run(&["doctor", "--check", "event_log"], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("fix: start it with `hearthnet run`"),
        "{run:?}"
    );
}
