//! Self-diagnostics: a list of named checks, each saying what it saw and,
//! when it failed, how to fix it. [`COLD_CHECKS`] need no running node;
//! a component that brings something to check adds one entry.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use hearthnet_base::constants::MDNS_PORT;
use hearthnet_base::{ErrorCode, Timestamp};
use hearthnet_config::{BaseDirs, Config, ConfigError, Env, NodePaths};
use hearthnet_identity::{CommunityManifest, KeyStore, hardware};
use hearthnet_wire::local::{
    DiscoveryStatus, DiscoveryTransport, Status, TraceRecord, TransportState,
};
use serde::Serialize;

use crate::sockets::{self, Protocol};

/// Below this much free space the node cannot keep blobs and logs.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024 * 1024;

/// No correct clock reads earlier than the date of Contract v1.0.
const EARLIEST_SANE_UNIX: i64 = 1_780_790_400; // 2026-06-07T00:00:00Z

/// What every check may look at.
pub struct DoctorContext {
    pub config_path: PathBuf,
    pub config_file_exists: bool,
    /// The loaded configuration, or the defaults when it failed to load.
    pub config: Config,
    pub config_error: Option<String>,
    pub paths: NodePaths,
    /// What the running node reported, when one answered: its account of
    /// itself, or why that account was unusable (a field it lacked).
    pub node: Option<Result<NodeSnapshot, String>>,
}

/// A running node's own account of itself, for the running checks.
#[derive(Debug, Clone)]
pub struct NodeSnapshot {
    /// `/local/v1/status`
    pub status: Status,
    /// `/trace/recent`, newest last.
    pub traces: Vec<TraceRecord>,
}

impl DoctorContext {
    /// Load what the checks need. Only a missing home directory is fatal:
    /// a broken config is itself a finding, and checks continue on defaults.
    pub fn load(explicit: Option<&Path>, env: &Env) -> Result<Self, ConfigError> {
        let dirs = BaseDirs::from_env(env)?;
        let (config_path, _) = hearthnet_config::config_path(explicit, env, &dirs);
        let (config, config_error) = match hearthnet_config::load(explicit, env) {
            Ok(loaded) => (loaded.config, None),
            Err(e) => (Config::default(), Some(e.to_string())),
        };
        let paths = NodePaths::resolve(&config, &dirs);
        Ok(Self {
            config_file_exists: config_path.exists(),
            config_path,
            config,
            config_error,
            paths,
            node: None,
        })
    }

    fn keys(&self) -> KeyStore {
        KeyStore::new(&self.paths.keys_dir)
    }

    /// A running check's outcome: `check` of the node's snapshot, or why
    /// there is none to look at.
    fn with_node(&self, check: impl FnOnce(&NodeSnapshot) -> Outcome) -> Outcome {
        match &self.node {
            Some(Ok(node)) => check(node),
            Some(Err(why)) => fail(
                format!("the node's answer is unusable: {why}"),
                "run the same version of hearthnet as the node (`hearthnet version`)",
            ),
            None => fail(
                "no node answered on the local API",
                "start it with `hearthnet run`",
            ),
        }
    }
}

pub enum Outcome {
    Pass(String),
    Fail { detail: String, fix: String },
}

fn fail(detail: impl Into<String>, fix: impl Into<String>) -> Outcome {
    Outcome::Fail {
        detail: detail.into(),
        fix: fix.into(),
    }
}

pub struct Check {
    pub name: &'static str,
    pub run: fn(&DoctorContext) -> Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    pub fn run(&self, ctx: &DoctorContext) -> CheckResult {
        let (ok, detail, fix) = match (self.run)(ctx) {
            Outcome::Pass(detail) => (true, detail, None),
            Outcome::Fail { detail, fix } => (false, detail, Some(fix)),
        };
        CheckResult {
            name: self.name.to_owned(),
            ok,
            detail,
            fix,
        }
    }
}

