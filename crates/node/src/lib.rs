//! The running node: [`run`] composes every component in the order of the
//! spec's §5 — the canonical wiring, in one place — serves until SIGINT or
//! SIGTERM, and shuts down gracefully (calls in flight end with an `error`
//! frame, logs are flushed, exit within 5 s).
//!
//! Components that later issues add slot into [`run`] at their step; the
//! steps not built yet are named where they will go, and none is faked.

mod chunks;
mod courier;
mod emergency;
pub mod join;
mod joining;
mod lock;
mod peers;
mod sync;
mod view;
mod wiring;

use std::net::SocketAddr;
use std::sync::Arc;

use hearthnet_config::LoadedConfig;
use hearthnet_identity::{CommunityManifest, KeyError, KeyStore, ManifestError};
use hearthnet_observability::metrics::Metrics;
use hearthnet_transport::Listener;

pub use hearthnet_diagnostics::ECHO;

/// `doctor`'s checks of the services this build carries (their models
/// and backends), run with the cold checks.
pub const SERVICE_CHECKS: &[hearthnet_observability::doctor::Check] = &[
    #[cfg(feature = "embed")]
    hearthnet_embed::DOCTOR_CHECK,
    #[cfg(feature = "llm")]
    hearthnet_llm::DOCTOR_CHECK,
];

/// How `hearthnet run` was asked to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Raise the log level to debug.
    pub debug: bool,
    /// Do not serve the web UI.
    pub no_ui: bool,
}

/// What a started node tells the one who started it.
#[derive(Debug, Clone)]
pub struct Started {
    /// The web UI's first one-time login link, when it is served: the
    /// join page's in joining mode, which the full UI's sessions go on
    /// from (no second link is told).
    pub ui_link: Option<hearthnet_wire::local::UiLink>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("this node has not joined a community yet; run `hearthnet init` first")]
    NoCommunity,
    #[error("the community manifest does not verify: {0}")]
    Manifest(#[from] ManifestError),
    #[error("{0}")]
    AlreadyRunning(String),
    #[error("cannot listen on {addr}: {source}{holder}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
        holder: String,
    },
    #[error(transparent)]
    Log(#[from] hearthnet_observability::logging::LogError),
    #[error(transparent)]
    Events(#[from] hearthnet_events::EventLogError),
    #[error(transparent)]
    Blobs(#[from] hearthnet_blobs::BlobError),
    #[error(transparent)]
    Tls(#[from] hearthnet_transport::tls::TlsError),
    #[error(transparent)]
    Register(#[from] hearthnet_bus::RegisterError),
    #[error(transparent)]
    Market(#[from] hearthnet_market::MarketError),
    #[error("emergency.probe_targets: {0}")]
    ProbeTarget(hearthnet_emergency::TargetError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("cannot parse {}: {source}", path.display())]
    Json {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Runtime(#[from] hearthnet_config::runtime::RuntimeFileError),
    #[error(transparent)]
    Private(#[from] hearthnet_config::PrivateError),
}

/// Start the node and serve until a shutdown signal: steps 1–3 of the
/// canonical wiring (CLI spec §5) here, the rest in `wiring.rs`.
/// `started` is told once the node is ready, or once the join page is
/// served (joining mode, `joining.rs`: a device with a key but no
/// community, its web UI on, which then goes on here as a member).
pub fn run(
    loaded: LoadedConfig,
    options: RunOptions,
    started: impl FnOnce(&Started),
) -> Result<(), NodeError> {
    let mut loaded = loaded;
    let paths = loaded.paths();

    // 1. Observability: logs first, so every later step is recorded.
    let level = format!("{:?}", loaded.config.observability.log_level).to_lowercase();
    let _log_guard = hearthnet_observability::logging::init(&paths.log_dir, &level, options.debug)?;
    let metrics = Arc::new(Metrics::new());

    // State private to this user, including what older versions left
    // readable by others, before anything in it is read or written.
    paths.make_private()?;

    // 2. Identity: the device key must exist; `init` creates it.
    let key = KeyStore::new(&paths.keys_dir).load()?;

    // 3. Community: without one the node cannot serve anyone, but with
    //    its web UI it can serve the join page.
    let ui = loaded.config.ui.enabled && !options.no_ui;
    let joining = loaded.config.community_id().is_none();
    if joining && !ui {
        return Err(NodeError::NoCommunity);
    }

    // One node per data directory.
    let _lock = lock::NodeLock::acquire(&paths.runtime_dir)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("hearthnet")
        .build()
        .map_err(|source| NodeError::Io {
            context: "cannot start the async runtime".into(),
            source,
        })?;
    let mut started = Some(started);
    let mut tell = |s: &Started| {
        if let Some(started) = started.take() {
            started(s);
        }
    };
    let mut handover = None;
    if joining {
        let Some(joined) = runtime.block_on(joining::serve(&loaded, &key, &mut tell))? else {
            return Ok(());
        };
        loaded = joined.loaded.clone();
        handover = Some(joined);
    }
    let paths = loaded.paths();
    let state_dir = paths.state_dir.clone().ok_or(NodeError::NoCommunity)?;
    let community = CommunityManifest::load(&state_dir).map_err(|e| match e {
        ManifestError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            NodeError::NoCommunity
        }
        other => NodeError::Manifest(other),
    })?;
    let community_json = read_json(&state_dir.join(hearthnet_identity::community::MANIFEST_FILE))?;

    let (ui_listener, ui_access) = match handover {
        Some(h) => (Some(h.listener), Some(h.access)),
        None => (None, None),
    };
    let basics = wiring::Basics {
        loaded: loaded.clone(),
        paths,
        key,
        community,
        community_json,
        state_dir,
        metrics,
        ui,
        ui_access,
    };
    runtime.block_on(async {
        let node = wiring::RunningNode::start(basics, ui_listener).await?;
        tell(&Started {
            ui_link: node.ui_link(),
        });
        // 15. Run until told to stop.
        wait_for_signal().await;
        node.shutdown().await;
        Ok(())
    })
}

async fn bind(addr: SocketAddr) -> Result<Listener, NodeError> {
    Listener::bind(addr).await.map_err(|source| {
        let holders = hearthnet_observability::sockets::holders(
            hearthnet_observability::sockets::Protocol::Tcp,
            addr.port(),
        );
        let holder = if holders.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = holders.iter().map(ToString::to_string).collect();
            format!(
                " (held by {}); stop it or choose another port in config.toml",
                names.join(", ")
            )
        };
        NodeError::Bind {
            addr,
            source,
            holder,
        }
    })
}

fn local_addr(l: &Listener) -> Result<SocketAddr, NodeError> {
    l.local_addr().map_err(|source| NodeError::Io {
        context: "cannot read the bound address".into(),
        source,
    })
}

fn read_json(path: &std::path::Path) -> Result<serde_json::Value, NodeError> {
    let bytes = std::fs::read(path).map_err(|source| NodeError::Io {
        context: format!("cannot read {}", path.display()),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| NodeError::Json {
        path: path.to_owned(),
        source,
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the node cannot be stopped cleanly;
        // fall back to Ctrl-C handling alone.
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
