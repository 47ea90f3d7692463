//! The event log: one SQLite database per community (WAL, `synchronous =
//! FULL`: an append acknowledged is on disk), owned by one thread that also
//! owns the community view, so validation, insertion and the fold happen
//! as one step and never race.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use hearthnet_base::event::{Event, NewEvent};
use hearthnet_base::{CommunityId, DeviceKey, ErrorCode, NodeId, Timestamp, to_canonical_bytes};
use parking_lot::RwLock;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::history::{AUTHOR_PREV, History, Mode, Verdicts};
use crate::limits::{AuthorQuota, DayQuota, Limits};
use crate::snapshot::{self, SnapshotStore};
use crate::view::{CommunityView, Position};
use crate::{Reject, RejectCode, types};

/// How far past the head a received event's Lamport may be. Honest
/// histories have no big gaps: an author writes one past the highest
/// Lamport it has seen (§7.3: two past, where a receive also ticks), so
/// events reach us as chains, and a sync batch is judged in Lamport order,
/// each event against the head the ones before it raised. The step only
/// has to cover what a chain may lack here: events this node refused
/// (types a newer release writes, authors it does not admit), 20 sync
/// batches of 500 of them. Without a bound one event could move the head
/// to 2^53 (the end of the Lamport space); with it that takes ~10^12
/// stored events.
pub const MAX_LAMPORT_STEP: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("event log {}: {source}", path.display())]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the event log thread has stopped")]
    Closed,
    #[error("event rejected ({}): {}", .0.code, .0.detail)]
    Rejected(Reject),
    #[error("cannot create the directory of the event log {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the event log {}: {source}", path.display())]
    CreateFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the event log thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("cannot build the event: {0}")]
    Build(#[from] hearthnet_base::event::EventError),
}

impl EventLogError {
    /// The contract error (§9) of a local caller whose append failed: a
    /// refusal by its reason, an event that cannot even be built by its
    /// data, anything else is this node's failure.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Rejected(r) => r.code.error_code(),
            Self::Build(_) => ErrorCode::BadRequest,
            Self::Db { .. }
            | Self::Closed
            | Self::CreateDir { .. }
            | Self::CreateFile { .. }
            | Self::Spawn(_) => ErrorCode::InternalError,
        }
    }
}

/// The outcome of offering events to the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendReport {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<(String, Reject)>,
    /// Envelopes offered under an id that holds another envelope (each is
    /// also in `rejected` as `conflicting_id`).
    pub conflicts: u64,
    pub head: u64,
}

/// A stored event as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub event: Event,
    /// The envelope exactly as received (what the signature covers).
    pub json: Value,
}

/// Events that no longer count, as [`EventLog::judged_out`] reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JudgedOut {
    /// `(number, event id)`, oldest first.
    pub ids: Vec<(i64, String)>,
    /// What the log counts under those ids now (another envelope that
    /// displaced the first), in replay order: a fold takes these in.
    pub current: Vec<Event>,
    /// Some after the cursor were already forgotten: rebuild the fold,
    /// then read on from `newest`.
    pub missed: bool,
    /// The number of the newest id published (0 when none was).
    pub newest: i64,
}

impl JudgedOut {
    /// The ids that no longer count.
    pub fn gone(&self) -> Vec<String> {
        self.ids.iter().map(|(_, id)| id.clone()).collect()
    }

    /// The number to read on from next time, if any id was read.
    pub fn last_number(&self) -> Option<i64> {
        self.ids.last().map(|(n, _)| *n)
    }
}

/// A query over the log.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub event_type: Option<String>,
    /// Any of these types (all when empty).
    pub event_types: Vec<String>,
    pub author: Option<String>,
    /// Inclusive Lamport range.
    pub lamport_from: Option<u64>,
    pub lamport_to: Option<u64>,
    /// Cursor: only events stored after this local sequence number.
    pub after_seq: Option<i64>,
    pub limit: Option<usize>,
}

pub(crate) struct Core {
    conn: Connection,
    path: PathBuf,
    community: CommunityId,
    limits: Limits,
    history: History,
    published: Arc<RwLock<Arc<CommunityView>>>,
    clock: u64,
    snapshots: Option<SnapshotStore>,
    snapshot_key: Option<DeviceKey>,
    /// Lamport of the newest snapshot on disk (read once, kept current).
    last_snapshot: u64,
    changes: tokio::sync::watch::Sender<i64>,
    quota: AuthorQuota,
    /// Bumped whenever the set of events that count may have changed.
    revision: Arc<std::sync::atomic::AtomicU64>,
    /// When lapsed events were last pruned.
    last_prune: Option<std::time::Instant>,
}

/// How often lapsed events are pruned.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

type Job = Box<dyn FnOnce(&mut Core) + Send>;

/// BLAKE3 of an envelope's canonical bytes: two envelopes are the same
/// event exactly when these are equal, whatever their JSON spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct EnvelopeDigest([u8; 32]);

impl EnvelopeDigest {
    /// The digest of an envelope as stored (its JSON bytes).
    fn of_stored(bytes: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(json) => Self::of(&json),
            // Unreadable on disk: it equals nothing a peer can offer.
            Err(_) => Self(*blake3::hash(bytes).as_bytes()),
        }
    }

    fn of(value: &Value) -> Self {
        match to_canonical_bytes(value) {
            Ok(bytes) => Self(*blake3::hash(&bytes).as_bytes()),
            // Not canonicalisable (say a float out of range): such an
            // envelope was never stored, so it must equal no stored one;
            // the hash of its plain text keeps two of them apart.
            Err(_) => Self(*blake3::hash(value.to_string().as_bytes()).as_bytes()),
        }
    }
}

/// An envelope's claim to an event id, ordered so that the better claim
/// is the smaller: an id bound to the envelope's content
/// ([`Event::id_is_bound`]) beats one that is not (a copied id cannot be
/// bound), then the lower digest. Every node orders two claims the same
/// way, so all keep the same envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Claim {
    unbound: bool,
    digest: EnvelopeDigest,
}

impl Claim {
    fn of(value: &Value) -> Self {
        Self {
            unbound: !Event::id_is_bound(value),
            digest: EnvelopeDigest::of(value),
        }
    }

    fn of_stored(bytes: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(json) => Self::of(&json),
            Err(_) => Self {
                unbound: true,
                digest: EnvelopeDigest::of_stored(bytes),
            },
        }
    }
}

/// What the log holds under an event id.
enum Stored {
    Envelope(EnvelopeDigest, Position),
    /// A lapsed event, pruned to its tombstone: offered again, it is the
    /// same event, not taken back.
    Pruned,
}

/// The `held` value of a tombstone (see [`crate::limits::prune`]).
const PRUNED: i64 = 2;

/// Handle to the log; cheap to clone, usable from async and blocking code.
#[derive(Clone)]
pub struct EventLog {
    jobs: mpsc::Sender<Job>,
    changes: tokio::sync::watch::Receiver<i64>,
    view: Arc<RwLock<Arc<CommunityView>>>,
    revision: Arc<std::sync::atomic::AtomicU64>,
    path: PathBuf,
}

/// Where a community's log and snapshots live.
pub struct LogPaths {
    pub database: PathBuf,
    pub snapshots: Option<PathBuf>,
}

impl LogPaths {
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Self {
            database: state_dir.join("events.sqlite"),
            snapshots: Some(state_dir.join("snapshots")),
        }
    }
}

