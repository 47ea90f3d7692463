//! `hearthnet init` against the real binary, each test in its own HOME.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use common::{Sandbox, decode_qr_png, line_starting, wait_bounded};
use hearthnet_identity::CommunityManifest;

fn state_dir(sb: &Sandbox) -> std::path::PathBuf {
    let communities = sb.data_dir().join("communities");
    let mut dirs: Vec<_> = std::fs::read_dir(&communities).unwrap().flatten().collect();
    assert_eq!(dirs.len(), 1);
    dirs.remove(0).path()
}

#[test]
fn init_serves_the_models_installed_as_python_packages_when_asked() {
    let sb = Sandbox::new();
    let site = hearthnet_test_models::root().display().to_string();
    let models = [("HEARTHNET_MODELS_PATH", site.as_str())];
    let run = sb.run_with_env(
        &[
            "init",
            "--non-interactive",
            "--use-installed-models",
            "--name",
            "den",
        ],
        &models,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("found all-minilm-l6-v2"), "{run:?}");
    let config: toml::Table = std::fs::read_to_string(sb.config_file())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        config["embedding"]["model_dir"].as_str(),
        Some(hearthnet_test_models::minilm().to_str().unwrap())
    );
    let backend = &config["llm"]["backends"][0];
    assert_eq!(backend["kind"].as_str(), Some("gguf"));
    assert_eq!(
        backend["model_path"].as_str(),
        Some(hearthnet_test_models::smollm().to_str().unwrap())
    );
    // What init configured is what doctor checks, and it can serve.
    for check in ["embedding_model", "llm_backend_reachable"] {
        let doctor = sb.run(&["doctor", "--check", check], None);
        assert_eq!(doctor.code, 0, "{check}: {doctor:?}");
    }

    // Without the flag and without a terminal, nothing is configured and
    // the user is told how.
    let other = Sandbox::new();
    let run = other.run_with_env(&["init", "--non-interactive", "--name", "attic"], &models);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("not configured"), "{run:?}");
    let config = std::fs::read_to_string(other.config_file()).unwrap();
    assert!(!config.contains("model_path"), "{config}");
}

#[test]
fn test_init_writes_config_and_keys() {
    let sb = Sandbox::new();
    let run = sb.init_non_interactive("garage");

    let mode = std::fs::metadata(sb.key_file())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let public = std::fs::read(sb.data_dir().join("keys/device.pub")).unwrap();
    assert_eq!(public.len(), 32);

    let config: toml::Table = std::fs::read_to_string(sb.config_file())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(config["identity"]["display_name"].as_str(), Some("garage"));
    let community_id = config["community"]["community_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let manifest = CommunityManifest::load(&state_dir(&sb)).unwrap();
    assert_eq!(manifest.community_id.full(), community_id);
    assert_eq!(manifest.name, "garage's community");
    assert_eq!(manifest.root_key.as_bytes().as_slice(), public.as_slice());
    assert!(state_dir(&sb).join("genesis.json").exists());
    assert!(
        run.stdout.contains(&format!("node id    {community_id}")),
        "{run:?}"
    );
}

#[test]
fn second_init_keeps_the_key() {
    let sb = Sandbox::new();
    sb.init_non_interactive("one");
    let key = std::fs::read(sb.key_file()).unwrap();

    let again = sb.run(&["init", "--non-interactive"], None);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("already a member"), "{again:?}");
    assert_eq!(std::fs::read(sb.key_file()).unwrap(), key);

    // Without a community, init founds one, still with the same key.
    std::fs::remove_file(sb.config_file()).unwrap();
    let third = sb.run(&["init", "--non-interactive"], None);
    assert_eq!(third.code, 0, "{third:?}");
    assert!(
        third.stderr.contains("using existing device key"),
        "{third:?}"
    );
    assert_eq!(std::fs::read(sb.key_file()).unwrap(), key);
}

#[test]
fn tampered_genesis_manifest_is_rejected_and_kept() {
    let sb = Sandbox::new();
    sb.init_non_interactive("garage");
    let path = state_dir(&sb).join("manifest.json");
    let tampered = std::fs::read_to_string(&path)
        .unwrap()
        .replace("garage's community", "evil's community");
    std::fs::write(&path, &tampered).unwrap();

    let run = sb.run(&["init", "--non-interactive"], None);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("does not verify"), "{run:?}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        tampered,
        "nothing overwritten"
    );
}

