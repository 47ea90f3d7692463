//! The schema of `config.toml`: one struct per section, every field with a
//! default that runs out of the box, and the validation serde cannot do.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hearthnet_base::{CommunityId, Profile};
use serde::{Deserialize, Serialize};

use crate::SECTIONS;
use crate::env::Env;
use crate::error::{ConfigError, Origin};
use crate::llm::{ApiKey, BASE_URL_EXPECTED, BaseUrl, is_env_var_name};
use crate::locate::line_of;
use crate::paths::BaseDirs;
use crate::values;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub identity: IdentityConfig,
    pub community: CommunityConfig,
    pub transport: TransportConfig,
    pub bus: BusConfig,
    pub discovery: DiscoveryConfig,
    pub events: EventsConfig,
    pub file: FileConfig,
    pub embedding: EmbeddingConfig,
    pub llm: LlmConfig,
    pub rag: RagConfig,
    pub market: MarketConfig,
    pub chat: ChatConfig,
    pub emergency: EmergencyConfig,
    pub ui: UiConfig,
    pub observability: ObservabilityConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Where the device key lives; default `<DATA>/keys`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_dir: Option<PathBuf>,
    /// Shown to neighbours; empty means the host name.
    pub display_name: String,
    /// Declared in the node manifest; absent means detected from hardware.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommunityConfig {
    /// Full CommunityID; set by `hearthnet init`. Absent: not yet onboarded.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "values::community_id"
    )]
    pub community_id: Option<CommunityId>,
    /// Default `<DATA>/communities/<community_id>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// Local API for the CLI and UI: plain HTTP, loopback only.
    #[serde(deserialize_with = "values::loopback_ip")]
    pub api_host: IpAddr,
    /// 0 picks a free port (tests); the node records the one it got.
    pub api_port: u16,
    /// Peer API: HTTPS with key-bound certificates, on the LAN.
    #[serde(deserialize_with = "values::ip")]
    pub peer_host: IpAddr,
    pub peer_port: u16,
    /// Serve peers over plain HTTP too. Only for closed test networks.
    pub allow_plain_http: bool,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// How far a signed request's timestamp may be from our clock.
    #[serde(rename = "request_skew_seconds", with = "values::seconds")]
    pub request_skew: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            api_host: Ipv4Addr::LOCALHOST.into(),
            api_port: hearthnet_base::constants::DEFAULT_API_PORT,
            peer_host: Ipv4Addr::UNSPECIFIED.into(),
            peer_port: hearthnet_base::constants::DEFAULT_PEER_PORT,
            allow_plain_http: false,
            max_body_bytes: 16 * 1024 * 1024,
            request_skew: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    pub prefer_local: bool,
    /// Above this share of `max_concurrent` in use, route to a peer instead.
    pub local_load_threshold: f64,
    #[serde(rename = "default_timeout_seconds", with = "values::seconds")]
    pub default_timeout: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            prefer_local: true,
            local_load_threshold: 0.8,
            default_timeout: Duration::from_secs(
                hearthnet_base::constants::RPC_DEFAULT_TIMEOUT_SECONDS,
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    pub mdns_enabled: bool,
    pub udp_enabled: bool,
    #[serde(deserialize_with = "values::multicast_v4")]
    pub udp_multicast_group: Ipv4Addr,
    /// Interfaces to announce on; empty means every suitable one.
    pub interfaces: Vec<String>,
    /// Peers reached directly, as `host:port` (other sites, over a VPN).
    pub static_peers: Vec<String>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            mdns_enabled: true,
            udp_enabled: true,
            udp_multicast_group: Ipv4Addr::new(239, 255, 42, 42),
            interfaces: Vec::new(),
            static_peers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    #[serde(rename = "sync_interval_seconds", with = "values::seconds")]
    pub sync_interval: Duration,
    #[serde(rename = "emergency_sync_interval_seconds", with = "values::seconds")]
    pub emergency_sync_interval: Duration,
    /// Largest accepted event, canonical bytes.
    pub max_event_bytes: u64,
    /// How far in the future an event's wall clock may be.
    pub max_future_skew_seconds: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            sync_interval: Duration::from_secs(300),
            emergency_sync_interval: Duration::from_secs(30),
            max_event_bytes: 64 * 1024,
            max_future_skew_seconds: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub enabled: bool,
    /// Default `<DATA>/blobs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blobs_dir: Option<PathBuf>,
    /// Share of the disk in use above which unpinned blobs are collected.
    pub gc_threshold: f64,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            blobs_dir: None,
            gc_threshold: hearthnet_base::constants::BLOB_GC_DISK_THRESHOLD,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    pub enabled: bool,
    pub model: String,
    /// Local directory with `model.safetensors`, `config.json`,
    /// `tokenizer.json`. Nothing is ever downloaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<PathBuf>,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            model: "bge-small-en-v1.5".into(),
            model_dir: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    pub backends: Vec<LlmBackendConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmBackendKind {
    /// An OpenAI-compatible server: llama.cpp server, Ollama, vLLM,
    /// LM Studio.
    OpenaiCompatible,
    /// A small GGUF model run in-process on the CPU.
    Gguf,
}

impl LlmBackendKind {
    /// As the file writes it, and as descriptors and `/metrics` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenaiCompatible => "openai_compatible",
            Self::Gguf => "gguf",
        }
    }
}

