//! The running node: [`run`] composes every component in the order of the
//! spec's §5 — the canonical wiring, in one place — serves until SIGINT or
//! SIGTERM, and shuts down gracefully (calls in flight end with an `error`
//! frame, logs are flushed, exit within 5 s).
//!
//! Components that later issues add slot into [`run`] at their step; the
//! steps not built yet are named where they will go, and none is faked.

mod chunks;
mod community;
mod diagnostics;
mod lock;
mod peers;
mod sync;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hearthnet_bus::{Bus, BusSettings};
use hearthnet_config::LoadedConfig;
use hearthnet_config::runtime::RuntimeInfo;
use hearthnet_identity::{CommunityManifest, KeyError, KeyStore, ManifestError};
use hearthnet_observability::metrics::Metrics;
use hearthnet_transport::{ApiState, Listener};
use tokio_util::sync::CancellationToken;

pub use diagnostics::ECHO;

/// How `hearthnet run` was asked to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Raise the log level to debug.
    pub debug: bool,
    /// Do not serve the web UI.
    pub no_ui: bool,
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
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// Start the node and serve until a shutdown signal.
pub fn run(loaded: LoadedConfig, options: RunOptions) -> Result<(), NodeError> {
    let paths = loaded.paths();
    let config = &loaded.config;

    // 1. Observability: logs first, so every later step is recorded.
    let level = format!("{:?}", config.observability.log_level).to_lowercase();
    let _log_guard = hearthnet_observability::logging::init(&paths.log_dir, &level, options.debug)?;
    let metrics = Arc::new(Metrics::new());

    // 2. Identity: the device key must exist; `init` creates it.
    let key = KeyStore::new(&paths.keys_dir).load()?;

    // 3. Community: without one the node cannot serve anyone.
    let community_id = config.community_id().ok_or(NodeError::NoCommunity)?;
    let state_dir = paths.state_dir.clone().ok_or(NodeError::NoCommunity)?;
    let community = CommunityManifest::load(&state_dir).map_err(|e| match e {
        ManifestError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            NodeError::NoCommunity
        }
        other => NodeError::Manifest(other),
    })?;
    let community_json = read_json(&state_dir.join(hearthnet_identity::community::MANIFEST_FILE))?;

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

    runtime.block_on(async {
        let stop_serving = CancellationToken::new();
        // 4. Core state: the event log (replayed from its newest sound
        //    snapshot), seeded with the genesis event on first start.
        let genesis = read_json(&state_dir.join(hearthnet_identity::community::GENESIS_FILE)).ok();
        let log = hearthnet_events::EventLog::open(
            hearthnet_events::LogPaths::in_state_dir(&state_dir),
            community_id,
            hearthnet_events::Limits {
                max_event_bytes: usize::try_from(config.events.max_event_bytes).unwrap_or(usize::MAX),
                max_future_skew_seconds: i64::try_from(config.events.max_future_skew_seconds).unwrap_or(i64::MAX),
            },
            genesis,
            Some(key.clone()),
        )?;
        metrics.event_log_head.set(log.view().head as i64);

        // 5. Blobs: the content-addressed store (M07).
        let blobs = if config.file.enabled {
            Some(Arc::new(hearthnet_blobs::BlobStore::open(&paths.blobs_dir, config.file.gc_threshold)?))
        } else {
            None
        };

        // 6. Bus.
        let bus = Arc::new(Bus::new(
            key.node_id(),
            BusSettings {
                prefer_local: config.bus.prefer_local,
                local_load_threshold: config.bus.local_load_threshold,
                default_timeout: config.bus.default_timeout,
            },
            metrics.clone(),
        ));

        // 7. Peer registry and discovery: started at step 12, once the peer
        //    port is bound, so nobody is told of a port that is not there.

        // 8. Services, each optional by config (the diagnostic ones too).
        let register = |service: Arc<dyn hearthnet_bus::Service>| {
            bus.register(service).map_err(|e| NodeError::Io {
                context: "cannot register a diagnostic capability".into(),
                source: std::io::Error::other(e.to_string()),
            })
        };
        if config.observability.diagnostics {
            register(Arc::new(diagnostics::Echo { node: key.node_id() }))?;
            register(Arc::new(diagnostics::EventAppend { log: log.clone(), key: key.clone() }))?;
        }
        let invite_endpoints = Arc::new(std::sync::OnceLock::new());
        register(Arc::new(community::Revocations { log: log.clone(), key: key.clone() }))?;
        let mut files = None;
        if let Some(store) = &blobs {
            let holders = Arc::new(hearthnet_files::Holders::default());
            holders.follow(log.clone(), stop_serving.clone());
            let service = Arc::new(hearthnet_files::FileService::new(store.clone(), holders, log.clone(), key.clone()));
            let _ = service.bus.set(Arc::downgrade(&bus));
            service.reconcile_holdings(stop_serving.clone());
            register(service.clone())?;
            files = Some(service);
        }
        register(Arc::new(community::Invites {
            log: log.clone(),
            key: key.clone(),
            endpoints: invite_endpoints.clone(),
        }))?;

        // 9. Emergency detector (emergency issue).

        // 10. Transport server: bind before anything is announced, so a
        //     taken port fails start-up instead of half-starting.
        let api_addr = SocketAddr::new(
            config.transport.api_host,
            config.transport.api_port,
        );
        let api_listener = bind(api_addr).await?;
        let api_bound = local_addr(&api_listener)?;
        // Peers: HTTPS with key-bound certificates; plain HTTP only when
        // configured for a closed test network.
        let peer_listener = bind(SocketAddr::new(
            config.transport.peer_host,
            config.transport.peer_port,
        ))
        .await?;
        let tls_identity = Arc::new(hearthnet_transport::tls::TlsIdentity::new(&key)?);
        let membership: hearthnet_transport::tls::Membership = {
            let log = log.clone();
            Arc::new(move |id| log.view().level_of(id) >= hearthnet_base::TrustLevel::Member)
        };
        let peer_tls = if config.transport.allow_plain_http {
            tracing::warn!("peer API over plain HTTP (transport.allow_plain_http): only for closed test networks");
            None
        } else {
            // Any device may complete the handshake (an invitee must reach
            // the redemption endpoint); everything else checks membership
            // per request, so a stranger is served nothing.
            Some(Arc::new(hearthnet_transport::tls::server_config(&tls_identity, Arc::new(|_| true))?))
        };
        let peer_listener = Some(peer_listener);
        let peer_bound = peer_listener.as_ref().map(local_addr).transpose()?;
        if let Some(addr) = peer_bound {
            let _ = invite_endpoints.set(view::peer_endpoints(addr, config.transport.allow_plain_http));
        }

        let peer_client = Arc::new(hearthnet_transport::peer_client::PeerClient::new(
            key.clone(),
            community_id,
            tls_identity.clone(),
            membership.clone(),
            config.transport.allow_plain_http,
        ));
        let syncer = Arc::new(sync::Syncer::new(log.clone(), community_json.clone(), peer_client.clone(), metrics.clone()));

        // 12. Discovery (M02) announces the bound peer port; verified peers'
        //     capabilities join the bus. Until the emergency detector
        //     (step 9) feeds it, the node is never in emergency mode.
        let (_emergency_tx, emergency) = tokio::sync::watch::channel(false);
        let discovery = Arc::new(start_discovery(&loaded, &key, &community, &bus, &log, &peer_client, peer_bound, emergency.clone(), stop_serving.clone()));
        if let Some(files) = &files {
            let _ = files.chunk_source.set(Arc::new(chunks::PeerChunks { client: peer_client.clone(), discovery: discovery.clone(), metrics: metrics.clone() }));
        }
        let new_peer = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(peers::follow(
            discovery.clone(),
            bus.clone(),
            peer_client.clone(),
            new_peer.clone(),
            stop_serving.clone(),
        ));
        let view = Arc::new(view::NodeState::new(
            key.clone(),
            log.clone(),
            syncer.clone(),
            loaded.config.clone(),
            community.clone(),
            community_json,
            bus.clone(),
            paths.clone(),
            api_bound,
            peer_bound,
            discovery.registry.clone(),
            discovery.status.clone(),
            blobs.clone(),
        ));
        let mut state = ApiState::new(
            bus.clone(),
            view.clone(),
            metrics.clone(),
            key.clone(),
            community_id,
            usize::try_from(config.transport.max_body_bytes).unwrap_or(usize::MAX),
            config.transport.request_skew,
        )
        .with_sync(Arc::new(sync::SyncHandle(syncer.clone())));
        if let Some(files) = files {
            state = state.with_blobs(Arc::new(chunks::ServedChunks { files, metrics: metrics.clone() }));
        }
        let state = Arc::new(state);
        let router = hearthnet_transport::router(state);
        let mut servers = Vec::new();
        servers.push(tokio::spawn(hearthnet_transport::serve(api_listener, router.clone(), stop_serving.clone(), None)));
        if let Some(listener) = peer_listener {
            servers.push(tokio::spawn(hearthnet_transport::serve(listener, router, stop_serving.clone(), peer_tls)));
        }

        // 11. UI (web UI issue); `--no-ui` will skip it.
        let _ = options.no_ui;
        // 13. Manifests are issued fresh on every fetch (valid 30 s);
        //     discovery refetches its peers' before they expire.
        // 14. Periodic event sync with every verified and static peer, and
        //     at once with a peer that just appeared.
        let sync_peers = {
            let registry = discovery.registry.clone();
            let statics = config.discovery.static_peers.clone();
            move || {
                let mut addrs: Vec<String> = registry.all().iter().map(|p| p.addr.to_string()).collect();
                for s in &statics {
                    if !addrs.contains(s) {
                        addrs.push(s.clone());
                    }
                }
                addrs
            }
        };
        servers.push(tokio::spawn(syncer.clone().run_periodic(
            sync_peers,
            new_peer,
            sync::Schedule {
                normal: config.events.sync_interval,
                emergency: config.events.emergency_sync_interval,
            },
            emergency,
            stop_serving.clone(),
        )));
        {
            let metrics = metrics.clone();
            let mut changes = log.changes();
            let log = log.clone();
            let stop = stop_serving.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        r = changes.changed() => if r.is_err() { return },
                        _ = stop.cancelled() => return,
                    }
                    metrics.event_log_head.set(log.view().head as i64);
                }
            });
        }

        let info = RuntimeInfo {
            pid: std::process::id(),
            api: api_bound,
            peer: peer_bound,
            node_id: key.node_id().full(),
        };
        info.write(&paths.runtime_dir).map_err(|source| NodeError::Io {
            context: format!("cannot write {}", RuntimeInfo::path(&paths.runtime_dir).display()),
            source,
        })?;
        view.mark_ready();
        tracing::info!(api = %api_bound, node = %key.node_id().short(), community = %community.name, "node ready");

        // 15. Run until told to stop.
        wait_for_signal().await;
        tracing::info!("shutting down");
        view.mark_stopping();
        bus.shutdown();
        // Let error frames reach callers before connections close.
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop_serving.cancel();
        for server in servers {
            let _ = tokio::time::timeout(Duration::from_secs(4), server).await;
        }
        // mDNS says goodbye, so neighbours forget us at once.
        let _ = tokio::time::timeout(Duration::from_secs(1), discovery.stopped()).await;
        RuntimeInfo::remove(&paths.runtime_dir);
        tracing::info!("stopped");
        Ok(())
    })
}

