//! `<RUNTIME>/node.json`: where a running node can be reached. Written by
//! the node once its listeners are bound (ports may have been chosen by the
//! OS), removed when it stops; read by the CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const RUNTIME_FILE: &str = "node.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    pub pid: u32,
    /// The local API (plain HTTP, loopback).
    pub api: SocketAddr,
    /// The peer API, where it is served.
    pub peer: Option<SocketAddr>,
    pub node_id: String,
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

    pub fn write(&self, runtime_dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        hearthnet_base::fsio::atomic_write(&Self::path(runtime_dir), &text, 0o600)
    }

    pub fn remove(runtime_dir: &Path) {
        let _ = std::fs::remove_file(Self::path(runtime_dir));
    }
}