impl EventLog {
    /// Open (or create) the log. `genesis` seeds an empty log; `key` signs
    /// the snapshots this node writes and checks the ones it finds.
    pub fn open(
        paths: LogPaths,
        community: CommunityId,
        limits: Limits,
        genesis: Option<Value>,
        key: Option<DeviceKey>,
    ) -> Result<Self, EventLogError> {
        let path = paths.database.clone();
        let db_err = |source| EventLogError::Db {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| EventLogError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        hearthnet_base::fsio::create_private(&path).map_err(|source| {
            EventLogError::CreateFile {
                path: path.clone(),
                source,
            }
        })?;
        let conn = Connection::open(&path).map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        let snapshots = paths.snapshots.map(SnapshotStore::new);
        let view = CommunityView::new(community);
        let published = Arc::new(RwLock::new(Arc::new(view.clone())));
        let (changes, changes_rx) = tokio::sync::watch::channel(0i64);
        let mut core = Core {
            conn,
            path: path.clone(),
            community,
            limits,
            history: History::new(view),
            published: published.clone(),
            clock: 0,
            last_snapshot: snapshots
                .as_ref()
                .and_then(SnapshotStore::latest_lamport)
                .unwrap_or(0),
            snapshots,
            snapshot_key: key,
            changes,
            quota: AuthorQuota::default(),
            revision: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            last_prune: None,
        };
        let revision = core.revision.clone();
        core.load()?;
        if core.history.view.count == 0
            && let Some(genesis) = genesis
        {
            let report = core.append_received(vec![genesis]);
            if let Some((_, r)) = report.rejected.into_iter().next() {
                return Err(EventLogError::Rejected(r));
            }
        }
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("hearthnet-events".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut core);
                }
            })
            .map_err(EventLogError::Spawn)?;
        Ok(Self {
            jobs,
            changes: changes_rx,
            view: published,
            revision,
            path,
        })
    }

    /// Changes whenever events are stored (the value: the last local
    /// sequence number); for long-polls.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<i64> {
        self.changes.clone()
    }

    /// Changes whenever the set of events that count may have changed
    /// (new ones, or old ones judged in or out): what a cache of that set
    /// keys on, since the count alone can stay the same.
    pub fn revision(&self) -> u64 {
        self.revision.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The community as of the last append.
    pub fn view(&self) -> Arc<CommunityView> {
        self.view.read().clone()
    }

    fn submit<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core) -> R + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<R>, EventLogError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |core| {
                let _ = tx.send(f(core));
            }))
            .map_err(|_| EventLogError::Closed)?;
        Ok(rx)
    }

    /// Run `f` on the log's thread and wait for it (from async code).
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core) -> R + Send + 'static,
    ) -> Result<R, EventLogError> {
        self.submit(f)?.await.map_err(|_| EventLogError::Closed)
    }

    /// Run `f` on the log's thread and wait for it (from blocking code).
    pub(crate) fn run_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core) -> R + Send + 'static,
    ) -> Result<R, EventLogError> {
        self.submit(f)?
            .blocking_recv()
            .map_err(|_| EventLogError::Closed)
    }

    /// Author, sign and store a new event (Lamport: `++clock`).
    pub async fn append_local(
        &self,
        event_type: &str,
        data: Value,
        key: &DeviceKey,
    ) -> Result<Event, EventLogError> {
        let (event_type, key) = (event_type.to_owned(), key.clone());
        self.run(move |core| core.append_local(&event_type, data, &key))
            .await?
    }

    pub fn append_local_blocking(
        &self,
        event_type: &str,
        data: Value,
        key: &DeviceKey,
    ) -> Result<Event, EventLogError> {
        let (event_type, key) = (event_type.to_owned(), key.clone());
        self.run_blocking(move |core| core.append_local(&event_type, data, &key))?
    }

    /// Offer events from a peer: each is validated; valid new ones are
    /// stored in one transaction, in replay order.
    pub async fn append_received(&self, events: Vec<Value>) -> Result<AppendReport, EventLogError> {
        self.run(move |core| core.append_received(events)).await
    }

    pub fn append_received_blocking(
        &self,
        events: Vec<Value>,
    ) -> Result<AppendReport, EventLogError> {
        self.run_blocking(move |core| core.append_received(events))
    }

    pub async fn query(&self, q: Query) -> Result<Vec<StoredEvent>, EventLogError> {
        self.run(move |core| core.query(&q)).await?
    }

    pub fn query_blocking(&self, q: Query) -> Result<Vec<StoredEvent>, EventLogError> {
        self.run_blocking(move |core| core.query(&q))?
    }

    /// `PRAGMA integrity_check`: `Ok(())` when the database is sound.
    pub fn integrity_check_blocking(&self) -> Result<Result<(), String>, EventLogError> {
        self.run_blocking(|core| core.integrity_check())?
    }

    /// Bytes the log uses on disk (database, WAL and snapshots).
    pub fn disk_bytes(&self) -> u64 {
        let file = |suffix: &str| {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            std::fs::metadata(PathBuf::from(p)).map_or(0, |m| m.len())
        };
        file("") + file("-wal") + file("-shm")
    }

    /// Replay every stored event, in replay order, into `fold` (a service's
    /// materialised view) and hand it back. Services then follow new events
    /// with a [`Query::after_seq`] cursor and [`EventLog::changes`].
    pub fn replay_into<F: crate::Fold + Send + 'static>(
        &self,
        fold: F,
    ) -> Result<(F, i64), EventLogError> {
        self.run_blocking(move |core| core.replay_into(fold))?
    }

    /// Every event that counts, as sync reconciles them: keyed by the
    /// envelope's digest, so two nodes holding different envelopes under
    /// one id find the difference.
    pub async fn ids(&self) -> Result<Vec<crate::sync::Item>, EventLogError> {
        self.run(|core| core.ids()).await?
    }

    /// What `author` has used of today's quota (events stamped with
    /// today's UTC date): a service that writes on others' behalf, such as
    /// receipts, leaves the rest for what the node must be able to write.
    pub async fn quota_today(&self, author: NodeId) -> Result<DayQuota, EventLogError> {
        self.run(move |core| {
            let (conn, limits) = (&core.conn, &core.limits);
            core.quota
                .used(conn, limits, &author.full(), Timestamp::now())
                .map_err(EventLogError::Rejected)
        })
        .await?
    }

    /// Ids of events that counted and no longer do, published after
    /// number `after`, oldest first, at most `limit`: judged out when an
    /// event before them arrived, or displaced by another envelope under
    /// their id (which, if it counts, comes as a new event). A fold that
    /// took them in drops them, and takes in what [`EventLog::by_ids`]
    /// still finds under the id.
    pub async fn judged_out(&self, after: i64, limit: usize) -> Result<JudgedOut, EventLogError> {
        self.run(move |core| {
            let mut out = core.judged_out(after, limit)?;
            let ids: Vec<String> = out.ids.iter().map(|(_, id)| id.clone()).collect();
            out.current = core.by_ids(&ids)?.into_iter().map(|s| s.event).collect();
            Ok(out)
        })
        .await?
    }

    /// The id of the last event of `author` that counts (by Lamport, then
    /// id): what a revocation names as `target_last_event_id`.
    pub async fn last_event_of(
        &self,
        author: hearthnet_base::NodeId,
    ) -> Result<Option<String>, EventLogError> {
        self.run(move |core| core.last_event_of(&author)).await?
    }

    /// Stored events by id, in replay order (unknown ids are skipped).
    pub async fn by_ids(&self, ids: Vec<String>) -> Result<Vec<StoredEvent>, EventLogError> {
        self.run(move |core| core.by_ids(&ids)).await?
    }
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    lamport INTEGER NOT NULL,
    author TEXT NOT NULL,
    event_type TEXT NOT NULL,
    wall_clock TEXT NOT NULL,
    envelope BLOB NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_replay ON events(lamport, event_id);
CREATE INDEX IF NOT EXISTS events_type ON events(event_type, lamport);
CREATE INDEX IF NOT EXISTS events_author ON events(author, lamport);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS judged_out (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL
);
";

/// Judged-out ids kept for folds to read ([`EventLog::judged_out`]); a
/// fold further behind rebuilds.
const MAX_JUDGED_OUT: i64 = 10_000;

/// Columns added after the first release: `held` (stored but judged out,
/// see [`crate::history`]) and `digest` (BLAKE3 of the canonical envelope,
/// what sync reconciles on).
const MIGRATIONS: [(&str, &str); 2] = [
    (
        "held",
        "ALTER TABLE events ADD COLUMN held INTEGER NOT NULL DEFAULT 0",
    ),
    ("digest", "ALTER TABLE events ADD COLUMN digest BLOB"),
];

/// The revision of the membership rules: a log judged under another one is
/// judged again, whole, when opened. 4: where links are required, an event
/// whose id is not bound to its content counts nowhere. 5: direct messages
/// and receipts have bounded fields. 6: an author has at most
/// `market::MAX_LIVE_POSTS_PER_AUTHOR` live market posts.
pub(crate) const RULES_REVISION: &str = "6";

/// Events stored but judged out, at most: beyond, such events are refused
/// outright (and may come back by sync once they count elsewhere).
pub const MAX_HELD: i64 = 10_000;

impl Core {
    fn db<T>(&self, r: rusqlite::Result<T>) -> Result<T, EventLogError> {
        r.map_err(|source| EventLogError::Db {
            path: self.path.clone(),
            source,
        })
    }

