//! `hearthnet erase`: remove this node's local state in the order of spec
//! §3.10 (stop the node, the community's state, blobs, the embeddings
//! cache, logs, the device key), after three confirmations unless `--yes`.
//!
//! What is removed is planned and checked in full before anything goes:
//! every path must resolve inside one of HearthNet's own base directories
//! (`<DATA>`, `<CACHE>`, `<LOG>`), none of which may resolve to `/`, `$HOME`
//! or a directory above it. A configured path outside them, a path with
//! `..`, or a base directory that is a link to such a place refuses the
//! whole erase. Links are never followed: a link is removed, not its target.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use anyhow::anyhow;
use hearthnet_config::{Env, LoadedConfig};

use crate::cli::EraseArgs;
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;
use crate::prompt::Prompter;

use super::node_client;

pub fn run(config: Option<&Path>, env: &Env, args: EraseArgs) -> CliResult {
    let mut loaded = hearthnet_config::load(config, env)?;
    let fence = Fence::new(&loaded, env)?;
    let plan = plan(&loaded, &args, &fence)?;
    if !args.yes {
        confirm(&plan, &mut Prompter::stdin())?;
    }
    node_client::stop_running(&loaded.paths().runtime_dir)?;
    let mut removed = Vec::new();
    for target in &plan {
        let tally = remove(&target.path)
            .map_err(|e| anyhow!("cannot remove {}: {e}", target.path.display()))?;
        removed.push((target, tally));
    }
    forget_community(&mut loaded)?;
    for (target, tally) in &removed {
        printer::status(format!(
            "removed {} ({}): {} files, {} bytes",
            target.what,
            target.path.display(),
            tally.files,
            tally.bytes
        ));
    }
    if removed.is_empty() {
        printer::status("nothing to remove");
    }
    if args.keep_keys {
        printer::hint("the device key was kept: `hearthnet init` rejoins with the same identity");
    }
    Ok(ExitStatus::Success)
}

/// The PNG files in `data_dir` whose names start with one of `prefixes`:
/// the QR codes `init`, `invite` and `proposal` saved there.
fn shown_codes(data_dir: &Path, prefixes: &[&str]) -> Result<Vec<PathBuf>, CliError> {
    let entries = match fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow!("cannot list {}: {e}", data_dir.display()).into()),
    };
    let mut codes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| anyhow!("cannot list {}: {e}", data_dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".png") && prefixes.iter().any(|p| name.starts_with(p)) {
            codes.push(entry.path());
        }
    }
    codes.sort();
    Ok(codes)
}

/// One directory or file to remove, and what it holds, for the prompts and
/// summary.
#[derive(Debug)]
struct Target {
    what: &'static str,
    path: PathBuf,
}

/// The spec's order; what the flags keep is left out, and must not lie
/// inside anything removed; what does not exist is skipped.
fn plan(loaded: &LoadedConfig, args: &EraseArgs, fence: &Fence) -> Result<Vec<Target>, CliError> {
    let paths = loaded.paths();
    // (what, where, kept by a flag), in the spec's order.
    let mut all = Vec::new();
    if let Some(state) = paths.state_dir {
        all.push(("the community's state", state, false));
    }
    all.push(("every community's state", paths.communities_dir, false));
    // An invite's QR code is a credential until it is used or expires.
    for code in shown_codes(&paths.data_dir, &["invite-", "proposal-"])? {
        all.push(("a QR code shown", code, false));
    }
    all.push(("the blob store", paths.blobs_dir, args.keep_blobs));
    all.push(("the embeddings cache", paths.corpora_dir, false));
    all.push(("the logs", paths.log_dir, args.keep_logs));
    all.push(("the device key", paths.keys_dir, args.keep_keys));
    // The identity card's QR code goes with the key it shows.
    for code in shown_codes(&paths.data_dir, &["node-id"])? {
        all.push(("the identity card's QR code", code, args.keep_keys));
    }
    // What stays must not be inside what goes (e.g. a blob store
    // configured as the data directory would take the key with it).
    let mut kept = vec![paths.runtime_dir, loaded.dirs.config.clone()];
    let mut plan: Vec<Target> = Vec::new();
    for (what, path, keep) in all {
        if keep {
            kept.push(path);
            continue;
        }
        let Some(path) = fence.admit(what, &path)? else {
            continue;
        };
        // The community's state is usually inside the communities
        // directory: remove it once.
        if plan.iter().any(|t| path.starts_with(&t.path)) {
            continue;
        }
        plan.push(Target { what, path });
    }
    for path in kept {
        let path = resolve_parent(&path).unwrap_or(path);
        if let Some(target) = plan.iter().find(|t| path.starts_with(&t.path)) {
            return Err(refused(format!(
                "{} ({}) holds {}, which erase must keep",
                target.what,
                target.path.display(),
                path.display()
            )));
        }
    }
    Ok(plan)
}