/// Longest a call to an OpenAI-compatible server may take, and the
/// default: the in-process backend's bound too.
pub const LLM_MAX_CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Default bound on reaching the server (TCP and TLS).
pub const LLM_DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on the server's silence: before its first byte (it may
/// be loading the model or reading a long prompt) and between two reads
/// of its stream (a stalled stream).
pub const LLM_DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmBackendConfig {
    pub name: String,
    pub kind: LlmBackendKind,
    /// The model name offered on the bus (callers' `params.model`).
    pub model: String,
    /// `gguf`: the model file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_path: Option<PathBuf>,
    /// `openai_compatible`: the server's API root, version prefix included
    /// (`http://127.0.0.1:11434/v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<BaseUrl>,
    /// `openai_compatible`: the server's name for the model, when it is
    /// not `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_model: Option<String>,
    /// `openai_compatible`: the name of the environment variable holding
    /// the server's API key; the key itself never goes into the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The value of `api_key_env` in the environment the configuration
    /// was loaded in; `None` when unset (the backend then cannot serve,
    /// and the node and `doctor` say why).
    #[serde(skip)]
    pub api_key: Option<ApiKey>,
    /// `openai_compatible`: whether reaching the server needs the internet
    /// (such a backend is withdrawn in emergency mode). Absent, it is
    /// false for a loopback, private or link-local address and
    /// `localhost`; for any other host it must be written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_internet: Option<bool>,
    /// `openai_compatible`: bound on reaching the server; default 5 s.
    #[serde(
        default,
        rename = "connect_timeout_seconds",
        with = "values::optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<Duration>,
    /// `openai_compatible`: bound on the server's silence, before its
    /// first byte and between reads; default 60 s.
    #[serde(
        default,
        rename = "first_byte_timeout_seconds",
        with = "values::optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub first_byte_timeout: Option<Duration>,
    /// `openai_compatible`: bound on a whole call; default and most 300 s.
    #[serde(
        default,
        rename = "timeout_seconds",
        with = "values::optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    #[serde(default = "default_llm_concurrency")]
    pub max_concurrent: u32,
}

impl LlmBackendConfig {
    /// An in-process GGUF model `model` at `path`, named `name`.
    pub fn gguf(name: &str, model: &str, path: &Path, max_concurrent: u32) -> Self {
        Self {
            name: name.to_owned(),
            kind: LlmBackendKind::Gguf,
            model: model.to_owned(),
            model_path: Some(path.to_owned()),
            base_url: None,
            remote_model: None,
            api_key_env: None,
            api_key: None,
            requires_internet: None,
            connect_timeout: None,
            first_byte_timeout: None,
            timeout: None,
            max_concurrent,
        }
    }

    /// The model name to send to the server.
    pub fn remote_model(&self) -> &str {
        self.remote_model.as_deref().unwrap_or(&self.model)
    }

