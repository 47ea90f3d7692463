//! `hearthnet sync [--peer HOST:PORT]… [--protocol v1|v2]`: one sync round
//! with each peer now, through the running node.

use std::path::Path;

use anyhow::anyhow;
use hearthnet_config::Env;
use hearthnet_wire::peer::SyncNow;
use serde_json::{Value, json};

use super::node_client;
use crate::cli::SyncArgs;
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;

pub fn run(config: Option<&Path>, env: &Env, args: SyncArgs) -> CliResult {
    let peers = if args.peers.is_empty() {
        hearthnet_config::load(config, env)?
            .config
            .discovery
            .static_peers
    } else {
        args.peers.clone()
    };
    if peers.is_empty() {
        return Err(CliError::new(
            ExitStatus::Usage,
            anyhow!("no peers: pass --peer HOST:PORT or set discovery.static_peers"),
        ));
    }
    let client = node_client::connect(config, env)?;
    let mut rows = Vec::new();
    let mut reports = Vec::new();
    let mut failure = None;
    for peer in &peers {
        let request = SyncNow {
            peer: peer.clone(),
            protocol: args.protocol.clone(),
        };
        match client.sync_round(&request) {
            Ok(report) => {
                rows.push(vec![
                    peer.clone(),
                    report.protocol.clone(),
                    report.events_in.to_string(),
                    report.events_out.to_string(),
                    report.bytes_sent.to_string(),
                    report.bytes_received.to_string(),
                    report.ms.to_string(),
                ]);
                reports.push(serde_json::to_value(report)?);
            }
            Err(e) => {
                let err = CliError::from_client(e);
                printer::status(format!("{peer}: {}", err.error));
                reports.push(json!({"peer": peer, "error": err.error.to_string()}));
                failure = Some(err.status);
            }
        }
    }
    if args.json {
        println!("{}", Value::Array(reports));
    } else if !rows.is_empty() {
        printer::table(
            &[
                "PEER",
                "PROTOCOL",
                "IN",
                "OUT",
                "BYTES_OUT",
                "BYTES_IN",
                "MS",
            ],
            &rows,
            0,
        );
    }
    Ok(failure.unwrap_or(ExitStatus::Success))
}
