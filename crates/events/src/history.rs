//! The judged history: which stored events count, decided from the set of
//! events alone, never from the order they arrived in.
//!
//! Every event that passes the checks needing no history (signature,
//! shape, clocks) is stored; whether it *counts* (is folded, served, synced)
//! is decided by folding all stored events in the total order of §7.4,
//! judging each against the community just before it and against the
//! revocations of the whole log ([`Cutoffs`]). An event judged out is kept
//! aside (`held`), not deleted, so an earlier event arriving later can admit
//! it; one judged in can be judged out again the same way.
//!
//! An event arriving behind the head re-judges only what follows it, from
//! the nearest in-memory checkpoint of the view. A revocation changes what
//! its target may have written anywhere in the log, so when the cutoffs
//! change the fold starts again from the target's first event, until they
//! stop changing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use hearthnet_base::event::Event;
use hearthnet_base::{NodeId, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::view::{CommunityView, Cutoff, Cutoffs, Position};
use crate::{Reject, market};

/// A checkpoint of the view every this many counted events.
const CHECKPOINT_EVERY: u64 = 1024;
/// Checkpoints kept; beyond, every other one is dropped, so they thin out
/// towards the past.
const MAX_CHECKPOINTS: usize = 32;
/// Folds per change before giving up on cutoffs that keep changing (each
/// round needs a revocation that the previous round's cutoffs admitted or
/// refused, so honest histories settle in two).
const MAX_ROUNDS: usize = 8;

/// The key, in an event's data, naming the author's previous event: the
/// hash link that lets a revocation keep exactly the events its revokers
/// knew. `null` on an author's first event.
pub const AUTHOR_PREV: &str = "author_prev";

/// How a fold treats what is stored.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    /// Judge every stored event again, counted or held.
    Judge,
    /// Fold the counted events as they are (start-up).
    Trust,
}

pub(crate) struct History {
    pub view: CommunityView,
    checkpoints: Vec<CommunityView>,
    cutoffs: Cutoffs,
    chains: ChainCache,
}

/// What a fold decided about the events the caller asked after: `None`
/// when it counts, else why not.
pub(crate) type Verdicts = HashMap<String, Option<Reject>>;

fn after(view: &CommunityView) -> (i64, String) {
    view.last
        .as_ref()
        .map_or((-1, String::new()), |(l, id)| (*l as i64, id.clone()))
}

impl History {
    pub fn new(view: CommunityView) -> Self {
        Self {
            view,
            checkpoints: Vec::new(),
            cutoffs: Cutoffs::default(),
            chains: ChainCache::new(),
        }
    }

    /// The latest view known to be exact just before `from`; later
    /// checkpoints are dropped, as the fold will redo them.
    fn start_before(&mut self, from: &Position) -> CommunityView {
        let before = |v: &CommunityView| v.position().is_none_or(|p| p < *from);
        self.checkpoints.retain(|c| before(c));
        if before(&self.view) {
            return self.view.clone();
        }
        self.checkpoints
            .last()
            .cloned()
            .unwrap_or_else(|| CommunityView::new(self.view.community_id))
    }

    fn checkpoint(&mut self, view: &CommunityView) {
        if view.count.is_multiple_of(CHECKPOINT_EVERY) {
            self.checkpoints.push(view.clone());
            if self.checkpoints.len() > MAX_CHECKPOINTS {
                let mut i = 0;
                self.checkpoints.retain(|_| {
                    i += 1;
                    i % 2 == 0
                });
            }
        }
    }