/// Start M02 discovery for this node: what it announces comes from the bus
/// (capability names) and the bound peer port.
#[allow(clippy::too_many_arguments)] // the wiring's parts, named once
fn start_discovery(
    loaded: &LoadedConfig,
    key: &hearthnet_base::DeviceKey,
    community: &CommunityManifest,
    bus: &Arc<Bus>,
    log: &hearthnet_events::EventLog,
    client: &Arc<hearthnet_transport::peer_client::PeerClient>,
    peer_bound: Option<SocketAddr>,
    emergency: tokio::sync::watch::Receiver<bool>,
    stop: CancellationToken,
) -> hearthnet_discovery::Discovery {
    let config = &loaded.config;
    let port = peer_bound.map_or(0, |a| a.port());
    let settings = hearthnet_discovery::Settings {
        node: key.node_id(),
        community: community.community_id,
        display_name: view::display_name(config),
        // Without a peer port there is nothing to announce.
        mdns_enabled: config.discovery.mdns_enabled && port != 0,
        mdns_port: hearthnet_base::constants::MDNS_PORT,
        udp_enabled: config.discovery.udp_enabled && port != 0,
        udp_group: config.discovery.udp_multicast_group,
        udp_port: hearthnet_base::constants::DISCOVERY_UDP_PORT,
        interfaces: config.discovery.interfaces.clone(),
        static_peers: config.discovery.static_peers.clone(),
    };
    let announcement: hearthnet_discovery::AnnouncementSource = {
        let bus = bus.clone();
        let (node, community) = (key.node_id().short(), community.community_id.short());
        Arc::new(move || {
            let caps: Vec<String> = bus
                .local_descriptors()
                .into_iter()
                .map(|d| d.name)
                .collect();
            hearthnet_discovery::Announcement::new(node.clone(), community.clone(), port, &caps)
        })
    };
    let contact = Arc::new(peers::PeerContact {
        client: client.clone(),
        log: log.clone(),
    });
    hearthnet_discovery::Discovery::start(settings, contact, announcement, emergency, stop)
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
    serde_json::from_slice(&bytes).map_err(|e| NodeError::Io {
        context: format!("cannot parse {}", path.display()),
        source: std::io::Error::other(e),
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
