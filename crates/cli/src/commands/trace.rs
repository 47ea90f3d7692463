//! `hearthnet trace recent [N] [--capability NAME]` (spec §3.7).

use std::path::Path;

use hearthnet_config::Env;
use serde_json::Value;

use super::node_client;
use crate::cli::TraceRecentArgs;
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;

pub fn run(config: Option<&Path>, env: &Env, args: TraceRecentArgs) -> CliResult {
    let client = node_client::connect(config, env)?;
    let mut query = vec![("n", args.n.to_string())];
    if let Some(c) = &args.capability {
        query.push(("capability", c.clone()));
    }
    let reply = client
        .get("/trace/recent", &query)
        .map_err(CliError::from_client)?;
    let traces = reply["traces"].as_array().cloned().unwrap_or_default();
    if args.json {
        println!("{}", Value::Array(traces));
        return Ok(ExitStatus::Success);
    }
    let short = |v: &Value| {
        let s = v.as_str().unwrap_or_default();
        hearthnet_base::NodeId::parse(s)
            .map(|n| n.short())
            .unwrap_or_else(|_| s.to_owned())
    };
    let rows: Vec<Vec<String>> = traces
        .iter()
        .map(|t| {
            vec![
                t["ts"].as_str().unwrap_or_default().to_owned(),
                t["trace_id"].as_str().unwrap_or_default().to_owned(),
                format!(
                    "{}@{}",
                    t["capability"].as_str().unwrap_or_default(),
                    t["version"].as_str().unwrap_or_default()
                ),
                short(&t["from_node"]),
                t["result"].as_str().unwrap_or_default().to_owned(),
                format!("{:.1}", t["ms"].as_f64().unwrap_or(0.0)),
                t["frames"].as_u64().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    printer::table(
        &[
            "TIME",
            "TRACE_ID",
            "CAPABILITY",
            "FROM",
            "RESULT",
            "MS",
            "FRAMES",
        ],
        &rows,
        1,
    );
    Ok(ExitStatus::Success)
}
