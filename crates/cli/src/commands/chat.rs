//! `hearthnet chat send|history` (M10 through the bus): a direct message
//! to a member, and this node's conversations, opened by the node.
//! `history --follow` waits on the node's own pub-sub topic
//! (`chat.message.<node>`) and prints what arrives.

use std::collections::HashSet;
use std::path::Path;

use anyhow::anyhow;
use hearthnet_base::NodeId;
use hearthnet_client::LocalClient;
use hearthnet_config::Env;
use hearthnet_wire::local::{FileAdded, names};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{file, node_client, rag};
use crate::cli::{ChatHistoryArgs, ChatSendArgs};
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;

/// Messages asked for per `chat.history` call (its largest `limit`).
const PAGE: u64 = 1000;
/// The node's own bound (`chat.send`), checked before any file is stored.
const MAX_ATTACHMENTS: usize = 16;
/// How long one pub-sub wait lasts (the node answers within 60 s).
const FOLLOW_WAIT_SECONDS: u64 = 25;

#[derive(Debug, Deserialize, Serialize)]
struct Sent {
    event_id: String,
    lamport: u64,
    delivered: String,
}

#[derive(Debug, Deserialize, Serialize)]
struct Attachment {
    cid: String,
    name: String,
}

#[derive(Debug, Deserialize, Serialize)]
struct Message {
    event_id: String,
    lamport: u64,
    from: NodeId,
    to: NodeId,
    body: String,
    #[serde(default)]
    attachments: Vec<Attachment>,
    created_at: String,
    delivered_at: Option<String>,
    read_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct History {
    messages: Vec<Message>,
}

/// The member `text` names: a full node id, or the short id or display
/// name of a neighbour the node sees now (`hearthnet status`); else a
/// usage error saying what is accepted.
fn node_arg(client: &LocalClient, text: &str) -> Result<NodeId, CliError> {
    if let Ok(id) = NodeId::parse(text) {
        return Ok(id);
    }
    let status = client.status().map_err(CliError::from_client)?;
    let named: Vec<NodeId> = status
        .peers
        .iter()
        .filter(|p| p.short_id == text || p.display_name == text)
        .map(|p| p.node_id)
        .collect();
    match named.as_slice() {
        [one] => Ok(*one),
        [] => Err(CliError::new(
            ExitStatus::Usage,
            anyhow!(
                "`{text}` is neither a full node id (ed25519:…) nor the short id or name of a neighbour in sight; `hearthnet status` lists them"
            ),
        )),
        _ => Err(CliError::new(
            ExitStatus::Usage,
            anyhow!("`{text}` names several neighbours; give the full node id"),
        )),
    }
}

pub fn send(config: Option<&Path>, env: &Env, args: ChatSendArgs) -> CliResult {
    if args.attach.len() > MAX_ATTACHMENTS {
        return Err(CliError::new(
            ExitStatus::Usage,
            anyhow!(
                "{} attachments; a message carries at most {MAX_ATTACHMENTS}",
                args.attach.len()
            ),
        ));
    }
    let client = node_client::connect(config, env)?;
    let recipient = node_arg(&client, &args.node)?;
    let attachments = args
        .attach
        .iter()
        .map(|path| attach(&client, path))
        .collect::<Result<Vec<_>, _>>()?;
    // The node gives the message its client_id: this command sends once.
    let input = json!({"recipient": recipient, "body": args.text, "attachments": attachments});
    let sent: Sent = rag::output(&client, "chat.send", json!({}), input)?;
    if args.json {
        println!("{}", serde_json::to_string(&sent)?);
    } else {
        println!("sent {} ({})", sent.event_id, how(&sent.delivered));
    }
    Ok(ExitStatus::Success)
}

/// Store `path` in the node's blob store, pinned so it stays for the
/// recipient to fetch; the attachment naming it.
fn attach(client: &LocalClient, path: &Path) -> Result<Attachment, CliError> {
    // The node resolves paths from its own working directory.
    let absolute = std::path::absolute(path)
        .ok()
        .filter(|p| p.is_file())
        .ok_or_else(|| {
            CliError::new(
                ExitStatus::Usage,
                anyhow!("--attach {}: not a readable file", path.display()),
            )
        })?;
    let added: FileAdded = file::streamed(
        client,
        "file.local.add",
        names::FILE_ADDED,
        json!({"path": absolute, "pin": true}),
        false,
    )?;
    let name = absolute.file_name().map_or_else(
        || added.cid.to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(Attachment {
        cid: added.cid.to_string(),
        name,
    })
}

/// `delivered`, in words.
fn how(delivered: &str) -> &str {
    match delivered {
        "direct" => "delivered directly",
        "forwarded" => "held by an anchor until the recipient is back",
        "queued" => "queued: nobody reachable holds it yet; it goes with the next sync",
        other => other,
    }
}

pub fn history(config: Option<&Path>, env: &Env, args: ChatHistoryArgs) -> CliResult {
    let client = node_client::connect(config, env)?;
    let peer = args
        .node
        .as_deref()
        .map(|n| node_arg(&client, n))
        .transpose()?;
    let me = client.status().map_err(CliError::from_client)?.node.id;
    let mut shown = HashSet::new();
    // Where the pub-sub stream stands now, so the wait below hears only
    // of what arrives after the history printed.
    let mut cursor = if args.follow {
        Some(catch_up(&client, me)?)
    } else {
        None
    };
    print_new(&client, me, peer, args.json, &mut shown)?;
    while let Some(seq) = cursor {
        let (next, arrived) = wait_for_messages(&client, me, seq, FOLLOW_WAIT_SECONDS)?;
        if arrived {
            print_new(&client, me, peer, args.json, &mut shown)?;
        }
        cursor = Some(next);
    }
    Ok(ExitStatus::Success)
}

/// Every message of the conversation(s) not printed yet, in order.
fn print_new(
    client: &LocalClient,
    me: NodeId,
    peer: Option<NodeId>,
    json_lines: bool,
    shown: &mut HashSet<String>,
) -> Result<(), CliError> {
    let mut since = 0;
    loop {
        let mut input = json!({"since_lamport": since, "limit": PAGE});
        if let Some(p) = peer {
            input["peer"] = json!(p);
        }
        let page: History = rag::output(client, "chat.history", json!({}), input)?;
        let full = page.messages.len() as u64 == PAGE;
        let (first, last) = match (page.messages.first(), page.messages.last()) {
            (Some(f), Some(l)) => (f.lamport, l.lamport),
            _ => return Ok(()),
        };
        for m in page.messages {
            if shown.insert(m.event_id.clone()) {
                print_message(&m, me, json_lines)?;
            }
        }
        if !full {
            return Ok(());
        }
        // Messages of several authors can share a Lamport value: the next
        // page starts at the last one again (what was printed is skipped),
        // unless the whole page had one value.
        since = if last > first { last - 1 } else { last };
    }
}

fn print_message(m: &Message, me: NodeId, json_line: bool) -> Result<(), CliError> {
    if json_line {
        println!("{}", serde_json::to_string(m)?);
        return Ok(());
    }
    let (arrow, other) = if m.from == me {
        ("→", m.to)
    } else {
        ("←", m.from)
    };
    let state = match (&m.read_at, &m.delivered_at) {
        (Some(_), _) if m.from == me => " [read]",
        (None, Some(_)) if m.from == me => " [delivered]",
        _ => "",
    };
    // The text and names are the other member's: printed so they cannot
    // drive the terminal or pass for lines of their own.
    println!(
        "{}  {arrow} {}  {}{state}",
        m.created_at,
        other.short(),
        printer::untrusted(&m.body, Some("    "))
    );
    for a in &m.attachments {
        println!(
            "    attachment {} {}",
            a.cid,
            printer::untrusted(&a.name, None)
        );
    }
    Ok(())
}

/// Follow the node's own topic to its current end; the cursor there.
fn catch_up(client: &LocalClient, me: NodeId) -> Result<i64, CliError> {
    let mut cursor = 0;
    loop {
        let (next, _) = wait_for_messages(client, me, cursor, 0)?;
        if next == cursor {
            return Ok(cursor);
        }
        cursor = next;
    }
}

/// One pub-sub wait on `chat.message.<me>` after `last_seq`: the new
/// cursor, and whether messages came.
fn wait_for_messages(
    client: &LocalClient,
    me: NodeId,
    last_seq: i64,
    wait_seconds: u64,
) -> Result<(i64, bool), CliError> {
    let query = [
        ("topic", format!("chat.message.{}", me.full())),
        ("last_seq", last_seq.to_string()),
        ("timeout", wait_seconds.to_string()),
    ];
    let reply: Value = client
        .get("/pubsub/v1/subscribe", &query)
        .map_err(CliError::from_client)?;
    let next = reply["last_seq"].as_i64().ok_or_else(|| {
        CliError::new(
            ExitStatus::Failure,
            anyhow!("the node's pub-sub answer has no last_seq: {reply}"),
        )
    })?;
    let arrived = reply["messages"].as_array().is_some_and(|m| !m.is_empty());
    Ok((next, arrived))
}