/// The checks that need no running node, in report order.
pub const COLD_CHECKS: &[Check] = &[
    Check {
        name: "keys_present",
        run: keys_present,
    },
    Check {
        name: "keys_loadable",
        run: keys_loadable,
    },
    Check {
        name: "key_permissions",
        run: key_permissions,
    },
    Check {
        name: "config_valid",
        run: config_valid,
    },
    Check {
        name: "data_dir_writable",
        run: data_dir_writable,
    },
    Check {
        name: "disk_space",
        run: disk_space,
    },
    Check {
        name: "api_port",
        run: api_port,
    },
    Check {
        name: "peer_port",
        run: peer_port,
    },
    Check {
        name: "mdns_socket",
        run: mdns_socket,
    },
    Check {
        name: "clock",
        run: clock,
    },
];

/// The checks that need a running node; the CLI adds them when one answers.
pub const RUNNING_CHECKS: &[Check] = &[
    Check {
        name: "event_log",
        run: event_log,
    },
    Check {
        name: "peers_visible",
        run: peers_visible,
    },
    Check {
        name: "sync_recency",
        run: sync_recency,
    },
    Check {
        name: "recent_error_rate",
        run: recent_error_rate,
    },
    Check {
        name: "mdns",
        run: mdns,
    },
    Check {
        name: "udp_discovery",
        run: udp_discovery,
    },
    Check {
        name: "internet",
        run: internet,
    },
];

/// The emergency detector's mode: offline is a finding (the node serves
/// its community, but what needs the internet is withdrawn).
fn internet(ctx: &DoctorContext) -> Outcome {
    ctx.with_node(|node| {
        let Some(e) = &node.status.emergency else {
            return Outcome::Pass("not watched (emergency.enabled = false)".into());
        };
        let unreachable: Vec<&str> = e
            .probes
            .iter()
            .filter(|p| !p.reachable)
            .map(|p| p.target.as_str())
            .collect();
        let detail = if unreachable.is_empty() {
            format!("{} for {} s", e.mode, e.held_seconds)
        } else {
            format!(
                "{} for {} s; unreachable: {}",
                e.mode,
                e.held_seconds,
                unreachable.join(", ")
            )
        };
        if e.mode == "offline" {
            fail(
                detail,
                "the community keeps working locally; capabilities that need the internet \
                 return with it (check the uplink, or emergency.probe_targets)",
            )
        } else {
            Outcome::Pass(detail)
        }
    })
}

fn event_log(ctx: &DoctorContext) -> Outcome {
    ctx.with_node(|node| {
        let e = &node.status.events;
        Outcome::Pass(format!(
            "head Lamport {}, {} events, {}",
            e.head_lamport,
            e.count,
            human_bytes(e.disk_bytes)
        ))
    })
}

/// Every peer the running node syncs with (as it reports them, plus the
/// configured static peers), with the seconds since its last good round.
fn peer_ages(
    ctx: &DoctorContext,
    node: &NodeSnapshot,
) -> Vec<(String, Option<i64>, Option<String>)> {
    let now = Timestamp::now().unix();
    let reported = &node.status.sync.peers;
    let mut addrs: Vec<String> = reported.keys().cloned().collect();
    for configured in &ctx.config.discovery.static_peers {
        if !addrs.contains(configured) {
            addrs.push(configured.clone());
        }
    }
    addrs
        .into_iter()
        .map(|addr| {
            let state = reported.get(&addr);
            let age = state.and_then(|s| s.last_ok).map(|t| now - t.unix());
            let error = state.and_then(|s| s.last_error.clone());
            (addr, age, error)
        })
        .collect()
}

/// A peer is current within two of the node's sync intervals and a minute.
fn fresh_limit(node: &NodeSnapshot) -> i64 {
    i64::try_from(node.status.sync.interval_seconds).unwrap_or(i64::MAX / 4) * 2 + 60
}

fn peers_visible(ctx: &DoctorContext) -> Outcome {
    ctx.with_node(|node| {
        let ages = peer_ages(ctx, node);
        if ages.is_empty() {
            return Outcome::Pass(
                "no peers to sync with yet (static peers or discovery bring them)".into(),
            );
        }
        let limit = fresh_limit(node);
        let visible = ages
            .iter()
            .filter(|(_, age, _)| age.is_some_and(|a| a <= limit))
            .count();
        if visible > 0 {
            Outcome::Pass(format!(
                "{visible} of {} peers answered recently",
                ages.len()
            ))
        } else {
            fail(
                format!("none of the {} peers answered recently", ages.len()),
                "check the network and that the peers run: `hearthnet sync --peer HOST:PORT` shows the error",
            )
        }
    })
}

