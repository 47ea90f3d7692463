//! The marketplace's index: `<state_dir>/market.sqlite` (WAL), a view of
//! the market events of the log that can always be rebuilt from it. Posts
//! and expiries as the log holds them, each post's tags for filtering, an
//! FTS5 index over title, body and tags, and each post's vector with the
//! model that made it. `meta.last_seq` is the log's sequence number up to
//! which events are in; a batch of events and its cursor are written in
//! one transaction, so a process killed mid-way resumes where it stopped.
//! Blocking: call from blocking threads.

use std::path::{Path, PathBuf};

use hearthnet_base::event::Event;
use hearthnet_base::{NodeId, Timestamp};
use hearthnet_events::market::{MAX_TTL_SECONDS, POST_CREATED, POST_EXPIRED, POST_UPDATED};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Value, json};

use crate::error::MarketError;

/// Bumped when the tables change: an index of another version is rebuilt
/// from the log.
const INDEX_VERSION: &str = "2";

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS posts (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    lamport INTEGER NOT NULL,
    author TEXT NOT NULL,
    client_id TEXT NOT NULL,
    category TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    location TEXT,
    tags TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    -- The envelope's signature: another envelope under the id replaces
    -- the row. The post's own data, which updates are laid over.
    signature TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS posts_client ON posts(author, client_id);
CREATE INDEX IF NOT EXISTS posts_lamport ON posts(lamport);
CREATE INDEX IF NOT EXISTS posts_expiry ON posts(expires_at);
CREATE TABLE IF NOT EXISTS post_tags (
    tag TEXT NOT NULL,
    post INTEGER NOT NULL,
    PRIMARY KEY (tag, post)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS expiries (
    event_id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    lamport INTEGER NOT NULL,
    author TEXT NOT NULL,
    client_id TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS expiries_target ON expiries(target);
CREATE INDEX IF NOT EXISTS expiries_client ON expiries(author, client_id);
CREATE TABLE IF NOT EXISTS updates (
    event_id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    lamport INTEGER NOT NULL,
    fields TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_target ON updates(target);
CREATE VIRTUAL TABLE IF NOT EXISTS posts_fts USING fts5(
    title, body, tags, content='posts', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS vectors (
    post INTEGER PRIMARY KEY,
    model TEXT NOT NULL,
    vec BLOB NOT NULL
);
";

/// Every table, dropped to rebuild.
const DROP: &str = "
DROP TABLE IF EXISTS posts_fts;
DROP TABLE IF EXISTS vectors;
DROP TABLE IF EXISTS expiries;
DROP TABLE IF EXISTS updates;
DROP TABLE IF EXISTS post_tags;
DROP TABLE IF EXISTS posts;
DROP TABLE IF EXISTS meta;
";

/// A post as `market.list` and `market.search` show it (Contract §4.11).
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    pub id: i64,
    pub event_id: String,
    pub lamport: u64,
    pub author: String,
    pub category: String,
    pub title: String,
    pub body: String,
    pub location: Option<Value>,
    pub tags: Value,
    pub created_at: String,
    pub expires_at: i64,
}

impl Post {
    /// The post's document on the wire; `location` only when it has one.
    pub fn to_json(&self) -> Value {
        let mut post = json!({
            "event_id": self.event_id,
            "lamport": self.lamport,
            "author": self.author,
            "category": self.category,
            "title": self.title,
            "body": self.body,
            "tags": self.tags,
            "created_at": self.created_at,
            "expires_at": Timestamp::from_unix(self.expires_at),
        });
        if let Some(location) = &self.location {
            post["location"] = location.clone();
        }
        post
    }

    /// What is embedded for the post.
    pub fn text(&self) -> String {
        format!("{}\n{}", self.title, self.body)
    }
}

/// A post and its vector by some model, if one is stored.
pub type WithVector = (Post, Option<Vec<f32>>);

/// Which posts to list (Contract §4.11); only current ones ever are.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub category: Option<String>,
    /// Lower-case; a post must carry every one.
    pub tags: Vec<String>,
    pub since_lamport: Option<u64>,
    /// Authors whose posts no longer count (revoked).
    pub hidden_authors: Vec<String>,
}

/// A post's id and the event that expired it, if one did.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    pub post: Post,
    pub expired_by: Option<String>,
}

pub struct Index {
    conn: Mutex<Connection>,
    path: PathBuf,
}

const POST_COLUMNS: &str = "p.id, p.event_id, p.lamport, p.author, p.category, p.title, p.body, p.location, p.tags, p.created_at, p.expires_at";

/// Current: not lapsed at `?1`, not expired, and its author not among the
/// JSON array `?2`.
const CURRENT: &str = "p.expires_at > ?1
    AND NOT EXISTS (SELECT 1 FROM expiries x WHERE x.target = p.event_id)
    AND p.author NOT IN (SELECT value FROM json_each(?2))";

fn post_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Post> {
    let location: Option<String> = r.get(7)?;
    let tags: String = r.get(8)?;
    Ok(Post {
        id: r.get(0)?,
        event_id: r.get(1)?,
        lamport: r.get::<_, i64>(2)? as u64,
        author: r.get(3)?,
        category: r.get(4)?,
        title: r.get(5)?,
        body: r.get(6)?,
        location: location.and_then(|l| serde_json::from_str(&l).ok()),
        tags: serde_json::from_str(&tags).unwrap_or_else(|_| json!([])),
        created_at: r.get(9)?,
        expires_at: r.get(10)?,
    })
}

fn vector_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn vector_of(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

impl Index {
    /// Open (or create) the index at `path`; one of another version, or
    /// one that cannot be read, is rebuilt empty (the log refills it).
    pub fn open(path: &Path) -> Result<Self, MarketError> {
        match Self::open_as_is(path) {
            Err(MarketError::Db { source, .. }) => {
                tracing::warn!(path = %path.display(), error = %source, "market index unreadable: rebuilt from the log");
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.as_os_str().to_owned();
                    file.push(suffix);
                    match std::fs::remove_file(&file) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(MarketError::Create {
                                path: file.into(),
                                source: e,
                            });
                        }
                        _ => {}
                    }
                }
                Self::open_as_is(path)
            }
            opened => opened,
        }
    }

    fn open_as_is(path: &Path) -> Result<Self, MarketError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| MarketError::Create {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        hearthnet_base::fsio::create_private(path).map_err(|source| MarketError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        let index = Self {
            conn: Mutex::new(Connection::open(path).map_err(|source| MarketError::Db {
                path: path.to_path_buf(),
                source,
            })?),
            path: path.to_path_buf(),
        };
        {
            let conn = index.conn.lock();
            let version: Option<String> = conn
                .query_row("SELECT value FROM meta WHERE key = 'version'", [], |r| {
                    r.get(0)
                })
                .optional()
                .unwrap_or(None);
            if version.as_deref() != Some(INDEX_VERSION) {
                index.db(conn.execute_batch(DROP))?;
            }
            index.db(conn.execute_batch(SCHEMA))?;
            index.db(conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('version', ?1)",
                params![INDEX_VERSION],
            ))?;
        }
        Ok(index)
    }

    fn db<T>(&self, r: rusqlite::Result<T>) -> Result<T, MarketError> {
        r.map_err(|source| MarketError::Db {
            path: self.path.clone(),
            source,
        })
    }

    /// The log's sequence number up to which events are in.
    pub fn last_seq(&self) -> Result<i64, MarketError> {
        self.cursor("last_seq")
    }

    /// The number of the log's judged-out ids up to which they are out
    /// ([`hearthnet_events::EventLog::judged_out`]).
    pub fn judged_out_seq(&self) -> Result<i64, MarketError> {
        self.cursor("judged_out_seq")
    }

    fn cursor(&self, key: &str) -> Result<i64, MarketError> {
        let conn = self.conn.lock();
        let seq: Option<String> = self.db(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional())?;
        Ok(seq.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// Forget everything (the log was replaced): rebuilt from sequence 0.
    pub fn clear(&self) -> Result<(), MarketError> {
        let conn = self.conn.lock();
        self.db(conn.execute_batch(DROP))?;
        self.db(conn.execute_batch(SCHEMA))?;
        self.db(conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('version', ?1)",
            params![INDEX_VERSION],
        ))?;
        Ok(())
    }

    /// Take `events` in, and move the cursor to `last_seq` (when given),
    /// in one transaction. An event already in is skipped, so applying one
    /// twice (this node's own, right after it was written, and again when
    /// the follower meets it) changes nothing; another envelope under a
    /// known id replaces the first.
    pub fn apply(&self, events: &[Event], last_seq: Option<i64>) -> Result<(), MarketError> {
        let mut conn = self.conn.lock();
        let tx = self.db(conn.transaction())?;
        for e in events {
            self.db(apply_one(&tx, e))?;
        }
        if let Some(seq) = last_seq {
            self.db(tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?1)",
                params![seq.to_string()],
            ))?;
        }
        self.db(tx.commit())
    }

    /// The post `event_id`, current or not.
    pub fn post(&self, event_id: &str) -> Result<Option<Known>, MarketError> {
        let conn = self.conn.lock();
        let sql = format!(
            "SELECT {POST_COLUMNS}, (SELECT x.event_id FROM expiries x WHERE x.target = p.event_id ORDER BY x.lamport, x.event_id LIMIT 1)
             FROM posts p WHERE p.event_id = ?1"
        );
        self.db(conn
            .query_row(&sql, params![event_id], |r| {
                Ok(Known {
                    post: post_of(r)?,
                    expired_by: r.get(11)?,
                })
            })
            .optional())
    }

    /// The post `author` made with `client_id`: its event id and Lamport.
    pub fn post_by_client(
        &self,
        author: &NodeId,
        client_id: &str,
    ) -> Result<Option<(String, u64)>, MarketError> {
        self.by_client("posts", author, client_id)
    }

    /// The expiry `author` wrote with `client_id`.
    /// The expiry `author` wrote with `client_id`: its event id, Lamport
    /// and the post it expired.
    pub fn expiry_by_client(
        &self,
        author: &NodeId,
        client_id: &str,
    ) -> Result<Option<(String, u64, String)>, MarketError> {
        let conn = self.conn.lock();
        self.db(conn
            .query_row(
                "SELECT event_id, lamport, target FROM expiries WHERE author = ?1 AND client_id = ?2 ORDER BY lamport, event_id LIMIT 1",
                params![author.full(), client_id],
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?)),
            )
            .optional())
    }

    fn by_client(
        &self,
        table: &str,
        author: &NodeId,
        client_id: &str,
    ) -> Result<Option<(String, u64)>, MarketError> {
        let conn = self.conn.lock();
        let sql = format!(
            "SELECT event_id, lamport FROM {table} WHERE author = ?1 AND client_id = ?2 ORDER BY lamport, event_id LIMIT 1"
        );
        self.db(conn
            .query_row(&sql, params![author.full(), client_id], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
            })
            .optional())
    }

    /// Current posts by `filter`, newest first, at most `limit`.
    pub fn list(&self, filter: &Filter, now: i64, limit: usize) -> Result<Vec<Post>, MarketError> {
        let conn = self.conn.lock();
        let mut sql = format!("SELECT {POST_COLUMNS} FROM posts p WHERE {CURRENT}");
        let hidden = json!(filter.hidden_authors).to_string();
        let mut args: Vec<rusqlite::types::Value> = vec![now.into(), hidden.into()];
        if let Some(category) = &filter.category {
            args.push(category.clone().into());
            sql.push_str(&format!(" AND p.category = ?{}", args.len()));
        }
        if let Some(since) = filter.since_lamport {
            args.push((since.min(i64::MAX as u64) as i64).into());
            sql.push_str(&format!(" AND p.lamport > ?{}", args.len()));
        }
        for tag in &filter.tags {
            args.push(tag.clone().into());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM post_tags t WHERE t.post = p.id AND t.tag = ?{})",
                args.len()
            ));
        }
        sql.push_str(&format!(
            " ORDER BY p.lamport DESC, p.event_id DESC LIMIT {limit}"
        ));
        let mut stmt = self.db(conn.prepare(&sql))?;
        let rows = self.db(stmt.query_map(rusqlite::params_from_iter(args), post_of))?;
        rows.map(|r| self.db(r)).collect()
    }

    /// The highest Lamport of a post or expiry in the index.
    pub fn max_lamport(&self) -> Result<u64, MarketError> {
        let conn = self.conn.lock();
        let max: i64 = self.db(conn.query_row(
            "SELECT MAX(COALESCE((SELECT MAX(lamport) FROM posts), 0), COALESCE((SELECT MAX(lamport) FROM expiries), 0))",
            [],
            |r| r.get(0),
        ))?;
        Ok(max as u64)
    }

    /// Current posts matching the FTS5 query `fts` (see
    /// `hearthnet_rag::store::fts_query`), best first, with their BM25
    /// score made positive (higher is better).
    pub fn full_text(
        &self,
        fts: &str,
        hidden_authors: &[String],
        now: i64,
        k: usize,
    ) -> Result<Vec<(Post, f64)>, MarketError> {
        if fts.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn.lock();
        let sql = format!(
            "SELECT {POST_COLUMNS}, bm25(posts_fts) AS rank FROM posts_fts
             JOIN posts p ON p.id = posts_fts.rowid
             WHERE posts_fts MATCH ?3 AND {CURRENT}
             ORDER BY rank LIMIT {k}"
        );
        let hidden = json!(hidden_authors).to_string();
        let mut stmt = self.db(conn.prepare(&sql))?;
        let rows = self.db(stmt.query_map(params![now, hidden, fts], |r| {
            Ok((post_of(r)?, -r.get::<_, f64>(11)?))
        }))?;
        rows.map(|r| self.db(r)).collect()
    }

    /// Current posts, newest first, at most `limit`, each with its vector
    /// if one by `model` is stored.
    pub fn current_with_vectors(
        &self,
        model: &str,
        hidden_authors: &[String],
        now: i64,
        limit: usize,
    ) -> Result<Vec<WithVector>, MarketError> {
        let conn = self.conn.lock();
        let sql = format!(
            "SELECT {POST_COLUMNS}, v.vec FROM posts p
             LEFT JOIN vectors v ON v.post = p.id AND v.model = ?3
             WHERE {CURRENT} ORDER BY p.lamport DESC, p.event_id DESC LIMIT {limit}"
        );
        let hidden = json!(hidden_authors).to_string();
        let mut stmt = self.db(conn.prepare(&sql))?;
        let rows = self.db(stmt.query_map(params![now, hidden, model], |r| {
            let vec: Option<Vec<u8>> = r.get(11)?;
            Ok((post_of(r)?, vec.map(|b| vector_of(&b))))
        }))?;
        rows.map(|r| self.db(r)).collect()
    }

    /// Store the vectors of posts (by index id) made by `model`.
    pub fn set_vectors(&self, model: &str, vectors: &[(i64, Vec<f32>)]) -> Result<(), MarketError> {
        let mut conn = self.conn.lock();
        let tx = self.db(conn.transaction())?;
        {
            let mut stmt = self.db(tx.prepare_cached(
                "INSERT OR REPLACE INTO vectors (post, model, vec) VALUES (?1, ?2, ?3)",
            ))?;
            for (post, v) in vectors {
                self.db(stmt.execute(params![post, model, vector_bytes(v)]))?;
            }
        }
        self.db(tx.commit())
    }

    /// `author`'s posts lapsed by `now` that nobody expired, oldest
    /// first, at most `limit`.
    pub fn lapsed(
        &self,
        author: &NodeId,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Post>, MarketError> {
        let conn = self.conn.lock();
        let sql = format!(
            "SELECT {POST_COLUMNS} FROM posts p
             WHERE p.author = ?2 AND p.expires_at <= ?1
             AND NOT EXISTS (SELECT 1 FROM expiries x WHERE x.target = p.event_id)
             ORDER BY p.expires_at LIMIT {limit}"
        );
        let mut stmt = self.db(conn.prepare(&sql))?;
        let rows = self.db(stmt.query_map(params![now, author.full()], post_of))?;
        rows.map(|r| self.db(r)).collect()
    }
}

