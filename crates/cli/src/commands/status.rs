//! `hearthnet status` (spec §3.3): exit 0 reachable, 3 not, 1 bad answer.

use std::path::Path;

use hearthnet_config::Env;
use serde_json::Value;

use super::node_client;
use crate::cli::JsonArgs;
use crate::exit::{CliError, CliResult, ExitStatus};

pub fn run(config: Option<&Path>, env: &Env, args: JsonArgs) -> CliResult {
    let client = node_client::connect(config, env)?;
    let status = client
        .get("/local/v1/status", &[])
        .map_err(CliError::from_client)?;
    if args.json {
        println!("{status}");
    } else {
        print_status(&status).ok_or_else(|| {
            CliError::new(
                ExitStatus::Failure,
                anyhow::anyhow!("the node's status document is incomplete: {status}"),
            )
        })?;
    }
    Ok(ExitStatus::Success)
}

fn print_status(s: &Value) -> Option<()> {
    let str_at = |path: &str| s.pointer(path).and_then(Value::as_str);
    let num_at = |path: &str| s.pointer(path).and_then(Value::as_u64);
    let caps: Vec<&str> = s
        .pointer("/capabilities/names")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let rows = [
        (
            "node",
            format!(
                "{}  {} ({})",
                str_at("/node/short_id")?,
                str_at("/node/display_name")?,
                str_at("/node/profile")?
            ),
        ),
        (
            "community",
            format!(
                "{}  \"{}\", {} members",
                str_at("/community/short_id")?,
                str_at("/community/name")?,
                num_at("/community/members")?
            ),
        ),
        ("uptime", human_duration(num_at("/uptime_seconds")?)),
        ("api", str_at("/api")?.to_owned()),
        (
            "capabilities",
            format!("{}: {}", caps.len(), caps.join(", ")),
        ),
        ("in flight", num_at("/in_flight")?.to_string()),
        (
            "event log",
            match (
                num_at("/events/head_lamport"),
                num_at("/events/count"),
                num_at("/events/disk_bytes"),
            ) {
                (Some(head), Some(count), Some(bytes)) => {
                    format!(
                        "head Lamport {head}, {count} events, {:.1} MiB",
                        bytes as f64 / 1_048_576.0
                    )
                }
                _ => "-".to_owned(),
            },
        ),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:width$}  {v}");
    }
    Some(())
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
    fn durations_read_well() {
        assert_eq!(human_duration(42), "42 s");
        assert_eq!(human_duration(3 * 3600 + 120), "3 h 2 min");
    }
}
