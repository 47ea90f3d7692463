//! The marketplace's rules of the log (Contract §4.11–§4.13, §7.2; M06):
//! the bounds of a post's data, checked with its shape before anything is
//! stored, and who may expire or update a post, judged at the event's
//! position like every other right. The marketplace service checks the
//! same rules on its input, with these very functions, so a call and a
//! synced event are held to one standard.

use std::collections::BTreeMap;

use hearthnet_base::event::Event;
use hearthnet_base::{NodeId, Timestamp, TrustLevel};
use serde_json::{Map, Value};

use crate::view::Position;
use crate::{Reject, RejectCode};

pub const POST_CREATED: &str = "market.post.created";
pub const POST_UPDATED: &str = "market.post.updated";
pub const POST_EXPIRED: &str = "market.post.expired";

/// Contract §4.11.
pub const CATEGORIES: [&str; 4] = ["offer", "request", "info", "emergency"];
/// Contract §4.13.
pub const EXPIRY_REASONS: [&str; 4] = ["fulfilled", "withdrawn", "user_request", "stale"];
/// The one reason someone other than the author may give.
pub const STALE: &str = "stale";
/// Contract §4.12: at most 30 days.
pub const MAX_TTL_SECONDS: u64 = 30 * 86_400;
/// Ours: a title is a line, a body a few paragraphs; together they stay
/// under `embed.text`'s 8192 characters, so a post is embedded whole.
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_BODY_CHARS: usize = 4_000;
pub const MAX_TAGS: usize = 16;
pub const MAX_TAG_CHARS: usize = 32;
pub const MAX_LABEL_CHARS: usize = 100;
/// A caller's id for deduplication (a ULID or UUID fits many times over).
pub const MAX_CLIENT_ID_CHARS: usize = 128;
/// An event id as our writers make them (ULID) and then some.
const MAX_EVENT_ID_CHARS: usize = 64;
/// Ours (rules revision 6): the posts one author may have live at once,
/// so no member fills the newest posts every list and search reads. A
/// household needs a handful; the bound is generous and still a bound.
pub const MAX_LIVE_POSTS_PER_AUTHOR: usize = 100;
/// The fields a `market.post.updated` may change.
const UPDATABLE: [&str; 5] = ["category", "title", "body", "location", "tags"];

/// What is wrong with a post's field: `field` is its name in the post
/// (`title`, `location.lat`), so a caller can say `input.title` and the
/// log `data.title`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl FieldError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The message, with the field under `prefix` (`input`, `data`).
    pub fn under(&self, prefix: &str) -> String {
        format!("{prefix}.{} {}", self.field, self.problem)
    }
}