    /// Whether this backend needs the internet: as written, else inferred
    /// from the host (validation refuses a non-local host without it). An
    /// in-process model never does.
    pub fn requires_internet(&self) -> bool {
        match (self.kind, &self.base_url) {
            (LlmBackendKind::Gguf, _) => false,
            (LlmBackendKind::OpenaiCompatible, url) => self
                .requires_internet
                .unwrap_or_else(|| url.as_ref().is_none_or(|u| !u.is_local())),
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout.unwrap_or(LLM_DEFAULT_CONNECT_TIMEOUT)
    }

    pub fn first_byte_timeout(&self) -> Duration {
        self.first_byte_timeout
            .unwrap_or(LLM_DEFAULT_FIRST_BYTE_TIMEOUT)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(LLM_MAX_CALL_TIMEOUT)
    }

    /// The keys only `openai_compatible` takes that are set, as written.
    fn server_keys_set(&self) -> Vec<&'static str> {
        [
            ("base_url", self.base_url.is_some()),
            ("remote_model", self.remote_model.is_some()),
            ("api_key_env", self.api_key_env.is_some()),
            ("requires_internet", self.requires_internet.is_some()),
            ("connect_timeout_seconds", self.connect_timeout.is_some()),
            (
                "first_byte_timeout_seconds",
                self.first_byte_timeout.is_some(),
            ),
            ("timeout_seconds", self.timeout.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }
}

fn default_llm_concurrency() -> u32 {
    2
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RagConfig {
    pub enabled: bool,
    /// Default `<CACHE>/embeddings`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corpora_dir: Option<PathBuf>,
}

impl Default for RagConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            corpora_dir: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketConfig {
    pub enabled: bool,
    pub default_ttl_seconds: u64,
    pub max_ttl_seconds: u64,
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_ttl_seconds: 7 * 86_400,
            max_ttl_seconds: 30 * 86_400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    pub enabled: bool,
    pub store_and_forward: bool,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            store_and_forward: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmergencyConfig {
    pub enabled: bool,
    /// What is probed to tell whether the internet is reachable: `host`,
    /// `host:port` or an http(s) URL; a TCP connection is the evidence.
    pub probe_targets: Vec<String>,
    /// Between rounds of probes while online.
    #[serde(rename = "probe_interval_seconds", with = "values::seconds")]
    pub probe_interval: Duration,
    /// Between rounds while degraded or offline.
    #[serde(rename = "offline_probe_interval_seconds", with = "values::seconds")]
    pub offline_probe_interval: Duration,
    #[serde(rename = "probe_timeout_seconds", with = "values::seconds")]
    pub probe_timeout: Duration,
    /// How long enough probes must fail before the node counts as offline.
    #[serde(rename = "offline_after_seconds", with = "values::seconds")]
    pub offline_after: Duration,
    /// How long every probe must pass before the node counts as online.
    #[serde(rename = "online_after_seconds", with = "values::seconds")]
    pub online_after: Duration,
}

impl Default for EmergencyConfig {
    fn default() -> Self {
        use hearthnet_base::constants as c;
        Self {
            enabled: true,
            probe_targets: ["1.1.1.1", "8.8.8.8", "cloudflare.com", "quad9.net"]
                .map(String::from)
                .to_vec(),
            probe_interval: Duration::from_secs(c::EMERGENCY_PROBE_INTERVAL_ONLINE_SECONDS),
            offline_probe_interval: Duration::from_secs(
                c::EMERGENCY_PROBE_INTERVAL_OFFLINE_SECONDS,
            ),
            probe_timeout: Duration::from_secs(c::EMERGENCY_PROBE_TIMEOUT_SECONDS),
            offline_after: Duration::from_secs(c::EMERGENCY_TRANSITION_DEBOUNCE_SECONDS),
            online_after: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "values::ip")]
    pub host: IpAddr,
    pub port: u16,
    /// Open the web UI in the desktop's browser at start (the login link
    /// is spent by it), instead of printing the link.
    pub launch_browser: bool,
    /// Let another device of the household (a phone on the LAN) open the
    /// UI: HTTPS on `lan_host:lan_port` with the node's own certificate,
    /// entered with a pairing code (`hearthnet ui pair`) instead of the
    /// login link. Off unless set.
    pub lan_enabled: bool,
    #[serde(deserialize_with = "values::ip")]
    pub lan_host: IpAddr,
    pub lan_port: u16,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            host: Ipv4Addr::LOCALHOST.into(),
            port: hearthnet_base::constants::DEFAULT_UI_PORT,
            launch_browser: false,
            lan_enabled: false,
            lan_host: Ipv4Addr::UNSPECIFIED.into(),
            lan_port: hearthnet_base::constants::DEFAULT_UI_LAN_PORT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    pub log_level: LogLevel,
    /// Default `<LOG>` (`$XDG_STATE_HOME/hearthnet/log`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<PathBuf>,
    /// Offer the diagnostic capabilities `experimental.echo` and
    /// `experimental.event.append`.
    pub diagnostics: bool,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            log_level: LogLevel::Info,
            log_dir: None,
            diagnostics: true,
        }
    }
}

impl Config {
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        let body = toml::to_string_pretty(self).map_err(|e| ConfigError::Encode(e.to_string()))?;
        Ok(format!(
            "# HearthNet node configuration. Every key is optional; see the README\n\
             # for what each one does. HEARTHNET_<SECTION>_<KEY> overrides a key.\n\n{body}"
        ))
    }

    /// The community this node belongs to, if it has joined one.
    pub fn community_id(&self) -> Option<CommunityId> {
        self.community.community_id
    }
}

/// Where the node keeps everything, with config overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePaths {
    pub data_dir: PathBuf,
    pub keys_dir: PathBuf,
    pub communities_dir: PathBuf,
    /// `<DATA>/communities/<id>` once a community is set.
    pub state_dir: Option<PathBuf>,
    pub blobs_dir: PathBuf,
    pub corpora_dir: PathBuf,
    pub log_dir: PathBuf,
    pub runtime_dir: PathBuf,
}

impl NodePaths {
    pub fn resolve(config: &Config, dirs: &BaseDirs) -> Self {
        let communities_dir = dirs.data.join("communities");
        let state_dir = config.community.state_dir.clone().or_else(|| {
            config
                .community_id()
                .map(|id| communities_dir.join(community_dir_name(&id)))
        });
        Self {
            keys_dir: config
                .identity
                .keys_dir
                .clone()
                .unwrap_or_else(|| dirs.data.join("keys")),
            state_dir,
            communities_dir,
            blobs_dir: config
                .file
                .blobs_dir
                .clone()
                .unwrap_or_else(|| dirs.data.join("blobs")),
            corpora_dir: config
                .rag
                .corpora_dir
                .clone()
                .unwrap_or_else(|| dirs.cache.join("embeddings")),
            log_dir: config
                .observability
                .log_dir
                .clone()
                .unwrap_or_else(|| dirs.log.clone()),
            runtime_dir: dirs.runtime.clone(),
            data_dir: dirs.data.clone(),
        }
    }
}

/// The directory name of a community: its full id, with the `:` that some
/// filesystems refuse replaced by `_`.
pub fn community_dir_name(id: &CommunityId) -> String {
    id.full().replace(':', "_")
}

