//! M06, Contract §4.11–§4.14: the community's marketplace.
//!
//! Posts are events (`market.post.created`, `market.post.expired`): signed,
//! kept by every member's log and spread by sync, so they survive restarts
//! and reach everyone. [`MarketService`] offers `market.post` and
//! `market.expire` (events this node authors, so to its own key only),
//! `market.list` and `market.search`; it keeps an index of the log's market
//! events in SQLite (`index`, rebuilt from the log when lost), follows the
//! log, and sweeps: it expires its own posts once they lapse. Others'
//! lapsed posts are hidden by the index already; a trusted member may
//! still expire one as `stale` by hand (`market.expire`), but no node does
//! so on its own, or every trusted node would write an expiry for every
//! lapsed post a member chose to write.
//!
//! Architecture invariants: who may expire a post is the log's rule
//! (`hearthnet_events::market`), which every node applies to every event,
//! whoever wrote it; the service checks the same rule first only to answer
//! clearly. A lapsed or expired post, or one whose author was revoked, is
//! never listed or found. Vectors come only through the bus
//! (`embed.text@1.0`); without a provider `market.search` ranks by full
//! text and says so (`meta.retrieval`). Every input is bounded before work
//! is done.

pub mod error;
pub mod index;

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hearthnet_base::constants::EVENT_LOG_RETENTION_DAYS;
use hearthnet_base::event::Event;
use hearthnet_base::{DeviceKey, ErrorCode, NodeId, Stability, Timestamp, TrustLevel};
use hearthnet_bus::{Bus, Call, CallError, Capability, CapabilityDescriptor, Service, Trust};
use hearthnet_events::market::{self as rules, POST_CREATED, POST_EXPIRED, POST_UPDATED};
use hearthnet_events::{EventLog, Query};
use hearthnet_rag::embedder;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

pub use error::MarketError;
use index::{Filter, Index, Post};

pub const LIST: &str = "market.list";
pub const POST: &str = "market.post";
pub const EXPIRE: &str = "market.expire";
pub const SEARCH: &str = "market.search";
/// The index's file in the community's state directory.
pub const INDEX_FILE: &str = "market.sqlite";

/// Contract §4.11.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;
/// Contract §4.14 (our bound on `k`).
pub const DEFAULT_K: usize = 10;
pub const MAX_K: usize = 50;
pub const MAX_QUERY_CHARS: usize = 1_024;
/// Query words given to FTS5.
const MAX_QUERY_WORDS: usize = 32;
/// Current posts one search ranks by meaning (newest first), and how many
/// of them without a vector it embeds.
const MAX_RANKED: usize = 5_000;
const MAX_EMBEDDED_PER_SEARCH: usize = 512;
/// How long a search waits for the query's embedding before ranking by
/// full text.
const QUERY_EMBED_BUDGET: Duration = Duration::from_secs(5);
/// How often the sweeper looks for this node's lapsed posts, and how many
/// it expires a round: at most 64 writes a minute, however many lapse.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
const SWEEP_BATCH: usize = 64;
/// Events read from the log per index transaction.
const FOLLOW_BATCH: usize = 500;

/// The TTLs of new posts (`market.*` in the config).
#[derive(Debug, Clone, Copy)]
pub struct Ttl {
    pub default_seconds: u64,
    pub max_seconds: u64,
}

/// The marketplace of one node.
pub struct MarketService {
    index: Arc<Index>,
    log: EventLog,
    key: DeviceKey,
    /// To reach `embed.text` (weak: the bus owns this service).
    bus: Weak<Bus>,
    ttl: Ttl,
    /// One post or expiry at a time: "already there?" and the append are
    /// one step, which idempotency by `client_id` needs.
    writing: tokio::sync::Mutex<()>,
    /// True once the index caught up with the log after start-up: before,
    /// a retried post could miss its first copy, and a list is incomplete.
    ready: tokio::sync::watch::Sender<bool>,
}

fn bad(message: impl Into<String>) -> MarketError {
    MarketError::BadInput(message.into())
}