    /// Fold the stored events from `from` on (from the start when `None`),
    /// in replay order, updating which count; until the cutoffs settle.
    /// Reports the verdict on each event of `watch` that the fold met.
    pub fn refold(
        &mut self,
        conn: &Connection,
        from: Option<Position>,
        mode: Mode,
        watch: &HashSet<String>,
    ) -> rusqlite::Result<Verdicts> {
        let mut verdicts = Verdicts::new();
        let mut from = from;
        let mut reset = false;
        for _ in 0..MAX_ROUNDS {
            let start = match &from {
                Some(p) => self.start_before(p),
                None => {
                    self.checkpoints.clear();
                    CommunityView::new(self.view.community_id)
                }
            };
            self.fold(conn, start, mode, watch, &mut verdicts)?;
            let found = cutoffs_of(conn, &self.view, &mut self.chains)?;
            if !reset && !found.covers(&self.cutoffs) {
                // A revocation stopped counting: start again from nothing,
                // as a node that got the whole set at once would.
                reset = true;
                self.cutoffs = Cutoffs::default();
                from = None;
                continue;
            }
            // Cutoffs only grow from here on, so the rounds end.
            let next = self.cutoffs.merged(found);
            if next == self.cutoffs {
                return Ok(verdicts);
            }
            let changed = self.cutoffs.changed_targets(&next);
            self.cutoffs = next;
            from = first_event_of(conn, &changed)?;
            if from.is_none() {
                return Ok(verdicts);
            }
        }
        tracing::warn!(
            rounds = MAX_ROUNDS,
            "revocations kept changing what their targets may write; the view may lag until the next event"
        );
        Ok(verdicts)
    }

    fn fold(
        &mut self,
        conn: &Connection,
        mut view: CommunityView,
        mode: Mode,
        watch: &HashSet<String>,
        verdicts: &mut Verdicts,
    ) -> rusqlite::Result<()> {
        let (lamport, id) = after(&view);
        let mut stmt = conn.prepare_cached(
            "SELECT event_id, envelope, held, author, event_type FROM events
             WHERE (lamport > ?1 OR (lamport = ?1 AND event_id > ?2)) AND (held = 0 OR (?3 AND held = 1))
             ORDER BY lamport, event_id",
        )?;
        let mut rows = stmt.query(params![lamport, id, mode == Mode::Judge])?;
        let mut flips: Vec<(String, bool)> = Vec::new();
        // Verdicts on posts met in this fold, for the updates and expiries
        // after them (the table's `held` is brought up to date only below).
        let mut posts: HashMap<String, bool> = HashMap::new();
        while let Some(row) = rows.next()? {
            let event_id: String = row.get(0)?;
            let held: bool = row.get(2)?;
            if mode == Mode::Judge
                && held
                && !may_count(&view, &row.get::<_, String>(3)?, &row.get::<_, String>(4)?)
            {
                // Still held, without reading the envelope: a flood of
                // events by strangers costs a row each, not a parse.
                if watch.contains(&event_id) {
                    verdicts.insert(
                        event_id,
                        Some(Reject::new(
                            crate::RejectCode::UnknownAuthor,
                            "not a member at this point of history",
                        )),
                    );
                }
                continue;
            }
            let bytes: Vec<u8> = row.get(1)?;
            let event = serde_json::from_slice::<Event>(&bytes);
            let verdict = match (&event, mode) {
                (Ok(e), Mode::Judge) => match view
                    .authorize(e, &self.cutoffs)
                    .and_then(|()| view.authorize_id(&bytes))
                {
                    Ok(()) if market::names_a_post(&e.event_type) => {
                        let named = e.data["target_event_id"].as_str().unwrap_or_default();
                        let target = market_target(conn, named, &posts)?;
                        market::authorize(e, view.level_of(&e.author), target).err()
                    }
                    Ok(()) if e.event_type == market::POST_CREATED => {
                        market::authorize_post(e, &view.live_posts).err()
                    }
                    judged => judged.err(),
                },
                (Ok(_), Mode::Trust) => None,
                (Err(e), _) => Some(Reject::new(
                    crate::RejectCode::Malformed,
                    format!("unreadable on disk: {e}"),
                )),
            };
            let counts = verdict.is_none();
            if let Ok(e) = &event
                && e.event_type == market::POST_CREATED
            {
                posts.insert(event_id.clone(), counts);
            }
            if let (Ok(e), true) = (&event, counts) {
                view.apply(e);
                self.checkpoint(&view);
            }
            if counts == held {
                flips.push((event_id.clone(), counts));
            }
            if watch.contains(&event_id) {
                verdicts.insert(event_id, verdict);
            }
        }
        drop(rows);
        // An event that comes to count takes a new sequence number, so
        // services following the log by `after_seq` see it.
        let mut admit = conn.prepare_cached(
            "UPDATE events SET held = 0, seq = (SELECT MAX(seq) + 1 FROM events) WHERE event_id = ?1",
        )?;
        let mut hold = conn.prepare_cached("UPDATE events SET held = 1 WHERE event_id = ?1")?;
        let mut publish = conn.prepare_cached("INSERT INTO judged_out (event_id) VALUES (?1)")?;
        let mut admitted = false;
        for (event_id, counts) in flips {
            if counts {
                tracing::info!(%event_id, "event admitted by an earlier one");
                admit.execute(params![event_id])?;
                admitted = true;
            } else {
                tracing::warn!(%event_id, "event no longer counts after an earlier one arrived");
                hold.execute(params![event_id])?;
                // It counted before (a fresh event never did): folds that
                // took it in are told to drop it.
                if !watch.contains(&event_id) {
                    publish.execute(params![event_id])?;
                }
            }
        }
        if admitted {
            // AUTOINCREMENT must never hand out a number moved rows took.
            conn.execute(
                "UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT MAX(seq) FROM events)) WHERE name = 'events'",
                [],
            )?;
        }
        self.view = view;
        Ok(())
    }
}