fn chars(value: &Value, field: &str, min: usize, max: usize) -> Result<(), FieldError> {
    let Some(text) = value.as_str() else {
        return Err(FieldError::new(field, "must be a string"));
    };
    let n = text.chars().count();
    if n < min || n > max {
        return Err(FieldError::new(
            field,
            format!("is {n} characters; {min} to {max} are allowed"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(FieldError::new(
            field,
            "holds control characters (only newlines and tabs are allowed)",
        ));
    }
    Ok(())
}

pub fn check_category(value: &Value) -> Result<(), FieldError> {
    match value.as_str() {
        Some(c) if CATEGORIES.contains(&c) => Ok(()),
        _ => Err(FieldError::new(
            "category",
            format!("must be one of {}", CATEGORIES.join(", ")),
        )),
    }
}

pub fn check_title(value: &Value) -> Result<(), FieldError> {
    chars(value, "title", 1, MAX_TITLE_CHARS)
}

pub fn check_body(value: &Value) -> Result<(), FieldError> {
    chars(value, "body", 0, MAX_BODY_CHARS)
}

/// At most [`MAX_TAGS`] tags, each 1 to [`MAX_TAG_CHARS`] characters
/// without whitespace.
pub fn check_tags(value: &Value) -> Result<(), FieldError> {
    let Some(tags) = value.as_array() else {
        return Err(FieldError::new("tags", "must be an array of strings"));
    };
    if tags.len() > MAX_TAGS {
        return Err(FieldError::new(
            "tags",
            format!("has {} tags; at most {MAX_TAGS} are allowed", tags.len()),
        ));
    }
    for (i, tag) in tags.iter().enumerate() {
        let field = format!("tags[{i}]");
        chars(tag, &field, 1, MAX_TAG_CHARS)?;
        if tag
            .as_str()
            .is_some_and(|t| t.chars().any(char::is_whitespace))
        {
            return Err(FieldError::new(field, "holds whitespace"));
        }
    }
    Ok(())
}

/// `{"lat", "lng", "label"}`: latitude −90…90, longitude −180…180, a
/// label of at most [`MAX_LABEL_CHARS`]; nothing else.
pub fn check_location(value: &Value) -> Result<(), FieldError> {
    let Some(fields) = value.as_object() else {
        return Err(FieldError::new(
            "location",
            "must be an object {\"lat\", \"lng\", \"label\"}",
        ));
    };
    if let Some(other) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "lat" | "lng" | "label"))
    {
        return Err(FieldError::new(
            format!("location.{other:.32}"),
            "is unknown (lat, lng and label are known)",
        ));
    }
    for (key, bound) in [("lat", 90.0), ("lng", 180.0)] {
        match fields.get(key).and_then(Value::as_f64) {
            Some(x) if x.is_finite() && (-bound..=bound).contains(&x) => {}
            _ => {
                return Err(FieldError::new(
                    format!("location.{key}"),
                    format!("must be a number from -{bound} to {bound}"),
                ));
            }
        }
    }
    match fields.get("label") {
        None => Ok(()),
        Some(label) => chars(label, "location.label", 0, MAX_LABEL_CHARS),
    }
}

/// 1 to [`MAX_TTL_SECONDS`].
pub fn check_ttl(value: &Value) -> Result<(), FieldError> {
    match value.as_u64() {
        Some(t) if (1..=MAX_TTL_SECONDS).contains(&t) => Ok(()),
        _ => Err(FieldError::new(
            "ttl_seconds",
            format!("must be 1 to {MAX_TTL_SECONDS} seconds (30 days)"),
        )),
    }
}

pub fn check_client_id(value: &Value) -> Result<(), FieldError> {
    chars(value, "client_id", 1, MAX_CLIENT_ID_CHARS)
}

fn check_event_id(value: &Value, field: &str) -> Result<(), FieldError> {
    chars(value, field, 1, MAX_EVENT_ID_CHARS)
}

pub fn check_reason(value: &Value) -> Result<(), FieldError> {
    match value.as_str() {
        Some(r) if EXPIRY_REASONS.contains(&r) => Ok(()),
        _ => Err(FieldError::new(
            "reason",
            format!("must be one of {}", EXPIRY_REASONS.join(", ")),
        )),
    }
}

/// The optional fields of a post, each checked when present.
fn check_optional(fields: &Map<String, Value>) -> Result<(), FieldError> {
    if let Some(location) = fields.get("location") {
        check_location(location)?;
    }
    if let Some(tags) = fields.get("tags") {
        check_tags(tags)?;
    }
    Ok(())
}

/// The data of a new post (`market.post.created`).
pub fn check_post(data: &Map<String, Value>) -> Result<(), FieldError> {
    let field = |name: &str| data.get(name).unwrap_or(&Value::Null);
    check_client_id(field("client_id"))?;
    check_category(field("category"))?;
    check_title(field("title"))?;
    check_body(field("body"))?;
    check_ttl(field("ttl_seconds"))?;
    check_optional(data)
}

fn check_update(data: &Map<String, Value>) -> Result<(), FieldError> {
    check_client_id(data.get("client_id").unwrap_or(&Value::Null))?;
    check_event_id(
        data.get("target_event_id").unwrap_or(&Value::Null),
        "target_event_id",
    )?;
    let Some(fields) = data.get("fields").and_then(Value::as_object) else {
        return Err(FieldError::new("fields", "must be an object"));
    };
    if let Some(other) = fields.keys().find(|k| !UPDATABLE.contains(&k.as_str())) {
        return Err(FieldError::new(
            format!("fields.{other:.32}"),
            format!("cannot be updated ({} can)", UPDATABLE.join(", ")),
        ));
    }
    let prefixed = |e: FieldError| FieldError::new(format!("fields.{}", e.field), e.problem);
    for (name, value) in fields {
        match name.as_str() {
            "category" => check_category(value),
            "title" => check_title(value),
            "body" => check_body(value),
            _ => Ok(()),
        }
        .map_err(prefixed)?;
    }
    check_optional(fields).map_err(prefixed)
}

fn check_expiry(data: &Map<String, Value>) -> Result<(), FieldError> {
    check_client_id(data.get("client_id").unwrap_or(&Value::Null))?;
    check_event_id(
        data.get("target_event_id").unwrap_or(&Value::Null),
        "target_event_id",
    )?;
    check_reason(data.get("reason").unwrap_or(&Value::Null))
}

/// The bounds of a market event's data, beyond its declared shape; other
/// types pass. `Err` is the message naming `data.<field>`.
pub fn check_data(event_type: &str, data: &Map<String, Value>) -> Result<(), String> {
    match event_type {
        POST_CREATED => check_post(data),
        POST_UPDATED => check_update(data),
        POST_EXPIRED => check_expiry(data),
        _ => Ok(()),
    }
    .map_err(|e| e.under("data"))
}

/// A post as the judge of an expiry or update needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub event_type: String,
    pub author: NodeId,
    pub position: Position,
    /// When it lapses: its wall clock plus its TTL (plus the longest TTL
    /// for a post pruned to its tombstone, whose TTL is gone).
    pub expires_at: Timestamp,
    /// Whether it counts at this point of the judgement.
    pub counts: bool,
}