fn sync_recency(ctx: &DoctorContext) -> Outcome {
    ctx.with_node(|node| {
        let limit = fresh_limit(node);
        let stale: Vec<String> = peer_ages(ctx, node)
            .into_iter()
            .filter(|(_, age, _)| age.is_none_or(|a| a > limit))
            .map(|(addr, age, error)| {
                let when = age.map_or("never".to_owned(), |a| format!("{a} s ago"));
                format!(
                    "{addr}: last good sync {when}{}",
                    error.map(|e| format!(" ({e})")).unwrap_or_default()
                )
            })
            .collect();
        if stale.is_empty() {
            Outcome::Pass(format!("every peer synced within {limit} s"))
        } else {
            fail(
                stale.join("; "),
                "make the peer reachable, or remove it from discovery.static_peers",
            )
        }
    })
}

fn mdns(ctx: &DoctorContext) -> Outcome {
    discovery_transport(
        ctx,
        |d| &d.mdns,
        "discovery.mdns_enabled",
        "another responder may hold UDP 5353 exclusively, or no LAN interface is up; name one in discovery.interfaces, or rely on UDP discovery",
    )
}

fn udp_discovery(ctx: &DoctorContext) -> Outcome {
    let port = crate::sockets::holders(
        crate::sockets::Protocol::Udp,
        hearthnet_base::constants::DISCOVERY_UDP_PORT,
    );
    let fix = if port.is_empty() {
        "check that UDP 42424 is free and a LAN interface is up (discovery.interfaces)".to_owned()
    } else {
        let names: Vec<String> = port.iter().map(ToString::to_string).collect();
        format!(
            "UDP 42424 is held by {}; stop it (HearthNet shares the port only with programs that set SO_REUSEPORT)",
            names.join(", ")
        )
    };
    discovery_transport(ctx, |d| &d.udp, "discovery.udp_enabled", &fix)
}

/// A discovery transport as the running node reports it.
fn discovery_transport(
    ctx: &DoctorContext,
    pick: fn(&DiscoveryStatus) -> &DiscoveryTransport,
    key: &str,
    fix: &str,
) -> Outcome {
    ctx.with_node(|node| {
        let t = pick(&node.status.discovery);
        match t.state {
            TransportState::Running => {
                Outcome::Pass(format!("announcing on {}", t.interfaces.join(", ")))
            }
            TransportState::Disabled => Outcome::Pass(format!("off ({key} = false)")),
            TransportState::Starting => Outcome::Pass("starting".into()),
            TransportState::Failed => fail(
                t.error.as_deref().unwrap_or("failed to start").to_owned(),
                fix,
            ),
        }
    })
}

fn recent_error_rate(ctx: &DoctorContext) -> Outcome {
    ctx.with_node(|node| {
        let calls = node.traces.len();
        let failed = provider_failures(&node.traces);
        let detail = format!("{failed} of the last {calls} calls failed in the provider");
        if calls == 0 || (failed as f64) < 0.2 * calls as f64 {
            Outcome::Pass(detail)
        } else {
            fail(
                detail,
                "see `hearthnet trace recent` and `hearthnet log --level warn`",
            )
        }
    })
}

/// Traces whose result is a wire code that counts against the provider
/// (`ok` and `cancelled` are not codes, so they never do).
fn provider_failures(traces: &[TraceRecord]) -> usize {
    traces
        .iter()
        .filter_map(|t| t.result.parse::<ErrorCode>().ok())
        .filter(|code| code.is_provider_failure())
        .count()
}

fn keys_present(ctx: &DoctorContext) -> Outcome {
    let path = ctx.keys().secret_path();
    if path.exists() {
        Outcome::Pass(path.display().to_string())
    } else {
        fail(
            format!("no key at {}", path.display()),
            "run `hearthnet init`",
        )
    }
}

fn keys_loadable(ctx: &DoctorContext) -> Outcome {
    let keys = ctx.keys();
    if !keys.exists() {
        return fail("no key to load", "run `hearthnet init`");
    }
    match keys.load_ignoring_mode() {
        Ok(key) => Outcome::Pass(format!("Ed25519, 32 bytes, node {}", key.node_id().short())),
        Err(e) => fail(
            e.to_string(),
            "restore the key from a backup; without it this device must re-join as a new identity",
        ),
    }
}