fn field(e: rules::FieldError) -> MarketError {
    MarketError::BadInput(e.under("input"))
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, MarketError> + Send + 'static,
) -> Result<R, MarketError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MarketError::Task(e.to_string()))?
}

fn ms_since(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

/// `input.<key>` as a count from 1 to `max`, `default` when absent.
fn count(input: &Value, key: &str, default: usize, max: usize) -> Result<usize, MarketError> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=max as u64).contains(n))
            .map(|n| n as usize)
            .ok_or_else(|| bad(format!("input.{key} must be 1 to {max}"))),
    }
}

/// A new post's data from `market.post`'s input: checked by the log's own
/// rules, tags lower-cased and deduplicated, the TTL defaulted.
fn post_data(input: &Value, ttl: Ttl) -> Result<Map<String, Value>, MarketError> {
    let Some(fields) = input.as_object() else {
        return Err(bad("input must be an object"));
    };
    let mut data = Map::new();
    for key in ["client_id", "category", "title", "body", "location"] {
        if let Some(v) = fields.get(key).filter(|v| !v.is_null()) {
            data.insert(key.into(), v.clone());
        }
    }
    data.entry("body").or_insert_with(|| json!(""));
    if let Some(tags) = fields.get("tags").filter(|v| !v.is_null()) {
        rules::check_tags(tags).map_err(field)?;
        let mut clean: Vec<String> = Vec::new();
        for tag in tags
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let tag = tag.to_lowercase();
            if !clean.contains(&tag) {
                clean.push(tag);
            }
        }
        data.insert("tags".into(), json!(clean));
    }
    let seconds = match fields.get("ttl_seconds") {
        None | Some(Value::Null) => ttl.default_seconds,
        Some(v) => {
            rules::check_ttl(v).map_err(field)?;
            let seconds = v.as_u64().unwrap_or(0);
            if seconds > ttl.max_seconds {
                return Err(bad(format!(
                    "input.ttl_seconds is {seconds}; this node allows at most {}",
                    ttl.max_seconds
                )));
            }
            seconds
        }
    };
    data.insert("ttl_seconds".into(), json!(seconds));
    rules::check_post(&data).map_err(field)?;
    Ok(data)
}

fn list_filter(input: &Value) -> Result<Filter, MarketError> {
    let mut filter = Filter::default();
    if let Some(category) = input.get("category").filter(|v| !v.is_null()) {
        rules::check_category(category).map_err(field)?;
        filter.category = category.as_str().map(str::to_owned);
    }
    if let Some(tags) = input.get("tags").filter(|v| !v.is_null()) {
        rules::check_tags(tags).map_err(field)?;
        filter.tags = tags
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_lowercase))
            .collect();
    }
    match input.get("since_lamport") {
        None | Some(Value::Null) => {}
        Some(v) => {
            filter.since_lamport =
                Some(v.as_u64().ok_or_else(|| {
                    bad("input.since_lamport must be a Lamport value (0 or more)")
                })?);
        }
    }
    Ok(filter)
}

/// A stable marketplace capability; the self-only ones write this node's
/// events, so their answers are signed (`mutating`).
fn descriptor(name: &str, input: Value, trust: Trust, timeout: u64) -> CapabilityDescriptor {
    CapabilityDescriptor {
        stability: Stability::Stable,
        trust,
        timeout: Duration::from_secs(timeout),
        mutating: trust == Trust::SelfOnly,
        ..CapabilityDescriptor::new(name, input)
    }
}