#[test]
fn bad_config_messages_name_file_key_and_value() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.config_file().parent().unwrap()).unwrap();
    std::fs::write(sb.config_file(), "[transport]\n\napi_port = 99999\n").unwrap();
    let run = sb.run(&["init", "--non-interactive"], None);
    assert_eq!(run.code, 1, "{run:?}");
    let expected = format!(
        "{}:3: key `transport.api_port` = 99999",
        sb.config_file().display()
    );
    assert!(run.stderr.contains(&expected), "{run:?}");
    assert!(!sb.key_file().exists(), "nothing created on a bad config");

    std::fs::write(sb.config_file(), "[ui]\ncolour = \"blue\"\n").unwrap();
    let run = sb.run(&["init", "--non-interactive"], None);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("unknown key `ui.colour`"), "{run:?}");

    std::fs::remove_file(sb.config_file()).unwrap();
    let run = sb.run_with_env(
        &["init", "--non-interactive"],
        &[("HEARTHNET_UI_PORT", "many")],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("environment variable HEARTHNET_UI_PORT: key `ui.port` = \"many\""),
        "{run:?}"
    );

    // A key that older versions wrote and that no longer does anything.
    std::fs::write(
        sb.config_file(),
        "[transport]\napi_port = 7080\ntls_cert = \"/etc/hn/cert.pem\"\n",
    )
    .unwrap();
    let run = sb.run(&["init", "--non-interactive"], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "{}:3: key `transport.tls_cert` was removed: the peer certificate is made from the device key",
            sb.config_file().display()
        )) && run.stderr.contains("delete it"),
        "{run:?}"
    );
    std::fs::remove_file(sb.config_file()).unwrap();

    let missing = sb.home().join("nope.toml");
    let run = sb.run(
        &[
            "--config",
            missing.to_str().unwrap(),
            "init",
            "--non-interactive",
        ],
        None,
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("nope.toml"), "{run:?}");
}

#[test]
fn non_interactive_never_reads_stdin() {
    let sb = Sandbox::new();
    // stdin stays open and silent: any read would block until the limit.
    let mut child = sb
        .command(&["init", "--non-interactive"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let out = wait_bounded(child, Duration::from_secs(30));
    drop(stdin);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn interactive_init_with_answers_creates_community_and_qr_png() {
    let sb = Sandbox::new();
    let run = sb.run(&["init"], Some("Kitchen\nsp\ncreate\nRiverside\n\n"));
    assert_eq!(run.code, 0, "{run:?}");
    let config = std::fs::read_to_string(sb.config_file()).unwrap();
    assert!(
        config.contains("display_name = \"Kitchen\"") && config.contains("profile = \"spark\""),
        "{config}"
    );
    assert_eq!(
        CommunityManifest::load(&state_dir(&sb)).unwrap().name,
        "Riverside"
    );
    assert!(run.stderr.contains("detected profile"), "{run:?}");

    let card = decode_qr_png(&sb.data_dir().join("node-id.png"));
    assert!(card.starts_with("hearthnet-id://v1/"));
    assert!(run.stdout.contains(&card), "printed text matches the PNG");
    let node_id = line_starting(&run.stdout, "node id")
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_owned();
    let decoded = hearthnet_onboarding::IdentityCard::decode(&card).unwrap();
    assert_eq!(decoded.node_id_full.full(), node_id);
    assert_eq!(decoded.display_name, "Kitchen");
}

#[test]
fn eof_at_a_prompt_exits_2_without_a_community() {
    let sb = Sandbox::new();
    let run = sb.run(&["init"], Some("Kitchen\n"));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("aborted"), "{run:?}");
    assert!(!sb.data_dir().join("communities").exists());
}

#[test]
fn ctrl_c_at_a_prompt_exits_2() {
    let sb = Sandbox::new();
    let mut child = sb
        .command(&["init"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    // The prompt has no newline; read byte-wise until it shows.
    while !seen.contains("Display name") {
        let buf = stderr.fill_buf().unwrap();
        assert!(!buf.is_empty(), "init ended before prompting: {seen}");
        seen.push_str(&String::from_utf8_lossy(buf));
        let n = buf.len();
        stderr.consume(n);
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = wait_bounded(child, Duration::from_secs(10));
    drop(stdin);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn run_without_a_device_key_says_how_to_make_one_whatever_the_ui_settings() {
    let sb = Sandbox::new();
    let run = sb.run_with_env(&["run"], &[("HEARTHNET_UI_LAUNCH_BROWSER", "true")]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("hearthnet init"), "{run:?}");
    assert!(
        !run.stdout.contains("http://"),
        "no link without a node: {run:?}"
    );
}