/// Parse `text` (None: no file), apply environment overrides, deserialize,
/// validate.
pub(crate) fn parse(text: Option<&str>, path: &Path, env: &Env) -> Result<Config, ConfigError> {
    let file_origin = |key: &str| Origin::File {
        path: path.to_path_buf(),
        line: text.and_then(|t| line_of(t, key)),
    };
    let mut table: toml::Table = match text {
        None => toml::Table::new(),
        Some(text) => toml::from_str(text).map_err(|e| ConfigError::Syntax {
            origin: Origin::File {
                path: path.to_path_buf(),
                line: e.span().map(|s| text[..s.start].lines().count().max(1)),
            },
            message: e.message().to_owned(),
        })?,
    };
    let overrides = apply_env_overrides(&mut table, env)?;
    let origin_of = |key: &str| match overrides.get(key) {
        Some(var) => Origin::EnvVar(var.clone()),
        None => file_origin(key),
    };

    if let Some((key, reason)) = removed_key(&table) {
        return Err(ConfigError::Removed {
            origin: origin_of(&key),
            key,
            reason: reason.to_owned(),
        });
    }

    if let Some(key) = secret_in_file(&table) {
        return Err(ConfigError::Invalid {
            origin: origin_of(&key),
            key,
            value: HIDDEN.into(),
            expected: "no API key in the file: put it in an environment variable and name that variable in api_key_env".into(),
        });
    }

    let value = toml::Value::Table(table.clone());
    let mut config: Config = serde_path_to_error::deserialize(value).map_err(|err| {
        let key = err.path().to_string();
        let message = err.inner().message().to_owned();
        if let Some(rest) = message.strip_prefix("unknown field ") {
            let name = rest.split('`').nth(1).unwrap_or(rest).to_owned();
            let full = if key == "." { name } else { key };
            let known = rest.split_once(", expected").map(|(_, k)| k).unwrap_or("");
            return ConfigError::UnknownKey {
                origin: origin_of(&full),
                key: full,
                hint: if known.is_empty() {
                    String::new()
                } else {
                    format!(" (known keys here:{known})")
                },
            };
        }
        ConfigError::Invalid {
            origin: origin_of(&key),
            value: render_value(&table, &key),
            key,
            expected: message,
        }
    })?;

    for backend in &mut config.llm.backends {
        backend.api_key = backend
            .api_key_env
            .as_deref()
            .and_then(|name| env.get(name))
            .map(ApiKey::new);
    }

    if let Some(problem) = validate(&config).into_iter().next() {
        // A name refused as api_key_env may be the key itself.
        let value = if problem.key.ends_with(".api_key_env") {
            HIDDEN.into()
        } else {
            render_value(&table, &problem.key)
        };
        return Err(ConfigError::Invalid {
            origin: origin_of(&problem.key),
            value,
            key: problem.key,
            expected: problem.expected,
        });
    }
    Ok(config)
}

/// Keys that older files may still hold, with why each went. Refusing
/// them (rather than ignoring them) tells the owner that the setting they
/// wrote has no effect.
const REMOVED_KEYS: [(&str, &str, &str); 4] = [
    (
        "identity",
        "auto_generate",
        "`hearthnet init` creates the device key (`hearthnet run` offers to run it on a terminal); a key is never made silently",
    ),
    (
        "transport",
        "tls_cert",
        "the peer certificate is made from the device key at every start",
    ),
    (
        "transport",
        "tls_key",
        "the peer certificate's key is the device key",
    ),
    (
        "observability",
        "metrics_enabled",
        "`/metrics` is always served, and only to signed requests of members",
    ),
];

/// The first removed key present, as `section.key`, with its reason.
fn removed_key(table: &toml::Table) -> Option<(String, &'static str)> {
    REMOVED_KEYS.iter().find_map(|(section, key, reason)| {
        table
            .get(*section)
            .and_then(toml::Value::as_table)
            .is_some_and(|t| t.contains_key(*key))
            .then(|| (format!("{section}.{key}"), *reason))
    })
}

/// Shown instead of a value that may be a secret.
const HIDDEN: &str = "(not shown)";

/// The first `llm.backends[i].api_key` (or `key`) written in the file:
/// refused with where the key belongs instead, and never echoed.
fn secret_in_file(table: &toml::Table) -> Option<String> {
    let backends = table
        .get("llm")
        .and_then(toml::Value::as_table)
        .and_then(|llm| llm.get("backends"))
        .and_then(toml::Value::as_array)?;
    backends.iter().enumerate().find_map(|(i, b)| {
        let b = b.as_table()?;
        ["api_key", "key"]
            .into_iter()
            .find(|k| b.contains_key(*k))
            .map(|k| format!("llm.backends[{i}].{k}"))
    })
}

/// `HEARTHNET_<SECTION>_<KEY>=value`: the value is read as a TOML value
/// (`7081`, `true`, `["a", "b"]`), or as a string when it is not one.
/// Returns which dotted keys came from which variable.
fn apply_env_overrides(
    table: &mut toml::Table,
    env: &Env,
) -> Result<BTreeMap<String, String>, ConfigError> {
    const NOT_OVERRIDES: [&str; 2] = ["HEARTHNET_CONFIG", crate::MODELS_PATH_ENV];
    let mut overrides = BTreeMap::new();
    for (var, raw) in env.iter() {
        let Some(rest) = var.strip_prefix("HEARTHNET_") else {
            continue;
        };
        if NOT_OVERRIDES.contains(&var) {
            continue;
        }
        let rest = rest.to_ascii_lowercase();
        let section = SECTIONS
            .iter()
            .find(|s| rest.starts_with(&format!("{s}_")))
            .ok_or_else(|| ConfigError::UnknownKey {
                origin: Origin::EnvVar(var.to_owned()),
                key: rest.clone(),
                hint: format!(
                    " (overrides are HEARTHNET_<SECTION>_<KEY> with a section of: {})",
                    SECTIONS.join(", ")
                ),
            })?;
        let key = rest[section.len() + 1..].to_owned();
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section_table) = entry else {
            return Err(ConfigError::Invalid {
                origin: Origin::EnvVar(var.to_owned()),
                key: section.to_string(),
                value: entry.to_string(),
                expected: "a table".into(),
            });
        };
        section_table.insert(key.clone(), value);
        overrides.insert(format!("{section}.{key}"), var.to_owned());
    }
    Ok(overrides)
}

fn render_value(table: &toml::Table, dotted: &str) -> String {
    let mut current: Option<&toml::Value> = None;
    for part in dotted.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let next = match current {
            None => table.get(name),
            Some(toml::Value::Table(t)) => t.get(name),
            _ => None,
        };
        current = match (next, index) {
            (Some(toml::Value::Array(a)), Some(i)) => a.get(i),
            (v, _) => v,
        };
    }
    current.map_or_else(|| "(missing)".to_owned(), |v| v.to_string())
}

