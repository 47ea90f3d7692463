//! A community's state in a sandbox, read directly (the node stopped), and
//! the answers of event pushes.

use hearthnet_base::CommunityId;
use hearthnet_events::{EventLog, Limits, LogPaths};
use serde_json::Value;

use super::Sandbox;

/// Where `sb` keeps the state of `community`.
pub fn state_dir(sb: &Sandbox, community: CommunityId) -> std::path::PathBuf {
    sb.data_dir()
        .join("communities")
        .join(hearthnet_config::community_dir_name(&community))
}

/// The log of `sb`, opened directly (the node must not be running).
pub fn open_log(sb: &Sandbox, community: CommunityId) -> EventLog {
    let state = state_dir(sb, community);
    let genesis = serde_json::from_slice(&std::fs::read(state.join("genesis.json")).unwrap()).ok();
    EventLog::open(
        LogPaths::in_state_dir(&state),
        community,
        Limits::default(),
        genesis,
        None,
    )
    .unwrap()
}

/// The reasons of the events a push's `report` rejected, sorted.
pub fn rejected_reasons(report: &Value) -> Vec<String> {
    let mut reasons: Vec<String> = report["rejected_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_owned())
        .collect();
    reasons.sort();
    reasons
}
