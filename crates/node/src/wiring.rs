//! The canonical wiring of the CLI spec §5, one function per phase. Each
//! phase takes what the earlier ones built and returns its own part;
//! [`RunningNode::start`] calls them in the spec's order, and the
//! [`RunningNode`] it returns owns every task they started.
//!
//! Adding a service is one line in [`register_services`]: build it, then
//! `register(&bus, service)`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hearthnet_base::DeviceKey;
use hearthnet_bus::{Bus, BusSettings, Service};
use hearthnet_config::runtime::RuntimeInfo;
use hearthnet_config::{LoadedConfig, NodePaths};
use hearthnet_discovery::{Discovery, PeerRegistry};
use hearthnet_events::EventLog;
use hearthnet_identity::{ApiKeyCheck, ApiKeyFile, CommunityManifest};
use hearthnet_observability::metrics::Metrics;
use hearthnet_transport::peer_client::PeerClient;
use hearthnet_transport::tls::{Membership, TlsIdentity};
use hearthnet_transport::{ApiState, Listener};
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{NodeError, chunks, courier, emergency, peers, sync, view};

/// What phases 1–3 established, before the async runtime starts.
pub(crate) struct Basics {
    pub loaded: LoadedConfig,
    pub paths: NodePaths,
    pub key: DeviceKey,
    pub community: CommunityManifest,
    /// The community manifest as stored (it is verified on these bytes).
    pub community_json: Value,
    pub state_dir: PathBuf,
    pub metrics: Arc<Metrics>,
    /// Serve the web UI (`ui.enabled` and no `--no-ui`).
    pub ui: bool,
    /// The join page's logins and sessions, when this device joined
    /// there (`joining.rs`): the full UI keeps them.
    pub ui_access: Option<Arc<hearthnet_ui::access::Access>>,
}

/// A started node. Dropping it does not stop it: call [`Self::shutdown`].
pub(crate) struct RunningNode {
    view: Arc<view::NodeState>,
    bus: Arc<Bus>,
    discovery: Arc<Discovery>,
    tasks: TaskTracker,
    stop: CancellationToken,
    runtime_dir: PathBuf,
    /// The emergency detector's switch and status (step 9).
    _emergency: emergency::Emergency,
    /// The web UI, when served (step 11).
    ui: Option<hearthnet_ui::Ui>,
}

struct UiLan {
    listener: Listener,
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    lan: hearthnet_ui::Lan,
}

/// Step 6's part: the bound listeners, the peer client and the bus.
struct Network {
    api: Listener,
    api_addr: SocketAddr,
    peer: Listener,
    peer_addr: SocketAddr,
    peer_tls: Option<Arc<rustls::ServerConfig>>,
    /// The web UI's listener, when it is served.
    ui: Option<(Listener, SocketAddr)>,
    /// The web UI's HTTPS listener for paired devices on the LAN, when
    /// `ui.lan_enabled`.
    ui_lan: Option<UiLan>,
    client: Arc<PeerClient>,
    bus: Arc<Bus>,
}