fn key_permissions(ctx: &DoctorContext) -> Outcome {
    let keys = ctx.keys();
    let path = keys.secret_path();
    match keys.secret_mode() {
        Ok(mode) if mode & 0o077 == 0 => Outcome::Pass(format!("{mode:04o}")),
        Ok(mode) => fail(
            format!(
                "{} has mode {mode:04o}: other users can read it",
                path.display()
            ),
            format!("chmod 600 {}", path.display()),
        ),
        Err(e) => fail(e.to_string(), "run `hearthnet init`"),
    }
}

fn config_valid(ctx: &DoctorContext) -> Outcome {
    match (&ctx.config_error, ctx.config_file_exists) {
        (Some(e), _) => fail(
            e.clone(),
            format!(
                "edit {} at the key named above, or move it aside to run on defaults",
                ctx.config_path.display()
            ),
        ),
        (None, true) => Outcome::Pass(ctx.config_path.display().to_string()),
        (None, false) => Outcome::Pass(format!(
            "no file at {}: built-in defaults",
            ctx.config_path.display()
        )),
    }
}

fn data_dir_writable(ctx: &DoctorContext) -> Outcome {
    let dir = &ctx.paths.data_dir;
    let Some(existing) = dir.ancestors().find(|p| p.exists()) else {
        return fail(
            format!("no part of {} exists", dir.display()),
            "check HOME and XDG_DATA_HOME",
        );
    };
    // A real write of a few KiB, synced, catches read-only mounts and full
    // disks alike; root ignores permission bits, so looking at them is not enough.
    let probe = existing.join(format!(".hearthnet-doctor-{}", std::process::id()));
    let result = hearthnet_base::fsio::atomic_write(&probe, &[0u8; 4096], 0o600);
    let _ = std::fs::remove_file(&probe);
    match result {
        Ok(()) if existing == dir => Outcome::Pass(dir.display().to_string()),
        Ok(()) => Outcome::Pass(format!(
            "{} (not created yet; {} is writable)",
            dir.display(),
            existing.display()
        )),
        Err(e) => fail(
            format!("cannot write in {}: {e}", existing.display()),
            format!(
                "make {} writable (check `mount` for a read-only filesystem and `df` for a full one), or point XDG_DATA_HOME elsewhere",
                existing.display()
            ),
        ),
    }
}

fn disk_space(ctx: &DoctorContext) -> Outcome {
    let dir = &ctx.paths.data_dir;
    match hardware::free_space(dir) {
        Some(free) if free >= MIN_FREE_BYTES => {
            Outcome::Pass(format!("{} free", human_bytes(free)))
        }
        Some(free) => fail(
            format!("only {} free under {}", human_bytes(free), dir.display()),
            "free at least 1 GiB on that filesystem, or move the data directory (XDG_DATA_HOME)",
        ),
        None => fail(
            format!("cannot measure free space under {}", dir.display()),
            "check that the path exists",
        ),
    }
}

fn api_port(ctx: &DoctorContext) -> Outcome {
    let t = &ctx.config.transport;
    tcp_port(t.api_host, t.api_port, "transport.api_port")
}

fn peer_port(ctx: &DoctorContext) -> Outcome {
    let t = &ctx.config.transport;
    tcp_port(t.peer_host, t.peer_port, "transport.peer_port")
}

