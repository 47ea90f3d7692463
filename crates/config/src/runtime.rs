//! `<RUNTIME>/node.json`: where a running node can be reached. Written by
//! the node once its listeners are bound (ports may have been chosen by the
//! OS), removed when it stops; read by the CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const RUNTIME_FILE: &str = "node.json";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeFileError {
    #[error("cannot encode the runtime file: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    pub pid: u32,
    /// The local API (plain HTTP, loopback).
    pub api: SocketAddr,
    /// The peer API, where it is served.
    pub peer: Option<SocketAddr>,
    pub node_id: String,
    /// The web UI, where it is served (absent from older nodes' files).
    #[serde(default)]
    pub ui: Option<SocketAddr>,
    /// The web UI's HTTPS listener for paired devices on the LAN, where
    /// it is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui_lan: Option<SocketAddr>,
}

impl RuntimeInfo {
    pub fn path(runtime_dir: &Path) -> PathBuf {
        runtime_dir.join(RUNTIME_FILE)
    }

    /// The recorded node, if the file exists and parses.
    pub fn read(runtime_dir: &Path) -> Option<Self> {
        let text = std::fs::read(Self::path(runtime_dir)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn write(&self, runtime_dir: &Path) -> Result<(), RuntimeFileError> {
        let text = serde_json::to_vec_pretty(self).map_err(RuntimeFileError::Encode)?;
        let path = Self::path(runtime_dir);
        hearthnet_base::fsio::atomic_write(&path, &text, 0o600)
            .map_err(|source| RuntimeFileError::Write { path, source })
    }

    pub fn remove(runtime_dir: &Path) {
        let _ = std::fs::remove_file(Self::path(runtime_dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RuntimeInfo {
        RuntimeInfo {
            pid: 7,
            api: SocketAddr::from(([127, 0, 0, 1], 7080)),
            peer: None,
            node_id: "ed25519:x".into(),
            ui: None,
            ui_lan: None,
        }
    }

    #[test]
    fn written_info_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        info().write(dir.path()).unwrap();
        assert_eq!(RuntimeInfo::read(dir.path()), Some(info()));
    }

    #[test]
    fn a_failed_write_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // A runtime "directory" that is a regular file.
        let blocker = dir.path().join("run");
        std::fs::write(&blocker, b"").unwrap();
        match info().write(&blocker) {
            Err(e @ RuntimeFileError::Write { .. }) => {
                assert!(e.to_string().contains("run/node.json"), "{e}");
            }
            other => panic!("expected a write error, got {other:?}"),
        }
    }
}