impl RunningNode {
    /// Steps 4–15 of the canonical wiring; the web UI on `ui_listener`
    /// when the join page handed it over, else on its own.
    pub async fn start(basics: Basics, ui_listener: Option<Listener>) -> Result<Self, NodeError> {
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        // 4. Core state.
        let log = core_state(&basics)?;
        // 5. Blobs.
        let blobs = blob_store(&basics)?;
        // 6. Transport and bus: listeners bound before anything is
        //    announced, so a taken port fails start-up instead of
        //    half-starting.
        let net = network(&basics, &log, ui_listener).await?;
        // 7. Peer registry; discovery announces at step 12, once we serve.
        let peers = Arc::new(PeerRegistry::default());
        // 8. Services.
        let files = register_services(&basics, &net, &log, blobs.as_ref(), &peers, &tasks, &stop)?;
        // 9. Emergency detector: offline withdraws what needs the internet.
        let emergency = emergency::start(
            &basics.loaded.config.emergency,
            net.bus.clone(),
            basics.metrics.clone(),
            &tasks,
            &stop,
        )?;
        // 10. Transport server.
        let syncer = Arc::new(sync::Syncer::new(
            log.clone(),
            basics.community_json.clone(),
            net.client.clone(),
            basics.metrics.clone(),
        ));
        let discovery = Arc::new(start_discovery(
            &basics,
            &net,
            &log,
            peers.clone(),
            emergency.in_emergency.clone(),
            stop.clone(),
        ));
        let view = Arc::new(view::NodeState::new(
            basics.key.clone(),
            log.clone(),
            syncer.clone(),
            basics.loaded.config.clone(),
            basics.community.clone(),
            basics.community_json.clone(),
            net.bus.clone(),
            basics.paths.clone(),
            net.api_addr,
            Some(net.peer_addr),
            peers.clone(),
            discovery.status.clone(),
            blobs,
            emergency.status.clone(),
        ));
        let (bus, client) = (net.bus.clone(), net.client.clone());
        let (api_addr, peer_addr) = (net.api_addr, net.peer_addr);
        let ui_addr = net.ui.as_ref().map(|(_, addr)| *addr);
        let ui_lan_addr = net.ui_lan.as_ref().map(|l| l.addr);
        // 10 and 11: the transport server and the web UI, which the local
        // API asks for login links.
        let ui = serve(
            &basics,
            net,
            view.clone(),
            &syncer,
            files,
            emergency.status.clone(),
            log.changes(),
            &tasks,
            &stop,
        );
        // 12. Peer events wired to the bus; a new peer wakes sync.
        let new_peer = Arc::new(Notify::new());
        tasks.spawn(peers::follow(
            discovery.clone(),
            bus.clone(),
            client,
            new_peer.clone(),
            stop.clone(),
        ));
        // 13. Manifests are issued fresh on every fetch (valid 30 s);
        //     discovery refetches its peers' before they expire.
        // 14. Periodic event sync with every verified and static peer.
        let in_emergency = emergency.in_emergency.clone();
        periodic_sync(
            &basics,
            &syncer,
            &peers,
            new_peer,
            in_emergency,
            &tasks,
            &stop,
        );
        tasks.spawn(follow_log_head(basics.metrics.clone(), log, stop.clone()));

        let node = Self {
            bus,
            view,
            discovery,
            tasks,
            stop,
            runtime_dir: basics.paths.runtime_dir.clone(),
            _emergency: emergency,
            ui,
        };
        node.announce_ready(&basics, api_addr, peer_addr, (ui_addr, ui_lan_addr))?;
        Ok(node)
    }

    /// A fresh one-time login link to the web UI, if it is served.
    pub fn ui_link(&self) -> Option<hearthnet_wire::local::UiLink> {
        self.ui.as_ref().map(hearthnet_ui::Ui::login_link)
    }

    /// Tell the CLI where we listen (`<DATA>/run/node.json`) and start
    /// answering `/ready` with 200.
    fn announce_ready(
        &self,
        basics: &Basics,
        api: SocketAddr,
        peer: SocketAddr,
        (ui, ui_lan): (Option<SocketAddr>, Option<SocketAddr>),
    ) -> Result<(), NodeError> {
        let info = RuntimeInfo {
            pid: std::process::id(),
            api,
            peer: Some(peer),
            node_id: basics.key.node_id().full(),
            ui,
            ui_lan,
        };
        info.write(&self.runtime_dir)?;
        self.view.mark_ready();
        tracing::info!(api = %info.api, node = %basics.key.node_id().short(), community = %basics.community.name, "node ready");
        Ok(())
    }

    /// 15. Stop: calls in flight end with an `error` frame, then every
    ///     task stops (servers drain for up to 4 s) and mDNS says goodbye.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.view.mark_stopping();
        self.bus.shutdown();
        // Let error frames reach callers before connections close.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.stop.cancel();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(4), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.tasks.len(),
                "tasks still running after 4 s; stopping anyway"
            );
        }
        // mDNS says goodbye, so neighbours forget us at once.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.discovery.stopped()).await;
        RuntimeInfo::remove(&self.runtime_dir);
        tracing::info!("stopped");
    }
}