fn tcp_port(ip: IpAddr, port: u16, key: &str) -> Outcome {
    if port == 0 {
        return Outcome::Pass("0: a free port is chosen at start".into());
    }
    match TcpListener::bind(SocketAddr::new(ip, port)) {
        Ok(_) => Outcome::Pass(format!("{port} free")),
        Err(e) => {
            let holders = sockets::holders(Protocol::Tcp, port);
            if let Some(h) = holders.iter().find(|h| h.command == "hearthnet") {
                return Outcome::Pass(format!("{port} held by a HearthNet node, {h}"));
            }
            let who = if holders.is_empty() {
                "an unknown process".to_owned()
            } else {
                holders
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            fail(
                format!("{port} unavailable ({e}): held by {who}"),
                format!("stop that process, or set {key} to a free port in config.toml"),
            )
        }
    }
}

fn mdns_socket(ctx: &DoctorContext) -> Outcome {
    if !ctx.config.discovery.mdns_enabled {
        return Outcome::Pass("mDNS disabled in config (discovery.mdns_enabled)".into());
    }
    let others: Vec<String> = sockets::holders(Protocol::Udp, MDNS_PORT)
        .into_iter()
        .filter(|h| h.pid != std::process::id())
        .map(|h| h.to_string())
        .collect();
    match bind_shared_udp(MDNS_PORT) {
        Ok(()) if others.is_empty() => Outcome::Pass(format!("{MDNS_PORT} free")),
        Ok(()) => Outcome::Pass(format!("{MDNS_PORT} shared with {}", others.join(", "))),
        Err(e) => {
            let who = if others.is_empty() {
                "an unknown process".into()
            } else {
                others.join(", ")
            };
            let fix = if others.iter().any(|o| o.starts_with("avahi-daemon")) {
                "sudo systemctl stop avahi-daemon, or set discovery.mdns_enabled = false".to_owned()
            } else {
                "stop that process (it holds 5353 exclusively), or set discovery.mdns_enabled = false".to_owned()
            };
            fail(format!("port {MDNS_PORT} in use by {who}: {e}"), fix)
        }
    }
}

/// Bind UDP `port` the way mDNS responders do, sharing it with others.
fn bind_shared_udp(port: u16) -> std::io::Result<()> {
    use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(SockProtocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())
}

fn clock(ctx: &DoctorContext) -> Outcome {
    let now = Timestamp::now();
    if now.unix() < EARLIEST_SANE_UNIX {
        return fail(
            format!("the clock reads {now}, before HearthNet existed"),
            "set the time (`sudo timedatectl set-time` or enable NTP); boards without a real-time clock need one of these after boot",
        );
    }
    let founded = ctx
        .paths
        .state_dir
        .as_deref()
        .and_then(|dir| CommunityManifest::load(dir).ok())
        .map(|m| m.created_at);
    if let Some(created) = founded
        && now.unix() + 60 < created.unix()
    {
        return fail(
            format!("the clock reads {now}, before this community was founded ({created})"),
            "set the time (`sudo timedatectl set-time` or enable NTP)",
        );
    }
    Outcome::Pass(format!("{now} UTC"))
}

/// `1.5 GiB`: sizes for people.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no check named `{name}`; the checks are: {known}")]
pub struct UnknownCheck {
    pub name: String,
    pub known: String,
}

/// Run every check of `lists`, or only the one named `only`.
pub fn run(
    lists: &[&[Check]],
    ctx: &DoctorContext,
    only: Option<&str>,
) -> Result<Vec<CheckResult>, UnknownCheck> {
    let all = lists.iter().flat_map(|l| l.iter());
    let selected: Vec<&Check> = match only {
        None => all.collect(),
        Some(name) => {
            let found: Vec<&Check> = all.filter(|c| c.name == name).collect();
            if found.is_empty() {
                return Err(UnknownCheck {
                    name: name.to_owned(),
                    known: lists
                        .iter()
                        .flat_map(|l| l.iter())
                        .map(|c| c.name)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            found
        }
    };
    Ok(selected.into_iter().map(|c| c.run(ctx)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn context(home: &Path) -> DoctorContext {
        let env = Env::from_pairs([("HOME", home.to_str().unwrap())]);
        DoctorContext::load(None, &env).unwrap()
    }

    fn result(ctx: &DoctorContext, name: &str) -> CheckResult {
        run(&[COLD_CHECKS], ctx, Some(name)).unwrap().remove(0)
    }

    #[test]
    fn missing_then_present_then_exposed_key() {
        let home = tempfile::tempdir().unwrap();
        let ctx = context(home.path());
        let r = result(&ctx, "keys_present");
        assert!(!r.ok);
        assert_eq!(r.fix.as_deref(), Some("run `hearthnet init`"));

        let keys = KeyStore::new(&ctx.paths.keys_dir);
        keys.load_or_create().unwrap();
        for name in ["keys_present", "keys_loadable", "key_permissions"] {
            assert!(result(&ctx, name).ok, "{name}");
        }
        std::fs::set_permissions(keys.secret_path(), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        let r = result(&ctx, "key_permissions");
        assert!(!r.ok);
        assert!(r.fix.unwrap().starts_with("chmod 600 "));
        assert!(
            result(&ctx, "keys_loadable").ok,
            "a readable key still parses"
        );
    }

    #[test]
    fn broken_config_is_a_finding_not_a_crash() {
        let home = tempfile::tempdir().unwrap();
        let cfg = home.path().join(".config/hearthnet/config.toml");
        std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
        std::fs::write(&cfg, "[ui]\nport = \"x\"\n").unwrap();
        let ctx = context(home.path());
        let r = result(&ctx, "config_valid");
        assert!(!r.ok);
        assert!(r.detail.contains("ui.port"), "{}", r.detail);
        assert!(result(&ctx, "data_dir_writable").ok);
    }

    #[test]
    fn a_taken_port_names_its_holder() {
        let home = tempfile::tempdir().unwrap();
        let mut ctx = context(home.path());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        ctx.config.transport.api_port = listener.local_addr().unwrap().port();
        let r = result(&ctx, "api_port");
        assert!(!r.ok);
        assert!(
            r.detail.contains(&format!("pid {}", std::process::id())),
            "{}",
            r.detail
        );
        assert!(r.fix.unwrap().contains("transport.api_port"));
    }

    #[test]
    fn unknown_check_lists_the_known_ones() {
        let home = tempfile::tempdir().unwrap();
        let err = run(
            &[COLD_CHECKS, RUNNING_CHECKS],
            &context(home.path()),
            Some("nope"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("keys_present, keys_loadable"));
    }

    fn running(ctx: &DoctorContext, name: &str) -> CheckResult {
        run(&[RUNNING_CHECKS], ctx, Some(name)).unwrap().remove(0)
    }

    #[test]
    fn running_checks_read_the_nodes_status() {
        let home = tempfile::tempdir().unwrap();
        let mut ctx = context(home.path());
        let status = hearthnet_wire::local::samples::status(([127, 0, 0, 1], 7080).into());
        ctx.node = Some(Ok(NodeSnapshot {
            status,
            traces: Vec::new(),
        }));
        let r = running(&ctx, "event_log");
        assert_eq!(r.detail, "head Lamport 41, 42 events, 1.0 MiB");
        let r = running(&ctx, "mdns");
        assert!(!r.ok);
        assert_eq!(r.detail, "port 5353 taken");
        let r = running(&ctx, "udp_discovery");
        assert!(r.ok);
        assert_eq!(r.detail, "announcing on eth0");
        let r = running(&ctx, "internet");
        assert!(r.ok);
        assert_eq!(r.detail, "degraded for 42 s; unreachable: quad9.net");
        if let Some(Ok(node)) = ctx.node.as_mut()
            && let Some(e) = node.status.emergency.as_mut()
        {
            e.mode = "offline".into();
        }
        let r = running(&ctx, "internet");
        assert!(!r.ok);
        assert!(r.fix.is_some_and(|f| f.contains("emergency.probe_targets")));
    }

    #[test]
    fn an_unusable_answer_is_a_finding_naming_the_field() {
        let home = tempfile::tempdir().unwrap();
        let mut ctx = context(home.path());
        ctx.node = Some(Err(
            "the node's status: field `events.count`: missing field".into(),
        ));
        let r = running(&ctx, "event_log");
        assert!(!r.ok);
        assert!(r.detail.contains("field `events.count`"), "{}", r.detail);
        ctx.node = None;
        assert_eq!(
            running(&ctx, "peers_visible").fix.as_deref(),
            Some("start it with `hearthnet run`")
        );
    }

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
    }

    #[test]
    fn only_provider_failures_count_toward_the_error_rate() {
        let traces: Vec<TraceRecord> = [
            "ok",
            "internal_error",
            "timeout",
            "not_implemented",
            "cancelled",
            "bad_request",
            "partition",
            "rate_limited",
            "not a code",
        ]
        .iter()
        .map(|r| TraceRecord {
            ts: "2026-01-01T00:00:00Z".into(),
            trace_id: "t".into(),
            capability: "experimental.echo".into(),
            version: "1.0".into(),
            from_node: "a".into(),
            to_node: "b".into(),
            is_local: true,
            result: (*r).into(),
            ms: 1.0,
            stream: false,
            frames: 0,
        })
        .collect();
        assert_eq!(provider_failures(&traces), 3);
    }
}
