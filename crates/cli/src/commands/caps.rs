//! `hearthnet caps` (spec §3.4): name, version, stability, node,
//! model/params, health, p50ms, in_flight.

use std::path::Path;

use hearthnet_config::Env;
use hearthnet_wire::local::CapabilityEntry;
use serde_json::Value;

use super::node_client;
use crate::cli::CapsArgs;
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;

pub fn run(config: Option<&Path>, env: &Env, args: CapsArgs) -> CliResult {
    let client = node_client::connect(config, env)?;
    let caps = client.caps().map_err(CliError::from_client)?;
    let selected: Vec<CapabilityEntry> = caps
        .capabilities
        .into_iter()
        .filter(|c| {
            if c.local {
                !args.remote_only
            } else {
                !args.local_only
            }
        })
        .filter(|c| args.name.as_deref().is_none_or(|p| glob_match(p, &c.name)))
        .collect();
    if args.json {
        println!("{}", serde_json::to_string(&selected)?);
        return Ok(ExitStatus::Success);
    }
    let rows: Vec<Vec<String>> = selected.iter().map(row).collect();
    printer::table(
        &[
            "NAME",
            "VERSION",
            "STABILITY",
            "NODE",
            "MODEL/PARAMS",
            "HEALTH",
            "P50MS",
            "IN_FLIGHT",
        ],
        &rows,
        4,
    );
    Ok(ExitStatus::Success)
}

fn row(c: &CapabilityEntry) -> Vec<String> {
    let node = c.node.short();
    let node = if c.local {
        format!("{node} (local)")
    } else {
        node
    };
    let params = match c.params.get("model").and_then(Value::as_str) {
        Some(model) => model.to_owned(),
        None if c.params.as_object().is_none_or(|m| m.is_empty()) => "-".into(),
        None => c.params.to_string(),
    };
    let health = if c.quarantined {
        "quarantined".to_owned()
    } else {
        format!("{:.0}%", c.success_rate * 100.0)
    };
    vec![
        c.name.clone(),
        c.version.clone(),
        stability_name(c),
        node,
        params,
        health,
        format!("{:.0}", c.p50_ms),
        format!("{}/{}", c.in_flight, c.max_concurrent),
    ]
}

/// As the node spells it (`experimental`, `beta`, `stable`).
fn stability_name(c: &CapabilityEntry) -> String {
    serde_json::to_value(c.stability)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
        || text.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("llm.*", "llm.chat"));
        assert!(glob_match("*.echo", "experimental.echo"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("e*e*o", "experimental.echo"));
        assert!(!glob_match("llm.*", "embed.text"));
        assert!(!glob_match("llm.chat", "llm.chats"));
        assert!(!glob_match("a*a", "a"));
    }
}