impl Index {
    /// Drop posts that lapsed before `before` (the log prunes their events
    /// too), with their tags, text, vectors and expiries; how many went.
    pub fn forget_lapsed(&self, before: i64) -> Result<usize, MarketError> {
        let mut conn = self.conn.lock();
        let tx = self.db(conn.transaction())?;
        let gone: Vec<String> = {
            let mut stmt =
                self.db(tx.prepare("SELECT event_id FROM posts WHERE expires_at < ?1"))?;
            let rows = self.db(stmt.query_map(params![before], |r| r.get(0)))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|source| MarketError::Db {
                    path: self.path.clone(),
                    source,
                })?
        };
        for event_id in &gone {
            self.db(remove_post(&tx, event_id))?;
            self.db(tx.execute("DELETE FROM expiries WHERE target = ?1", params![event_id]))?;
            self.db(tx.execute("DELETE FROM updates WHERE target = ?1", params![event_id]))?;
        }
        self.db(tx.commit())?;
        Ok(gone.len())
    }
}

fn apply_one(tx: &Transaction<'_>, e: &Event) -> rusqlite::Result<()> {
    match e.event_type.as_str() {
        POST_CREATED => insert_post(tx, e),
        POST_EXPIRED => insert_expiry(tx, e),
        POST_UPDATED => insert_update(tx, e),
        _ => Ok(()),
    }
}

