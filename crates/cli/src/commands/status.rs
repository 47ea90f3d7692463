//! `hearthnet status` (spec §3.3): exit 0 reachable, 3 not, 1 bad answer.

use std::path::Path;

use hearthnet_config::Env;
use hearthnet_wire::local::Status;

use super::node_client;
use crate::cli::JsonArgs;
use crate::exit::{CliError, CliResult, ExitStatus};

pub fn run(config: Option<&Path>, env: &Env, args: JsonArgs) -> CliResult {
    let client = node_client::connect(config, env)?;
    // A status without a field it must have is a bad answer (exit 1),
    // named by the client's error.
    let status = client.status().map_err(CliError::from_client)?;
    if args.json {
        println!("{}", serde_json::to_string(&status)?);
    } else {
        let rows = rows(&status);
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in rows {
            println!("{k:width$}  {v}");
        }
    }
    Ok(ExitStatus::Success)
}

/// The table `status` prints, label and value.
fn rows(s: &Status) -> [(&'static str, String); 9] {
    [
        (
            "node",
            format!(
                "{}  {} ({})",
                s.node.short_id,
                s.node.display_name,
                s.node.profile.as_str()
            ),
        ),
        (
            "community",
            format!(
                "{}  \"{}\", {} members",
                s.community.short_id, s.community.name, s.community.members
            ),
        ),
        ("uptime", human_duration(s.uptime_seconds)),
        ("api", s.api.to_string()),
        (
            "capabilities",
            format!(
                "{}: {}",
                s.capabilities.names.len(),
                s.capabilities.names.join(", ")
            ),
        ),
        ("models", models(s)),
        ("internet", internet(s)),
        ("in flight", s.in_flight.to_string()),
        (
            "event log",
            format!(
                "head Lamport {}, {} events, {:.1} MiB",
                s.events.head_lamport,
                s.events.count,
                s.events.disk_bytes as f64 / 1_048_576.0
            ),
        ),
    ]
}

/// The emergency detector's mode, how long it has held and the probes
/// that failed.
fn internet(s: &Status) -> String {
    let Some(e) = &s.emergency else {
        return "not watched (emergency.enabled = false)".into();
    };
    let failing: Vec<&str> = e
        .probes
        .iter()
        .filter(|p| !p.reachable)
        .map(|p| p.target.as_str())
        .collect();
    let mut line = format!("{} for {}", e.mode, human_duration(e.held_seconds));
    if !failing.is_empty() {
        line.push_str(&format!("; unreachable: {}", failing.join(", ")));
    }
    line
}

/// `name (capabilities; where)` for each model, or `none`.
fn models(s: &Status) -> String {
    if s.models.is_empty() {
        return "none (configure [embedding] or [[llm.backends]], README \"Models\")".into();
    }
    let at = |local: bool, neighbours: usize| match (local, neighbours) {
        (true, 0) => "here".to_owned(),
        (true, 1) => "here and 1 neighbour".to_owned(),
        (true, n) => format!("here and {n} neighbours"),
        (false, 1) => "1 neighbour".to_owned(),
        (false, n) => format!("{n} neighbours"),
    };
    s.models
        .iter()
        .map(|m| {
            format!(
                "{} ({}; {})",
                m.model,
                m.capabilities.join(", "),
                at(m.local, m.neighbours)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn human_duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s if s < 86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        s => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_the_document() {
        let status = hearthnet_wire::local::samples::status(([127, 0, 0, 1], 7080).into());
        let rows = rows(&status);
        assert_eq!(
            rows[1].1,
            format!("{}  \"Niederrhein\", 7 members", status.community.short_id)
        );
        assert_eq!(rows[3].1, "127.0.0.1:7080");
        assert_eq!(
            rows[5].1,
            "smollm2-135m (llm.chat, llm.complete; here and 2 neighbours)"
        );
        assert_eq!(rows[6].1, "degraded for 42 s; unreachable: quad9.net");
        assert_eq!(rows[8].1, "head Lamport 41, 42 events, 1.0 MiB");
        let mut unwatched = status.clone();
        unwatched.emergency = None;
        assert_eq!(
            super::rows(&unwatched)[6].1,
            "not watched (emergency.enabled = false)"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(42), "42 s");
        assert_eq!(human_duration(3 * 3600 + 120), "3 h 2 min");
    }
}
