//! `hearthnet init` (spec §3.1, M13 create and join flows).
//!
//! Order: directories, device key (created only if absent, never
//! replaced), display name, profile and the models found installed (saved
//! to config.toml at once), then
//! create a community (genesis manifest and event, invite or identity QR)
//! or join one (show our identity QR, check the invite we are given).

use std::path::Path;

use anyhow::{Context, anyhow};
use hearthnet_base::{DeviceKey, Profile};
use hearthnet_config::{Env, LoadedConfig, NodePaths};
use hearthnet_identity::hardware::{self, HardwareFacts};
use hearthnet_identity::{CommunityManifest, CommunityPolicy, Genesis, KeyStore};
use hearthnet_onboarding::{IdentityCard, Qr};

use super::installed_models;
use crate::cli::InitArgs;
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer::{self, EMPHASIS};
use crate::prompt::Prompter;

/// Pixels per QR module in saved PNGs.
const PNG_SCALE: usize = 8;

pub fn run(config: Option<&Path>, env: &Env, args: InitArgs) -> CliResult {
    let mut loaded = hearthnet_config::load(config, env)?;
    let paths = loaded.paths();
    if let Some(manifest) = existing_community(&loaded, &paths)? {
        printer::status(format!(
            "already a member of \"{}\" ({}); nothing to do",
            manifest.name,
            manifest.community_id.short()
        ));
        printer::hint(
            "`hearthnet erase` starts over; the device key is kept unless you ask otherwise",
        );
        return Ok(ExitStatus::Success);
    }
    create_dirs(&loaded, &paths)?;
    let key = load_or_create_key(&paths)?;

    // `--join` asks nothing either: it is the headless device's way in.
    let mut prompter = (!args.non_interactive && args.join.is_none()).then(Prompter::stdin);
    // A second run (e.g. `init --join <invite>` after `init --join`) keeps
    // what the first one saved unless told otherwise.
    let saved = &loaded.config.identity;
    let saved_name = Some(saved.display_name.clone()).filter(|n| !n.is_empty());
    let name = display_name(&args, saved_name, prompter.as_mut())?;
    let profile = match (args.profile, saved.profile, prompter.is_none()) {
        (None, Some(saved), true) => saved,
        _ => profile(&args, &paths, prompter.as_mut())?,
    };
    loaded.config.identity.display_name = name.clone();
    loaded.config.identity.profile = Some(profile);
    offer_installed_models(&mut loaded, env, &args, prompter.as_mut())?;
    hearthnet_config::save(&loaded)?;

    let join = match prompter.as_mut() {
        Some(p) => {
            p.choose(
                "Create a new community or join one",
                &["create", "join"],
                "create",
            )? == "join"
        }
        None => args.join.is_some(),
    };
    if join {
        let invite = args.join.flatten();
        return join_community(
            (config, env),
            &key,
            &name,
            &paths,
            invite,
            prompter.as_mut(),
        );
    }
    create_community(&mut loaded, &paths, &key, &name, prompter.as_mut())
}

/// Configure the models installed as Python packages, when asked to or
/// when the user says yes; otherwise say how to.
fn offer_installed_models(
    loaded: &mut LoadedConfig,
    env: &Env,
    args: &InitArgs,
    prompter: Option<&mut Prompter<impl std::io::BufRead>>,
) -> Result<(), CliError> {
    let found = installed_models::find(env);
    if found.is_empty() {
        return Ok(());
    }
    for m in &found {
        printer::status(format!(
            "found {} for {} at {}",
            m.model,
            m.role(),
            m.path.display()
        ));
    }
    let yes = match prompter {
        _ if args.use_installed_models => true,
        Some(p) => p.choose("Serve these models", &["yes", "no"], "yes")? == "yes",
        None => false,
    };
    if yes {
        installed_models::configure(&mut loaded.config, &found);
        printer::status("configured them; they load on first use");
    } else {
        printer::hint("not configured; README \"Models\" shows the lines for config.toml");
    }
    Ok(())
}

/// The community this node already belongs to. A stored manifest that no
/// longer verifies is an error, never a reason to found a new community
/// over it.
fn existing_community(
    loaded: &LoadedConfig,
    paths: &NodePaths,
) -> Result<Option<CommunityManifest>, CliError> {
    let (Some(_), Some(state_dir)) = (loaded.config.community_id(), paths.state_dir.as_deref())
    else {
        return Ok(None);
    };
    let path = state_dir.join(hearthnet_identity::community::MANIFEST_FILE);
    if !path.exists() {
        return Ok(None);
    }
    CommunityManifest::load(state_dir).map(Some).map_err(|e| {
        CliError::new(
            ExitStatus::Auth,
            anyhow!(
                "the community manifest {} does not verify ({e}); it was damaged or tampered with. \
                 Restore it from a backup or another member, or start over with `hearthnet erase`",
                path.display()
            ),
        )
    })
}

fn create_dirs(loaded: &LoadedConfig, paths: &NodePaths) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    for dir in [&paths.data_dir, &paths.log_dir, &loaded.dirs.cache] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

fn load_or_create_key(paths: &NodePaths) -> Result<DeviceKey, CliError> {
    let store = KeyStore::new(&paths.keys_dir);
    let (key, created) = store.load_or_create().map_err(|e| match e {
        hearthnet_identity::KeyError::Permissions { .. } => CliError::new(ExitStatus::Auth, e),
        other => CliError::from(other),
    })?;
    let verb = if created { "created" } else { "using existing" };
    printer::status(format!(
        "{verb} device key {} ({})",
        store.secret_path().display(),
        key.node_id().short()
    ));
    Ok(key)
}

