//! `hearthnet leave` (M13 §5.2, "leave community"): this device stops
//! serving the community and goes back to onboarding, keeping its key.
//! The running node is stopped, the community's directory is moved aside
//! to `<id>.archived` (a dated name when that is taken) beside where it
//! was, and `config.toml` forgets the community. Nothing is deleted:
//! `hearthnet erase` does that. The contract has no event for leaving, so
//! the other members learn nothing from it; they can revoke the device.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use hearthnet_base::Timestamp;
use hearthnet_config::Env;

use crate::cli::LeaveArgs;
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;
use crate::prompt::Prompter;

use super::node_client;

pub fn run(config: Option<&Path>, env: &Env, args: LeaveArgs) -> CliResult {
    let mut loaded = hearthnet_config::load(config, env)?;
    let paths = loaded.paths();
    let (Some(community), Some(state_dir)) = (loaded.config.community_id(), paths.state_dir) else {
        return Err(anyhow!("this device belongs to no community; nothing to leave").into());
    };
    if !args.yes {
        let question = format!(
            "Leave community {}? This device stops serving it; its data is archived, the key kept. Type yes",
            community.short()
        );
        if Prompter::stdin().ask(&question, "")? != "yes" {
            return Err(CliError::aborted());
        }
    }
    node_client::stop_running(&paths.runtime_dir)?;
    let archived = match std::fs::symlink_metadata(&state_dir) {
        Ok(_) => {
            let archive = archive_name(&state_dir)?;
            std::fs::rename(&state_dir, &archive).map_err(|e| {
                anyhow!(
                    "cannot archive {} to {}: {e}",
                    state_dir.display(),
                    archive.display()
                )
            })?;
            Some(archive)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(anyhow!("cannot look at {}: {e}", state_dir.display()).into()),
    };
    loaded.config.community.community_id = None;
    hearthnet_config::save(&loaded)?;
    match archived {
        Some(archive) => printer::status(format!(
            "left community {}; its data is in {}",
            community.short(),
            archive.display()
        )),
        None => printer::status(format!("left community {}", community.short())),
    }
    printer::hint("`hearthnet init` creates or joins a community with the same identity");
    Ok(ExitStatus::Success)
}

/// `<dir>.archived` beside `dir`, or `<dir>.archived-<time>` when a
/// device left that community before.
fn archive_name(dir: &Path) -> Result<PathBuf, CliError> {
    let name = dir
        .file_name()
        .ok_or_else(|| anyhow!("{} names no directory", dir.display()))?
        .to_string_lossy()
        .into_owned();
    let plain = dir.with_file_name(format!("{name}.archived"));
    if std::fs::symlink_metadata(&plain).is_err() {
        return Ok(plain);
    }
    let stamp = Timestamp::now().to_string().replace(':', "-");
    let dated = dir.with_file_name(format!("{name}.archived-{stamp}"));
    if std::fs::symlink_metadata(&dated).is_ok() {
        return Err(anyhow!("{} exists already; try again in a second", dated.display()).into());
    }
    Ok(dated)
}
