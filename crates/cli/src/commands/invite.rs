//! `hearthnet invite create` and `hearthnet invite redeem` (spec §3.12,
//! M13). Creating goes through the running node (`community.invite`);
//! redeeming is standalone: the device talks TLS to the inviter's node,
//! proves it holds the invited key, and sets itself up as a member.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use hearthnet_base::event::{Event, NewEvent};
use hearthnet_base::{DeviceKey, ErrorCode, Timestamp};
use hearthnet_client::CallReply;
use hearthnet_config::{Env, LoadedConfig};
use hearthnet_identity::{CommunityManifest, KeyStore};
use hearthnet_onboarding::{IdentityCard, Invite};
use hearthnet_transport::peer_client::{PeerClient, PeerError};
use hearthnet_wire::caps::{self, InviteAnswer};
use hearthnet_wire::peer::{Redeem, Redeemed};
use serde_json::{Value, json};

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
/// a PNG of its QR code.
fn invite_text(arg: &str) -> Result<String, CliError> {
    link_text(arg, "hearthnet://", "an invite (hearthnet://v1/…)")
}

/// Files this large hold no invite or proposal, nor a PNG of its QR code.
const MAX_LINK_FILE_BYTES: u64 = 8 << 20;

/// A link (`scheme://v1/…`, e.g. an invite or a proposal) from an
/// argument: the text itself, `-` for standard input, a file holding it,
/// or a PNG of its QR code; `what` names it in errors.
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
    if bytes.starts_with(b"\x89PNG") {
        return decode_qr(&bytes)
            .ok_or_else(|| CliError::new(ExitStatus::Usage, anyhow!("no QR code found in {arg}")));
    }
    Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
}

fn decode_qr(png_bytes: &[u8]) -> Option<String> {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut buf).ok()?;
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let luma = |x: usize, y: usize| buf.get((y * w + x) * channels).copied().unwrap_or(255);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, luma);
    image
        .detect_grids()
        .into_iter()
        .find_map(|g| g.decode().ok().map(|(_, text)| text))
}

fn auth(e: impl std::fmt::Display) -> CliError {
    CliError::new(ExitStatus::Auth, anyhow!("{e}"))
}

pub fn redeem(config: Option<&Path>, env: &Env, arg: &str) -> CliResult {
    let text = invite_text(arg)?;
    redeem_text(config, env, &text)
}

/// Redeem `text` for this device (also the join path of `init`).
pub fn redeem_text(config: Option<&Path>, env: &Env, text: &str) -> CliResult {
    let mut loaded = hearthnet_config::load(config, env)?;
    let paths = loaded.paths();
    let (key, _) = KeyStore::new(&paths.keys_dir).load_or_create()?;
    let invite = Invite::decode(text).map_err(|e| CliError::new(ExitStatus::from(e.code()), e))?;
    invite
        .check_for(&key.node_id(), Timestamp::now())
        .map_err(|e| CliError::new(ExitStatus::from(e.code()), e))?;
    if let Some(current) = loaded.config.community_id() {
        if current == invite.community_id {
            printer::status(format!(
                "already a member of \"{}\"; nothing to do",
                invite.community_name
            ));
            return Ok(ExitStatus::Success);
        }
        return Err(anyhow!(
            "this device belongs to community {} already; one device, one community (start over with `hearthnet erase`)",
            current.short()
        )
        .into());
    }
    let joined = Event::create(
        NewEvent {
            community_id: invite.community_id,
            lamport: invite.invite_lamport + 1,
            event_type: "community.member.joined",
            // Our first event in the community: the start of our chain.
            data: json!({"invite_event_id": invite.invite_event_id, "author_prev": null,
                         "node_manifest": {"node_id": key.node_id(), "display_name": loaded.config.identity.display_name}}),
        },
        &key,
    )
    .map_err(|e| anyhow!("cannot build the joined event: {e}"))?;
    let (answer, used) = ask_inviter(&key, &invite, joined.to_value())?;
    settle(&mut loaded, &key, &invite, answer, &used)?;
    printer::status(format!(
        "joined \"{}\" ({}) as {}; `hearthnet run` fetches the community's history from {used}",
        invite.community_name,
        invite.community_id.short(),
        invite.initial_level
    ));
    Ok(ExitStatus::Success)
}