impl Service for MarketService {
    fn name(&self) -> &'static str {
        "market"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        let strings = json!({"type": "array", "items": {"type": "string"}});
        let list = CapabilityDescriptor {
            max_concurrent: 8,
            ..descriptor(
                LIST,
                json!({"type": "object", "properties": {
                    "category": {"type": "string"}, "tags": strings,
                    "since_lamport": {"type": "integer", "minimum": 0},
                    "limit": {"type": "integer"}
                }}),
                Trust::Level(TrustLevel::Member),
                5,
            )
        };
        // The event is this node's, signed by its key: only its owner may
        // write through it (a neighbour's post is its own node's event).
        let post = descriptor(
            POST,
            json!({"type": "object", "required": ["client_id", "category", "title"], "properties": {
                "client_id": {"type": "string"}, "category": {"type": "string"},
                "title": {"type": "string"}, "body": {"type": "string"},
                "location": {}, "tags": strings,
                "ttl_seconds": {"type": "integer"}
            }}),
            Trust::SelfOnly,
            10,
        );
        let expire = descriptor(
            EXPIRE,
            json!({"type": "object", "required": ["client_id", "event_id", "reason"], "properties": {
                "client_id": {"type": "string"}, "event_id": {"type": "string"},
                "reason": {"type": "string"}
            }}),
            Trust::SelfOnly,
            5,
        );
        let search = descriptor(
            SEARCH,
            json!({"type": "object", "required": ["query"], "properties": {
                "query": {"type": "string"}, "k": {"type": "integer"}
            }}),
            Trust::Level(TrustLevel::Member),
            10,
        );
        vec![
            Capability::new(list, &self, Self::list),
            Capability::new(post, &self, Self::post),
            Capability::new(expire, &self, Self::expire),
            Capability::new(search, &self, Self::search),
        ]
    }
}

impl MarketService {
    /// The marketplace over `log`, its index in `state_dir`, posting as
    /// `key`, reaching `embed.text` through `bus`.
    pub fn new(
        state_dir: &Path,
        log: EventLog,
        key: DeviceKey,
        bus: Weak<Bus>,
        ttl: Ttl,
    ) -> Result<Self, MarketError> {
        Ok(Self {
            index: Arc::new(Index::open(&state_dir.join(INDEX_FILE))?),
            log,
            key,
            bus,
            ttl,
            writing: tokio::sync::Mutex::new(()),
            ready: tokio::sync::watch::Sender::new(false),
        })
    }

    fn bus(&self) -> Result<Arc<Bus>, CallError> {
        self.bus
            .upgrade()
            .ok_or_else(|| CallError::new(ErrorCode::Partition, "the node is shutting down"))
    }

    /// Wait, within the call's deadline, until the index has caught up
    /// with the log since start-up.
    async fn until_ready(&self, call: &Call) -> Result<(), MarketError> {
        let mut ready = self.ready.subscribe();
        match tokio::time::timeout_at(call.deadline, ready.wait_for(|r| *r)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(MarketError::NotReady),
        }
    }

    /// Authors whose posts no longer count: the revoked.
    fn hidden_authors(&self) -> Vec<String> {
        self.log.view().revoked.keys().map(NodeId::full).collect()
    }

    /// Write `data` as an event of this node's and take it into the index
    /// at once, so the next call sees it. Once the log holds the event the
    /// write succeeded: an index that fails to take it gets it from the
    /// follower.
    async fn write(&self, event_type: &str, data: Value) -> Result<Event, MarketError> {
        let event = self.log.append_local(event_type, data, &self.key).await?;
        let (index, written) = (self.index.clone(), event.clone());
        if let Err(e) = blocking(move || index.apply(&[written], None)).await {
            tracing::warn!(event_id = %event.event_id, error = %e, "the market index missed an event of ours; the follower will take it in");
        }
        Ok(event)
    }

    async fn list(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let started = Instant::now();
        self.until_ready(&call).await?;
        let mut filter = list_filter(&call.input)?;
        let limit = count(&call.input, "limit", DEFAULT_LIMIT, MAX_LIMIT)?;
        filter.hidden_authors = self.hidden_authors();
        let index = self.index.clone();
        let (posts, max_lamport) = blocking(move || {
            let posts = index.list(&filter, Timestamp::now().unix(), limit)?;
            Ok((posts, index.max_lamport()?))
        })
        .await?;
        let posts: Vec<Value> = posts.iter().map(Post::to_json).collect();
        Ok(json!({
            "output": {"posts": posts, "max_lamport": max_lamport},
            "meta": {"ms": ms_since(started)}
        }))
    }

