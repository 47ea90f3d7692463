//! `hearthnet call NAME[@VERSION] --body JSON [--stream]` (spec §3.5):
//! one capability call. Token text streams to stdout as it arrives, other
//! frames print as JSON lines; the exit code follows the wire error.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow};
use hearthnet_client::CallReply;
use hearthnet_config::Env;
use serde_json::{Value, json};

use super::node_client;
use crate::cli::CallArgs;
use crate::exit::{CliError, CliResult, ExitStatus};

pub fn run(config: Option<&Path>, env: &Env, args: CallArgs) -> CliResult {
    let (name, version) = parse_target(&args.target)?;
    let body = read_body(&args.body)?;
    let timeout = match args.timeout {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(_) => {
            return Err(usage(anyhow!(
                "--timeout must be a positive number of seconds"
            )));
        }
        None => None,
    };
    let mut client = node_client::connect(config, env)?;
    if let Some(node) = args.node {
        let node = hearthnet_base::NodeId::parse(&node)
            .map_err(|e| usage(anyhow!("--node: `{node}` is not a full NodeID: {e}")))?;
        client = client.with_target(node.full());
    }
    if let Some(session) = args.session {
        hearthnet_base::request::SessionId::parse(&session)
            .map_err(|e| usage(anyhow!("--session: {e}")))?;
        client = client.with_session(session);
    }
    let reply = client
        .call(&name, &version, &body, args.stream, timeout)
        .map_err(CliError::from_client)?;
    match reply {
        CallReply::Json(value) => {
            println!("{value}");
            Ok(ExitStatus::Success)
        }
        CallReply::Stream(frames) => print_stream(frames),
    }
}

fn usage(e: anyhow::Error) -> CliError {
    CliError::new(ExitStatus::Usage, e)
}

fn parse_target(target: &str) -> Result<(String, String), CliError> {
    let (name, version) = target.split_once('@').unwrap_or((target, "1.0"));
    let valid_version = version.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && (a.to_owned() + b).bytes().all(|c| c.is_ascii_digit())
    });
    if name.is_empty() || !valid_version {
        return Err(usage(anyhow!(
            "`{target}` is not NAME[@MAJOR.MINOR], e.g. llm.chat@1.0"
        )));
    }
    Ok((name.to_owned(), version.to_owned()))
}

/// `--body` is JSON text, `@FILE`, or `-` for stdin.
fn read_body(arg: &str) -> Result<Value, CliError> {
    let (text, source) = if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the body from stdin")?;
        (text, "stdin".to_owned())
    } else if let Some(path) = arg.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the body file {path}"))?;
        (text, path.to_owned())
    } else {
        (arg.to_owned(), "--body".to_owned())
    };
    serde_json::from_str(&text)
        .map_err(|e| usage(anyhow!("the body from {source} is not JSON: {e}")))
}

pub(super) fn print_stream(
    frames: hearthnet_client::FrameReader<Box<dyn std::io::BufRead + Send>>,
) -> CliResult {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut mid_line = false;
    for frame in frames {
        let frame = frame.map_err(CliError::stream_broke)?;
        match frame.event.as_str() {
            "token" => {
                let text = frame
                    .data
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
                mid_line = !text.ends_with('\n') && (mid_line || !text.is_empty());
            }
            "done" => {
                if mid_line {
                    let _ = writeln!(out);
                }
                return Ok(ExitStatus::Success);
            }
            "error" => {
                if mid_line {
                    let _ = writeln!(out);
                }
                return Err(CliError::from_error_frame(&frame.data));
            }
            _ => {
                if mid_line {
                    let _ = writeln!(out);
                    mid_line = false;
                }
                let _ = writeln!(out, "{}", json!({"event": frame.event, "data": frame.data}));
            }
        }
    }
    Err(CliError::stream_cut())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            parse_target("llm.chat@1.2").unwrap(),
            ("llm.chat".into(), "1.2".into())
        );
        assert_eq!(parse_target("experimental.echo").unwrap().1, "1.0");
        for bad in ["@1.0", "llm.chat@1", "llm.chat@x.y", "llm.chat@1.0.0"] {
            assert_eq!(
                parse_target(bad).unwrap_err().status,
                ExitStatus::Usage,
                "{bad}"
            );
        }
    }
}
