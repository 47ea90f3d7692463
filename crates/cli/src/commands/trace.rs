//! `hearthnet trace recent [N] [--capability NAME]` (spec §3.7).

use std::path::Path;

use hearthnet_config::Env;

use super::node_client;
use crate::cli::TraceRecentArgs;
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;

pub fn run(config: Option<&Path>, env: &Env, args: TraceRecentArgs) -> CliResult {
    let client = node_client::connect(config, env)?;
    let traces = client
        .traces(args.n, args.capability.as_deref())
        .map_err(CliError::from_client)?
        .traces;
    if args.json {
        println!("{}", serde_json::to_string(&traces)?);
        return Ok(ExitStatus::Success);
    }
    let short = |s: &str| {
        hearthnet_base::NodeId::parse(s)
            .map(|n| n.short())
            .unwrap_or_else(|_| s.to_owned())
    };
    let rows: Vec<Vec<String>> = traces
        .iter()
        .map(|t| {
            vec![
                t.ts.clone(),
                t.trace_id.clone(),
                format!("{}@{}", t.capability, t.version),
                short(&t.from_node),
                t.result.clone(),
                format!("{:.1}", t.ms),
                t.frames.to_string(),
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