/// 4. The event log, replayed from its newest sound snapshot, seeded with
///    the genesis event on first start.
fn core_state(b: &Basics) -> Result<EventLog, NodeError> {
    let config = &b.loaded.config;
    let genesis = crate::read_json(
        &b.state_dir
            .join(hearthnet_identity::community::GENESIS_FILE),
    )
    .ok();
    let log = EventLog::open(
        hearthnet_events::LogPaths::in_state_dir(&b.state_dir),
        b.community.community_id,
        hearthnet_events::Limits {
            max_event_bytes: usize::try_from(config.events.max_event_bytes).unwrap_or(usize::MAX),
            max_future_skew_seconds: i64::try_from(config.events.max_future_skew_seconds)
                .unwrap_or(i64::MAX),
            ..hearthnet_events::Limits::default()
        },
        genesis,
        Some(b.key.clone()),
    )?;
    b.metrics.event_log_head.set(log.view().head as i64);
    Ok(log)
}

/// 5. The content-addressed blob store (M07), when the file service is on.
fn blob_store(b: &Basics) -> Result<Option<Arc<hearthnet_blobs::BlobStore>>, NodeError> {
    let file = &b.loaded.config.file;
    if !file.enabled {
        return Ok(None);
    }
    Ok(Some(Arc::new(hearthnet_blobs::BlobStore::open(
        &b.paths.blobs_dir,
        file.gc_threshold,
    )?)))
}

/// The web UI's listener for the household's devices on the LAN, with
/// its own certificate (kept in the keys directory) and the addresses a
/// phone can open it at.
async fn ui_lan(b: &Basics) -> Result<UiLan, NodeError> {
    let config = &b.loaded.config.ui;
    let listener = crate::bind(SocketAddr::new(config.lan_host, config.lan_port)).await?;
    let addr = crate::local_addr(&listener)?;
    let certificate = hearthnet_transport::tls::LanCertificate::load_or_create(&b.paths.keys_dir)?;
    let tls = Arc::new(certificate.server_config()?);
    let hosts: Vec<std::net::IpAddr> = match addr.ip() {
        ip if ip.is_unspecified() => hearthnet_identity::hardware::lan_ipv4_addresses()
            .into_iter()
            .map(Into::into)
            .collect(),
        ip => vec![ip],
    };
    let origins = hosts
        .into_iter()
        .map(|ip| format!("https://{}", SocketAddr::new(ip, addr.port())))
        .collect();
    tracing::info!(ui_lan = %addr, "web UI offered to paired devices on the LAN");
    Ok(UiLan {
        listener,
        addr,
        tls,
        lan: hearthnet_ui::Lan {
            port: addr.port(),
            origins,
            certificate_sha256: certificate.fingerprint(),
        },
    })
}

/// 6. Both listeners bound, the TLS identity made from the device key, the
///    client for peers and the bus.
async fn network(
    b: &Basics,
    log: &EventLog,
    ui_listener: Option<Listener>,
) -> Result<Network, NodeError> {
    let config = &b.loaded.config;
    let transport = &config.transport;
    let api = crate::bind(SocketAddr::new(transport.api_host, transport.api_port)).await?;
    let peer = crate::bind(SocketAddr::new(transport.peer_host, transport.peer_port)).await?;
    let ui = match (b.ui, ui_listener) {
        (true, Some(ui)) => Some(ui),
        (true, None) => Some(crate::bind(SocketAddr::new(config.ui.host, config.ui.port)).await?),
        (false, _) => None,
    };
    let ui = match ui {
        Some(ui) => {
            let addr = crate::local_addr(&ui)?;
            Some((ui, addr))
        }
        None => None,
    };
    let ui_lan = match b.ui && config.ui.lan_enabled {
        true => Some(ui_lan(b).await?),
        false => None,
    };
    let tls = Arc::new(TlsIdentity::new(&b.key)?);
    let membership: Membership = {
        let log = log.clone();
        Arc::new(move |id| log.view().level_of(id) >= hearthnet_base::TrustLevel::Member)
    };
    let peer_tls = if config.transport.allow_plain_http {
        tracing::warn!(
            "peer API over plain HTTP (transport.allow_plain_http): only for closed test networks"
        );
        None
    } else {
        // Any device may complete the handshake (an invitee must reach the
        // redemption endpoint); everything else checks membership per
        // request, so a stranger is served nothing.
        Some(Arc::new(hearthnet_transport::tls::server_config(
            &tls,
            Arc::new(|_| true),
        )?))
    };
    let client = Arc::new(PeerClient::new(
        b.key.clone(),
        b.community.community_id,
        tls,
        membership,
        config.transport.allow_plain_http,
    ));
    let bus = Arc::new(Bus::new(
        b.key.node_id(),
        BusSettings {
            prefer_local: config.bus.prefer_local,
            local_load_threshold: config.bus.local_load_threshold,
            default_timeout: config.bus.default_timeout,
        },
        b.metrics.clone(),
    ));
    Ok(Network {
        api_addr: crate::local_addr(&api)?,
        peer_addr: crate::local_addr(&peer)?,
        api,
        peer,
        peer_tls,
        ui,
        ui_lan,
        client,
        bus,
    })
}

