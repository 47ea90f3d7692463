//! What one log takes, so a member cannot fill a node's disk: the size of
//! an event and the skew of its clock, how much one author may write per
//! day, and how long events whose meaning lapses (market posts, chat) are
//! kept (X02 §5.4).

use std::collections::HashMap;

use hearthnet_base::Timestamp;
use hearthnet_base::constants::EVENT_LOG_RETENTION_DAYS;
use rusqlite::{Connection, params};
use serde_json::{Value, json};

use crate::history::AUTHOR_PREV;
use crate::{Reject, RejectCode};

const DAY: i64 = 86_400;

/// What the log accepts, from config.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_event_bytes: usize,
    pub max_future_skew_seconds: i64,
    /// Days a lapsing event (see [`lapses`]) is kept after its wall clock.
    pub retention_days: u32,
    /// Events one author may have stamped with one UTC day.
    pub max_author_events_per_day: u64,
    /// Envelope bytes one author may have stamped with one UTC day.
    pub max_author_bytes_per_day: u64,
}

impl Default for Limits {
    /// Generous for a household (a folder of 50,000 files advertised in a
    /// day fits), and still a bound: one author cannot write more than
    /// 256 MiB a day, whatever it backdates.
    fn default() -> Self {
        Self {
            max_event_bytes: 64 * 1024,
            max_future_skew_seconds: 300,
            retention_days: EVENT_LOG_RETENTION_DAYS,
            max_author_events_per_day: 100_000,
            max_author_bytes_per_day: 256 * 1024 * 1024,
        }
    }
}

impl Limits {
    fn retention_seconds(&self) -> i64 {
        i64::from(self.retention_days) * DAY
    }

    /// Refuses a lapsing event whose wall clock is past the retention
    /// window: it would be pruned at once, and taking it back would undo
    /// the pruning.
    pub(crate) fn check_retention(
        &self,
        event_type: &str,
        wall_clock: Timestamp,
        now: Timestamp,
    ) -> Result<(), Reject> {
        if lapses(event_type) && wall_clock.unix() < now.unix() - self.retention_seconds() {
            return Err(Reject::new(
                RejectCode::PastRetention,
                format!(
                    "{event_type} stamped {wall_clock} is older than the {} days events of its kind are kept",
                    self.retention_days
                ),
            ));
        }
        Ok(())
    }
}

/// Event types whose meaning lapses: pruned after the retention window.
/// Membership, files and documents are state and are kept.
pub fn lapses(event_type: &str) -> bool {
    event_type.starts_with("market.") || event_type.starts_with("chat.")
}

/// What one author has stored stamped with one UTC day, and the most it
/// may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayQuota {
    pub events: u64,
    pub bytes: u64,
    pub max_events: u64,
    pub max_bytes: u64,
}

impl DayQuota {
    /// Whether less than `percent` of the day's events and of its bytes
    /// are used.
    pub fn below_percent(&self, percent: u64) -> bool {
        let under =
            |used: u64, max: u64| u128::from(used) * 100 < u128::from(max) * u128::from(percent);
        under(self.events, self.max_events) && under(self.bytes, self.max_bytes)
    }
}

/// Bookkeeping entries kept before the day counts are read again.
const MAX_TRACKED: usize = 100_000;

/// What each author has stored per UTC day of its events' wall clocks,
/// read from the log once per (author, day) and kept current.
#[derive(Default)]
pub(crate) struct AuthorQuota {
    used: HashMap<(String, i64), (u64, u64)>,
}

impl AuthorQuota {
    /// Forget what was counted (after a write failed, or after pruning).
    pub fn reset(&mut self) {
        self.used.clear();
    }

    /// What `author` has stored stamped on `day` (read from the log the
    /// first time), to be counted on.
    fn day_of(
        &mut self,
        conn: &Connection,
        author: &str,
        day: i64,
    ) -> Result<&mut (u64, u64), Reject> {
        let key = (author.to_owned(), day);
        if !self.used.contains_key(&key) {
            if self.used.len() >= MAX_TRACKED {
                self.used.clear();
            }
            let stored = stored_on(conn, author, day).map_err(|e| {
                Reject::new(
                    RejectCode::DbError,
                    format!("cannot count the author's events: {e}"),
                )
            })?;
            self.used.insert(key.clone(), stored);
        }
        Ok(self.used.entry(key).or_default())
    }

    /// What `author` has used of the day of `at`.
    pub fn used(
        &mut self,
        conn: &Connection,
        limits: &Limits,
        author: &str,
        at: Timestamp,
    ) -> Result<DayQuota, Reject> {
        let &mut (events, bytes) = self.day_of(conn, author, at.unix().div_euclid(DAY))?;
        Ok(DayQuota {
            events,
            bytes,
            max_events: limits.max_author_events_per_day,
            max_bytes: limits.max_author_bytes_per_day,
        })
    }

