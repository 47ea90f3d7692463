//! Emergency mode (M09) in a running node, probing servers the test holds:
//! offline when they stop answering, what needs the internet withdrawn,
//! and all of it back when they answer again.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use common::Sandbox;
use common::probes::{Probes, pairs};
use serde_json::Value;

const CLOUD_MODEL: &str = "cloud-model";

fn status(sb: &Sandbox) -> Value {
    let run = sb.run(&["status", "--json"], None);
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str(&run.stdout).unwrap()
}

fn mode(sb: &Sandbox) -> String {
    status(sb)["emergency"]["mode"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn offers_the_cloud_model(sb: &Sandbox) -> bool {
    let caps = sb.run(&["caps", "--json"], None);
    assert_eq!(caps.code, 0, "{caps:?}");
    caps.stdout.contains(CLOUD_MODEL)
}

fn mode_metric(sb: &Sandbox) -> String {
    let metrics = sb.client().get_text("/metrics").unwrap();
    metrics
        .lines()
        .find(|l| l.starts_with("hearthnet_emergency_mode "))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn offline_withdraws_what_needs_the_internet_and_online_restores_it() {
    let mut probes = Probes::answering();
    // A model behind a remote API, declared to need the internet; nothing
    // listens there, and nothing needs to until it is called.
    let cloud = format!(
        r#"[{{name = "cloud", kind = "openai_compatible", model = "{CLOUD_MODEL}", remote_model = "big", base_url = "http://127.0.0.1:9/v1", requires_internet = true, max_concurrent = 1}}]"#
    );
    let sb = Sandbox::new();
    sb.init_non_interactive("den");
    let env = probes.env();
    let mut vars = pairs(&env);
    vars.push(("HEARTHNET_LLM_BACKENDS", &cloud));
    let _node = sb.start_node(&vars);
    common::wait_until(Duration::from_secs(20), "a first round of probes", || {
        let s = status(&sb);
        s["emergency"]["probes"]
            .as_array()
            .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["reachable"] == true))
    });
    assert_eq!(mode(&sb), "online");
    assert!(offers_the_cloud_model(&sb));
    assert_eq!(mode_metric(&sb), "hearthnet_emergency_mode 0");

    // The internet goes: degraded at once, offline two seconds later.
    probes.stop();
    common::wait_until(Duration::from_secs(30), "offline", || {
        mode(&sb) == "offline"
    });
    assert!(!offers_the_cloud_model(&sb), "withdrawn while offline");
    assert_eq!(mode_metric(&sb), "hearthnet_emergency_mode 2");
    let table = sb.run(&["status"], None);
    assert!(table.stdout.contains("offline for"), "{table:?}");
    assert!(
        table.stdout.contains(&probes.addrs[1].to_string()),
        "{table:?}"
    );

    // It comes back: online once every probe has passed for a second.
    probes.resume();
    common::wait_until(Duration::from_secs(30), "online again", || {
        mode(&sb) == "online"
    });
    assert!(offers_the_cloud_model(&sb), "restored once online");
    assert_eq!(mode_metric(&sb), "hearthnet_emergency_mode 0");
}

#[test]
fn a_bad_probe_target_stops_the_start_naming_the_key() {
    let sb = Sandbox::new();
    sb.init_non_interactive("den");
    let run = sb.run_with_env(
        &["run", "--no-ui"],
        &[
            ("HEARTHNET_EMERGENCY_ENABLED", "true"),
            ("HEARTHNET_EMERGENCY_PROBE_TARGETS", r#"["host:99999"]"#),
            ("HEARTHNET_TRANSPORT_API_PORT", "0"),
            ("HEARTHNET_TRANSPORT_PEER_PORT", "0"),
        ],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("emergency.probe_targets"), "{run:?}");
    assert!(run.stderr.contains("host:99999"), "{run:?}");
}
