//! `hearthnet file add|get|ls|pin|unpin`: the node's blob store (M07)
//! through its self-only `file.local.*` capabilities. The node reads and
//! writes the files itself (same user, same machine), so nothing large
//! crosses the local API; progress arrives as `progress` frames and is
//! drawn on stderr when it is a terminal.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use hearthnet_client::{CallReply, LocalClient};
use hearthnet_config::Env;
use hearthnet_observability::doctor::human_bytes;
use serde_json::{Value, json};

use super::node_client;
use crate::cli::{FileAddArgs, FileGetArgs, JsonArgs};
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;

pub fn add(config: Option<&Path>, env: &Env, args: FileAddArgs) -> CliResult {
    // The node resolves paths from its own working directory.
    let path = std::path::absolute(&args.path)
        .map_err(|e| CliError::new(ExitStatus::Usage, anyhow!("{}: {e}", args.path.display())))?;
    if !path.is_file() {
        return Err(CliError::new(
            ExitStatus::Usage,
            anyhow!("{} is not a readable file", path.display()),
        ));
    }
    let client = node_client::connect(config, env)?;
    let done = streamed(
        &client,
        "file.local.add",
        json!({"path": path, "pin": args.pin}),
    )?;
    let cid = done["cid"].as_str().unwrap_or_default();
    println!("{cid}");
    printer::status(format!(
        "added {} ({}{})",
        path.display(),
        human_bytes(done["size_bytes"].as_u64().unwrap_or(0)),
        if args.pin { ", pinned" } else { "" }
    ));
    Ok(ExitStatus::Success)
}

pub fn get(config: Option<&Path>, env: &Env, args: FileGetArgs) -> CliResult {
    let cid = checked_cid(&args.cid)?;
    let out = match args.out {
        Some(p) => p,
        None => PathBuf::from(&cid["blake3:".len().."blake3:".len() + 16]),
    };
    let out = std::path::absolute(&out)
        .map_err(|e| CliError::new(ExitStatus::Usage, anyhow!("{}: {e}", out.display())))?;
    let client = node_client::connect(config, env)?;
    let done = streamed(&client, "file.local.get", json!({"cid": cid, "out": out}))?;
    println!("{}", out.display());
    let from = done["from"].as_array().map_or(0, Vec::len);
    printer::status(format!(
        "{} ({}){}",
        out.display(),
        human_bytes(done["size_bytes"].as_u64().unwrap_or(0)),
        if from > 0 {
            format!(", fetched from {from} peer(s)")
        } else {
            String::new()
        }
    ));
    Ok(ExitStatus::Success)
}

pub fn ls(config: Option<&Path>, env: &Env, args: JsonArgs) -> CliResult {
    let client = node_client::connect(config, env)?;
    let reply = json_call(&client, "file.local.list", json!({}))?;
    if args.json {
        println!("{}", reply["blobs"]);
        return Ok(ExitStatus::Success);
    }
    let rows: Vec<Vec<String>> = reply["blobs"]
        .as_array()
        .map(|blobs| {
            blobs
                .iter()
                .map(|b| {
                    vec![
                        b["cid"].as_str().unwrap_or_default().to_owned(),
                        human_bytes(b["size_bytes"].as_u64().unwrap_or(0)),
                        if b["pinned"] == true { "yes" } else { "" }.to_owned(),
                        if b["offered"] == true { "yes" } else { "" }.to_owned(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    printer::table(&["CID", "SIZE", "PINNED", "OFFERED"], &rows, 0);
    Ok(ExitStatus::Success)
}

pub fn pin(config: Option<&Path>, env: &Env, cid: &str, pinned: bool) -> CliResult {
    let cid = checked_cid(cid)?;
    let client = node_client::connect(config, env)?;
    let reply = streamed(
        &client,
        "file.local.pin",
        json!({"cid": cid, "pinned": pinned}),
    )?;
    let verb = if pinned { "pinned" } else { "unpinned" };
    let from = reply["from"].as_array().map_or(0, Vec::len);
    let fetched = if from > 0 {
        format!(" (fetched from {from} peer(s))")
    } else {
        String::new()
    };
    if reply["changed"] == true {
        printer::status(format!("{verb} {cid}{fetched}"));
    } else {
        printer::status(format!("{cid} was already {verb}"));
    }
    Ok(ExitStatus::Success)
}

fn checked_cid(text: &str) -> Result<String, CliError> {
    hearthnet_base::Blake3Id::parse(text)
        .map(|c| c.to_string())
        .map_err(|_| {
            CliError::new(
                ExitStatus::Usage,
                anyhow!("`{text}` is not a CID: expected blake3: and 64 lowercase hex digits"),
            )
        })
}

fn json_call(client: &LocalClient, capability: &str, input: Value) -> Result<Value, CliError> {
    match client
        .call(capability, "1.0", &json!({"input": input}), false, None)
        .map_err(CliError::from_client)?
    {
        CallReply::Json(v) => Ok(v),
        CallReply::Stream(_) => Err(CliError::new(
            ExitStatus::Failure,
            anyhow!("{capability} answered with a stream"),
        )),
    }
}

/// Call a streaming `file.local.*` capability, drawing its progress; the
/// `done` frame's data.
fn streamed(client: &LocalClient, capability: &str, input: Value) -> Result<Value, CliError> {
    let reply = client
        .call(capability, "1.0", &json!({"input": input}), true, None)
        .map_err(CliError::from_client)?;
    let frames = match reply {
        CallReply::Json(v) => return Ok(v),
        CallReply::Stream(frames) => frames,
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    for frame in frames {
        let frame = frame.map_err(CliError::stream_broke)?;
        match frame.event.as_str() {
            "progress" => {
                if let Some(bar) = &bar {
                    bar.set_length(frame.data["total"].as_u64().unwrap_or(0));
                    bar.set_position(frame.data["current"].as_u64().unwrap_or(0));
                    bar.set_message(frame.data["stage"].as_str().unwrap_or("").to_owned());
                }
            }
            "done" => {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                return Ok(frame.data);
            }
            "error" => {
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                return Err(CliError::from_error_frame(&frame.data));
            }
            _ => {}
        }
    }
    Err(CliError::stream_cut())
}