struct Problem {
    key: String,
    expected: String,
}

fn problem(key: &str, expected: impl Into<String>) -> Problem {
    Problem {
        key: key.to_owned(),
        expected: expected.into(),
    }
}

/// Checks serde's types cannot express, in file order.
fn validate(c: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let ports = [
        ("transport.api_port", c.transport.api_port),
        ("transport.peer_port", c.transport.peer_port),
        ("ui.port", c.ui.port),
        ("ui.lan_port", c.ui.lan_port),
    ];
    for (i, (key, port)) in ports.iter().enumerate() {
        if *port == 0 {
            continue;
        }
        if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
            out.push(problem(key, format!("a port different from {other}")));
        }
        if *port == hearthnet_base::constants::DISCOVERY_UDP_PORT {
            out.push(problem(
                key,
                "a port other than 42424, which UDP discovery uses",
            ));
        }
    }
    if c.transport.max_body_bytes < 1024 {
        out.push(problem("transport.max_body_bytes", "at least 1024 bytes"));
    }
    if !(0.0..=1.0).contains(&c.bus.local_load_threshold) {
        out.push(problem(
            "bus.local_load_threshold",
            "a number between 0 and 1",
        ));
    }
    if c.bus.default_timeout.is_zero() {
        out.push(problem(
            "bus.default_timeout_seconds",
            "a positive number of seconds",
        ));
    }
    for (i, peer) in c.discovery.static_peers.iter().enumerate() {
        let valid = peer.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            out.push(problem(
                &format!("discovery.static_peers[{i}]"),
                "`host:port`, e.g. `192.168.1.20:7443`",
            ));
        }
    }
    let e = &c.emergency;
    for (name, value) in [
        ("emergency.probe_interval_seconds", e.probe_interval),
        (
            "emergency.offline_probe_interval_seconds",
            e.offline_probe_interval,
        ),
        ("emergency.probe_timeout_seconds", e.probe_timeout),
    ] {
        if value.is_zero() {
            out.push(problem(name, "a positive number of seconds"));
        }
    }
    if e.enabled && !(1..=16).contains(&e.probe_targets.len()) {
        out.push(problem(
            "emergency.probe_targets",
            "1 to 16 targets (or emergency.enabled = false)",
        ));
    }
    if c.events.sync_interval.is_zero() {
        out.push(problem(
            "events.sync_interval_seconds",
            "a positive number of seconds",
        ));
    }
    if c.events.emergency_sync_interval.is_zero() {
        out.push(problem(
            "events.emergency_sync_interval_seconds",
            "a positive number of seconds",
        ));
    }
    if c.events.max_event_bytes < 1024 {
        out.push(problem("events.max_event_bytes", "at least 1024 bytes"));
    }
    if !(c.file.gc_threshold > 0.0 && c.file.gc_threshold <= 1.0) {
        out.push(problem(
            "file.gc_threshold",
            "a number above 0 and at most 1",
        ));
    }
    for (i, b) in c.llm.backends.iter().enumerate() {
        validate_llm_backend(&mut out, &format!("llm.backends[{i}]"), b);
    }
    // Contract §4.12: a post lasts at most 30 days, and every node's log
    // refuses a longer one.
    const MARKET_TTL_CEILING: u64 = 30 * 86_400;
    if c.market.max_ttl_seconds == 0 || c.market.max_ttl_seconds > MARKET_TTL_CEILING {
        out.push(problem(
            "market.max_ttl_seconds",
            format!("a positive number of seconds, at most {MARKET_TTL_CEILING} (30 days)"),
        ));
    }
    if c.market.default_ttl_seconds == 0 || c.market.default_ttl_seconds > c.market.max_ttl_seconds
    {
        out.push(problem(
            "market.default_ttl_seconds",
            format!(
                "between 1 and market.max_ttl_seconds ({})",
                c.market.max_ttl_seconds
            ),
        ));
    }
    out
}