/// Each author's live posts at a point of history: posts that count,
/// were not expired by an event that counts, and had not lapsed at the
/// author's latest post; with when each lapses. Part of the community
/// view, so it is judged at every event's position and kept in
/// checkpoints and snapshots. At most [`MAX_LIVE_POSTS_PER_AUTHOR`] per
/// author.
pub type LivePosts = BTreeMap<NodeId, BTreeMap<String, Timestamp>>;

/// When a post lapses: its wall clock plus its TTL (bounded, so a post
/// whose TTL cannot be read lapses as late as any).
pub fn lapses_at(post: &Event) -> Timestamp {
    let ttl = post.data["ttl_seconds"]
        .as_u64()
        .unwrap_or(MAX_TTL_SECONDS)
        .min(MAX_TTL_SECONDS);
    post.wall_clock.plus_seconds(ttl as i64)
}

/// How many posts of `author` in `live` lapse after `at`.
pub fn live_at(live: &LivePosts, author: &NodeId, at: Timestamp) -> usize {
    live.get(author).map_or(0, |posts| {
        posts.values().filter(|until| **until > at).count()
    })
}

/// Whether the post `e` may count after `live`: its author has fewer than
/// [`MAX_LIVE_POSTS_PER_AUTHOR`] posts that lapse after `e`'s wall clock.
/// Any node judges the same, as `live` is the view just before `e`.
pub fn authorize_post(e: &Event, live: &LivePosts) -> Result<(), Reject> {
    let live_then = live_at(live, &e.author, e.wall_clock);
    if live_then >= MAX_LIVE_POSTS_PER_AUTHOR {
        return Err(unauthorized(format!(
            "{} has {live_then} live posts at this point of history; at most {MAX_LIVE_POSTS_PER_AUTHOR} are allowed (expire one first)",
            e.author.short()
        )));
    }
    Ok(())
}

/// Fold a counted market event into `live`.
pub(crate) fn apply_live(live: &mut LivePosts, e: &Event) {
    match e.event_type.as_str() {
        POST_CREATED => {
            let posts = live.entry(e.author).or_default();
            // What lapsed before this post no longer weighs on the author,
            // which keeps the map within the bound.
            posts.retain(|_, until| *until > e.wall_clock);
            posts.insert(e.event_id.clone(), lapses_at(e));
        }
        POST_EXPIRED => {
            let target = e.data["target_event_id"].as_str().unwrap_or_default();
            let mut emptied = None;
            for (author, posts) in live.iter_mut() {
                if posts.remove(target).is_some() {
                    emptied = posts.is_empty().then_some(*author);
                    break;
                }
            }
            if let Some(author) = emptied {
                live.remove(&author);
            }
        }
        _ => {}
    }
}

/// Whether `event_type` is one whose right to be written depends on the
/// post it names.
pub fn names_a_post(event_type: &str) -> bool {
    event_type == POST_UPDATED || event_type == POST_EXPIRED
}

fn unauthorized(detail: impl Into<String>) -> Reject {
    Reject::new(RejectCode::Unauthorized, detail)
}

/// Whether `expirer`, at `level`, may expire a post of `author` lapsing at
/// `expires_at`, for `reason`, at `at`: the author for any reason, a
/// trusted member or anchor only as `stale`, and only once it has lapsed.
/// `Err` says why not.
pub fn may_expire(
    expirer: &NodeId,
    level: TrustLevel,
    author: &NodeId,
    expires_at: Timestamp,
    reason: &str,
    at: Timestamp,
) -> Result<(), String> {
    if expirer == author {
        return Ok(());
    }
    if reason != STALE {
        return Err(
            "only its author expires a post for this reason; others may only expire a lapsed post as stale"
                .into(),
        );
    }
    if level < TrustLevel::Trusted {
        return Err(format!(
            "{} is {level}; only its author or a trusted member expires a post",
            expirer.short()
        ));
    }
    if at < expires_at {
        return Err(format!(
            "the post lapses at {expires_at}; before then only its author expires it"
        ));
    }
    Ok(())
}