/// The post stored under `event_id`, for judging an update or expiry of
/// it: whether it counts is this fold's verdict if the fold met it, else
/// the stored one (a post pruned to its tombstone counted, and the
/// tombstone keeps its TTL).
pub(crate) fn market_target(
    conn: &Connection,
    event_id: &str,
    judged: &HashMap<String, bool>,
) -> rusqlite::Result<Option<market::Target>> {
    let row = conn
        .prepare_cached(
            "SELECT event_type, author, lamport, wall_clock, held, envelope FROM events WHERE event_id = ?1",
        )?
        .query_row(params![event_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Vec<u8>>(5)?,
            ))
        })
        .optional()?;
    let Some((event_type, author, lamport, wall_clock, held, envelope)) = row else {
        return Ok(None);
    };
    let (Ok(author), Ok(wall_clock)) = (NodeId::parse(&author), Timestamp::parse(&wall_clock))
    else {
        return Ok(None);
    };
    let ttl = serde_json::from_slice::<Value>(&envelope)
        .ok()
        .and_then(|v| v["data"]["ttl_seconds"].as_u64())
        .unwrap_or(market::MAX_TTL_SECONDS)
        .min(market::MAX_TTL_SECONDS);
    Ok(Some(market::Target {
        event_type,
        author,
        position: Position {
            lamport: lamport as u64,
            event_id: event_id.to_owned(),
        },
        expires_at: wall_clock.plus_seconds(ttl as i64),
        counts: judged.get(event_id).copied().unwrap_or(held != 1),
    }))
}

/// Whether an event of `author` could count after `view`: only a member's
/// can, or a join (which makes its author one).
fn may_count(view: &CommunityView, author: &str, event_type: &str) -> bool {
    event_type == "community.member.joined"
        || NodeId::parse(author).is_ok_and(|a| view.members.contains_key(&a))
}

impl Cutoffs {
    /// Whether every target of `other` has a cutoff here too.
    fn covers(&self, other: &Cutoffs) -> bool {
        other
            .iter()
            .all(|(target, _)| self.iter().any(|(t, _)| t == target))
    }

    /// These cutoffs with `newer`'s added or replacing.
    fn merged(&self, newer: Cutoffs) -> Cutoffs {
        let mut out = self.clone();
        for (target, cutoff) in newer.iter() {
            out.insert(*target, cutoff.clone());
        }
        out
    }

    /// Targets whose cutoff differs between `self` and `other`.
    fn changed_targets(&self, other: &Cutoffs) -> BTreeSet<NodeId> {
        let mine: BTreeMap<_, _> = self.iter().collect();
        let theirs: BTreeMap<_, _> = other.iter().collect();
        mine.keys()
            .chain(theirs.keys())
            .filter(|k| mine.get(*k) != theirs.get(*k))
            .map(|k| **k)
            .collect()
    }
}

