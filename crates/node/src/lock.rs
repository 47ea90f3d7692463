//! One node per data directory: an exclusive `flock` on
//! `<DATA>/run/node.lock`, held for the life of the process and released by
//! the kernel however the process ends (no stale locks after a crash).

use std::fs::File;
use std::path::Path;

use hearthnet_config::runtime::RuntimeInfo;
use rustix::fs::{FlockOperation, flock};

use crate::NodeError;

pub struct NodeLock {
    _file: File,
}

impl NodeLock {
    pub fn acquire(runtime_dir: &Path) -> Result<Self, NodeError> {
        let io = |context: String| move |source| NodeError::Io { context, source };
        std::fs::create_dir_all(runtime_dir)
            .map_err(io(format!("cannot create {}", runtime_dir.display())))?;
        let path = runtime_dir.join("node.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(format!("cannot open {}", path.display())))?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let who = RuntimeInfo::read(runtime_dir)
                .map(|i| format!(" (pid {}, local API on {})", i.pid, i.api))
                .unwrap_or_default();
            return Err(NodeError::AlreadyRunning(format!(
                "another HearthNet node{who} is already running on this data directory ({}); stop it first",
                runtime_dir.parent().unwrap_or(runtime_dir).display()
            )));
        }
        Ok(Self { _file: file })
    }
}