fn confirm<R: io::BufRead>(plan: &[Target], prompter: &mut Prompter<R>) -> Result<(), CliError> {
    if plan.is_empty() {
        return Ok(());
    }
    printer::status("hearthnet erase will remove:");
    for target in plan {
        printer::status(format!("  {} ({})", target.what, target.path.display()));
    }
    let questions = [
        "Erase all of this? Type yes",
        "It cannot be undone; members keep only what they synced. Type yes",
        "Last chance: type yes to erase now",
    ];
    for question in questions {
        if prompter.ask(question, "")? != "yes" {
            return Err(CliError::aborted());
        }
    }
    Ok(())
}

/// The directories erase may reach into: HearthNet's own base directories,
/// resolved, none of them `/`, `$HOME` or above it.
struct Fence {
    roots: Vec<PathBuf>,
}

impl Fence {
    fn new(loaded: &LoadedConfig, env: &Env) -> Result<Self, CliError> {
        let home = env
            .get("HOME")
            .and_then(|h| fs::canonicalize(h).ok())
            .unwrap_or_default();
        let dirs = &loaded.dirs;
        let mut roots = Vec::new();
        for base in [&dirs.data, &dirs.cache, &dirs.log] {
            let resolved = match fs::canonicalize(base) {
                Ok(resolved) => resolved,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(anyhow!("cannot resolve {}: {e}", base.display()).into()),
            };
            if resolved.parent().is_none() || home.starts_with(&resolved) {
                return Err(refused(format!(
                    "HearthNet's directory {} resolves to {}, which holds more than HearthNet's \
                     files",
                    base.display(),
                    resolved.display()
                )));
            }
            // A base directory may be a link (a data directory moved to
            // another disk): both where it is and where it leads count.
            roots.push(resolve_parent(base)?);
            roots.push(resolved);
        }
        Ok(Self { roots })
    }

    /// Where `path` really is, if it exists and lies inside a root; an
    /// error if it exists elsewhere. The last component is not resolved,
    /// so a link is removed as a link.
    fn admit(&self, what: &str, path: &Path) -> Result<Option<PathBuf>, CliError> {
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(refused(format!(
                "{what} is configured as {}, with `..` in it",
                path.display()
            )));
        }
        if path.file_name().is_none() {
            return Err(refused(format!(
                "{what} is configured as {}",
                path.display()
            )));
        }
        if let Err(e) = fs::symlink_metadata(path) {
            return match e.kind() {
                io::ErrorKind::NotFound => Ok(None),
                _ => Err(anyhow!("cannot look at {}: {e}", path.display()).into()),
            };
        }
        let resolved = resolve_parent(path)?;
        if self.roots.iter().any(|root| resolved.starts_with(root)) {
            Ok(Some(resolved))
        } else {
            Err(refused(format!(
                "{what} is {} (resolved: {}), outside HearthNet's own directories",
                path.display(),
                resolved.display()
            )))
        }
    }
}

/// `path` with its parent resolved and its last component as it is.
fn resolve_parent(path: &Path) -> Result<PathBuf, CliError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(refused(format!("{} names no directory", path.display())));
    };
    let parent = fs::canonicalize(parent)
        .map_err(|e| anyhow!("cannot resolve {}: {e}", parent.display()))?;
    Ok(parent.join(name))
}

fn refused(why: String) -> CliError {
    CliError::new(
        ExitStatus::Failure,
        anyhow!(
            "{why}; erase removes nothing outside them and nothing was removed. Fix the configuration or remove it by hand"
        ),
    )
}

#[derive(Debug, Default)]
struct Tally {
    files: u64,
    bytes: u64,
}

/// Remove `path` (a link itself, never its target) and count what went.
fn remove(path: &Path) -> io::Result<Tally> {
    let mut tally = Tally::default();
    count(path, &mut tally)?;
    if fs::symlink_metadata(path)?.is_dir() {
        // Does not follow links below `path` (std's own guarantee).
        fs::remove_dir_all(path)?;
    } else {
        fs::remove_file(path)?;
    }
    Ok(tally)
}

fn count(path: &Path, tally: &mut Tally) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            count(&entry?.path(), tally)?;
        }
    } else {
        tally.files += 1;
        tally.bytes += meta.len();
    }
    Ok(())
}

/// The config still names the community whose state is gone: clear it, so
/// `hearthnet init` starts over instead of finding a member without a log.
fn forget_community(loaded: &mut LoadedConfig) -> Result<(), CliError> {
    if !loaded.file_existed || loaded.config.community.community_id.is_none() {
        return Ok(());
    }
    loaded.config.community.community_id = None;
    hearthnet_config::save(loaded)?;
    Ok(())
}
