//! `hearthnet proposal revoke|demote|cosign|submit`: gathering the
//! co-signatures a revocation or demotion needs, through the node's
//! `community.proposal.*` capabilities (the web UI calls the same). Each
//! step prints the proposal as text on stdout (and as a QR code on a
//! terminal), and on stderr how many signatures are still missing and who
//! may still give them.

use std::io::IsTerminal;
use std::path::Path;

use hearthnet_config::Env;
use hearthnet_wire::caps::{ProposalAnswer, ProposalStanding, SubmittedAnswer, names};
use serde_json::{Value, json};

use super::{file, invite, node_client};
use crate::cli::{ProposalDemoteArgs, ProposalRevokeArgs, ProposalTextArgs};
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;

pub fn revoke(config: Option<&Path>, env: &Env, args: ProposalRevokeArgs) -> CliResult {
    let input = json!({"kind": "revoke", "target_node_id": args.node, "reason": args.reason});
    standing(config, env, "community.proposal.create", input, args.json)
}

pub fn demote(config: Option<&Path>, env: &Env, args: ProposalDemoteArgs) -> CliResult {
    let input = json!({"kind": "demote", "target_node_id": args.node, "new_level": args.to});
    standing(config, env, "community.proposal.create", input, args.json)
}

pub fn cosign(config: Option<&Path>, env: &Env, args: ProposalTextArgs) -> CliResult {
    let input = json!({"proposal": proposal_text(&args.proposal)?});
    standing(config, env, "community.proposal.cosign", input, args.json)
}

pub fn submit(config: Option<&Path>, env: &Env, args: ProposalTextArgs) -> CliResult {
    let input = json!({"proposal": proposal_text(&args.proposal)?});
    let client = node_client::connect(config, env)?;
    let done: SubmittedAnswer = file::json_call(
        &client,
        "community.proposal.submit",
        names::SUBMITTED,
        input,
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&done.output)?);
    } else {
        println!("{}", done.output.event_id);
        printer::status(format!(
            "{} written at Lamport {}; every member applies it once it has synced",
            done.output.event_type, done.output.lamport
        ));
    }
    Ok(ExitStatus::Success)
}

fn proposal_text(arg: &str) -> Result<String, CliError> {
    invite::link_text(
        arg,
        "hearthnet-proposal://",
        "a proposal (hearthnet-proposal://v1/…)",
    )
}

/// Ask the node for a proposal's standing, and show it.
fn standing(
    config: Option<&Path>,
    env: &Env,
    capability: &str,
    input: Value,
    json: bool,
) -> CliResult {
    let client = node_client::connect(config, env)?;
    let answer: ProposalAnswer =
        file::json_call(&client, capability, names::PROPOSAL_ANSWER, input)?;
    let s = answer.output;
    if json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(ExitStatus::Success);
    }
    show(config, env, &s)?;
    Ok(ExitStatus::Success)
}

fn show(config: Option<&Path>, env: &Env, s: &ProposalStanding) -> Result<(), CliError> {
    // On a terminal the QR code too, for a neighbour's phone or laptop to
    // scan; captured, only the text, so `p=$(hearthnet proposal …)` works.
    let on_terminal = std::io::stdout().is_terminal();
    let qr_shown = on_terminal && {
        let loaded = hearthnet_config::load(config, env)?;
        let png = loaded
            .paths()
            .data_dir
            .join(format!("proposal-{}.png", file_safe(&s.proposal.client_id)));
        super::init::show_qr(&s.text, &png, "the proposal").is_ok()
    };
    if !qr_shown {
        println!("{}", s.text);
    }
    printer::status(printer::untrusted(&s.explanation, None));
    for n in &s.not_counted {
        printer::status(format!(
            "  not counted: {}: {}",
            printer::untrusted(&n.node_id, None),
            n.why
        ));
    }
    if s.missing == 0 {
        printer::hint("submit it: hearthnet proposal submit <text>");
    } else {
        printer::hint(format!(
            "{} more co-signature{} needed: pass the text on to a member who may sign, who runs `hearthnet proposal cosign <text>`",
            s.missing,
            if s.missing == 1 { " is" } else { "s are" }
        ));
    }
    Ok(())
}

/// A client id as part of a file name.
fn file_safe(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(64)
        .collect()
}