    /// Count an event of `author` stamped `wall_clock`, of `bytes`, if its
    /// day has room.
    pub fn charge(
        &mut self,
        conn: &Connection,
        limits: &Limits,
        author: &str,
        wall_clock: Timestamp,
        bytes: u64,
    ) -> Result<(), Reject> {
        let day = wall_clock.unix().div_euclid(DAY);
        let used = self.day_of(conn, author, day)?;
        if used.0 + 1 > limits.max_author_events_per_day
            || used.1 + bytes > limits.max_author_bytes_per_day
        {
            return Err(Reject::new(
                RejectCode::QuotaExceeded,
                format!(
                    "its author already has {} events ({} bytes) stamped {}; at most {} events and {} bytes a day",
                    used.0,
                    used.1,
                    Timestamp::from_unix(day * DAY),
                    limits.max_author_events_per_day,
                    limits.max_author_bytes_per_day
                ),
            ));
        }
        used.0 += 1;
        used.1 += bytes;
        Ok(())
    }
}

/// Events and envelope bytes `author` has stored stamped on `day`.
fn stored_on(conn: &Connection, author: &str, day: i64) -> rusqlite::Result<(u64, u64)> {
    let from = Timestamp::from_unix(day * DAY).to_string();
    let to = Timestamp::from_unix((day + 1) * DAY).to_string();
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(envelope)), 0) FROM events
         WHERE author = ?1 AND wall_clock >= ?2 AND wall_clock < ?3",
        params![author, from, to],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
}

/// Rows pruned per transaction.
const PRUNE_BATCH: usize = 10_000;

/// Replace lapsing events stamped before the retention window that count
/// by tombstones (`held = 2`): the row keeps its id, so a peer offering
/// the event again finds a duplicate; its `author_prev` link, so a
/// revocation can still follow its author's chain through it; and a
/// post's `ttl_seconds`, so an expiry judged against it later sees when
/// it really lapsed. A tombstone therefore always stands for an event
/// that counted. Held events (judged out) are deleted instead: they never
/// counted, are never synced, and offered again they are past retention.
/// Returns how many were pruned.
pub(crate) fn prune(conn: &Connection, limits: &Limits, now: Timestamp) -> rusqlite::Result<usize> {
    let before = Timestamp::from_unix(now.unix() - limits.retention_seconds()).to_string();
    let mut pruned = 0;
    loop {
        let rows: Vec<(i64, i64, Vec<u8>)> = {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, held, envelope FROM events
                 WHERE held != 2 AND (event_type LIKE 'market.%' OR event_type LIKE 'chat.%')
                 AND wall_clock < ?1 LIMIT ?2",
            )?;
            let found = stmt.query_map(params![before, PRUNE_BATCH as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            found.collect::<rusqlite::Result<_>>()?
        };
        if rows.is_empty() {
            return Ok(pruned);
        }
        let tx = conn.unchecked_transaction()?;
        for (seq, held, bytes) in &rows {
            if *held != 0 {
                tx.execute("DELETE FROM events WHERE seq = ?1", params![seq])?;
                continue;
            }
            let data = serde_json::from_slice::<Value>(bytes)
                .ok()
                .map(|v| v["data"].clone())
                .unwrap_or(Value::Null);
            let mut kept = serde_json::Map::new();
            for key in [AUTHOR_PREV, "ttl_seconds"] {
                if let Some(value) = data.get(key) {
                    kept.insert(key.into(), value.clone());
                }
            }
            let stub = json!({"pruned": true, "data": kept});
            tx.execute(
                "UPDATE events SET held = 2, envelope = ?2 WHERE seq = ?1",
                params![seq, serde_json::to_vec(&stub).unwrap_or_default()],
            )?;
        }
        tx.commit()?;
        pruned += rows.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_market_and_chat_events_lapse() {
        assert!(lapses("market.post.created"));
        assert!(lapses("chat.message.sent"));
        assert!(!lapses("community.member.joined"));
        assert!(!lapses("file.cid.advertised"));
        assert!(!lapses("rag.document.ingested"));
    }

    #[test]
    fn the_retention_window_is_checked_by_wall_clock() {
        let limits = Limits::default();
        let now = Timestamp::now();
        let old = now.plus_seconds(-31 * DAY);
        let err = limits.check_retention("market.post.created", old, now);
        assert_eq!(err.map_err(|r| r.code), Err(RejectCode::PastRetention));
        assert!(
            limits
                .check_retention("community.member.invited", old, now)
                .is_ok()
        );
        assert!(
            limits
                .check_retention("market.post.created", now.plus_seconds(-29 * DAY), now)
                .is_ok()
        );
    }
}