    fn migrate(&self) -> Result<(), EventLogError> {
        let columns: Vec<String> = {
            let mut stmt = self.db(self
                .conn
                .prepare("SELECT name FROM pragma_table_info('events')"))?;
            let rows = self.db(stmt.query_map([], |r| r.get::<_, String>(0)))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|source| EventLogError::Db {
                    path: self.path.clone(),
                    source,
                })?
        };
        for (column, sql) in MIGRATIONS {
            if !columns.iter().any(|c| c == column) {
                self.db(self.conn.execute_batch(sql))?;
            }
        }
        self.db(self.conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS events_held ON events(held, lamport, event_id);
             CREATE INDEX IF NOT EXISTS events_author_day ON events(author, wall_clock);",
        ))?;
        let missing: Vec<(i64, Vec<u8>)> = {
            let mut stmt = self.db(self
                .conn
                .prepare("SELECT seq, envelope FROM events WHERE digest IS NULL"))?;
            let rows = self.db(stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|source| EventLogError::Db {
                    path: self.path.clone(),
                    source,
                })?
        };
        for (seq, bytes) in missing {
            let digest = EnvelopeDigest::of_stored(&bytes);
            self.db(self.conn.execute(
                "UPDATE events SET digest = ?2 WHERE seq = ?1",
                params![seq, digest.0.as_slice()],
            ))?;
        }
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<String>, EventLogError> {
        self.db(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional())
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), EventLogError> {
        self.db(self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        ))
        .map(|_| ())
    }

    /// Rebuild the view: from a snapshot that checks out, else from the
    /// first event; a log judged under older rules is judged again.
    fn load(&mut self) -> Result<(), EventLogError> {
        match self.meta("community_id")? {
            Some(id) if id != self.community.full() => {
                return Err(EventLogError::Rejected(Reject {
                    code: RejectCode::WrongCommunity,
                    detail: format!("{} belongs to community {id}", self.path.display()),
                }));
            }
            Some(_) => {}
            None => self.set_meta("community_id", &self.community.full())?,
        }
        self.migrate()?;
        let current_rules = self.meta("rules")?.as_deref() == Some(RULES_REVISION);
        let restored = match (&self.snapshots, &self.snapshot_key, current_rules) {
            (Some(store), Some(key), true) => {
                snapshot::restore(store, &self.conn, &key.node_id(), self.community)
            }
            _ => None,
        };
        let mode = if current_rules {
            Mode::Trust
        } else {
            Mode::Judge
        };
        let from = restored.as_ref().and_then(CommunityView::position);
        self.history = History::new(restored.unwrap_or_else(|| CommunityView::new(self.community)));
        let path = self.path.clone();
        let result = self
            .history
            .refold(&self.conn, from, mode, &HashSet::new())
            .map_err(|source| EventLogError::Db { path, source });
        result?;
        if !current_rules {
            self.set_meta("rules", RULES_REVISION)?;
        }
        self.clock = self
            .meta("clock")?
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
            .max(self.history.view.head);
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        // Cloned before the lock is taken: the guarded write is one
        // pointer swap, which cannot leave the view half-published.
        let next = Arc::new(self.history.view.clone());
        *self.published.write() = next;
    }

    /// The id of the last event of `author` that counts, for `author_prev`.
    fn last_event_of(
        &self,
        author: &hearthnet_base::NodeId,
    ) -> Result<Option<String>, EventLogError> {
        self.db(self
            .conn
            .query_row(
                "SELECT event_id FROM events WHERE author = ?1 AND held = 0 ORDER BY lamport DESC, event_id DESC LIMIT 1",
                params![author.full()],
                |r| r.get(0),
            )
            .optional())
    }

    fn append_local(
        &mut self,
        event_type: &str,
        mut data: Value,
        key: &DeviceKey,
    ) -> Result<Event, EventLogError> {
        let lamport = self.clock + 1;
        if let Some(fields) = data.as_object_mut() {
            let prev = self.last_event_of(&key.node_id())?;
            fields.insert(AUTHOR_PREV.into(), prev.map_or(Value::Null, Value::String));
        }
        let event = Event::create(
            NewEvent {
                community_id: self.community,
                lamport,
                event_type,
                data,
            },
            key,
        )?;
        let (report, failure) = self.append(vec![event.to_value()]);
        // The author is here to be told that the disk failed, not that the
        // event was refused.
        if let Some(e) = failure {
            return Err(e);
        }
        match report.rejected.into_iter().next() {
            Some((_, r)) => Err(EventLogError::Rejected(r)),
            None => Ok(event),
        }
    }

    /// The checks that need no history: size, signature, community. An
    /// envelope failing them is refused for that, whatever else it is.
    fn verify_envelope(&self, value: &Value) -> Result<Event, Reject> {
        let size = to_canonical_bytes(value)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        if size > self.limits.max_event_bytes {
            return Err(Reject {
                code: RejectCode::TooLarge,
                detail: format!("{size} bytes; the limit is {}", self.limits.max_event_bytes),
            });
        }
        let event = Event::verify(value).map_err(|e| Reject {
            code: match e {
                hearthnet_base::event::EventError::Signature(_) => RejectCode::InvalidSignature,
                _ => RejectCode::Malformed,
            },
            detail: e.to_string(),
        })?;
        if event.community_id != self.community {
            return Err(Reject {
                code: RejectCode::WrongCommunity,
                detail: format!("event of community {}", event.community_id.short()),
            });
        }
        Ok(event)
    }

    /// Every check that needs no history, before an event is stored: the
    /// envelope, its revision and type, its data, its clocks. `head` is the
    /// Lamport head as the batch so far raised it.
    fn check_alone(&self, value: &Value, now: Timestamp, head: u64) -> Result<Event, Reject> {
        let event = self.verify_envelope(value)?;
        if event.schema_version != hearthnet_base::event::EVENT_SCHEMA_VERSION {
            return Err(Reject {
                code: RejectCode::SchemaUnknown,
                detail: format!("schema_version {}", event.schema_version),
            });
        }
        if !types::is_known(&event.event_type) {
            return Err(Reject {
                code: RejectCode::SchemaUnknown,
                detail: format!("event type {}", event.event_type),
            });
        }
        types::check_data(&event.event_type, &event.data).map_err(|detail| Reject {
            code: RejectCode::BadData,
            detail,
        })?;
        match event.data.get(AUTHOR_PREV) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => {
                return Err(Reject {
                    code: RejectCode::BadData,
                    detail: format!("data.{AUTHOR_PREV} is neither an event id nor null"),
                });
            }
        }
        self.limits
            .check_retention(&event.event_type, event.wall_clock, now)?;
        if event.wall_clock.unix() > now.unix() + self.limits.max_future_skew_seconds {
            return Err(Reject {
                code: RejectCode::ClockAhead,
                detail: format!("wall clock {} is ahead of ours ({now})", event.wall_clock),
            });
        }
        if event.lamport > head.saturating_add(MAX_LAMPORT_STEP)
            || event.lamport > hearthnet_base::canonical::MAX_SAFE_INTEGER
        {
            return Err(Reject {
                code: RejectCode::LamportAhead,
                detail: format!(
                    "Lamport {} is more than {MAX_LAMPORT_STEP} past our head {head}",
                    event.lamport
                ),
            });
        }
        Ok(event)
    }

    /// The claim and position of what is stored under `event_id`, if any.
    fn stored(&self, event_id: &str) -> Result<Option<Stored>, EventLogError> {
        let row: Option<(Option<Vec<u8>>, i64, i64)> = self.db(self
            .conn
            .query_row(
                "SELECT digest, lamport, held FROM events WHERE event_id = ?1",
                params![event_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional())?;
        Ok(row.map(|(digest, lamport, held)| match held {
            PRUNED => Stored::Pruned,
            _ => {
                let mut d = [0u8; 32];
                if let Some(digest) = digest.filter(|d| d.len() == 32) {
                    d.copy_from_slice(&digest);
                }
                Stored::Envelope(
                    EnvelopeDigest(d),
                    Position {
                        lamport: lamport as u64,
                        event_id: event_id.to_owned(),
                    },
                )
            }
        }))
    }

    /// The claim of the envelope stored under `event_id` (read only when
    /// another envelope contests it).
    fn stored_claim(&self, event_id: &str) -> Result<Claim, EventLogError> {
        let bytes: Vec<u8> = self.db(self.conn.query_row(
            "SELECT envelope FROM events WHERE event_id = ?1",
            params![event_id],
            |r| r.get(0),
        ))?;
        Ok(Claim::of_stored(&bytes))
    }

    fn append_received(&mut self, events: Vec<Value>) -> AppendReport {
        self.append(events).0
    }

    /// Validate and store `events`; with the first storage failure, if one
    /// kept events out. The report names it as those events' `db_error`
    /// (what a peer is told); a local author gets the failure itself.
    fn append(&mut self, events: Vec<Value>) -> (AppendReport, Option<EventLogError>) {
        // Replay order, so the Lamport step is judged along the chain.
        let mut events = events;
        events.sort_by(|a, b| {
            let key = |v: &Value| {
                (
                    v["lamport"].as_u64().unwrap_or(u64::MAX),
                    v["event_id"].as_str().unwrap_or("").to_owned(),
                )
            };
            key(a).cmp(&key(b))
        });
        let now = Timestamp::now();
        let mut report = AppendReport::default();
        let mut head = self.history.view.head;
        // New envelopes by id (a map, so the batch's own check is linear),
        // and stored ones a lower digest displaces.
        let mut fresh: HashMap<String, (Event, Value, Claim)> = HashMap::new();
        let mut displaced: Vec<Position> = Vec::new();
        for value in events {
            let id = value["event_id"].as_str().unwrap_or("?").to_owned();
            // Duplicates are the common case (sync offers what a peer may
            // have): the digest decides them, the claim is only needed
            // when two envelopes contest an id.
            let digest = EnvelopeDigest::of(&value);
            let known = match fresh.get(&id) {
                Some((e, _, c)) => Some((c.digest, Position::of(e), Some(*c))),
                None => match self.stored(&id) {
                    Ok(Some(Stored::Pruned)) => {
                        report.duplicates += 1;
                        continue;
                    }
                    Ok(Some(Stored::Envelope(d, p))) => Some((d, p, None)),
                    Ok(None) => None,
                    Err(e) => {
                        report
                            .rejected
                            .push((id, Reject::new(RejectCode::DbError, e.to_string())));
                        return (report, Some(e));
                    }
                },
            };
            if let Some((known_digest, _, _)) = known
                && known_digest == digest
            {
                report.duplicates += 1;
                continue;
            }
            let event = match self.check_alone(&value, now, head) {
                Ok(event) => event,
                Err(r) => {
                    tracing::debug!(event_id = %id, code = r.code.as_str(), detail = %r.detail, "event rejected");
                    report.rejected.push((id, r));
                    continue;
                }
            };
            let claim = Claim {
                unbound: !Event::id_is_bound(&value),
                digest,
            };
            if let Some((_, position, batch_claim)) = known {
                let known_claim = match batch_claim {
                    Some(c) => c,
                    None => match self.stored_claim(&id) {
                        Ok(c) => c,
                        Err(e) => {
                            report
                                .rejected
                                .push((id, Reject::new(RejectCode::DbError, e.to_string())));
                            return (report, Some(e));
                        }
                    },
                };
                // Two signed envelopes under one id: every node keeps the
                // same one, whichever arrived first (see `Claim`); the
                // split is reported either way.
                let keep_new = claim < known_claim;
                tracing::debug!(event_id = %id, kept = if keep_new { "offered" } else { "stored" }, "two envelopes under one event id");
                report.rejected.push((
                    id.clone(),
                    Reject::new(
                        RejectCode::ConflictingId,
                        format!(
                            "another envelope exists under event id {id}; {} is kept (ids bound to their content first, then the lower digest)",
                            if keep_new { "this one" } else { "the stored one" }
                        ),
                    ),
                ));
                report.conflicts += 1;
                if !keep_new {
                    continue;
                }
                if batch_claim.is_none() {
                    displaced.push(position);
                }
            }
            let bytes = serde_json::to_vec(&value).map_or(0, |b| b.len() as u64);
            if let Err(r) = self.quota.charge(
                &self.conn,
                &self.limits,
                &event.author.full(),
                event.wall_clock,
                bytes,
            ) {
                tracing::debug!(event_id = %id, code = r.code.as_str(), detail = %r.detail, "event rejected");
                report.rejected.push((id, r));
                continue;
            }
            if self.history.view.level_of(&event.author) >= hearthnet_base::TrustLevel::Member {
                head = head.max(event.lamport);
            }
            fresh.insert(id, (event, value, claim));
        }
        warn_once_per_batch(&report.rejected);
        let offered: Vec<String> = fresh.keys().cloned().collect();
        let outcome = self.store_and_judge(fresh, displaced);
        let (verdicts, stored) = match outcome {
            Ok(v) => v,
            Err(e) => {
                for id in offered {
                    report
                        .rejected
                        .push((id, Reject::new(RejectCode::DbError, e.to_string())));
                }
                // Nothing of this batch is stored; the view is rebuilt
                // from what is.
                let _ = self.reload();
                report.head = self.history.view.head;
                return (report, Some(e));
            }
        };
        for (id, verdict) in verdicts {
            match verdict {
                None if stored.contains(&id) => report.accepted += 1,
                None => {}
                Some(r) => {
                    tracing::warn!(event_id = %id, code = r.code.as_str(), detail = %r.detail, "event does not count here");
                    report.rejected.push((id, r));
                }
            }
        }
        self.maybe_prune(now);
        report.head = self.history.view.head;
        self.publish();
        self.maybe_snapshot();
        (report, None)
    }

    /// Prune lapsed events, at most once every [`PRUNE_EVERY`]; the view
    /// is folded again if any went, as they no longer count.
    fn maybe_prune(&mut self, now: Timestamp) {
        if self.last_prune.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
            return;
        }
        self.last_prune = Some(std::time::Instant::now());
        if let Err(e) = self.prune(now) {
            tracing::warn!(error = %e, "cannot prune lapsed events");
        }
    }

    fn prune(&mut self, now: Timestamp) -> Result<usize, EventLogError> {
        let pruned = self.db(crate::limits::prune(&self.conn, &self.limits, now))?;
        if pruned > 0 {
            tracing::info!(
                pruned,
                days = self.limits.retention_days,
                "lapsed events pruned"
            );
            self.reload()?;
            self.revision
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            self.publish();
        }
        Ok(pruned)
    }

    /// Fold the log again from the stored events, trusting their verdicts
    /// (after a failed write rolled a batch back).
    fn reload(&mut self) -> Result<(), EventLogError> {
        self.quota.reset();
        self.history = History::new(CommunityView::new(self.community));
        let path = self.path.clone();
        self.history
            .refold(&self.conn, None, Mode::Trust, &HashSet::new())
            .map(|_| ())
            .map_err(|source| EventLogError::Db { path, source })
    }

    /// In one transaction: store the fresh envelopes, drop the displaced
    /// ones, judge everything from the earliest change on, and drop what
    /// the held bound does not allow. Returns the verdicts on the fresh
    /// events and which of them are stored.
    fn store_and_judge(
        &mut self,
        fresh: HashMap<String, (Event, Value, Claim)>,
        displaced: Vec<Position>,
    ) -> Result<(Verdicts, HashSet<String>), EventLogError> {
        if fresh.is_empty() {
            return Ok((Verdicts::new(), HashSet::new()));
        }
        let from = fresh
            .values()
            .map(|(e, _, _)| Position::of(e))
            .chain(displaced.iter().cloned())
            .min();
        let path = self.path.clone();
        let db = |source| EventLogError::Db {
            path: path.clone(),
            source,
        };
        let tx = self.conn.unchecked_transaction().map_err(db)?;
        let received_at = Timestamp::now().unix();
        let mut clock = self.clock;
        {
            let mut remove = tx
                .prepare_cached("DELETE FROM events WHERE event_id = ?1")
                .map_err(db)?;
            let mut publish = tx
                .prepare_cached("INSERT INTO judged_out (event_id) VALUES (?1)")
                .map_err(db)?;
            for p in &displaced {
                remove.execute(params![p.event_id]).map_err(db)?;
                publish.execute(params![p.event_id]).map_err(db)?;
            }
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (event_id, lamport, author, event_type, wall_clock, envelope, received_at, held, digest)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8)",
                )
                .map_err(db)?;
            for (e, value, claim) in fresh.values() {
                // §7.3: a received Lamport moves our clock past it.
                clock = clock.max(e.lamport);
                let bytes = serde_json::to_vec(value).unwrap_or_default();
                insert
                    .execute(params![
                        e.event_id,
                        e.lamport as i64,
                        e.author.full(),
                        e.event_type,
                        e.wall_clock.to_string(),
                        bytes,
                        received_at,
                        claim.digest.0.as_slice()
                    ])
                    .map_err(db)?;
            }
        }
        let watch: HashSet<String> = fresh.keys().cloned().collect();
        let judged = self.history.refold(&tx, from, Mode::Judge, &watch);
        let finish = judged.and_then(|verdicts| {
            let mut stored = watch.clone();
            let held: i64 = tx.query_row("SELECT COUNT(*) FROM events WHERE held = 1", [], |r| r.get(0))?;
            if held > MAX_HELD {
                for (id, verdict) in &verdicts {
                    if verdict.is_some() {
                        tx.execute("DELETE FROM events WHERE event_id = ?1", params![id])?;
                        stored.remove(id);
                    }
                }
            }
            tx.execute(
                "DELETE FROM judged_out WHERE seq <= (SELECT MAX(seq) FROM judged_out) - ?1",
                params![MAX_JUDGED_OUT],
            )?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('clock', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![clock.to_string()],
            )?;
            let last_seq: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
            Ok((verdicts, stored, last_seq))
        });
        match finish.and_then(|out| tx.commit().map(|()| out)) {
            Ok((verdicts, stored, last_seq)) => {
                self.revision
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                self.clock = clock;
                self.changes.send_replace(last_seq);
                Ok((verdicts, stored))
            }
            Err(source) => Err(db(source)),
        }
    }

    fn maybe_snapshot(&mut self) {
        let (Some(store), Some(key)) = (&self.snapshots, &self.snapshot_key) else {
            return;
        };
        let view = &self.history.view;
        if view.head < self.last_snapshot + hearthnet_base::constants::SNAPSHOT_LAG_LAMPORT {
            return;
        }
        match snapshot::write(store, &self.conn, view, key) {
            Ok(()) => self.last_snapshot = view.head,
            Err(e) => tracing::warn!(error = %e, "cannot write a snapshot"),
        }
    }

    fn query(&self, q: &Query) -> Result<Vec<StoredEvent>, EventLogError> {
        let mut sql = String::from("SELECT seq, envelope FROM events WHERE held = 0");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(t) = &q.event_type {
            sql.push_str(" AND event_type = ?");
            args.push(t.clone().into());
        }
        if !q.event_types.is_empty() {
            let marks = vec!["?"; q.event_types.len()].join(", ");
            sql.push_str(&format!(" AND event_type IN ({marks})"));
            args.extend(q.event_types.iter().map(|t| t.clone().into()));
        }
        if let Some(a) = &q.author {
            sql.push_str(" AND author = ?");
            args.push(a.clone().into());
        }
        if let Some(l) = q.lamport_from {
            sql.push_str(" AND lamport >= ?");
            args.push((l as i64).into());
        }
        if let Some(l) = q.lamport_to {
            sql.push_str(" AND lamport <= ?");
            args.push((l as i64).into());
        }
        if let Some(s) = q.after_seq {
            sql.push_str(" AND seq > ?");
            args.push(s.into());
            sql.push_str(" ORDER BY seq");
        } else {
            sql.push_str(" ORDER BY lamport, event_id");
        }
        if let Some(n) = q.limit {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        let mut stmt = self.db(self.conn.prepare(&sql))?;
        let rows = self.db(stmt.query_map(rusqlite::params_from_iter(args), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        }))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, bytes) = self.db(row)?;
            if let Ok(json) = serde_json::from_slice::<Value>(&bytes)
                && let Ok(event) = serde_json::from_value::<Event>(json.clone())
            {
                out.push(StoredEvent { seq, event, json });
            }
        }
        Ok(out)
    }

    fn replay_into<F: crate::Fold>(&self, mut fold: F) -> Result<(F, i64), EventLogError> {
        let mut stmt = self.db(self.conn.prepare(
            "SELECT seq, envelope FROM events WHERE held = 0 ORDER BY lamport, event_id",
        ))?;
        let rows =
            self.db(stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))))?;
        let mut last_seq = 0;
        for row in rows {
            let (seq, bytes) = self.db(row)?;
            last_seq = last_seq.max(seq);
            if let Ok(e) = serde_json::from_slice::<Event>(&bytes)
                && fold.wants(&e.event_type)
            {
                fold.apply(&e);
            }
        }
        Ok((fold, last_seq))
    }

    fn ids(&self) -> Result<Vec<crate::sync::Item>, EventLogError> {
        let mut stmt = self.db(self.conn.prepare(
            "SELECT lamport, digest, event_id FROM events WHERE held = 0 ORDER BY lamport, event_id",
        ))?;
        let rows = self.db(stmt.query_map([], |r| {
            let digest: Vec<u8> = r.get(1)?;
            let mut d = [0u8; 32];
            if digest.len() == 32 {
                d.copy_from_slice(&digest);
            }
            Ok(crate::sync::Item {
                lamport: r.get::<_, i64>(0)? as u64,
                digest: d,
                event_id: r.get(2)?,
            })
        }))?;
        rows.map(|r| self.db(r)).collect()
    }

    fn judged_out(&self, after: i64, limit: usize) -> Result<JudgedOut, EventLogError> {
        let (oldest, newest): (Option<i64>, Option<i64>) =
            self.db(self
                .conn
                .query_row("SELECT MIN(seq), MAX(seq) FROM judged_out", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                }))?;
        let mut stmt = self.db(self.conn.prepare_cached(
            "SELECT seq, event_id FROM judged_out WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        ))?;
        let rows =
            self.db(stmt.query_map(params![after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?))))?;
        let ids = rows.map(|r| self.db(r)).collect::<Result<_, _>>()?;
        Ok(JudgedOut {
            ids,
            current: Vec::new(),
            missed: oldest.is_some_and(|oldest| after < oldest - 1),
            newest: newest.unwrap_or(0),
        })
    }

    fn by_ids(&self, ids: &[String]) -> Result<Vec<StoredEvent>, EventLogError> {
        let mut stmt = self.db(self
            .conn
            .prepare_cached("SELECT seq, envelope FROM events WHERE event_id = ?1 AND held = 0"))?;
        let mut out = Vec::new();
        for id in ids {
            let row: Option<(i64, Vec<u8>)> = self.db(stmt
                .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional())?;
            if let Some((seq, bytes)) = row
                && let Ok(json) = serde_json::from_slice::<Value>(&bytes)
                && let Ok(event) = serde_json::from_value::<Event>(json.clone())
            {
                out.push(StoredEvent { seq, event, json });
            }
        }
        out.sort_by(|a, b| {
            (a.event.lamport, &a.event.event_id).cmp(&(b.event.lamport, &b.event.event_id))
        });
        Ok(out)
    }

    fn integrity_check(&self) -> Result<Result<(), String>, EventLogError> {
        let result: String = self.db(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0)))?;
        Ok(if result == "ok" { Ok(()) } else { Err(result) })
    }
}