fn display_name(
    args: &InitArgs,
    saved: Option<String>,
    prompter: Option<&mut Prompter<impl std::io::BufRead>>,
) -> Result<String, CliError> {
    let default = args
        .name
        .clone()
        .or(saved)
        .unwrap_or_else(hardware::host_name);
    let name = match (prompter, &args.name) {
        (Some(p), None) => p.ask("Display name for this node", &default)?,
        _ => default,
    };
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(CliError::new(
            ExitStatus::Usage,
            anyhow!("a display name has 1 to 64 characters"),
        ));
    }
    Ok(name)
}

fn profile(
    args: &InitArgs,
    paths: &NodePaths,
    prompter: Option<&mut Prompter<impl std::io::BufRead>>,
) -> Result<Profile, CliError> {
    if let Some(p) = args.profile {
        return Ok(p.into());
    }
    let choice = HardwareFacts::detect(&paths.data_dir).suggest_profile();
    printer::status(format!(
        "detected profile {EMPHASIS}{}{EMPHASIS:#}: {}",
        choice.profile,
        choice.reasons.join("; ")
    ));
    let Some(p) = prompter else {
        return Ok(choice.profile);
    };
    let names: Vec<&str> = Profile::ALL.iter().map(|p| p.as_str()).collect();
    let answer = p.choose("Profile", &names, choice.profile.as_str())?;
    Ok(Profile::parse(&answer).unwrap_or(choice.profile))
}

fn create_community(
    loaded: &mut LoadedConfig,
    paths: &NodePaths,
    key: &DeviceKey,
    display_name: &str,
    prompter: Option<&mut Prompter<impl std::io::BufRead>>,
) -> CliResult {
    let default_name: String = format!("{display_name}'s community")
        .chars()
        .take(64)
        .collect();
    let community_name = match prompter {
        Some(p) => p.ask("Community name", &default_name)?,
        None => default_name,
    };
    let genesis = Genesis::create(key, &community_name, CommunityPolicy::default())
        .map_err(|e| CliError::new(ExitStatus::Usage, e))?;
    let community_id = genesis.manifest.community_id;
    loaded.config.community.community_id = Some(community_id);
    let state_dir = loaded
        .paths()
        .state_dir
        .context("community state directory unresolved")?;
    genesis.write_to(&state_dir)?;
    hearthnet_config::save(loaded)?;
    printer::status(format!(
        "founded \"{}\" ({}); manifest at {}",
        genesis.manifest.name,
        community_id.short(),
        state_dir
            .join(hearthnet_identity::community::MANIFEST_FILE)
            .display()
    ));

    let card = IdentityCard {
        node_id_full: key.node_id(),
        display_name: display_name.to_owned(),
    };
    let (text, png) = (card.encode(), paths.data_dir.join("node-id.png"));
    let caption = "this node's identity card; once it runs, invite others with `hearthnet invite create --node-id <their id>`";
    show_qr(&text, &png, caption)?;
    print_summary(key, display_name, Some(&genesis.manifest), &loaded.path);
    Ok(ExitStatus::Success)
}

fn join_community(
    (config, env): (Option<&Path>, &Env),
    key: &DeviceKey,
    display_name: &str,
    paths: &NodePaths,
    invite: Option<String>,
    prompter: Option<&mut Prompter<impl std::io::BufRead>>,
) -> CliResult {
    if let Some(text) = invite {
        return super::invite::redeem_text(config, env, &text);
    }
    show_card(key, display_name, paths)?;
    let Some(p) = prompter else {
        printer::hint(
            "once a member has invited this device: `hearthnet init --join <invite>`, or \
             `hearthnet run` and its join page; `hearthnet identity` shows the card again",
        );
        return Ok(ExitStatus::Success);
    };
    let text = p.ask("Paste the invite you received (hearthnet://v1/…)", "")?;
    super::invite::redeem_text(config, env, &text)
}

/// This device's identity card, as QR art and text, and saved as a PNG.
pub(crate) fn show_card(
    key: &DeviceKey,
    display_name: &str,
    paths: &NodePaths,
) -> Result<(), CliError> {
    let card = IdentityCard {
        node_id_full: key.node_id(),
        display_name: display_name.to_owned(),
    };
    show_qr(
        &card.encode(),
        &paths.data_dir.join("node-id.png"),
        "show this to a member so they can invite this device",
    )
}

pub(crate) fn show_qr(text: &str, png: &Path, caption: &str) -> Result<(), CliError> {
    let qr = Qr::new(text)?;
    qr.write_png(png, PNG_SCALE)?;
    println!("{}", qr.to_terminal());
    println!("{text}");
    printer::status(format!("{caption}; QR saved as {}", png.display()));
    Ok(())
}

fn print_summary(
    key: &DeviceKey,
    name: &str,
    community: Option<&CommunityManifest>,
    config: &Path,
) {
    println!("node       {}  ({name})", key.node_id().short());
    println!("node id    {}", key.node_id().full());
    if let Some(c) = community {
        println!("community  {}  \"{}\"", c.community_id.short(), c.name);
    }
    println!("config     {}", config.display());
    printer::hint("start the node with `hearthnet run`; check it with `hearthnet doctor`");
}
