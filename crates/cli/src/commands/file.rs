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
use hearthnet_wire::local::{FileAdded, FileGot, FileList, FilePinned, FileProgress, names};
use serde::de::DeserializeOwned;
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
    let done: FileAdded = streamed(
        &client,
        "file.local.add",
        names::FILE_ADDED,
        json!({"path": path, "pin": args.pin}),
        std::io::stderr().is_terminal(),
    )?;
    println!("{}", done.cid);
    printer::status(format!(
        "added {} ({}{})",
        path.display(),
        human_bytes(done.size_bytes),
        if done.pinned { ", pinned" } else { "" }
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
    let done: FileGot = streamed(
        &client,
        "file.local.get",
        names::FILE_GOT,
        json!({"cid": cid, "out": out}),
        std::io::stderr().is_terminal(),
    )?;
    println!("{}", out.display());
    let from = done.from.len();
    printer::status(format!(
        "{} ({}){}",
        out.display(),
        human_bytes(done.size_bytes),
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
    let reply: FileList = json_call(&client, "file.local.list", names::FILE_LIST, json!({}))?;
    if args.json {
        println!("{}", serde_json::to_string(&reply.blobs)?);
        return Ok(ExitStatus::Success);
    }
    let yes = |b: bool| if b { "yes" } else { "" }.to_owned();
    let rows: Vec<Vec<String>> = reply
        .blobs
        .iter()
        .map(|b| {
            vec![
                b.cid.to_string(),
                b.name.clone().unwrap_or_default(),
                human_bytes(b.size_bytes),
                yes(b.pinned),
                yes(b.offered),
            ]
        })
        .collect();
    printer::table(&["CID", "NAME", "SIZE", "PINNED", "OFFERED"], &rows, 1);
    Ok(ExitStatus::Success)
}

pub fn pin(config: Option<&Path>, env: &Env, cid: &str, pinned: bool) -> CliResult {
    let cid = checked_cid(cid)?;
    let client = node_client::connect(config, env)?;
    let reply: FilePinned = streamed(
        &client,
        "file.local.pin",
        names::FILE_PINNED,
        json!({"cid": cid, "pinned": pinned}),
        std::io::stderr().is_terminal(),
    )?;
    let verb = if pinned { "pinned" } else { "unpinned" };
    let from = reply.from.len();
    let fetched = if from > 0 {
        format!(" (fetched from {from} peer(s))")
    } else {
        String::new()
    };
    if reply.changed {
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

/// A document of the node that lacks a field or has one of the wrong
/// type: a bad answer (exit 1) that names the field.
pub(super) fn decoded<T: DeserializeOwned>(
    document: &'static str,
    value: Value,
) -> Result<T, CliError> {
    hearthnet_wire::from_value(document, value).map_err(|e| CliError::from_client(e.into()))
}

pub(super) fn json_call<T: DeserializeOwned>(
    client: &LocalClient,
    capability: &str,
    document: &'static str,
    input: Value,
) -> Result<T, CliError> {
    match client
        .call(capability, "1.0", &json!({"input": input}), false, None)
        .map_err(CliError::from_client)?
    {
        CallReply::Json(v) => decoded(document, v),
        CallReply::Stream(_) => Err(CliError::new(
            ExitStatus::Failure,
            anyhow!("{capability} answered with a stream"),
        )),
    }
}

/// Call a streaming `file.local.*` capability, drawing its progress when
/// `draw`; the `done` frame's data, decoded as `document`.
pub(super) fn streamed<T: DeserializeOwned>(
    client: &LocalClient,
    capability: &str,
    document: &'static str,
    input: Value,
    draw: bool,
) -> Result<T, CliError> {
    let bar = draw.then(|| {
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
    let done = stream_call(
        client,
        capability,
        &json!({"input": input}),
        document,
        |data| {
            let p: FileProgress = decoded(names::FILE_PROGRESS, data)?;
            if let Some(bar) = &bar {
                bar.set_length(p.total);
                bar.set_position(p.current);
                bar.set_message(p.stage);
            }
            Ok(())
        },
    );
    if let Some(bar) = &bar {
        match done {
            Ok(_) => bar.finish_and_clear(),
            Err(_) => bar.abandon(),
        }
    }
    done
}

/// Call a streaming capability with `body`: each `progress` frame's data
/// goes to `progress`, and the `done` frame's data comes back decoded as
/// `document`; an `error` frame or a stream cut short is the error.
pub(super) fn stream_call<T: DeserializeOwned>(
    client: &LocalClient,
    capability: &str,
    body: &Value,
    document: &'static str,
    mut progress: impl FnMut(Value) -> Result<(), CliError>,
) -> Result<T, CliError> {
    let reply = client
        .call(capability, "1.0", body, true, None)
        .map_err(CliError::from_client)?;
    let frames = match reply {
        CallReply::Json(v) => return decoded(document, v),
        CallReply::Stream(frames) => frames,
    };
    for frame in frames {
        let frame = frame.map_err(CliError::stream_broke)?;
        match frame.event.as_str() {
            "progress" => progress(frame.data)?,
            "done" => return decoded(document, frame.data),
            "error" => return Err(CliError::from_error_frame(&frame.data)),
            _ => {}
        }
    }
    Err(CliError::stream_cut())
}