/// Which stored envelopes [`read_stored`] reads.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// Those a full NodeID wrote.
    AuthoredBy(&'a str),
    /// Those whose type starts with this prefix (e.g. `chat.message.`).
    TypePrefix(&'a str),
}

/// The envelopes `which` selects, as stored, in replay order (`lamport`,
/// `event_id`), with their types; read from the database at `path` opened
/// read-only, so this works beside a node that has the log open (WAL
/// readers never block its writer) and never creates or changes the
/// database. Events stored but judged out are included: an author's are
/// still its words, and readers fold what they need.
pub fn read_stored(
    path: &Path,
    which: Selection<'_>,
) -> Result<Vec<(String, Value)>, EventLogError> {
    let db_err = |source| EventLogError::Db {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(db_err)?;
    let (condition, value) = match which {
        Selection::AuthoredBy(author) => ("author = ?1", author),
        Selection::TypePrefix(prefix) => ("substr(event_type, 1, length(?1)) = ?1", prefix),
    };
    let mut statement = conn
        .prepare(&format!(
            "SELECT event_type, envelope FROM events WHERE {condition} ORDER BY lamport, event_id"
        ))
        .map_err(db_err)?;
    let rows = statement
        .query_map(params![value], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .map_err(db_err)?;
    let mut stored = Vec::new();
    for row in rows {
        let (event_type, envelope) = row.map_err(db_err)?;
        let json = serde_json::from_slice(&envelope).map_err(|e| {
            db_err(rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Blob,
                Box::new(e),
            ))
        })?;
        stored.push((event_type, json));
    }
    Ok(stored)
}

/// One warning for a batch's rejections, however many: a member sending a
/// thousand bad events must not write a thousand lines to our log. Each
/// rejection is logged at debug level; the sender gets every one in its
/// report.
fn warn_once_per_batch(rejected: &[(String, Reject)]) {
    let Some((first_id, first)) = rejected.first() else {
        return;
    };
    let mut by_code: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (_, r) in rejected {
        *by_code.entry(r.code.as_str()).or_default() += 1;
    }
    let codes: Vec<String> = by_code.iter().map(|(c, n)| format!("{c} x{n}")).collect();
    tracing::warn!(
        rejected = rejected.len(),
        codes = %codes.join(", "),
        first = %first_id,
        detail = %first.detail,
        "events rejected"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearthnet_base::{Blake3Id, TrustLevel};
    use hearthnet_identity::{CommunityPolicy, Genesis};
    use serde_json::json;

    #[test]
    fn a_batch_of_rejections_is_one_warning() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tracing_subscriber::layer::SubscriberExt;

        struct CountWarnings(Arc<AtomicUsize>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountWarnings {
            fn on_event(
                &self,
                event: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                if *event.metadata().level() == tracing::Level::WARN {
                    self.0.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let warnings = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(CountWarnings(warnings.clone()));
        let rejected: Vec<(String, Reject)> = (0..1000)
            .map(|i| {
                let code = if i % 2 == 0 {
                    RejectCode::QuotaExceeded
                } else {
                    RejectCode::InvalidSignature
                };
                (format!("e{i}"), Reject::new(code, "bad"))
            })
            .collect();
        tracing::subscriber::with_default(subscriber, || {
            warn_once_per_batch(&rejected);
            warn_once_per_batch(&[]);
        });
        assert_eq!(warnings.load(Ordering::Relaxed), 1);
    }

    struct World {
        dir: tempfile::TempDir,
        founder: DeviceKey,
        genesis: Genesis,
    }

    impl World {
        fn new() -> Self {
            let founder = DeviceKey::generate();
            let genesis = Genesis::create(&founder, "Demo", CommunityPolicy::default()).unwrap();
            Self {
                dir: tempfile::tempdir().unwrap(),
                founder,
                genesis,
            }
        }

        fn community(&self) -> CommunityId {
            self.genesis.manifest.community_id
        }

        fn open(&self, name: &str) -> EventLog {
            EventLog::open(
                LogPaths::in_state_dir(&self.dir.path().join(name)),
                self.community(),
                Limits::default(),
                Some(self.genesis.created_event.to_value()),
                Some(self.founder.clone()),
            )
            .unwrap()
        }

        fn event(&self, key: &DeviceKey, lamport: u64, event_type: &str, mut data: Value) -> Value {
            // Linked like our own events, as the first of their author.
            if let Some(fields) = data.as_object_mut() {
                fields.entry(AUTHOR_PREV).or_insert(Value::Null);
            }
            Event::create(
                NewEvent {
                    community_id: self.community(),
                    lamport,
                    event_type,
                    data,
                },
                key,
            )
            .unwrap()
            .to_value()
        }

        /// The invite and join events admitting `who` at `level` from Lamport `at`.
        fn admission(&self, who: &DeviceKey, level: &str, at: u64) -> Vec<Value> {
            let invite = self.event(
                &self.founder,
                at,
                "community.member.invited",
                json!({
                    "invitee_node_id": who.node_id(), "display_name": "x", "initial_level": level,
                    "expires_at": Timestamp::now().plus_seconds(3600)
                }),
            );
            let joined = self.event(
                who,
                at + 1,
                "community.member.joined",
                json!({
                    "invite_event_id": invite["event_id"], "node_manifest": {}
                }),
            );
            vec![joined, invite]
        }

        /// Invite and join `who` at `level`, starting at Lamport `at`.
        fn admit(&self, log: &EventLog, who: &DeviceKey, level: &str, at: u64) {
            let report = log
                .append_received_blocking(self.admission(who, level, at))
                .unwrap();
            assert_eq!(report.accepted, 2, "{report:?}");
        }

        fn post(&self, key: &DeviceKey, lamport: u64, title: &str) -> Value {
            self.event(key, lamport, "market.post.created", json!({
                "client_id": title, "category": "offer", "title": title, "body": "b", "ttl_seconds": 60
            }))
        }

        /// A lapsing event of which an author may write many (a direct
        /// message to the founder; one author's live posts are capped).
        fn message(&self, key: &DeviceKey, lamport: u64, client_id: &str) -> Value {
            self.event(key, lamport, "chat.message.sent", json!({
                "client_id": client_id, "recipient": self.founder.node_id().full(), "body": "e2e1:x"
            }))
        }
    }

    #[test]
    fn a_new_database_and_its_wal_and_shm_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let w = World::new();
        let log = w.open("a");
        assert_eq!(log.view().count, 1, "the genesis went through the WAL");
        for suffix in ["", "-wal", "-shm"] {
            let path = w.dir.path().join(format!("a/events.sqlite{suffix}"));
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
    }

    #[test]
    fn genesis_local_appends_and_lamport_rules() {
        let w = World::new();
        let log = w.open("a");
        assert_eq!(log.view().count, 1);
        assert_eq!(
            log.view().level_of(&w.founder.node_id()),
            TrustLevel::Anchor
        );
        let e1 = log
            .append_local_blocking(
                "file.cid.unpinned",
                json!({"cid": hearthnet_base::Blake3Id::of(b"x")}),
                &w.founder,
            )
            .unwrap();
        assert_eq!(e1.lamport, 1);
        // A received event far ahead moves our clock past it (§7.3).
        let ahead = w.post(&w.founder, 40, "ahead");
        assert_eq!(
            log.append_received_blocking(vec![ahead]).unwrap().accepted,
            1
        );
        let e2 = log
            .append_local_blocking(
                "file.cid.unpinned",
                json!({"cid": hearthnet_base::Blake3Id::of(b"y")}),
                &w.founder,
            )
            .unwrap();
        assert_eq!(e2.lamport, 41);
        assert_eq!(log.view().head, 41);
        let all = log.query_blocking(Query::default()).unwrap();
        assert_eq!(
            all.iter().map(|e| e.event.lamport).collect::<Vec<_>>(),
            [0, 1, 40, 41]
        );
        let by_type = log
            .query_blocking(Query {
                event_type: Some("market.post.created".into()),
                ..Query::default()
            })
            .unwrap();
        assert_eq!(by_type.len(), 1);
        let page = log
            .query_blocking(Query {
                event_types: vec!["file.cid.unpinned".into(), "community.created".into()],
                after_seq: Some(0),
                limit: Some(2),
                ..Query::default()
            })
            .unwrap();
        assert_eq!(
            page.iter().map(|e| e.event.lamport).collect::<Vec<_>>(),
            [0, 1],
            "either type, in storage order, as many as asked"
        );
    }

    #[test]
    fn services_fold_events_in_replay_order() {
        struct Titles(Vec<String>);
        impl crate::Fold for Titles {
            fn wants(&self, t: &str) -> bool {
                t == "market.post.created"
            }
            fn apply(&mut self, e: &Event) {
                self.0
                    .push(e.data["title"].as_str().unwrap_or_default().to_owned());
            }
        }
        let w = World::new();
        let log = w.open("a");
        log.append_received_blocking(vec![
            w.post(&w.founder, 9, "late"),
            w.post(&w.founder, 2, "early"),
        ])
        .unwrap();
        log.append_local_blocking(
            "file.cid.unpinned",
            json!({"cid": hearthnet_base::Blake3Id::of(b"z")}),
            &w.founder,
        )
        .unwrap();
        let (titles, last_seq) = log.replay_into(Titles(Vec::new())).unwrap();
        assert_eq!(titles.0, ["early", "late"]);
        assert_eq!(last_seq, 4, "the cursor to follow from");
        let newer = log
            .query_blocking(Query {
                after_seq: Some(last_seq),
                ..Query::default()
            })
            .unwrap();
        assert!(newer.is_empty());
    }

    #[test]
    fn members_join_through_invites_and_strangers_are_refused() {
        let w = World::new();
        let log = w.open("a");
        let bob = DeviceKey::generate();
        assert_eq!(
            log.append_received_blocking(vec![w.post(&bob, 2, "too early")])
                .unwrap()
                .rejected[0]
                .1
                .code,
            RejectCode::UnknownAuthor
        );
        w.admit(&log, &bob, "member", 1);
        assert_eq!(log.view().level_of(&bob.node_id()), TrustLevel::Member);
        assert_eq!(
            log.append_received_blocking(vec![w.post(&bob, 5, "hello")])
                .unwrap()
                .accepted,
            1
        );
        // The same invite cannot be used twice, nor by someone else.
        let eve = DeviceKey::generate();
        let invite_id = log
            .query_blocking(Query {
                event_type: Some("community.member.invited".into()),
                ..Query::default()
            })
            .unwrap()[0]
            .event
            .event_id
            .clone();
        let stolen = w.event(
            &eve,
            9,
            "community.member.joined",
            json!({"invite_event_id": invite_id, "node_manifest": {}}),
        );
        assert_eq!(
            log.append_received_blocking(vec![stolen]).unwrap().rejected[0]
                .1
                .code,
            RejectCode::Unauthorized
        );
    }

    #[test]
    fn forged_events_are_rejected_and_never_stored() {
        let w = World::new();
        let log = w.open("a");
        let other = World::new();
        let mut bad_sig = w.post(&w.founder, 3, "x");
        bad_sig["signature"] = w.post(&w.founder, 3, "y")["signature"].clone();
        let mut tampered = w.post(&w.founder, 4, "original");
        tampered["data"]["title"] = json!("changed");
        let foreign = other.post(&other.founder, 5, "other community");
        let stranger = w.post(&DeviceKey::generate(), 6, "stranger");
        let huge = w.post(&w.founder, 7, &"x".repeat(70_000));
        let absurd = w.post(&w.founder, MAX_LAMPORT_STEP + 100, "far ahead");
        let future = {
            let mut v = w.post(&w.founder, 8, "future");
            v["wall_clock"] = json!(Timestamp::now().plus_seconds(3600));
            hearthnet_base::sign_value(v, &w.founder).unwrap()
        };
        let unknown_type = w.event(&w.founder, 9, "federation.peer.added", json!({}));
        let bad_data = w.event(
            &w.founder,
            10,
            "chat.message.sent",
            json!({"client_id": "c", "recipient": "nobody", "body": "b"}),
        );
        let report = log
            .append_received_blocking(vec![
                bad_sig,
                tampered,
                foreign,
                stranger,
                huge,
                absurd,
                future,
                unknown_type,
                bad_data,
            ])
            .unwrap();
        let mut codes: Vec<&str> = report
            .rejected
            .iter()
            .map(|(_, r)| r.code.as_str())
            .collect();
        codes.sort();
        assert_eq!(
            codes,
            [
                "bad_data",
                "clock_ahead",
                "invalid_signature",
                "invalid_signature",
                "lamport_ahead",
                "schema_unknown",
                "too_large",
                "unknown_author",
                "wrong_community"
            ]
        );
        assert_eq!(report.accepted, 0);
        assert_eq!(
            log.query_blocking(Query::default()).unwrap().len(),
            1,
            "only the genesis"
        );
    }

    /// `value` re-signed by `key` under `event_id`: what a squatter sends.
    fn under_id(value: &Value, event_id: &Value, key: &DeviceKey) -> Value {
        let mut v = value.clone();
        v["event_id"] = event_id.clone();
        v["author"] = json!(key.node_id());
        hearthnet_base::sign_value(v, key).unwrap()
    }

    #[test]
    fn a_different_envelope_under_a_stored_id_is_refused_not_a_duplicate() {
        let w = World::new();
        let log = w.open("a");
        let original = w.post(&w.founder, 3, "original");
        let id = original["event_id"].clone();
        assert_eq!(
            log.append_received_blocking(vec![original.clone()])
                .unwrap()
                .accepted,
            1
        );
        let squat = under_id(&w.post(&w.founder, 4, "squatter"), &id, &w.founder);
        let same_lamport = under_id(&w.post(&w.founder, 3, "same Lamport"), &id, &w.founder);
        let stranger = under_id(&w.post(&w.founder, 5, "x"), &id, &DeviceKey::generate());
        let mut forged = squat.clone();
        forged["data"]["title"] = json!("forged");
        let report = log
            .append_received_blocking(vec![
                original.clone(),
                squat,
                same_lamport,
                stranger,
                forged,
            ])
            .unwrap();
        assert_eq!((report.accepted, report.duplicates), (0, 1), "{report:?}");
        let mut codes: Vec<&str> = report
            .rejected
            .iter()
            .map(|(rejected_id, r)| {
                assert_eq!(rejected_id, id.as_str().unwrap());
                r.code.as_str()
            })
            .collect();
        codes.sort();
        // A broken envelope is refused for what is wrong with it.
        assert_eq!(
            codes,
            [
                "conflicting_id",
                "conflicting_id",
                "conflicting_id",
                "invalid_signature"
            ]
        );
        let stored = log.query_blocking(Query::default()).unwrap();
        assert_eq!(stored.len(), 2, "the genesis and the original");
        assert_eq!(stored[1].json, original, "the first envelope stays");
    }

    #[test]
    fn two_envelopes_under_one_id_in_one_batch_store_one_and_refuse_the_other() {
        let w = World::new();
        let log = w.open("a");
        let first = w.post(&w.founder, 3, "first");
        let id = first["event_id"].clone();
        let second = under_id(&w.post(&w.founder, 3, "second"), &id, &w.founder);
        let report = log
            .append_received_blocking(vec![first.clone(), first, second])
            .unwrap();
        assert_eq!((report.accepted, report.duplicates), (1, 1), "{report:?}");
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(report.rejected[0].1.code, RejectCode::ConflictingId);
        assert_eq!(log.query_blocking(Query::default()).unwrap().len(), 2);
    }

    #[test]
    fn one_event_cannot_jump_the_lamport_head() {
        let w = World::new();
        let log = w.open("a");
        let head = log.view().head;
        let refused = |lamport: u64| {
            let report = log
                .append_received_blocking(vec![w.post(&w.founder, lamport, "jump")])
                .unwrap();
            report.rejected.first().map(|(_, r)| r.code)
        };
        assert_eq!(refused(head + 1_000_000), Some(RejectCode::LamportAhead));
        assert_eq!(
            refused(head + MAX_LAMPORT_STEP + 1),
            Some(RejectCode::LamportAhead)
        );
        assert_eq!(log.view().head, head, "the refused jumps moved nothing");
        assert_eq!(
            refused(head + MAX_LAMPORT_STEP),
            None,
            "the step itself is allowed"
        );
        assert_eq!(log.view().head, head + MAX_LAMPORT_STEP);
    }

    #[test]
    fn a_batch_is_judged_against_the_head_its_earlier_events_raised() {
        let w = World::new();
        let log = w.open("a");
        // A community's history at once, in any order...
        let mut chain: Vec<Value> = (1..=2_000)
            .map(|l| w.message(&w.founder, l, &format!("c{l}")))
            .collect();
        chain.reverse();
        let report = log.append_received_blocking(chain).unwrap();
        assert_eq!(report.accepted, 2_000, "{:?}", report.rejected.first());
        assert_eq!(report.head, 2_000);
        // ...and a sparse one, each link exactly one step on, with one
        // link too far: it and whatever hangs on it are refused.
        let base = report.head;
        let sparse = [1, 2, 3].map(|i| w.post(&w.founder, base + i * MAX_LAMPORT_STEP, "s"));
        let beyond = [5, 6].map(|i| w.post(&w.founder, base + i * MAX_LAMPORT_STEP, "b"));
        let mut batch: Vec<Value> = beyond.into_iter().chain(sparse).collect();
        batch.rotate_left(2);
        let report = log.append_received_blocking(batch).unwrap();
        assert_eq!(report.accepted, 3);
        let codes: Vec<RejectCode> = report.rejected.iter().map(|(_, r)| r.code).collect();
        assert_eq!(codes, [RejectCode::LamportAhead, RejectCode::LamportAhead]);
        assert_eq!(log.view().head, base + 3 * MAX_LAMPORT_STEP);
    }

    #[test]
    fn revocation_needs_three_trusted_cosigners_and_stops_the_author() {
        let w = World::new();
        let log = w.open("a");
        let (t1, t2, bad) = (
            DeviceKey::generate(),
            DeviceKey::generate(),
            DeviceKey::generate(),
        );
        w.admit(&log, &t1, "trusted", 1);
        w.admit(&log, &t2, "trusted", 3);
        w.admit(&log, &bad, "member", 5);
        assert_eq!(
            log.append_received_blocking(vec![w.post(&bad, 8, "before")])
                .unwrap()
                .accepted,
            1
        );
        let intent = json!({"client_id": "r1", "target_node_id": bad.node_id(), "reason": "compromised", "author_prev": null});
        let payload = crate::cosigned_payload("community.member.revoked", &intent);
        let cosign = |k: &DeviceKey| json!({"node_id": k.node_id(), "signature": k.sign_canonical(&payload).unwrap()});
        let mut data = intent.clone();
        data["co_signers"] = json!([cosign(&w.founder), cosign(&t1)]);
        let two = w.event(&w.founder, 10, "community.member.revoked", data.clone());
        assert_eq!(
            log.append_received_blocking(vec![two]).unwrap().rejected[0]
                .1
                .code,
            RejectCode::Unauthorized
        );
        data["co_signers"] = json!([cosign(&w.founder), cosign(&t1), cosign(&t2)]);
        let three = w.event(&w.founder, 11, "community.member.revoked", data);
        assert_eq!(
            log.append_received_blocking(vec![three]).unwrap().accepted,
            1
        );
        assert!(log.view().is_revoked(&bad.node_id()));
        let after = log
            .append_received_blocking(vec![w.post(&bad, 12, "after")])
            .unwrap();
        assert_eq!(after.rejected[0].1.code, RejectCode::RevokedAuthor);
        // Its event from before the revocation stays valid history.
        let late_but_earlier = w.post(&bad, 9, "written before, arrived late");
        assert_eq!(
            log.append_received_blocking(vec![late_but_earlier])
                .unwrap()
                .accepted,
            1
        );
    }

    /// Co-signatures of `keys` for a change of `event_type` with `data`,
    /// set in it (with a fresh `client_id` if it has none).
    fn cosigned(event_type: &str, mut data: Value, keys: &[&DeviceKey]) -> Value {
        if data.get("client_id").is_none() {
            data["client_id"] = json!(ulid::Ulid::new().to_string());
        }
        let payload = crate::cosigned_payload(event_type, &data);
        let signers: Vec<Value> = keys
            .iter()
            .map(|k| json!({"node_id": k.node_id(), "signature": k.sign_canonical(&payload).unwrap()}))
            .collect();
        data["co_signers"] = json!(signers);
        data
    }

    #[test]
    fn a_tally_says_how_many_co_signatures_are_missing_and_who_may_give_them() {
        use hearthnet_base::NodeId;
        use std::collections::BTreeSet;
        let w = World::new();
        let log = w.open("a");
        let (t1, t2, m, bad) = (
            DeviceKey::generate(),
            DeviceKey::generate(),
            DeviceKey::generate(),
            DeviceKey::generate(),
        );
        w.admit(&log, &t1, "trusted", 1);
        w.admit(&log, &t2, "trusted", 3);
        w.admit(&log, &m, "member", 5);
        w.admit(&log, &bad, "member", 7);
        let kind = "community.member.revoked";
        let intent = json!({"client_id": "t1", "target_node_id": bad.node_id(), "reason": "other"});
        let payload = crate::cosigned_payload(kind, &intent);
        let forged =
            json!({"node_id": t2.node_id(), "signature": t1.sign_canonical(&payload).unwrap()});
        let mut data = cosigned(kind, intent.clone(), &[&t1, &m, &bad, &t1]);
        data["co_signers"].as_array_mut().unwrap().push(forged);
        let view = log.view();
        let tally = view.tally(kind, &data).unwrap();
        assert_eq!((tally.needed, tally.missing()), (3, 2));
        assert_eq!(tally.counted, BTreeSet::from([t1.node_id()]));
        let why: Vec<&str> = tally.not_counted.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(
            why,
            [
                "is member, and co-signers must be trusted or above",
                "the target cannot co-sign",
                "signed twice",
                "the signature does not verify"
            ]
        );
        let may: BTreeSet<NodeId> = tally.may_still_sign(&view).collect();
        assert_eq!(may, BTreeSet::from([w.founder.node_id(), t2.node_id()]));
        // The log judges the same way: below the quorum it refuses.
        let short = w.event(&t1, 10, kind, data);
        assert_eq!(
            codes(&log.append_received_blocking(vec![short]).unwrap()),
            [RejectCode::Unauthorized]
        );
        let full = cosigned(kind, intent.clone(), &[&t1, &t2, &w.founder]);
        assert!(view.tally(kind, &full).unwrap().is_met());
        let event = w.event(&t1, 11, kind, full.clone());
        assert_eq!(
            log.append_received_blocking(vec![event]).unwrap().accepted,
            1
        );
        // Once it counts, the target is gone and the signatures are spent.
        assert!(log.view().tally(kind, &full).is_err());
        // A change that cannot be is refused outright.
        let raise =
            json!({"client_id": "t2", "target_node_id": t1.node_id(), "new_level": "anchor"});
        assert!(
            log.view()
                .tally("community.member.demoted", &raise)
                .is_err()
        );
        assert!(log.view().tally("market.post.created", &raise).is_err());
    }

    fn codes(report: &AppendReport) -> Vec<RejectCode> {
        report.rejected.iter().map(|(_, r)| r.code).collect()
    }

    #[test]
    fn a_revocation_naming_the_last_event_refuses_backdated_ones() {
        let w = World::new();
        let log = w.open("a");
        let (t1, t2, bad, friend) = (
            DeviceKey::generate(),
            DeviceKey::generate(),
            DeviceKey::generate(),
            DeviceKey::generate(),
        );
        w.admit(&log, &t1, "trusted", 1);
        w.admit(&log, &t2, "trusted", 3);
        let admission = w.admission(&bad, "member", 5);
        let join_id = admission[0]["event_id"].clone();
        log.append_received_blocking(admission).unwrap();
        let mut known = w.post(&bad, 8, "known");
        let mut data = known["data"].clone();
        data["author_prev"] = join_id;
        known = w.event(&bad, 8, "market.post.created", data);
        assert_eq!(
            log.append_received_blocking(vec![known.clone()])
                .unwrap()
                .accepted,
            1
        );
        let revocation = cosigned(
            "community.member.revoked",
            json!({"target_node_id": bad.node_id(), "reason": "compromised", "target_last_event_id": known["event_id"]}),
            &[&w.founder, &t1, &t2],
        );
        let revocation = w.event(&w.founder, 11, "community.member.revoked", revocation);
        assert_eq!(
            log.append_received_blocking(vec![revocation])
                .unwrap()
                .accepted,
            1
        );
        // Below the revocation's Lamport, linked to the known event: still
        // not one the revokers knew.
        let invite = w.event(
            &bad,
            9,
            "community.member.invited",
            json!({
                "invitee_node_id": friend.node_id(), "display_name": "f", "initial_level": "member",
                "expires_at": Timestamp::now().plus_seconds(3600), "author_prev": known["event_id"]
            }),
        );
        let join = w.event(
            &friend,
            10,
            "community.member.joined",
            json!({"invite_event_id": invite["event_id"], "node_manifest": {}}),
        );
        let report = log.append_received_blocking(vec![invite, join]).unwrap();
        assert_eq!(report.accepted, 0, "{report:?}");
        assert!(
            codes(&report).contains(&RejectCode::RevokedAuthor),
            "{report:?}"
        );
        assert_eq!(log.view().level_of(&friend.node_id()), TrustLevel::Unknown);
        let served: Vec<String> = log
            .query_blocking(Query {
                author: Some(bad.node_id().full()),
                ..Query::default()
            })
            .unwrap()
            .into_iter()
            .map(|s| s.event.event_id)
            .collect();
        assert_eq!(
            served.len(),
            2,
            "the join and the known post stay: {served:?}"
        );
    }

    #[test]
    fn an_event_before_its_authors_join_counts_once_the_join_arrives() {
        let w = World::new();
        let log = w.open("a");
        let newcomer = DeviceKey::generate();
        let cursor = log
            .query_blocking(Query::default())
            .unwrap()
            .last()
            .unwrap()
            .seq;
        let early = w.post(&newcomer, 5, "early");
        let report = log.append_received_blocking(vec![early.clone()]).unwrap();
        assert_eq!(codes(&report), [RejectCode::UnknownAuthor]);
        assert!(
            log.query_blocking(Query::default())
                .unwrap()
                .iter()
                .all(|s| s.json != early)
        );
        w.admit(&log, &newcomer, "member", 1);
        // A follower of the log by sequence number sees it arrive.
        let followed = log
            .query_blocking(Query {
                after_seq: Some(cursor),
                ..Query::default()
            })
            .unwrap();
        assert!(followed.iter().any(|s| s.json == early), "{followed:?}");
        // Offered again, it is a duplicate, not a second copy.
        assert_eq!(
            log.append_received_blocking(vec![early])
                .unwrap()
                .duplicates,
            1
        );
    }

    #[test]
    fn a_quorum_from_one_members_lineage_is_refused() {
        let w = World::new();
        let log = w.open("a");
        let (a, s1, s2, target) = (
            DeviceKey::generate(),
            DeviceKey::generate(),
            DeviceKey::generate(),
            DeviceKey::generate(),
        );
        w.admit(&log, &a, "trusted", 1);
        w.admit(&log, &target, "member", 3);
        let promote = cosigned(
            "community.member.promoted",
            json!({"target_node_id": a.node_id(), "new_level": "anchor"}),
            &[&w.founder],
        );
        let promote = w.event(&w.founder, 5, "community.member.promoted", promote);
        assert_eq!(
            log.append_received_blocking(vec![promote])
                .unwrap()
                .accepted,
            1
        );
        // The new anchor brings in two keys of its own at trusted.
        let invite = |who: &DeviceKey, at: u64| {
            let invite = w.event(&a, at, "community.member.invited", json!({
                "invitee_node_id": who.node_id(), "display_name": "s", "initial_level": "trusted",
                "expires_at": Timestamp::now().plus_seconds(3600)
            }));
            let join = w.event(
                who,
                at + 1,
                "community.member.joined",
                json!({"invite_event_id": invite["event_id"], "node_manifest": {}}),
            );
            vec![invite, join]
        };
        assert_eq!(
            log.append_received_blocking(invite(&s1, 6))
                .unwrap()
                .accepted,
            2
        );
        assert_eq!(
            log.append_received_blocking(invite(&s2, 8))
                .unwrap()
                .accepted,
            2
        );
        let intent = json!({"target_node_id": target.node_id(), "reason": "other"});
        let own_keys = w.event(
            &a,
            10,
            "community.member.revoked",
            cosigned("community.member.revoked", intent.clone(), &[&a, &s1, &s2]),
        );
        let report = log.append_received_blocking(vec![own_keys]).unwrap();
        assert_eq!(codes(&report), [RejectCode::Unauthorized]);
        assert!(
            report.rejected[0].1.detail.contains("independent"),
            "{report:?}"
        );
        // With the founder instead of one of them, the quorum stands.
        let fair = w.event(
            &a,
            11,
            "community.member.revoked",
            cosigned("community.member.revoked", intent, &[&w.founder, &a, &s1]),
        );
        assert_eq!(
            log.append_received_blocking(vec![fair]).unwrap().accepted,
            1
        );
    }

    #[test]
    fn trusted_members_cannot_lower_an_anchor_and_the_root_needs_two_anchors() {
        let w = World::new();
        let log = w.open("a");
        let trusted: Vec<DeviceKey> = (0..3).map(|_| DeviceKey::generate()).collect();
        for (i, t) in trusted.iter().enumerate() {
            w.admit(&log, t, "trusted", 1 + 2 * i as u64);
        }
        let demote = json!({"target_node_id": w.founder.node_id(), "new_level": "member"});
        let signers: Vec<&DeviceKey> = trusted.iter().collect();
        let by_trusted = w.event(
            &trusted[0],
            10,
            "community.member.demoted",
            cosigned("community.member.demoted", demote.clone(), &signers),
        );
        assert_eq!(
            codes(&log.append_received_blocking(vec![by_trusted]).unwrap()),
            [RejectCode::Unauthorized]
        );
        // A policy of one signature does not let one anchor take the root.
        let mut policy = log.view().policy.clone();
        policy["min_signatures_to_demote"] = json!(1);
        let update = w.event(
            &w.founder,
            11,
            "community.policy.updated",
            json!({"policy": policy}),
        );
        assert_eq!(
            log.append_received_blocking(vec![update]).unwrap().accepted,
            1
        );
        let promote = w.event(
            &w.founder,
            12,
            "community.member.promoted",
            cosigned(
                "community.member.promoted",
                json!({"target_node_id": trusted[0].node_id(), "new_level": "anchor"}),
                &[&w.founder],
            ),
        );
        assert_eq!(
            log.append_received_blocking(vec![promote])
                .unwrap()
                .accepted,
            1
        );
        let one_anchor = w.event(
            &trusted[0],
            13,
            "community.member.demoted",
            cosigned("community.member.demoted", demote, &[&trusted[0]]),
        );
        let report = log.append_received_blocking(vec![one_anchor]).unwrap();
        assert_eq!(codes(&report), [RejectCode::Unauthorized], "{report:?}");
        assert_eq!(
            log.view().level_of(&w.founder.node_id()),
            TrustLevel::Anchor
        );
    }

    #[test]
    fn an_author_over_its_daily_quota_is_refused() {
        let w = World::new();
        let log = EventLog::open(
            LogPaths::in_state_dir(&w.dir.path().join("quota")),
            w.community(),
            Limits {
                max_author_events_per_day: 3,
                ..Limits::default()
            },
            Some(w.genesis.created_event.to_value()),
            None,
        )
        .unwrap();
        // The genesis is the founder's first event of the day.
        let posts: Vec<Value> = (1..=3)
            .map(|i| w.post(&w.founder, i, &format!("p{i}")))
            .collect();
        let report = log.append_received_blocking(posts).unwrap();
        assert_eq!(report.accepted, 2, "{report:?}");
        assert_eq!(codes(&report), [RejectCode::QuotaExceeded]);
        assert!(
            report.rejected[0].1.detail.contains("at most 3 events"),
            "{report:?}"
        );
    }

    #[test]
    fn lapsed_posts_are_pruned_to_tombstones_and_not_taken_back() {
        let w = World::new();
        let log = w.open("prune");
        let post = w.post(&w.founder, 1, "old sofa");
        assert_eq!(
            log.append_received_blocking(vec![post.clone()])
                .unwrap()
                .accepted,
            1
        );
        let month_later = Timestamp::now().plus_seconds(31 * 86_400);
        let pruned = log
            .run_blocking(move |core| core.prune(month_later))
            .unwrap()
            .unwrap();
        assert_eq!(pruned, 1);
        assert!(
            log.query_blocking(Query::default())
                .unwrap()
                .iter()
                .all(|s| s.json != post)
        );
        assert_eq!(log.view().count, 1, "only the genesis counts");
        // A peer that still holds it offers it again: the same event.
        let report = log.append_received_blocking(vec![post]).unwrap();
        assert_eq!((report.accepted, report.duplicates), (0, 1), "{report:?}");
        // Membership events never lapse.
        let pruned = log
            .run_blocking(move |core| core.prune(month_later))
            .unwrap()
            .unwrap();
        assert_eq!(pruned, 0);
    }

    /// An event that counted and is judged out by earlier ones arriving is
    /// published, so folds drop it; one judged out on arrival is not.
    #[test]
    fn events_judged_out_after_they_counted_are_published() {
        let w = World::new();
        let log = w.open("a");
        let cap = crate::market::MAX_LIVE_POSTS_PER_AUTHOR as u64;
        let last = w.post(&w.founder, 1_000, "last");
        assert_eq!(
            log.append_received_blocking(vec![last.clone()])
                .unwrap()
                .accepted,
            1
        );
        let earlier: Vec<Value> = (1..=cap)
            .map(|l| w.post(&w.founder, l, &format!("p{l}")))
            .collect();
        log.append_received_blocking(earlier).unwrap();
        let late = w.post(&w.founder, 2_000, "late");
        let report = log.append_received_blocking(vec![late]).unwrap();
        assert_eq!(report.accepted, 0, "over the cap on arrival");
        let out = log
            .run_blocking(|core| core.judged_out(0, 100))
            .unwrap()
            .unwrap();
        assert!(!out.missed);
        let ids: Vec<&str> = out.ids.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(ids, [last["event_id"].as_str().unwrap()]);
        let after = out.ids[0].0;
        assert!(
            log.run_blocking(move |core| core.judged_out(after, 100))
                .unwrap()
                .unwrap()
                .ids
                .is_empty()
        );
    }

    /// A pruned post's tombstone keeps when the post lapsed, so a stale
    /// expiry judged against it later is judged as before the pruning;
    /// a held event leaves no tombstone (one would count as a post).
    #[test]
    fn a_tombstone_keeps_the_posts_lapse_and_held_events_leave_none() {
        let w = World::new();
        let log = w.open("prune");
        let post = w.post(&w.founder, 1, "old sofa");
        let orphan = w.event(
            &w.founder,
            2,
            "market.post.expired",
            json!({"client_id": "e", "target_event_id": "01NOPE", "reason": "fulfilled"}),
        );
        let report = log
            .append_received_blocking(vec![post.clone(), orphan.clone()])
            .unwrap();
        assert_eq!(report.accepted, 1, "{report:?}");
        let month_later = Timestamp::now().plus_seconds(31 * 86_400);
        let pruned = log
            .run_blocking(move |core| core.prune(month_later))
            .unwrap()
            .unwrap();
        assert_eq!(pruned, 2);
        let (post_id, orphan_id) = (
            post["event_id"].as_str().unwrap().to_owned(),
            orphan["event_id"].as_str().unwrap().to_owned(),
        );
        let (target, orphan_rows) = log
            .run_blocking(move |core| {
                let target =
                    crate::history::market_target(&core.conn, &post_id, &HashMap::new()).unwrap();
                let rows: i64 = core
                    .conn
                    .query_row(
                        "SELECT COUNT(*) FROM events WHERE event_id = ?1",
                        params![orphan_id],
                        |r| r.get(0),
                    )
                    .unwrap();
                (target, rows)
            })
            .unwrap();
        let target = target.expect("the tombstone is found");
        let wall_clock = Timestamp::parse(post["wall_clock"].as_str().unwrap()).unwrap();
        assert_eq!(target.expires_at, wall_clock.plus_seconds(60));
        assert!(target.counts);
        assert_eq!(orphan_rows, 0, "the held expiry is deleted");
    }

    #[test]
    fn arrival_order_does_not_change_the_result() {
        let w = World::new();
        let bob = DeviceKey::generate();
        let a = w.open("a");
        let admission = w.admission(&bob, "member", 1);
        a.append_received_blocking(admission.clone()).unwrap();
        let posts: Vec<Value> = (0..20)
            .map(|i| {
                w.post(
                    if i % 2 == 0 { &bob } else { &w.founder },
                    3 + i / 3,
                    &format!("p{i}"),
                )
            })
            .collect();
        for p in posts.iter().rev() {
            a.append_received_blocking(vec![p.clone()]).unwrap();
        }
        let b = w.open("b");
        b.append_received_blocking(admission).unwrap();
        b.append_received_blocking(posts.clone()).unwrap();
        let (va, vb) = (a.view(), b.view());
        assert_eq!(*va, *vb);
        // Offering everything again changes nothing.
        let again = b.append_received_blocking(posts).unwrap();
        assert_eq!((again.accepted, again.duplicates), (0, 20));
    }

    #[test]
    fn snapshots_bound_start_up_and_bad_ones_are_rebuilt() {
        let w = World::new();
        let state = w.dir.path().join("a");
        let log = w.open("a");
        let bob = DeviceKey::generate();
        w.admit(&log, &bob, "member", 1);
        let posts: Vec<Value> = (0..1100)
            .map(|i| w.message(&w.founder, 3 + i, &format!("p{i}")))
            .collect();
        log.append_received_blocking(posts).unwrap();
        drop(log);
        let snaps: Vec<_> = std::fs::read_dir(state.join("snapshots"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(snaps.len(), 1, "one snapshot after 1000 Lamports");
        let expected = w.open("a").view();
        assert_eq!(expected.count, 1103);
        assert_eq!(expected.level_of(&bob.node_id()), TrustLevel::Member);

        // A tampered snapshot is discarded and the view rebuilt from the log.
        let snap = snaps[0].path();
        let text = std::fs::read_to_string(&snap).unwrap();
        std::fs::write(&snap, text.replace("\"Demo\"", "\"Evil\"")).unwrap();
        let rebuilt = w.open("a").view();
        assert_eq!(rebuilt.name, "Demo");
        assert_eq!(*rebuilt, *expected);
        assert!(!snap.exists(), "the bad snapshot was removed");
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_reported_as_such() {
        let world = World::new();
        let file = world.dir.path().join("a-file");
        std::fs::write(&file, b"not a directory").unwrap();
        let opened = EventLog::open(
            LogPaths::in_state_dir(&file.join("state")),
            world.community(),
            Limits::default(),
            Some(world.genesis.created_event.to_value()),
            None,
        );
        match opened {
            Err(EventLogError::CreateDir { path, source }) => {
                assert_eq!(path, file.join("state"));
                assert_eq!(source.kind(), std::io::ErrorKind::NotADirectory);
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("opened a log under a regular file"),
        }
    }

    #[test]
    fn a_storage_failure_is_reported_to_a_local_author_as_such() {
        let w = World::new();
        let log = w.open("db");
        let head = log.view().head;
        log.run_blocking(|core| {
            core.conn.execute_batch(
                "CREATE TRIGGER full_disk BEFORE INSERT ON events
                 BEGIN SELECT RAISE(ABORT, 'the disk is on fire'); END",
            )
        })
        .unwrap()
        .unwrap();
        let data = w.post(&w.founder, head + 1, "hello")["data"].clone();
        let appended = log.append_local_blocking("market.post.created", data, &w.founder);
        match appended {
            Err(e @ EventLogError::Db { .. }) => {
                assert!(e.to_string().contains("on fire"), "{e}");
                assert_eq!(e.error_code(), ErrorCode::InternalError);
            }
            other => panic!("expected a database error, got {other:?}"),
        }
        // A peer offering the same is told per event, and nothing moved.
        let post = w.post(&w.founder, head + 1, "hello");
        let report = log.append_received_blocking(vec![post]).unwrap();
        assert_eq!(report.accepted, 0);
        assert_eq!(report.rejected[0].1.code, RejectCode::DbError);
        assert_eq!(log.view().head, head);
    }

    #[test]
    fn a_local_author_hears_the_contract_code_of_a_refusal() {
        let w = World::new();
        let log = w.open("codes");
        let member = DeviceKey::generate();
        w.admit(&log, &member, "member", 1);
        let refusal = |event_type: &str, data: Value, key: &DeviceKey| {
            let appended = log.append_local_blocking(event_type, data, key);
            appended.err().map(|e| (e.error_code(), e.to_string()))
        };
        let (code, message) = refusal("community.policy.updated", json!({"policy": {}}), &member)
            .expect("only the root key changes the policy");
        assert_eq!(code, ErrorCode::Unauthorized);
        assert!(message.contains("(unauthorized)"), "{message}");
        let stranger = refusal(
            "file.cid.unpinned",
            json!({"cid": Blake3Id::of(b"x")}),
            &DeviceKey::generate(),
        );
        assert_eq!(stranger.map(|(c, _)| c), Some(ErrorCode::Unauthorized));
        let (code, message) = refusal("market.post.created", json!({"title": "t"}), &w.founder)
            .expect("fields are missing");
        assert_eq!(code, ErrorCode::BadRequest);
        assert!(message.contains("(bad_data)"), "{message}");
        // Data no signature can cover: the event is never built.
        let huge = json!({"cid": Blake3Id::of(b"x"), "sizes_bytes": u64::MAX});
        match log.append_local_blocking("file.cid.unpinned", huge, &w.founder) {
            Err(e @ EventLogError::Build(_)) => assert_eq!(e.error_code(), ErrorCode::BadRequest),
            other => panic!("expected a build failure, got {other:?}"),
        }
    }
}