/// The position of the earliest stored event of any of `authors`.
fn first_event_of(
    conn: &Connection,
    authors: &BTreeSet<NodeId>,
) -> rusqlite::Result<Option<Position>> {
    let mut stmt = conn.prepare_cached(
        "SELECT lamport, event_id FROM events WHERE author = ?1 ORDER BY lamport, event_id LIMIT 1",
    )?;
    let mut first: Option<Position> = None;
    for author in authors {
        let mut rows = stmt.query(params![author.full()])?;
        if let Some(row) = rows.next()? {
            let p = Position {
                lamport: row.get::<_, i64>(0)? as u64,
                event_id: row.get(1)?,
            };
            if first.as_ref().is_none_or(|f| p < *f) {
                first = Some(p);
            }
        }
    }
    Ok(first)
}

/// A revoked author's chain as last followed, with what it was followed
/// over: the named head and the author's stored rows (count and highest
/// sequence number, which change with any row added, replaced or removed).
type ChainCache = HashMap<NodeId, (String, (i64, i64), BTreeSet<String>)>;

/// The cutoffs the revocations in `view` impose. A chain is followed again
/// only when its head or its author's stored rows changed: a refold runs
/// on every append, and following a chain reads all the author's events.
fn cutoffs_of(
    conn: &Connection,
    view: &CommunityView,
    chains: &mut ChainCache,
) -> rusqlite::Result<Cutoffs> {
    let mut cutoffs = Cutoffs::default();
    for (target, revoked) in &view.revoked {
        let kept = match &revoked.last_event_id {
            Some(head) => {
                let rows: (i64, i64) = conn
                    .prepare_cached(
                        "SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM events WHERE author = ?1",
                    )?
                    .query_row(params![target.full()], |r| Ok((r.get(0)?, r.get(1)?)))?;
                match chains.get(target) {
                    Some((h, seen, kept)) if h == head && *seen == rows => Some(kept.clone()),
                    _ => {
                        let kept = chain(conn, target, head)?;
                        chains.insert(*target, (head.clone(), rows, kept.clone()));
                        Some(kept)
                    }
                }
            }
            None => None,
        };
        cutoffs.insert(
            *target,
            Cutoff {
                at: revoked.at.clone(),
                kept,
            },
        );
    }
    Ok(cutoffs)
}

/// A stored event's link to its author's previous one.
enum Link {
    /// The author's first event.
    First,
    Prev(String),
    /// Written without links (a v1 node, or a release before links).
    Absent,
}

/// The events of `author` that `head` vouches for: `head` and its
/// `author_prev` ancestors. Where the links stop at an event written
/// without them, the author's unlinked events up to it count too: they
/// predate linking, and a linked event may not be followed by an unlinked
/// one (the view refuses that), so none can be slipped in later.
fn chain(conn: &Connection, author: &NodeId, head: &str) -> rusqlite::Result<BTreeSet<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT event_id, lamport, envelope FROM events WHERE author = ?1 ORDER BY lamport, event_id",
    )?;
    let mut rows = stmt.query(params![author.full()])?;
    let mut events: HashMap<String, (Position, Link)> = HashMap::new();
    while let Some(row) = rows.next()? {
        let event_id: String = row.get(0)?;
        let lamport = row.get::<_, i64>(1)? as u64;
        let bytes: Vec<u8> = row.get(2)?;
        let data = serde_json::from_slice::<Value>(&bytes)
            .map(|v| v["data"].clone())
            .unwrap_or(Value::Null);
        let link = match data.get(AUTHOR_PREV) {
            None => Link::Absent,
            Some(Value::String(prev)) => Link::Prev(prev.clone()),
            Some(_) => Link::First,
        };
        let position = Position {
            lamport,
            event_id: event_id.clone(),
        };
        events.insert(event_id, (position, link));
    }
    let mut kept = BTreeSet::new();
    let mut cursor = Some(head.to_owned());
    while let Some(id) = cursor.take() {
        let Some((position, link)) = events.get(&id) else {
            break;
        };
        if !kept.insert(id) {
            break;
        }
        match link {
            Link::First => {}
            Link::Prev(prev) => cursor = Some(prev.clone()),
            Link::Absent => {
                kept.extend(
                    events
                        .iter()
                        .filter(|(_, (p, l))| matches!(l, Link::Absent) && p <= position)
                        .map(|(id, _)| id.clone()),
                );
            }
        }
    }
    Ok(kept)
}
