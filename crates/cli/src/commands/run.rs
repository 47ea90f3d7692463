//! `hearthnet run`: start the node (spec §3.2). Without a community, an
//! interactive terminal goes through `init` first; a device with a key
//! and its web UI on serves the join page until it has joined (joining
//! mode, `hearthnet_node::run`); otherwise the node refuses and says how
//! to fix it.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::anyhow;
use hearthnet_config::Env;
use hearthnet_node::{NodeError, RunOptions, Started};

use crate::cli::{InitArgs, RunArgs};
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;

pub fn run(config: Option<&Path>, env: &Env, args: RunArgs) -> CliResult {
    let mut loaded = hearthnet_config::load(config, env)?;
    let paths = loaded.paths();
    let key_exists = hearthnet_identity::KeyStore::new(&paths.keys_dir).exists();
    let has_community = loaded.config.community_id().is_some();
    let terminal = std::io::stdin().is_terminal();
    let ui = loaded.config.ui.enabled && !args.no_ui;
    // Nobody to ask at a terminal, a key made for joining and the web UI
    // on: the node serves the join page until the device has joined.
    let joining = key_exists && !has_community && ui && !terminal;
    if (!key_exists || !has_community) && !joining {
        if !terminal {
            let what = if key_exists {
                "has not joined a community yet; run `hearthnet init --join INVITE` (or `hearthnet init --non-interactive` to found one), or `hearthnet run` with the web UI on to join on its page"
            } else {
                "has no device key yet; run `hearthnet init` (or `hearthnet init --non-interactive`) first"
            };
            return Err(CliError::new(
                ExitStatus::Failure,
                anyhow!("this node {what}"),
            ));
        }
        printer::status("this node is not set up yet: onboarding first");
        let init = InitArgs {
            name: None,
            profile: None,
            non_interactive: false,
            join: None,
            use_installed_models: false,
        };
        let status = super::init::run(config, env, init)?;
        if status != ExitStatus::Success {
            return Ok(status);
        }
        loaded = hearthnet_config::load(config, env)?;
    }
    if joining {
        printer::status(
            "this device has not joined a community yet: its join page shows its card and takes the invite; open the link below",
        );
    }
    let options = RunOptions {
        debug: args.debug,
        no_ui: args.no_ui,
    };
    let launch_browser = loaded.config.ui.launch_browser;
    let started = |s: &Started| {
        if let Some(link) = &s.ui_link {
            super::ui::offer(link, launch_browser);
        }
    };
    hearthnet_node::run(loaded, options, started).map_err(|e| {
        let status = match &e {
            NodeError::Key(hearthnet_identity::KeyError::Permissions { .. })
            | NodeError::Manifest(_) => ExitStatus::Auth,
            _ => ExitStatus::Failure,
        };
        CliError::new(status, e)
    })?;
    Ok(ExitStatus::Success)
}