impl Index {
    /// Drop what the log no longer counts under `gone` (judged out, or
    /// displaced), then take in `current`, what it counts under those ids
    /// now, and move the judged-out cursor to `judged_out_seq`; one
    /// transaction.
    pub fn replace(
        &self,
        gone: &[String],
        current: &[Event],
        judged_out_seq: i64,
    ) -> Result<(), MarketError> {
        let mut conn = self.conn.lock();
        let tx = self.db(conn.transaction())?;
        for id in gone {
            self.db(forget_event(&tx, id))?;
        }
        for e in current {
            self.db(apply_one(&tx, e))?;
        }
        self.db(tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('judged_out_seq', ?1)",
            params![judged_out_seq.to_string()],
        ))?;
        self.db(tx.commit())
    }
}

/// Remove the post, expiry or update `event_id` from the index.
fn forget_event(tx: &Transaction<'_>, event_id: &str) -> rusqlite::Result<()> {
    remove_post(tx, event_id)?;
    tx.execute(
        "DELETE FROM expiries WHERE event_id = ?1",
        params![event_id],
    )?;
    let target: Option<String> = tx
        .query_row(
            "DELETE FROM updates WHERE event_id = ?1 RETURNING target",
            params![event_id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(target) = target {
        refresh_post(tx, &target)?;
    }
    Ok(())
}

/// Remove the post `event_id` with its text, tags and vectors (its
/// expiries and updates stay: they name it, whatever envelope it has).
fn remove_post(tx: &Transaction<'_>, event_id: &str) -> rusqlite::Result<()> {
    let row: Option<(i64, String, String, String)> = tx
        .query_row(
            "SELECT id, title, body, tags FROM posts WHERE event_id = ?1",
            params![event_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((id, title, body, tags)) = row else {
        return Ok(());
    };
    let indexed = serde_json::from_str::<Vec<String>>(&tags)
        .unwrap_or_default()
        .join(" ");
    tx.execute(
        "INSERT INTO posts_fts (posts_fts, rowid, title, body, tags) VALUES ('delete', ?1, ?2, ?3, ?4)",
        params![id, title, body, indexed],
    )?;
    tx.execute("DELETE FROM post_tags WHERE post = ?1", params![id])?;
    tx.execute("DELETE FROM vectors WHERE post = ?1", params![id])?;
    tx.execute("DELETE FROM posts WHERE id = ?1", params![id])?;
    Ok(())
}

fn insert_post(tx: &Transaction<'_>, e: &Event) -> rusqlite::Result<()> {
    let known: Option<String> = tx
        .query_row(
            "SELECT signature FROM posts WHERE event_id = ?1",
            params![e.event_id],
            |r| r.get(0),
        )
        .optional()?;
    match known {
        Some(signature) if signature == e.signature => return Ok(()),
        Some(_) => remove_post(tx, &e.event_id)?,
        None => {}
    }
    let data = &e.data;
    let text = |key: &str| data[key].as_str().unwrap_or_default().to_owned();
    // The log checked the bounds; the clamp only guards the arithmetic.
    let ttl = data["ttl_seconds"]
        .as_u64()
        .unwrap_or(0)
        .min(MAX_TTL_SECONDS) as i64;
    tx.execute(
        "INSERT INTO posts (event_id, lamport, author, client_id, category, title, body, location, tags, created_at, expires_at, signature, data)
         VALUES (?1, ?2, ?3, ?4, '', '', '', NULL, '[]', ?5, ?6, ?7, ?8)",
        params![
            e.event_id,
            e.lamport as i64,
            e.author.full(),
            text("client_id"),
            e.wall_clock.to_string(),
            e.wall_clock.unix().saturating_add(ttl),
            e.signature,
            data.to_string(),
        ],
    )?;
    refresh_post(tx, &e.event_id)
}

/// Write the shown fields of post `event_id`: its own data with its
/// updates laid over in replay order, and its text and tags to match; a
/// vector of other text is dropped.
fn refresh_post(tx: &Transaction<'_>, event_id: &str) -> rusqlite::Result<()> {
    let row: Option<(i64, String, String, String, String)> = tx
        .query_row(
            "SELECT id, data, title, body, tags FROM posts WHERE event_id = ?1",
            params![event_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let Some((id, data, old_title, old_body, old_tags)) = row else {
        return Ok(());
    };
    let mut shown: Value = serde_json::from_str(&data).unwrap_or_else(|_| json!({}));
    {
        let mut stmt = tx.prepare_cached(
            "SELECT fields FROM updates WHERE target = ?1 ORDER BY lamport, event_id",
        )?;
        let updates = stmt.query_map(params![event_id], |r| r.get::<_, String>(0))?;
        for fields in updates {
            if let (Some(shown), Ok(Value::Object(fields))) = (
                shown.as_object_mut(),
                serde_json::from_str::<Value>(&fields?),
            ) {
                shown.extend(fields);
            }
        }
    }
    let text = |key: &str| shown[key].as_str().unwrap_or_default().to_owned();
    let tags: Vec<String> = shown["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    let location = shown.get("location").filter(|l| l.is_object());
    let tags_json = json!(tags).to_string();
    let (title, body) = (text("title"), text("body"));
    if (&title, &body, &tags_json) == (&old_title, &old_body, &old_tags) {
        // Only the category or location can differ: the text index and
        // the vector stand.
        tx.execute(
            "UPDATE posts SET category = ?2, location = ?3 WHERE id = ?1",
            params![id, text("category"), location.map(Value::to_string)],
        )?;
        return Ok(());
    }
    if !old_title.is_empty() {
        let indexed = serde_json::from_str::<Vec<String>>(&old_tags)
            .unwrap_or_default()
            .join(" ");
        tx.execute(
            "INSERT INTO posts_fts (posts_fts, rowid, title, body, tags) VALUES ('delete', ?1, ?2, ?3, ?4)",
            params![id, old_title, old_body, indexed],
        )?;
    }
    tx.execute("DELETE FROM post_tags WHERE post = ?1", params![id])?;
    tx.execute("DELETE FROM vectors WHERE post = ?1", params![id])?;
    tx.execute(
        "UPDATE posts SET category = ?2, title = ?3, body = ?4, location = ?5, tags = ?6 WHERE id = ?1",
        params![id, text("category"), title, body, location.map(Value::to_string), tags_json],
    )?;
    tx.execute(
        "INSERT INTO posts_fts (rowid, title, body, tags) VALUES (?1, ?2, ?3, ?4)",
        params![id, title, body, tags.join(" ")],
    )?;
    for tag in &tags {
        tx.execute(
            "INSERT OR IGNORE INTO post_tags (tag, post) VALUES (?1, ?2)",
            params![tag.to_lowercase(), id],
        )?;
    }
    Ok(())
}

fn insert_update(tx: &Transaction<'_>, e: &Event) -> rusqlite::Result<()> {
    let target = e.data["target_event_id"].as_str().unwrap_or_default();
    tx.execute(
        "INSERT OR REPLACE INTO updates (event_id, target, lamport, fields) VALUES (?1, ?2, ?3, ?4)",
        params![e.event_id, target, e.lamport as i64, e.data["fields"].to_string()],
    )?;
    refresh_post(tx, target)
}

fn insert_expiry(tx: &Transaction<'_>, e: &Event) -> rusqlite::Result<()> {
    let text = |key: &str| e.data[key].as_str().unwrap_or_default().to_owned();
    tx.execute(
        "INSERT OR REPLACE INTO expiries (event_id, target, lamport, author, client_id, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            e.event_id,
            text("target_event_id"),
            e.lamport as i64,
            e.author.full(),
            text("client_id"),
            text("reason"),
        ],
    )?;
    Ok(())
}
