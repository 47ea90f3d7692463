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

/// Sync every second, so events travel quickly.
pub const FAST_SYNC: (&str, &str) = ("HEARTHNET_EVENTS_SYNC_INTERVAL_SECONDS", "1");

/// A device named `name` that joined `founder`'s community by invite (the
/// founder runs; the device does not yet).
pub fn member(founder: &Sandbox, name: &str) -> Sandbox {
    member_at(founder, name, "member")
}

/// [`member`], invited at `level`.
pub fn member_at(founder: &Sandbox, name: &str, level: &str) -> Sandbox {
    let sb = Sandbox::new();
    let card = sb.identity_card(name);
    let (text, _) = super::invite(founder, &card, &["--level", level]);
    let joined = sb.run(&["invite", "redeem", &text], None);
    assert_eq!(joined.code, 0, "{joined:?}");
    sb
}

/// A founder and `members` who joined by invite, all running with
/// [`FAST_SYNC`], each listing everyone started before it as static peers;
/// node `i` (0 the founder) also gets the settings `extra(i)`.
pub fn chain(
    members: usize,
    extra: impl Fn(usize) -> Vec<(&'static str, String)>,
) -> (Vec<Sandbox>, Vec<super::RunningNode>) {
    chain_at(&vec!["member"; members], extra)
}

/// As [`chain`], with one member invited at each of `levels` (`member`
/// or `trusted`).
pub fn chain_at(
    levels: &[&str],
    extra: impl Fn(usize) -> Vec<(&'static str, String)>,
) -> (Vec<Sandbox>, Vec<super::RunningNode>) {
    let start = |sb: &Sandbox, i: usize, peers: Option<&str>| {
        let settings = extra(i);
        let mut env: Vec<(&str, &str)> = vec![FAST_SYNC];
        if let Some(peers) = peers {
            env.push(("HEARTHNET_DISCOVERY_STATIC_PEERS", peers));
        }
        env.extend(settings.iter().map(|(k, v)| (*k, v.as_str())));
        sb.start_node(&env)
    };
    let founder = Sandbox::new();
    founder.init_non_interactive("founder");
    let mut running = vec![start(&founder, 0, None)];
    let mut all = vec![founder];
    for (i, level) in levels.iter().enumerate() {
        let sb = member_at(&all[0], &format!("member{i}"), level);
        all.push(sb);
    }
    let mut peers = vec![all[0].peer_addr()];
    for (i, sb) in all.iter().enumerate().skip(1) {
        let list: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
        running.push(start(sb, i, Some(&format!("[{}]", list.join(",")))));
        peers.push(sb.peer_addr());
    }
    (all, running)
}