/// Present the invite and our joined event to the inviter's endpoints, in
/// turn, over TLS pinned to the inviter's key.
fn ask_inviter(
    key: &DeviceKey,
    invite: &Invite,
    joined: Value,
) -> Result<(Redeemed, String), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let identity =
        Arc::new(hearthnet_transport::tls::TlsIdentity::new(key).map_err(|e| anyhow!(e))?);
    let inviter = invite.inviter_node_id;
    let body = Redeem {
        invite: invite.encode(),
        joined,
    };
    let mut last = None;
    for endpoint in &invite.bootstrap_endpoints {
        let addr = format!("{}:{}", endpoint.host, endpoint.port);
        let client = PeerClient::new(
            key.clone(),
            invite.community_id,
            identity.clone(),
            Arc::new(move |id| *id == inviter),
            endpoint.transport == "http",
        );
        let asked =
            client.post_as::<Redeemed>(&addr, Some(inviter), "/onboarding/v1/redeem", &body);
        match runtime.block_on(asked) {
            Ok(reply) => return Ok((reply.body, addr)),
            // The inviter took the redemption (the invite is used now) but
            // its answer is unusable: a bad answer, not a bad invite, and
            // no reason to ask another of its endpoints.
            Err(e @ PeerError::BadAnswer { .. }) => {
                return Err(CliError::new(ExitStatus::Failure, e));
            }
            Err(PeerError::Refused { body, status, .. }) => {
                let wire = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| hearthnet_client::parse_wire_error(&v));
                let (code, message) = match wire {
                    Some(w) => (w.code, w.message),
                    None => (ErrorCode::InternalError, format!("HTTP {status}: {body}")),
                };
                return Err(CliError::new(
                    ExitStatus::from(code),
                    anyhow!("the inviter's node refused: {code}: {message}"),
                ));
            }
            Err(e) => last = Some(e),
        }
    }
    let why = last.map_or_else(
        || "the invite names no endpoint".to_owned(),
        |e| e.to_string(),
    );
    Err(CliError::new(
        ExitStatus::Unavailable,
        anyhow!(
            "cannot reach the inviter ({why}); be on the same network as the inviter's node and try again"
        ),
    ))
}

/// Become a member locally: the genesis files, the membership history in
/// our own log, and config.toml naming the community and the inviter.
fn settle(
    loaded: &mut LoadedConfig,
    key: &DeviceKey,
    invite: &Invite,
    answer: Redeemed,
    used: &str,
) -> Result<(), CliError> {
    let manifest = CommunityManifest::verify(&answer.genesis_manifest).map_err(auth)?;
    if manifest.community_id != invite.community_id || answer.community_id != invite.community_id {
        return Err(auth("the inviter sent the manifest of another community"));
    }
    let events = answer.events;
    let genesis = events
        .iter()
        .find(|e| e["event_type"] == "community.created")
        .cloned()
        .ok_or_else(|| auth("the inviter sent no genesis event"))?;
    let genesis_event = Event::verify(&genesis).map_err(auth)?;
    loaded.config.community.community_id = Some(invite.community_id);
    let state_dir = loaded
        .paths()
        .state_dir
        .context("community state directory unresolved")?;
    let write = |name: &str, value: &Value| -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(value)?;
        bytes.push(b'\n');
        hearthnet_base::fsio::atomic_write(&state_dir.join(name), &bytes, 0o600)?;
        Ok(())
    };
    write(
        hearthnet_identity::community::MANIFEST_FILE,
        &answer.genesis_manifest,
    )?;
    write(
        hearthnet_identity::community::GENESIS_FILE,
        &genesis_event.to_value(),
    )?;
    let log = hearthnet_events::EventLog::open(
        hearthnet_events::LogPaths::in_state_dir(&state_dir),
        invite.community_id,
        hearthnet_events::Limits::default(),
        Some(genesis),
        Some(key.clone()),
    )
    .map_err(|e| anyhow!(e))?;
    let report = log
        .append_received_blocking(events)
        .map_err(|e| anyhow!(e))?;
    if log.view().level_of(&key.node_id()) < hearthnet_base::TrustLevel::Member {
        return Err(auth(format!(
            "the membership history does not admit this device ({:?})",
            report.rejected
        )));
    }
    if !loaded
        .config
        .discovery
        .static_peers
        .iter()
        .any(|p| p == used)
    {
        loaded.config.discovery.static_peers.push(used.to_owned());
    }
    hearthnet_config::save(&loaded.config, &loaded.path)?;
    Ok(())
}