/// One `[[llm.backends]]` entry; `at` is its key (`llm.backends[0]`).
fn validate_llm_backend(out: &mut Vec<Problem>, at: &str, b: &LlmBackendConfig) {
    let key = |k: &str| format!("{at}.{k}");
    if b.name.trim().is_empty() {
        out.push(problem(&key("name"), "a non-empty name"));
    }
    if b.model.trim().is_empty() {
        out.push(problem(&key("model"), "the model name offered on the bus"));
    }
    if b.max_concurrent == 0 {
        out.push(problem(&key("max_concurrent"), "at least 1"));
    }
    match b.kind {
        LlmBackendKind::Gguf => {
            if b.model_path.is_none() {
                out.push(problem(&key("model_path"), "the path of a .gguf file"));
            }
            for k in b.server_keys_set() {
                out.push(problem(
                    &key(k),
                    "nothing for kind = \"gguf\": this key is for kind = \"openai_compatible\" servers; remove it",
                ));
            }
        }
        LlmBackendKind::OpenaiCompatible => {
            if b.model_path.is_some() {
                out.push(problem(
                    &key("model_path"),
                    "nothing for kind = \"openai_compatible\" (the server holds the model): remove it, or set kind = \"gguf\"",
                ));
            }
            let Some(url) = &b.base_url else {
                out.push(problem(
                    &key("base_url"),
                    format!("for kind = \"openai_compatible\", {BASE_URL_EXPECTED}"),
                ));
                return;
            };
            if b.requires_internet.is_none() && !url.is_local() {
                out.push(problem(
                    &key("requires_internet"),
                    format!(
                        "true or false: {} is not a loopback, private or link-local address, so say whether reaching it needs the internet (true withdraws this backend in emergency mode)",
                        url.host()
                    ),
                ));
            }
            if b.remote_model
                .as_deref()
                .is_some_and(|m| m.trim().is_empty())
            {
                out.push(problem(
                    &key("remote_model"),
                    "the server's name for the model, or no remote_model to send `model`",
                ));
            }
            if let Some(name) = &b.api_key_env {
                if !is_env_var_name(name) {
                    out.push(problem(
                        &key("api_key_env"),
                        "the NAME of an environment variable holding the key (letters, digits, _), never the key itself",
                    ));
                }
                if !url.is_https() && !url.is_local() {
                    out.push(problem(
                        &key("base_url"),
                        "an https:// URL: with api_key_env set, an http:// URL to a host outside this network would send the key in clear",
                    ));
                }
            }
            let timeout = b.timeout();
            if timeout.is_zero() || timeout > LLM_MAX_CALL_TIMEOUT {
                out.push(problem(
                    &key("timeout_seconds"),
                    format!("from 1 to {} seconds", LLM_MAX_CALL_TIMEOUT.as_secs()),
                ));
            }
            for (k, bound) in [
                ("connect_timeout_seconds", b.connect_timeout()),
                ("first_byte_timeout_seconds", b.first_byte_timeout()),
            ] {
                if bound.is_zero() || bound > timeout {
                    out.push(problem(
                        &key(k),
                        format!("from 1 second to timeout_seconds ({} s)", timeout.as_secs()),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Config, ConfigError> {
        parse(
            Some(text),
            Path::new("/etc/hn/config.toml"),
            &Env::default(),
        )
    }

    #[test]
    fn empty_file_and_no_file_give_defaults() {
        assert_eq!(parse_text("").unwrap(), Config::default());
        assert_eq!(
            parse(None, Path::new("x"), &Env::default()).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn default_config_round_trips_through_toml() {
        let mut c = Config::default();
        c.identity.display_name = "Küche \"Nord\"".into();
        c.identity.profile = Some(Profile::Spark);
        c.llm.backends.push(LlmBackendConfig {
            name: "ollama".into(),
            kind: LlmBackendKind::OpenaiCompatible,
            model: "qwen2.5-0.5b".into(),
            model_path: None,
            base_url: Some("http://127.0.0.1:11434/v1".parse().unwrap()),
            remote_model: Some("qwen2.5:0.5b".into()),
            api_key_env: Some("OLLAMA_KEY".into()),
            api_key: None,
            requires_internet: Some(false),
            connect_timeout: Some(Duration::from_secs(2)),
            first_byte_timeout: None,
            timeout: Some(Duration::from_secs(120)),
            max_concurrent: 2,
        });
        let text = c.to_toml().unwrap();
        assert_eq!(parse_text(&text).unwrap(), c);
        for section in SECTIONS {
            assert!(
                text.contains(&format!("[{section}]")) || section == "llm",
                "{section} missing:\n{text}"
            );
        }
    }

    #[test]
    fn wrong_type_names_file_line_key_value_and_expectation() {
        let err =
            parse_text("[ui]\nport = 1\n\n[transport]\napi_port = \"seventy\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/etc/hn/config.toml:5: key `transport.api_port` = \"seventy\""),
            "{msg}"
        );
        assert!(msg.contains("u16"), "{msg}");
    }

    #[test]
    fn unknown_keys_and_sections_are_errors() {
        let msg = parse_text("[transport]\napi_prot = 7081\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown key `transport.api_prot`"), "{msg}");
        assert!(msg.contains("api_port"), "{msg}");
        assert!(msg.contains("config.toml:2"), "{msg}");
        let msg = parse_text("[transprt]\n").unwrap_err().to_string();
        assert!(msg.contains("unknown key `transprt`"), "{msg}");
    }

    #[test]
    fn semantic_validation_names_the_key() {
        let msg = parse_text("[transport]\napi_host = \"0.0.0.0\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`transport.api_host` = \"0.0.0.0\": expected a loopback address"),
            "{msg}"
        );
        let msg = parse_text("[ui]\nport = 7080\n").unwrap_err().to_string();
        assert!(
            msg.contains("`ui.port` = 7080: expected a port different from transport.api_port"),
            "{msg}"
        );
        let msg = parse_text("[[llm.backends]]\nname = \"x\"\nkind = \"gguf\"\nmodel = \"m\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("llm.backends[0].model_path"), "{msg}");
        let msg = parse_text("[observability]\nlog_level = \"loud\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`observability.log_level` = \"loud\"") && msg.contains("info"),
            "{msg}"
        );
    }

    #[test]
    fn a_market_ttl_over_the_contracts_thirty_days_is_refused() {
        let msg = parse_text("[market]\nmax_ttl_seconds = 2592001\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`market.max_ttl_seconds` = 2592001") && msg.contains("30 days"),
            "{msg}"
        );
        assert!(parse_text("[market]\nmax_ttl_seconds = 2592000\n").is_ok());
    }

    #[test]
    fn addresses_and_durations_are_parsed_once_into_their_types() {
        let c = parse_text(
            "[transport]\napi_host = \"::1\"\npeer_host = \"192.168.1.20\"\nrequest_skew_seconds = 90\n\
             [discovery]\nudp_multicast_group = \"239.1.2.3\"\n\
             [events]\nsync_interval_seconds = 7\n[bus]\ndefault_timeout_seconds = 3\n",
        )
        .unwrap();
        assert_eq!(c.transport.api_host, IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]));
        assert_eq!(c.transport.peer_host, IpAddr::from([192, 168, 1, 20]));
        assert_eq!(c.transport.request_skew, Duration::from_secs(90));
        assert_eq!(c.discovery.udp_multicast_group, Ipv4Addr::new(239, 1, 2, 3));
        assert_eq!(c.events.sync_interval, Duration::from_secs(7));
        assert_eq!(c.bus.default_timeout, Duration::from_secs(3));
        // Written back under the same keys, as seconds.
        let text = c.to_toml().unwrap();
        assert!(text.contains("sync_interval_seconds = 7"), "{text}");
        assert!(text.contains("api_host = \"::1\""), "{text}");
        assert_eq!(parse_text(&text).unwrap(), c);
    }

    #[test]
    fn a_value_that_would_not_run_fails_loading_naming_key_value_and_expectation() {
        let cases = [
            (
                "[discovery]\nudp_multicast_group = \"ff02::1\"\n",
                "config.toml:2: key `discovery.udp_multicast_group` = \"ff02::1\": expected an IPv4 multicast address",
            ),
            (
                "[discovery]\nudp_multicast_group = \"10.0.0.1\"\n",
                "key `discovery.udp_multicast_group` = \"10.0.0.1\": expected an IPv4 multicast address",
            ),
            (
                "[transport]\npeer_host = \"lan\"\n",
                "config.toml:2: key `transport.peer_host` = \"lan\": expected an IP address",
            ),
            (
                "[ui]\nhost = \"localhost\"\n",
                "key `ui.host` = \"localhost\": expected an IP address",
            ),
            (
                "[events]\nsync_interval_seconds = 0\n",
                "key `events.sync_interval_seconds` = 0: expected a positive number of seconds",
            ),
            (
                "[events]\nsync_interval_seconds = -5\n",
                "key `events.sync_interval_seconds` = -5: expected",
            ),
            (
                "[community]\ncommunity_id = \"hn:nope\"\n",
                "key `community.community_id` = \"hn:nope\": expected a full community id",
            ),
        ];
        for (text, want) in cases {
            let msg = parse_text(text).unwrap_err().to_string();
            assert!(msg.contains(want), "{text:?} gave: {msg}");
        }
    }

    #[test]
    fn removed_keys_are_refused_with_the_reason() {
        for (section, key, reason) in REMOVED_KEYS {
            let text = format!("[{section}]\n{key} = true\n");
            let err = parse_text(&text).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Removed { key: k, .. } if *k == format!("{section}.{key}")),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!(
                    "/etc/hn/config.toml:2: key `{section}.{key}` was removed: {reason}"
                )) && msg.ends_with("delete it"),
                "{msg}"
            );
        }
        let env = Env::from_pairs([("HEARTHNET_TRANSPORT_TLS_CERT", "/etc/cert.pem")]);
        let msg = parse(None, Path::new("c.toml"), &env)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(
                "environment variable HEARTHNET_TRANSPORT_TLS_CERT: key `transport.tls_cert` was removed"
            ),
            "{msg}"
        );
    }

    #[test]
    fn syntax_errors_point_at_the_line() {
        let msg = parse_text("[ui]\nport = = 3\n").unwrap_err().to_string();
        assert!(
            msg.starts_with("/etc/hn/config.toml:2: not valid TOML"),
            "{msg}"
        );
    }

    #[test]
    fn environment_overrides_win_and_are_named_in_errors() {
        let env = Env::from_pairs([
            ("HEARTHNET_TRANSPORT_API_PORT", "7181"),
            ("HEARTHNET_UI_LAUNCH_BROWSER", "true"),
            ("HEARTHNET_IDENTITY_DISPLAY_NAME", "garage pc"),
            ("HEARTHNET_CONFIG", "/ignored/here"),
        ]);
        let c = parse(
            Some("[transport]\napi_port = 7080\n"),
            Path::new("c.toml"),
            &env,
        )
        .unwrap();
        assert_eq!(c.transport.api_port, 7181);
        assert!(c.ui.launch_browser);
        assert_eq!(c.identity.display_name, "garage pc");

        let env = Env::from_pairs([("HEARTHNET_BUS_LOCAL_LOAD_THRESHOLD", "3")]);
        let msg = parse(None, Path::new("c.toml"), &env)
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("environment variable HEARTHNET_BUS_LOCAL_LOAD_THRESHOLD: key `bus.local_load_threshold` = 3"), "{msg}");

        let env = Env::from_pairs([("HEARTHNET_TRANSPRT_PORT", "1")]);
        let msg = parse(None, Path::new("c.toml"), &env)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("HEARTHNET_TRANSPRT_PORT") && msg.contains("section of"),
            "{msg}"
        );
        let env = Env::from_pairs([("HEARTHNET_UI_PROT", "1")]);
        let msg = parse(None, Path::new("c.toml"), &env)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("environment variable HEARTHNET_UI_PROT: unknown key `ui.prot`"),
            "{msg}"
        );
    }

    fn backend(lines: &str) -> Result<Config, ConfigError> {
        parse_text(&format!(
            "[[llm.backends]]\nname = \"b\"\nmodel = \"m\"\n{lines}"
        ))
    }

    #[test]
    fn an_openai_compatible_backend_loads_with_its_defaults_and_its_key_from_the_environment() {
        let text = "[[llm.backends]]\nname = \"ollama\"\nkind = \"openai_compatible\"\nmodel = \"qwen\"\n\
                    base_url = \"http://192.168.1.20:11434/v1/\"\napi_key_env = \"OLLAMA_KEY\"\n";
        let env = Env::from_pairs([("OLLAMA_KEY", "sk-1")]);
        let c = parse(Some(text), Path::new("c.toml"), &env).unwrap();
        let b = &c.llm.backends[0];
        assert_eq!(
            b.base_url.as_ref().unwrap().to_string(),
            "http://192.168.1.20:11434/v1"
        );
        assert_eq!(b.remote_model(), "qwen");
        assert!(!b.requires_internet(), "a private address is local");
        assert_eq!(b.api_key.as_ref().map(ApiKey::reveal), Some("sk-1"));
        assert_eq!(
            (b.connect_timeout(), b.first_byte_timeout(), b.timeout()),
            (
                LLM_DEFAULT_CONNECT_TIMEOUT,
                LLM_DEFAULT_FIRST_BYTE_TIMEOUT,
                LLM_MAX_CALL_TIMEOUT
            )
        );
        // The key is never written back; the variable's name is.
        let written = c.to_toml().unwrap();
        assert!(
            written.contains("api_key_env = \"OLLAMA_KEY\""),
            "{written}"
        );
        assert!(!written.contains("sk-1"), "{written}");
        // Unset, the key is absent (the node and doctor say so), not an error.
        let c = parse(Some(text), Path::new("c.toml"), &Env::default()).unwrap();
        assert_eq!(c.llm.backends[0].api_key, None);

        let remote = backend(
            "kind = \"openai_compatible\"\nbase_url = \"https://llm.example.org/v1\"\nrequires_internet = true\nremote_model = \"big\"\n",
        )
        .unwrap();
        assert!(remote.llm.backends[0].requires_internet());
        assert_eq!(remote.llm.backends[0].remote_model(), "big");
    }

    #[test]
    fn a_wrong_llm_backend_is_refused_naming_the_key_and_what_to_do() {
        let server = "kind = \"openai_compatible\"\n";
        let cases = [
            (
                server.to_owned(),
                "`llm.backends[0].base_url` = (missing): expected for kind = \"openai_compatible\", an http:// or https:// URL",
            ),
            (
                format!("{server}base_url = \"localhost:11434\"\n"),
                "`llm.backends[0].base_url` = \"localhost:11434\": expected an http:// or https:// URL",
            ),
            (
                format!("{server}base_url = \"http://u:p@h/v1\"\n"),
                "api_key_env instead",
            ),
            (
                format!("{server}base_url = \"https://llm.example.org/v1\"\n"),
                "`llm.backends[0].requires_internet` = (missing): expected true or false: llm.example.org is not a loopback",
            ),
            (
                format!("{server}base_url = \"http://127.0.0.1/v1\"\nmodel_path = \"/m.gguf\"\n"),
                "`llm.backends[0].model_path` = \"/m.gguf\": expected nothing for kind = \"openai_compatible\"",
            ),
            (
                format!("{server}base_url = \"http://127.0.0.1/v1\"\ntimeout_seconds = 301\n"),
                "`llm.backends[0].timeout_seconds` = 301: expected from 1 to 300 seconds",
            ),
            (
                format!(
                    "{server}base_url = \"http://127.0.0.1/v1\"\ntimeout_seconds = 30\nfirst_byte_timeout_seconds = 60\n"
                ),
                "`llm.backends[0].first_byte_timeout_seconds` = 60: expected from 1 second to timeout_seconds (30 s)",
            ),
            (
                format!(
                    "{server}base_url = \"http://127.0.0.1/v1\"\nconnect_timeout_seconds = 0\n"
                ),
                "`llm.backends[0].connect_timeout_seconds` = 0",
            ),
            (
                format!("{server}base_url = \"http://127.0.0.1/v1\"\nremote_model = \" \"\n"),
                "`llm.backends[0].remote_model`",
            ),
            (
                format!(
                    "{server}base_url = \"http://8.8.8.8/v1\"\nrequires_internet = true\napi_key_env = \"KEY\"\n"
                ),
                "`llm.backends[0].base_url` = \"http://8.8.8.8/v1\": expected an https:// URL: with api_key_env set",
            ),
            (
                "kind = \"gguf\"\nmodel_path = \"/m.gguf\"\nbase_url = \"http://127.0.0.1/v1\"\n"
                    .into(),
                "`llm.backends[0].base_url` = \"http://127.0.0.1/v1\": expected nothing for kind = \"gguf\"",
            ),
            (
                "kind = \"gguf\"\nmodel_path = \"/m.gguf\"\nrequires_internet = false\n".into(),
                "`llm.backends[0].requires_internet` = false: expected nothing for kind = \"gguf\"",
            ),
            (
                format!("{server}url = \"http://127.0.0.1/v1\"\n"),
                "unknown key `llm.backends[0].url`",
            ),
        ];
        for (lines, want) in cases {
            let msg = backend(&lines).unwrap_err().to_string();
            assert!(msg.contains(want), "{lines:?} gave: {msg}");
        }
    }

    #[test]
    fn an_api_key_written_in_the_file_is_refused_and_never_echoed() {
        let server = "kind = \"openai_compatible\"\nbase_url = \"http://127.0.0.1/v1\"\n";
        let msg = backend(&format!("{server}api_key = \"sk-secret\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(
                "`llm.backends[0].api_key` = (not shown): expected no API key in the file"
            ) && msg.contains("api_key_env"),
            "{msg}"
        );
        assert!(!msg.contains("sk-secret"), "{msg}");
        // The key written where its variable's name belongs.
        let msg = backend(&format!("{server}api_key_env = \"sk-secret-123\"\n"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("the NAME of an environment variable"), "{msg}");
        assert!(!msg.contains("sk-secret"), "{msg}");
    }
}
