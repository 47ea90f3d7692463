//! The one way commands reach a running node: a [`LocalClient`] built from
//! the configuration, with its failures mapped to exit codes; and the one
//! way commands stop it ([`stop_running`]).

use std::path::Path;

use hearthnet_client::{ClientError, LocalClient};
use hearthnet_config::Env;

use crate::exit::CliError;

pub fn connect(config: Option<&Path>, env: &Env) -> Result<LocalClient, CliError> {
    let loaded = hearthnet_config::load(config, env)?;
    LocalClient::for_config(&loaded).map_err(|e| match e {
        // Without a key or community there cannot be a node of ours running.
        ClientError::Key(hearthnet_identity::KeyError::Missing { .. })
        | ClientError::NoCommunity => CliError::new(
            crate::exit::ExitStatus::NoNode,
            anyhow::anyhow!("{e}; then start it with `hearthnet run`"),
        ),
        other => CliError::from_client(other),
    })
}

/// How long a node gets to stop on SIGTERM before the command gives up
/// (the node's own shutdown takes at most 4 s).
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Stop the node running on this data directory, if one is: it holds the
/// `flock` on `<RUNTIME>/node.lock` (`hearthnet_node::lock`) and wrote its
/// pid in the runtime file. Returns once the lock is free, so nothing of
/// the node writes any more; true if a node was stopped.
pub fn stop_running(runtime_dir: &Path) -> Result<bool, CliError> {
    use rustix::fs::{FlockOperation, flock};
    use rustix::process::{Pid, Signal, kill_process};

    let lock_path = runtime_dir.join("node.lock");
    let lock = match std::fs::File::open(&lock_path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(anyhow::anyhow!("cannot open {}: {e}", lock_path.display()).into()),
    };
    let free = || flock(&lock, FlockOperation::NonBlockingLockShared).is_ok();
    if free() {
        return Ok(false);
    }
    // The lock is held, so the runtime file is the holder's.
    let info = hearthnet_config::runtime::RuntimeInfo::read(runtime_dir)
        .and_then(|info| Some((info.pid, Pid::from_raw(i32::try_from(info.pid).ok()?)?)));
    let Some((pid_number, pid)) = info else {
        return Err(anyhow::anyhow!(
            "a node holds {} but left no runtime file naming its pid; stop it first",
            lock_path.display()
        )
        .into());
    };
    // A runtime file left by a node that crashed may name a pid reused
    // since: signal only the process the kernel says holds the lock.
    if !holds_lock(pid_number, &lock) {
        return Err(anyhow::anyhow!(
            "a node holds {} but its pid is not known (it may be starting); stop it first",
            lock_path.display()
        )
        .into());
    }
    crate::printer::status(format!("stopping the running node (pid {pid_number})"));
    kill_process(pid, Signal::TERM)
        .map_err(|e| anyhow::anyhow!("cannot stop the node (pid {pid_number}): {e}"))?;
    let start = std::time::Instant::now();
    while !free() {
        if start.elapsed() > STOP_WAIT {
            return Err(anyhow::anyhow!(
                "the node (pid {pid_number}) did not stop within {} s; stop it first",
                STOP_WAIT.as_secs()
            )
            .into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(true)
}

/// Whether `/proc/locks` lists a `flock` on `lock`'s inode taken by `pid`
/// (lines like `1: FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF`).
fn holds_lock(pid: u32, lock: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(meta), Ok(locks)) = (lock.metadata(), std::fs::read_to_string("/proc/locks")) else {
        return false;
    };
    let (pid, inode) = (pid.to_string(), meta.ino().to_string());
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&"FLOCK")
            && fields.get(4) == Some(&pid.as_str())
            && fields.get(5).and_then(|f| f.rsplit(':').next()) == Some(inode.as_str())
    })
}