    async fn post(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let started = Instant::now();
        self.until_ready(&call).await?;
        let data = post_data(&call.input, self.ttl)?;
        let client_id = data["client_id"].as_str().unwrap_or_default().to_owned();
        let _one_at_a_time = self.writing.lock().await;
        let (index, me, id) = (self.index.clone(), self.key.node_id(), client_id.clone());
        let (event_id, lamport) = match blocking(move || index.post_by_client(&me, &id)).await? {
            Some(done) => done,
            None => {
                // Checked first, so a post the log would hold aside is
                // never written.
                let live = self.log.view().live_posts_of(&me, Timestamp::now());
                if live >= rules::MAX_LIVE_POSTS_PER_AUTHOR {
                    return Err(MarketError::TooManyPosts(live).into());
                }
                let event = self.write(POST_CREATED, Value::Object(data)).await?;
                (event.event_id, event.lamport)
            }
        };
        Ok(json!({
            "output": {"event_id": event_id, "lamport": lamport},
            "meta": {"ms": ms_since(started)}
        }))
    }

    async fn expire(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let started = Instant::now();
        self.until_ready(&call).await?;
        let input = &call.input;
        let text = |key: &str| input.get(key).unwrap_or(&Value::Null).clone();
        rules::check_client_id(&text("client_id")).map_err(field)?;
        rules::check_reason(&text("reason")).map_err(field)?;
        let target = text("event_id")
            .as_str()
            .filter(|id| !id.is_empty() && id.len() <= 64)
            .ok_or_else(|| bad("input.event_id must be the event id of a post"))?
            .to_owned();
        let client_id = text("client_id").as_str().unwrap_or_default().to_owned();
        let reason = text("reason").as_str().unwrap_or_default().to_owned();
        let _one_at_a_time = self.writing.lock().await;
        let (index, me) = (self.index.clone(), self.key.node_id());
        let (id, post_id) = (client_id.clone(), target.clone());
        let (done, known) =
            blocking(move || Ok((index.expiry_by_client(&me, &id)?, index.post(&post_id)?)))
                .await?;
        let (event_id, lamport) = match done {
            Some((event_id, lamport, expired)) if expired == target => (event_id, lamport),
            // The same client_id for another post would silently answer
            // with the first expiry and leave this post up.
            Some((event_id, _, expired)) => {
                return Err(MarketError::BadInput(format!(
                    "client_id {client_id:?} was already used to expire post {expired} (event {event_id}); use a new one"
                ))
                .into());
            }
            None => {
                let known = known.ok_or_else(|| MarketError::UnknownPost(target.clone()))?;
                if let Some(by) = known.expired_by {
                    return Err(MarketError::AlreadyExpired { post: target, by }.into());
                }
                let event = self.expire_post(&known.post, &reason, &client_id).await?;
                (event.event_id, event.lamport)
            }
        };
        Ok(json!({
            "output": {"event_id": event_id, "lamport": lamport},
            "meta": {"ms": ms_since(started)}
        }))
    }

    /// Expire `post` as this node, if the log's rule lets it: checked
    /// first, so a refused expiry is never written (the log would keep it
    /// aside, judged out).
    async fn expire_post(
        &self,
        post: &Post,
        reason: &str,
        client_id: &str,
    ) -> Result<Event, MarketError> {
        let author = NodeId::parse(&post.author)
            .map_err(|_| MarketError::UnknownPost(post.event_id.clone()))?;
        let me = self.key.node_id();
        rules::may_expire(
            &me,
            self.log.view().level_of(&me),
            &author,
            Timestamp::from_unix(post.expires_at),
            reason,
            Timestamp::now(),
        )
        .map_err(MarketError::MayNotExpire)?;
        let data =
            json!({"client_id": client_id, "target_event_id": post.event_id, "reason": reason});
        self.write(POST_EXPIRED, data).await
    }

