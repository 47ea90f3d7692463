//! Interop constants from the GLOSSARY's defaults table.
//!
//! These are not configurable: a node that changed one would fall out of
//! step with its neighbours (X04 §6).

pub const MANIFEST_TTL_SECONDS: i64 = 30;
pub const MANIFEST_REPUBLISH_INTERVAL_SECONDS: u64 = 20;
pub const DISCOVERY_UDP_INTERVAL_ACTIVE_SECONDS: u64 = 5;
pub const DISCOVERY_UDP_INTERVAL_STABLE_SECONDS: u64 = 30;
pub const DISCOVERY_UDP_PORT: u16 = 42424;
pub const MDNS_PORT: u16 = 5353;
pub const DEFAULT_API_PORT: u16 = 7080;
pub const DEFAULT_PEER_PORT: u16 = 7443;
pub const DEFAULT_UI_PORT: u16 = 7860;
/// The web UI for devices on the LAN (HTTPS, paired), when enabled.
pub const DEFAULT_UI_LAN_PORT: u16 = 7861;
pub const EMERGENCY_PROBE_INTERVAL_ONLINE_SECONDS: u64 = 10;
pub const EMERGENCY_PROBE_INTERVAL_OFFLINE_SECONDS: u64 = 2;
pub const EMERGENCY_PROBE_TIMEOUT_SECONDS: u64 = 2;
pub const EMERGENCY_TRANSITION_DEBOUNCE_SECONDS: u64 = 30;
pub const CONNECTION_IDLE_SECONDS: u64 = 60;
pub const RECONNECT_BACKOFF_CAP_SECONDS: u64 = 30;
pub const STREAM_WINDOW_FRAMES: u32 = 16;
pub const STREAM_ACK_INTERVAL_FRAMES: u32 = 8;
pub const STREAM_ACK_TIMEOUT_SECONDS: u64 = 5;
pub const RPC_DEFAULT_TIMEOUT_SECONDS: u64 = 30;
pub const LLM_GENERATION_DEFAULT_TIMEOUT_SECONDS: u64 = 120;
pub const CHUNK_SIZE_BYTES: usize = 262_144;
pub const BLOB_GC_DISK_THRESHOLD: f64 = 0.80;
pub const RAG_CHUNK_TOKENS: usize = 1000;
pub const RAG_CHUNK_OVERLAP_TOKENS: usize = 200;
pub const RAG_DEFAULT_K: usize = 5;
pub const RAG_MAX_K: usize = 20;
pub const HEALTH_WINDOW_CALLS: usize = 100;
pub const HEALTH_QUARANTINE_THRESHOLD: f64 = 0.5;
pub const HEALTH_QUARANTINE_SECONDS: u64 = 60;
pub const RATE_LIMIT_SOFT_RPS_PER_CAP: u32 = 10;
pub const RATE_LIMIT_HARD_RPS_PER_CAP: u32 = 100;
pub const RATE_LIMIT_SOFT_RPS_TOTAL: u32 = 100;
pub const RATE_LIMIT_HARD_RPS_TOTAL: u32 = 1000;
pub const EVENT_LOG_RETENTION_DAYS: u32 = 30;
pub const SNAPSHOT_LAG_LAMPORT: u64 = 1000;
pub const TRACE_RING_BUFFER: usize = 10_000;
pub const LOG_RETENTION_DAYS: u32 = 14;
