//! `hearthnet invite create` and `hearthnet invite redeem` (spec §3.12,
//! M13). Creating goes through the running node (`community.invite`);
//! redeeming is standalone (`hearthnet_node::join`): the device talks TLS
//! to the inviter's node, proves it holds the invited key, and sets
//! itself up as a member.

use std::path::Path;

use anyhow::anyhow;
use hearthnet_base::Timestamp;
use hearthnet_client::CallReply;
use hearthnet_config::Env;
use hearthnet_identity::KeyStore;
use hearthnet_node::join::{self, Joined};
use hearthnet_onboarding::IdentityCard;
use hearthnet_wire::caps::{self, InviteAnswer};
use serde_json::json;

use super::node_client;
use crate::cli::InviteCreateArgs;
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;

pub fn create(config: Option<&Path>, env: &Env, args: InviteCreateArgs) -> CliResult {
    let invitee = IdentityCard::node_id_from_text(&args.node_id).ok_or_else(|| {
        CliError::new(
            ExitStatus::Usage,
            anyhow!(
                "`{}` is neither a full device id (ed25519:…) nor a hearthnet-id:// card",
                args.node_id
            ),
        )
    })?;
    if !(args.ttl.is_finite() && args.ttl > 0.0 && args.ttl <= 24.0 * 365.0) {
        return Err(CliError::new(
            ExitStatus::Usage,
            anyhow!("--ttl is a number of hours above 0"),
        ));
    }
    let expires_at = Timestamp::now().plus_seconds((args.ttl * 3600.0).round().max(1.0) as i64);
    let client = node_client::connect(config, env)?;
    let body = json!({"params": {}, "input": {
        "invitee_node_id": invitee, "initial_level": args.level,
        "display_name": args.name.clone().unwrap_or_default(), "expires_at": expires_at,
    }});
    let reply = match client
        .call("community.invite", "1.0", &body, false, None)
        .map_err(CliError::from_client)?
    {
        CallReply::Json(v) => v,
        CallReply::Stream(_) => {
            return Err(anyhow!("community.invite answered with a stream").into());
        }
    };
    let answer: InviteAnswer = hearthnet_wire::from_value(caps::names::INVITE, reply)
        .map_err(|e| CliError::from_client(e.into()))?;
    let text = answer.output.invite_blob;
    let loaded = hearthnet_config::load(config, env)?;
    let png = loaded.paths().data_dir.join(format!(
        "invite-{}.png",
        invitee.short().trim_start_matches("ed25519:")
    ));
    super::init::show_qr(
        &text,
        &png,
        &format!(
            "invite for {} as {}, valid until {expires_at}",
            invitee.short(),
            args.level
        ),
    )?;
    Ok(ExitStatus::Success)
}

/// The invite text from an argument: the text itself, a file with it, or
/// a picture (PNG, JPEG) of its QR code.
fn invite_text(arg: &str) -> Result<String, CliError> {
    link_text(arg, "hearthnet://", "an invite (hearthnet://v1/…)")
}

/// Files this large hold no invite or proposal, nor a picture of its QR
/// code.
const MAX_LINK_FILE_BYTES: u64 = hearthnet_onboarding::qr::MAX_PICTURE_BYTES as u64;

/// A link (`scheme://v1/…`, e.g. an invite or a proposal) from an
/// argument: the text itself, `-` for standard input, a file holding it,
/// or a picture of its QR code; `what` names it in errors.
pub(super) fn link_text(arg: &str, scheme: &str, what: &str) -> Result<String, CliError> {
    use std::io::Read;
    if arg.trim().starts_with(scheme) {
        return Ok(arg.trim().to_owned());
    }
    let mut bytes = Vec::new();
    let read = if arg == "-" {
        std::io::stdin()
            .take(MAX_LINK_FILE_BYTES)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(arg).and_then(|f| f.take(MAX_LINK_FILE_BYTES).read_to_end(&mut bytes))
    };
    read.map_err(|e| {
        CliError::new(
            ExitStatus::Usage,
            anyhow!("`{arg}` is neither {what} nor a readable file: {e}"),
        )
    })?;
    match hearthnet_onboarding::qr::read(&bytes) {
        Ok(text) => Ok(text),
        // Not a picture: the text itself.
        Err(hearthnet_onboarding::qr::ReadError::NotAPicture) => {
            Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
        }
        Err(e) => Err(CliError::new(ExitStatus::Usage, anyhow!("{arg}: {e}"))),
    }
}

pub fn redeem(config: Option<&Path>, env: &Env, arg: &str) -> CliResult {
    let text = invite_text(arg)?;
    redeem_text(config, env, &text)
}

/// Redeem `text` for this device (also the join path of `init`, and the
/// same as the join page's: `hearthnet_node::join`).
pub fn redeem_text(config: Option<&Path>, env: &Env, text: &str) -> CliResult {
    let mut loaded = hearthnet_config::load(config, env)?;
    let paths = loaded.paths();
    let (key, _) = KeyStore::new(&paths.keys_dir).load_or_create()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let joined = runtime
        .block_on(join::redeem(&mut loaded, &key, text))
        .map_err(|e| CliError::new(ExitStatus::from(e.code()), e))?;
    match joined {
        Joined::Already { invite } => printer::status(format!(
            "already a member of \"{}\"; nothing to do",
            invite.community_name
        )),
        Joined::Now { invite, via } => printer::status(format!(
            "joined \"{}\" ({}) as {}; `hearthnet run` fetches the community's history from {via}",
            invite.community_name,
            invite.community_id.short(),
            invite.initial_level
        )),
    }
    Ok(ExitStatus::Success)
}