/// Register one service; a failure names it.
fn register(bus: &Bus, service: Arc<dyn Service>) -> Result<(), NodeError> {
    Ok(bus.register(service)?)
}

/// 8. The services, each optional by config, registered on the bus. Their
///    background tasks join the node's. Returns the file service, whose
///    chunks the transport serves.
fn register_services(
    b: &Basics,
    net: &Network,
    log: &EventLog,
    blobs: Option<&Arc<hearthnet_blobs::BlobStore>>,
    peers: &Arc<PeerRegistry>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> Result<Option<Arc<hearthnet_files::FileService>>, NodeError> {
    let config = &b.loaded.config;
    let (key, bus) = (&b.key, &net.bus);
    if config.observability.diagnostics {
        register(
            bus,
            Arc::new(hearthnet_diagnostics::Echo {
                node: key.node_id(),
            }),
        )?;
        register(
            bus,
            Arc::new(hearthnet_diagnostics::EventAppend {
                log: log.clone(),
                key: key.clone(),
            }),
        )?;
    }
    register(
        bus,
        Arc::new(hearthnet_community::MembershipChanges {
            log: log.clone(),
            key: key.clone(),
        }),
    )?;
    register(
        bus,
        Arc::new(hearthnet_community::Invites {
            log: log.clone(),
            key: key.clone(),
            endpoints: view::peer_endpoints(net.peer_addr, config.transport.allow_plain_http),
        }),
    )?;
    if config.market.enabled {
        let ttl = hearthnet_market::Ttl {
            default_seconds: config.market.default_ttl_seconds,
            max_seconds: config.market.max_ttl_seconds,
        };
        let market = Arc::new(hearthnet_market::MarketService::new(
            &b.state_dir,
            log.clone(),
            key.clone(),
            Arc::downgrade(bus),
            ttl,
        )?);
        tasks.spawn(market.run(stop.clone()));
        register(bus, market)?;
    }
    #[cfg(feature = "embed")]
    if let Some(embedding) = embedding_service(config) {
        register(bus, embedding)?;
    }
    #[cfg(feature = "llm")]
    for model in llm_services(config, &b.metrics) {
        register(bus, model)?;
    }
    if config.chat.enabled {
        let courier = Arc::new(courier::PeerCourier {
            client: net.client.clone(),
            peers: peers.clone(),
            community: b.community.community_id,
        });
        let chat = hearthnet_chat::ChatService::new(
            log.clone(),
            key.clone(),
            courier,
            config.chat.store_and_forward,
        );
        let chat = Arc::new(chat);
        tasks.spawn(chat.follow(stop.clone()));
        register(bus, chat)?;
    }
    let Some(store) = blobs else {
        return Ok(None);
    };
    let holders = Arc::new(hearthnet_files::Holders::default());
    tasks.spawn(holders.follow(log.clone(), stop.clone()));
    let chunk_source = Arc::new(chunks::PeerChunks {
        client: net.client.clone(),
        peers: peers.clone(),
        metrics: b.metrics.clone(),
    });
    let files = Arc::new(hearthnet_files::FileService::new(
        store.clone(),
        holders,
        log.clone(),
        key.clone(),
        Arc::downgrade(bus),
        Some(chunk_source),
    ));
    tasks.spawn(files.reconcile_holdings(stop.clone()));
    register(bus, files.clone())?;
    if config.rag.enabled {
        register(
            bus,
            Arc::new(hearthnet_rag::RagService::new(
                b.paths.corpora_dir.clone(),
                store.clone(),
                log.clone(),
                key.clone(),
                Arc::downgrade(bus),
            )),
        )?;
    }
    Ok(Some(files))
}

/// The configured embedding model, unless it cannot serve: then the node
/// runs without `embed.text` and says why (as `doctor` does).
#[cfg(feature = "embed")]
fn embedding_service(config: &hearthnet_config::Config) -> Option<Arc<dyn Service>> {
    let embedding = &config.embedding;
    let dir = embedding.model_dir.as_ref().filter(|_| embedding.enabled)?;
    match hearthnet_embed::EmbedService::new(&embedding.model, dir) {
        Ok(service) => Some(Arc::new(service)),
        Err(e) => {
            tracing::warn!(error = %e, "embed.text is not offered: the embedding model cannot serve (hearthnet doctor --check embedding_model)");
            None
        }
    }
}

/// The configured models (`llm.backends`, in-process GGUF files and
/// OpenAI-compatible servers), each offered as `llm.chat` and
/// `llm.complete`, except those that cannot serve: the node runs without
/// them and says why.
#[cfg(feature = "llm")]
fn llm_services(
    config: &hearthnet_config::Config,
    metrics: &Arc<Metrics>,
) -> Vec<Arc<dyn Service>> {
    config
        .llm
        .backends
        .iter()
        .filter_map(|b| match hearthnet_llm::offer(b, metrics.clone()) {
            Ok(service) => Some(service),
            Err(e) => {
                tracing::warn!(backend = %b.name, error = %e, "this model is not offered (hearthnet doctor --check llm_backend_reachable)");
                None
            }
        })
        .collect()
}

/// 10. The endpoints on both listeners: the local API in plain HTTP, with
///     the OpenAI-compatible gateway; the peer port over mutual TLS (plain
///     only when configured), without it.
/// 11. The web UI on its own loopback listener, served by the same
///     accept loop as the local API; returned, as it hands out login links.
#[allow(clippy::too_many_arguments)] // the phases' parts, each once
fn serve(
    b: &Basics,
    net: Network,
    view: Arc<view::NodeState>,
    syncer: &Arc<sync::Syncer>,
    files: Option<Arc<hearthnet_files::FileService>>,
    emergency: Option<watch::Receiver<hearthnet_emergency::Status>>,
    log_changes: watch::Receiver<i64>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> Option<hearthnet_ui::Ui> {
    let transport = &b.loaded.config.transport;
    // Judged when a TLS handshake completes: a device that is not (or no
    // longer) a member gets only the non-members' few connections.
    let is_member: hearthnet_transport::tls::Membership = {
        use hearthnet_transport::NodeView;
        let view = view.clone();
        Arc::new(move |id| {
            view.level_of(id) != hearthnet_base::TrustLevel::Unknown && !view.is_revoked(id)
        })
    };
    let view_for_ui: Arc<dyn hearthnet_transport::NodeView> = view.clone();
    let mut state = ApiState::new(
        net.bus.clone(),
        view,
        b.metrics.clone(),
        b.key.clone(),
        b.community.community_id,
        usize::try_from(transport.max_body_bytes).unwrap_or(usize::MAX),
        transport.request_skew,
    )
    .with_sync(Arc::new(sync::SyncHandle(syncer.clone())));
    if let Some(files) = files {
        state = state.with_blobs(Arc::new(chunks::ServedChunks {
            files,
            metrics: b.metrics.clone(),
        }));
    }
    // The OpenAI-compatible gateway's key beside the device key; made by
    // `hearthnet api-key`, read when a client presents one.
    let api_key = ApiKeyFile::in_dir(&b.paths.keys_dir);
    state = state.with_api_key(Arc::new(ApiKeyCheck::new(api_key.clone())));
    let ui = net.ui.map(|(listener, addr)| {
        let ui = hearthnet_ui::Ui::new(hearthnet_ui::Parts {
            bus: net.bus.clone(),
            view: view_for_ui,
            emergency,
            log: Some(log_changes),
            addr,
            stop: stop.clone(),
            lan: net.ui_lan.as_ref().map(|l| l.lan.clone()),
            api_key: Some(api_key.clone()),
            access: b.ui_access.clone(),
        });
        tasks.spawn(hearthnet_transport::serve(
            listener,
            ui.router(),
            stop.clone(),
            hearthnet_transport::Serving::local(),
        ));
        tracing::info!(ui = %addr, "web UI served");
        if let (Some(lan), Some(router)) = (net.ui_lan, ui.lan_router()) {
            // TLS for browsers (no client certificate). A household has
            // few devices: one address may hold what one browser opens
            // (six) and its live streams, and the whole LAN the non-
            // members' cap of the peer port.
            let serving = hearthnet_transport::Serving {
                tls: Some(lan.tls),
                local: false,
                per_address: 16,
                max_connections: hearthnet_transport::NON_MEMBER_CONNECTIONS,
                ..hearthnet_transport::Serving::local()
            };
            tasks.spawn(hearthnet_transport::serve(
                lan.listener,
                router,
                stop.clone(),
                serving,
            ));
        }
        ui
    });
    if let Some(ui) = &ui {
        state = state.with_ui(Arc::new(ui.clone()));
    }
    let state = Arc::new(state);
    tasks.spawn(hearthnet_transport::serve(
        net.api,
        hearthnet_transport::local_router(state.clone()),
        stop.clone(),
        hearthnet_transport::Serving::local(),
    ));
    tasks.spawn(hearthnet_transport::serve(
        net.peer,
        hearthnet_transport::router(state),
        stop.clone(),
        hearthnet_transport::Serving::peer(net.peer_tls, is_member),
    ));
    ui
}

/// 7 and 12. M02 discovery: it announces the bound peer port and the
/// names of what the bus offers at the moment of each announcement.
fn start_discovery(
    b: &Basics,
    net: &Network,
    log: &EventLog,
    registry: Arc<PeerRegistry>,
    emergency: watch::Receiver<bool>,
    stop: CancellationToken,
) -> Discovery {
    let config = &b.loaded.config;
    let port = net.peer_addr.port();
    let settings = hearthnet_discovery::Settings {
        node: b.key.node_id(),
        community: b.community.community_id,
        display_name: view::display_name(config),
        mdns_enabled: config.discovery.mdns_enabled,
        mdns_port: hearthnet_base::constants::MDNS_PORT,
        udp_enabled: config.discovery.udp_enabled,
        udp_group: config.discovery.udp_multicast_group,
        udp_port: hearthnet_base::constants::DISCOVERY_UDP_PORT,
        interfaces: config.discovery.interfaces.clone(),
        static_peers: config.discovery.static_peers.clone(),
    };
    let announcement: hearthnet_discovery::AnnouncementSource = {
        let bus = net.bus.clone();
        let (node, community) = (b.key.node_id().short(), b.community.community_id.short());
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
        client: net.client.clone(),
        log: log.clone(),
    });
    Discovery::start(settings, registry, contact, announcement, emergency, stop)
}

/// 14. Event sync with every verified and static peer, periodically and
///     at once with a peer that just appeared.
fn periodic_sync(
    b: &Basics,
    syncer: &Arc<sync::Syncer>,
    registry: &Arc<PeerRegistry>,
    new_peer: Arc<Notify>,
    emergency: watch::Receiver<bool>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) {
    let config = &b.loaded.config;
    let sync_peers = {
        let registry = registry.clone();
        let statics = config.discovery.static_peers.clone();
        move || {
            let mut addrs: Vec<String> =
                registry.all().iter().map(|p| p.addr.to_string()).collect();
            for s in &statics {
                if !addrs.contains(s) {
                    addrs.push(s.clone());
                }
            }
            addrs
        }
    };
    tasks.spawn(syncer.clone().run_periodic(
        sync_peers,
        new_peer,
        sync::Schedule {
            normal: config.events.sync_interval,
            emergency: config.events.emergency_sync_interval,
        },
        emergency,
        stop.clone(),
    ));
}

/// Keep `hearthnet_event_log_head` in step with the log.
async fn follow_log_head(metrics: Arc<Metrics>, log: EventLog, stop: CancellationToken) {
    let mut changes = log.changes();
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = stop.cancelled() => return,
        }
        metrics.event_log_head.set(log.view().head as i64);
    }
}
