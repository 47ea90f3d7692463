//! `hearthnet run`: start the node (spec §3.2). Without a community, an
//! interactive terminal goes through `init` first; otherwise the node
//! refuses and says how to fix it.

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
    if !key_exists || !has_community {
        if !std::io::stdin().is_terminal() {
            let what = if key_exists {
                "has not joined a community"
            } else {
                "has no device key"
            };
            return Err(CliError::new(
                ExitStatus::Failure,
                anyhow!(
                    "this node {what} yet; run `hearthnet init` (or `hearthnet init --non-interactive`) first"
                ),
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