    async fn search(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let started = Instant::now();
        self.until_ready(&call).await?;
        let query = call
            .input
            .get("query")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|q| !q.is_empty() && q.chars().count() <= MAX_QUERY_CHARS)
            .ok_or_else(|| {
                bad(format!(
                    "input.query must be text of 1 to {MAX_QUERY_CHARS} characters"
                ))
            })?
            .to_owned();
        let k = count(&call.input, "k", DEFAULT_K, MAX_K)?;
        let hidden = self.hidden_authors();
        let mut meta = json!({});
        let semantic = match self.by_meaning(&call, &query, &hidden, k).await {
            Ok((ranked, model)) => {
                meta["retrieval"] = json!("semantic");
                meta["embedding_model"] = json!(model);
                Some(ranked)
            }
            Err(e) => {
                tracing::info!(error = %e, "market.search falls back to full-text search");
                meta["retrieval"] = json!("full_text");
                meta["embedding_error"] = json!(e.to_string());
                None
            }
        };
        let ranked = match semantic {
            Some(ranked) => ranked,
            None => {
                let (index, fts) = (
                    self.index.clone(),
                    hearthnet_rag::store::fts_query(&query, MAX_QUERY_WORDS),
                );
                blocking(move || index.full_text(&fts, &hidden, Timestamp::now().unix(), k)).await?
            }
        };
        let posts: Vec<Value> = ranked
            .into_iter()
            .map(|(post, score)| {
                let mut post = post.to_json();
                post["score"] = json!((score * 10_000.0).round() / 10_000.0);
                post
            })
            .collect();
        let max_lamport = {
            let index = self.index.clone();
            blocking(move || index.max_lamport()).await?
        };
        meta["ms"] = json!(ms_since(started));
        Ok(json!({"output": {"posts": posts, "max_lamport": max_lamport}, "meta": meta}))
    }

    /// The current posts closest in meaning to `query`, best first, by
    /// cosine of `embed.text` vectors (the posts' cached in the index), and
    /// the model; `Err` when no provider answers.
    async fn by_meaning(
        &self,
        call: &Call,
        query: &str,
        hidden: &[String],
        k: usize,
    ) -> Result<(Vec<(Post, f64)>, String), CallError> {
        let bus = self.bus()?;
        let deadline = call
            .deadline
            .min(tokio::time::Instant::now() + QUERY_EMBED_BUDGET);
        let mut asked = embedder::embed(&bus, &[query.to_owned()], None, deadline).await?;
        let model = asked.model.clone();
        let query_vector = asked
            .vectors
            .pop()
            .ok_or_else(|| CallError::new(ErrorCode::Partition, "no vector for the query"))?;
        let (index, hidden_now, for_model) = (self.index.clone(), hidden.to_vec(), model.clone());
        let mut posts = blocking(move || {
            index.current_with_vectors(&for_model, &hidden_now, Timestamp::now().unix(), MAX_RANKED)
        })
        .await?;
        let missing: Vec<usize> = posts
            .iter()
            .enumerate()
            .filter(|(_, (_, v))| v.is_none())
            .map(|(i, _)| i)
            .take(MAX_EMBEDDED_PER_SEARCH)
            .collect();
        if !missing.is_empty() {
            let texts: Vec<String> = missing.iter().map(|&i| posts[i].0.text()).collect();
            let made = embedder::embed(&bus, &texts, Some(&model), call.deadline).await?;
            let stored: Vec<(i64, Vec<f32>)> = missing
                .iter()
                .zip(made.vectors)
                .map(|(&i, v)| (posts[i].0.id, v))
                .collect();
            for (&i, (_, v)) in missing.iter().zip(&stored) {
                posts[i].1 = Some(v.clone());
            }
            let (index, model) = (self.index.clone(), model.clone());
            blocking(move || index.set_vectors(&model, &stored)).await?;
        }
        let mut ranked: Vec<(Post, f64)> = posts
            .into_iter()
            .filter_map(|(post, v)| {
                let v = v.filter(|v| v.len() == query_vector.len())?;
                Some((post, cosine(&query_vector, &v)))
            })
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(k);
        Ok((ranked, model))
    }

    /// Fold the log's market events into the index, then follow it and
    /// sweep until `stop`: a task for the caller to run in the background.
    pub fn run(
        self: &Arc<Self>,
        stop: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let market = self.clone();
        async move {
            let mut changes = market.log.changes();
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                if let Err(e) = market.catch_up().await {
                    tracing::error!(error = %e, "the market index cannot follow the log");
                }
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    _ = sweep.tick() => market.sweep().await,
                    _ = stop.cancelled() => return,
                }
            }
        }
    }

    /// Take every market event stored since the index's cursor in, a
    /// transaction per batch. An index ahead of the log (the log was
    /// replaced) is rebuilt from the start.
    async fn catch_up(&self) -> Result<(), MarketError> {
        let index = self.index.clone();
        let mut seq = blocking(move || index.last_seq()).await?;
        let newest = *self.log.changes().borrow();
        if seq > newest && newest > 0 {
            tracing::warn!(
                seq,
                newest,
                "the market index is ahead of the event log; rebuilding it"
            );
            let index = self.index.clone();
            blocking(move || index.clear()).await?;
            seq = 0;
        }
        let index = self.index.clone();
        let judged = blocking(move || index.judged_out_seq()).await?;
        let out = self.log.judged_out(judged, FOLLOW_BATCH).await?;
        if out.missed {
            // Too far behind to know what to drop: the log as it counts
            // now, from the start.
            tracing::warn!("the market index missed events the log judged out; rebuilding it");
            let index = self.index.clone();
            blocking(move || {
                index.clear()?;
                index.replace(&[], &[], out.newest)
            })
            .await?;
            seq = 0;
        } else if let Some(newest) = out.last_number() {
            let gone = out.gone();
            let current: Vec<Event> = (out.current.into_iter())
                .filter(|e| e.event_type.starts_with("market.post."))
                .collect();
            let index = self.index.clone();
            blocking(move || index.replace(&gone, &current, newest)).await?;
        }
        loop {
            let batch = self
                .log
                .query(Query {
                    event_types: vec![
                        POST_CREATED.into(),
                        POST_UPDATED.into(),
                        POST_EXPIRED.into(),
                    ],
                    after_seq: Some(seq),
                    limit: Some(FOLLOW_BATCH),
                    ..Query::default()
                })
                .await?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                self.ready.send_replace(true);
                return Ok(());
            };
            let events: Vec<Event> = batch.into_iter().map(|s| s.event).collect();
            let index = self.index.clone();
            blocking(move || index.apply(&events, Some(last))).await?;
            seq = last;
        }
    }

    /// Expire this node's own lapsed posts, a batch a round; drop from the
    /// index what lapsed longer ago than the log keeps market events.
    async fn sweep(&self) {
        let me = self.key.node_id();
        let now = Timestamp::now().unix();
        let index = self.index.clone();
        let before = now - i64::from(EVENT_LOG_RETENTION_DAYS) * 86_400;
        match blocking(move || index.forget_lapsed(before)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(posts = n, "long-lapsed posts dropped from the market index"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot drop long-lapsed posts from the market index")
            }
        }
        let index = self.index.clone();
        let lapsed = match blocking(move || index.lapsed(&me, now, SWEEP_BATCH)).await {
            Ok(lapsed) => lapsed,
            Err(e) => {
                tracing::warn!(error = %e, "the market sweeper cannot read the index");
                return;
            }
        };
        for post in lapsed {
            let client_id = format!("sweep:{}", post.event_id);
            let _one_at_a_time = self.writing.lock().await;
            match self.expire_post(&post, rules::STALE, &client_id).await {
                Ok(e) => {
                    tracing::info!(post = %post.event_id, expiry = %e.event_id, "lapsed post expired")
                }
                Err(e) => {
                    tracing::warn!(post = %post.event_id, error = %e, "cannot expire a lapsed post")
                }
            }
        }
    }
}

/// Cosine similarity (the vectors need not be normalised).
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

#[cfg(test)]
mod tests;