/// Whether `e` (an update or expiry) may be written by its author, whose
/// level just before `e` is `level`, of the post `target` (what the log
/// holds under `data.target_event_id`): only the author updates a post,
/// and [`may_expire`] says who expires it.
pub fn authorize(e: &Event, level: TrustLevel, target: Option<Target>) -> Result<(), Reject> {
    let named = e.data["target_event_id"].as_str().unwrap_or_default();
    let target = target
        .filter(|t| t.event_type == POST_CREATED && t.counts && t.position < Position::of(e))
        .ok_or_else(|| {
            unauthorized(format!(
                "no post {named:.64} counts before this event; only an existing post is updated or expired"
            ))
        })?;
    if e.event_type == POST_UPDATED {
        return match target.author == e.author {
            true => Ok(()),
            false => Err(unauthorized("only its author updates a post")),
        };
    }
    let reason = e.data["reason"].as_str().unwrap_or_default();
    may_expire(
        &e.author,
        level,
        &target.author,
        target.expires_at,
        reason,
        e.wall_clock,
    )
    .map_err(unauthorized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearthnet_base::event::NewEvent;
    use hearthnet_base::{CommunityId, DeviceKey};
    use serde_json::json;

    fn post() -> Map<String, Value> {
        json!({"client_id": "c1", "category": "offer", "title": "Wasserkanister",
               "body": "20 l, abzugeben", "ttl_seconds": 86_400,
               "location": {"lat": 51.5, "lng": 6.2, "label": "Issum"},
               "tags": ["wasser", "notfall"]})
        .as_object()
        .cloned()
        .unwrap()
    }

    /// The refusal of a post whose `key` is `value`.
    fn refused(key: &str, value: Value) -> String {
        let mut data = post();
        data.insert(key.into(), value);
        check_data(POST_CREATED, &data).unwrap_err()
    }

    #[test]
    fn a_full_post_passes_and_optional_fields_may_be_missing() {
        assert_eq!(check_data(POST_CREATED, &post()), Ok(()));
        let mut bare = post();
        bare.remove("location");
        bare.remove("tags");
        assert_eq!(check_data(POST_CREATED, &bare), Ok(()));
    }

    #[test]
    fn oversized_title_and_body_are_refused() {
        let long = "x".repeat(MAX_TITLE_CHARS + 1);
        assert!(refused("title", json!(long)).starts_with("data.title is 201"));
        assert!(refused("title", json!("")).starts_with("data.title is 0"));
        let body = "ü".repeat(MAX_BODY_CHARS + 1);
        assert!(refused("body", json!(body)).starts_with("data.body is 4001"));
        // Characters, not bytes: a body of 4000 umlauts fits.
        let mut fits = post();
        fits.insert("body".into(), json!("ü".repeat(MAX_BODY_CHARS)));
        assert_eq!(check_data(POST_CREATED, &fits), Ok(()));
        assert!(refused("title", json!("a\u{7}b")).contains("control"));
    }

    #[test]
    fn too_many_or_malformed_tags_are_refused() {
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert_eq!(
            refused("tags", json!(many)),
            "data.tags has 17 tags; at most 16 are allowed"
        );
        assert!(refused("tags", json!(["ok", ""])).starts_with("data.tags[1]"));
        assert!(refused("tags", json!(["two words"])).contains("whitespace"));
        assert!(refused("tags", json!("wasser")).contains("array"));
    }

    #[test]
    fn a_ttl_over_thirty_days_or_of_zero_is_refused() {
        assert!(
            refused("ttl_seconds", json!(MAX_TTL_SECONDS + 1))
                .starts_with("data.ttl_seconds must be 1 to 2592000")
        );
        assert!(refused("ttl_seconds", json!(0)).starts_with("data.ttl_seconds"));
        let mut longest = post();
        longest.insert("ttl_seconds".into(), json!(MAX_TTL_SECONDS));
        assert_eq!(check_data(POST_CREATED, &longest), Ok(()));
    }

    #[test]
    fn a_malformed_location_is_refused() {
        for (location, field) in [
            (json!({"lat": 91, "lng": 0}), "data.location.lat"),
            (json!({"lat": 0, "lng": -180.5}), "data.location.lng"),
            (json!({"lat": "51", "lng": 6}), "data.location.lat"),
            (json!({"lng": 6}), "data.location.lat"),
            (json!({"lat": 0, "lng": 0, "alt": 3}), "data.location.alt"),
            (
                json!({"lat": 0, "lng": 0, "label": "x".repeat(101)}),
                "data.location.label",
            ),
            (json!([51.5, 6.2]), "data.location"),
        ] {
            let message = refused("location", location.clone());
            assert!(message.starts_with(field), "{location}: {message}");
        }
    }

    #[test]
    fn category_and_reason_are_closed_sets() {
        assert!(refused("category", json!("sale")).starts_with("data.category"));
        let expiry = |reason: &str| {
            json!({"client_id": "e", "target_event_id": "01H", "reason": reason})
                .as_object()
                .cloned()
                .unwrap()
        };
        assert_eq!(check_data(POST_EXPIRED, &expiry("stale")), Ok(()));
        assert!(
            check_data(POST_EXPIRED, &expiry("spite"))
                .unwrap_err()
                .starts_with("data.reason")
        );
    }

    #[test]
    fn an_update_changes_only_known_fields_within_their_bounds() {
        let update = |fields: Value| {
            json!({"client_id": "u", "target_event_id": "01H", "fields": fields})
                .as_object()
                .cloned()
                .unwrap()
        };
        assert_eq!(
            check_data(POST_UPDATED, &update(json!({"body": "neu"}))),
            Ok(())
        );
        assert!(
            check_data(POST_UPDATED, &update(json!({"author": "x"})))
                .unwrap_err()
                .starts_with("data.fields.author")
        );
        assert!(
            check_data(POST_UPDATED, &update(json!({"tags": ["a b"]})))
                .unwrap_err()
                .starts_with("data.fields.tags[0]")
        );
    }

    fn expiry(key: &DeviceKey, lamport: u64, reason: &str) -> Event {
        Event::create(
            NewEvent {
                community_id: CommunityId::of_root(DeviceKey::generate().node_id()),
                lamport,
                event_type: POST_EXPIRED,
                data: json!({"client_id": "e", "target_event_id": "01POST", "reason": reason}),
            },
            key,
        )
        .unwrap()
    }

    fn target(author: NodeId, expires_at: Timestamp) -> Option<Target> {
        Some(Target {
            event_type: POST_CREATED.into(),
            author,
            position: Position {
                lamport: 5,
                event_id: "01POST".into(),
            },
            expires_at,
            counts: true,
        })
    }

    #[test]
    fn the_author_expires_for_any_reason_others_only_a_lapsed_post_and_if_trusted() {
        let (author, other) = (DeviceKey::generate(), DeviceKey::generate());
        let lapsed = Timestamp::now().plus_seconds(-60);
        let fresh = Timestamp::now().plus_seconds(3600);
        for reason in EXPIRY_REASONS {
            let e = expiry(&author, 6, reason);
            assert!(authorize(&e, TrustLevel::Member, target(author.node_id(), fresh)).is_ok());
        }
        let stale = expiry(&other, 6, STALE);
        let by = |level, at| authorize(&stale, level, target(author.node_id(), at));
        assert!(by(TrustLevel::Trusted, lapsed).is_ok());
        assert!(by(TrustLevel::Anchor, lapsed).is_ok());
        let member = by(TrustLevel::Member, lapsed).unwrap_err();
        assert_eq!(member.code, RejectCode::Unauthorized);
        assert!(member.detail.contains("trusted"), "{member}");
        assert!(
            by(TrustLevel::Trusted, fresh)
                .unwrap_err()
                .detail
                .contains("lapses")
        );
        let withdrawn = expiry(&other, 6, "withdrawn");
        assert!(
            authorize(
                &withdrawn,
                TrustLevel::Anchor,
                target(author.node_id(), lapsed)
            )
            .is_err()
        );
    }

    #[test]
    fn an_expiry_needs_a_counted_post_before_it() {
        let author = DeviceKey::generate();
        let e = expiry(&author, 6, "fulfilled");
        assert!(authorize(&e, TrustLevel::Anchor, None).is_err());
        let at = Timestamp::now();
        let mut held = target(author.node_id(), at);
        if let Some(t) = held.as_mut() {
            t.counts = false;
        }
        assert!(authorize(&e, TrustLevel::Anchor, held).is_err());
        // A post at Lamport 5 is not before an expiry at Lamport 4.
        let earlier = expiry(&author, 4, "fulfilled");
        assert!(authorize(&earlier, TrustLevel::Anchor, target(author.node_id(), at)).is_err());
        let mut chat = target(author.node_id(), at);
        if let Some(t) = chat.as_mut() {
            t.event_type = "chat.message.sent".into();
        }
        assert!(authorize(&e, TrustLevel::Anchor, chat).is_err());
    }
}
