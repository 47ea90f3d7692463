//! Market: the community's live posts (`market.list`), filtered by
//! category and tag or searched (`market.search`, which says whether it
//! ranked by meaning or by full text), a form to post (`market.post`) and
//! a button to end one's own posts (`market.expire`). The list follows
//! the event log: a post synced from a neighbour appears without reload.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use hearthnet_base::{NodeId, Timestamp};
use hearthnet_events::market::{self as rules, CATEGORIES, FieldError};
use hearthnet_transport::http::{ApiError, Query};
use hearthnet_wire::local::Status;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Chrome, Done, Form, Names, Page, PageError, client_id, plain_page, status};
use crate::UiState;
use crate::access::Session;
use crate::calls::CallFailure;
use crate::text::{TEXT, Text};

/// Posts one list shows.
const LIST_LIMIT: usize = 100;
/// The post form's TTL choices: whole days, as the log bounds a post.
const MAX_DAYS: u64 = rules::MAX_TTL_SECONDS / 86_400;
const DEFAULT_DAYS: u64 = 7;
/// Why this node's owner ends a post from the UI.
const EXPIRY_REASON: &str = "withdrawn";

pub(super) fn routes() -> Router<Arc<UiState>> {
    Router::new()
        .route(Page::Market.href(), get(market))
        .route("/market/posts", get(posts))
        .route("/market/post", post(post_form))
        .route("/market/expire", post(expire))
}

/// What the person asked to see, from the page's query string.
#[derive(Deserialize)]
struct Asked {
    q: Option<String>,
    category: Option<String>,
    tag: Option<String>,
}

/// [`Asked`], checked: empty fields are absent.
#[derive(Default)]
struct Shown {
    query: Option<String>,
    category: Option<String>,
    tag: Option<String>,
}

impl Shown {
    fn is_everything(&self) -> bool {
        self.query.is_none() && self.category.is_none() && self.tag.is_none()
    }

    /// The query string that asks for this again (for the live refresh).
    fn query_string(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("q", &self.query),
            ("category", &self.category),
            ("tag", &self.tag),
        ] {
            if let Some(v) = value {
                q.append_pair(key, v);
            }
        }
        q.finish()
    }
}

fn present(field: Option<String>) -> Option<String> {
    field.map(|f| f.trim().to_owned()).filter(|f| !f.is_empty())
}

/// The filter asked for, or the plain words saying what is wrong with it.
fn checked(asked: Asked) -> Result<Shown, &'static str> {
    let shown = Shown {
        query: present(asked.q),
        category: present(asked.category),
        tag: present(asked.tag).map(|t| t.to_lowercase()),
    };
    if shown
        .query
        .as_ref()
        .is_some_and(|q| q.chars().count() > hearthnet_market::MAX_QUERY_CHARS)
    {
        return Err(TEXT.market.refused_search);
    }
    if let Some(c) = &shown.category
        && rules::check_category(&json!(c)).is_err()
    {
        return Err(TEXT.market.refused_category);
    }
    if let Some(t) = &shown.tag
        && rules::check_tags(&json!([t])).is_err()
    {
        return Err(TEXT.market.refused_tag);
    }
    Ok(shown)
}

struct PostView {
    event_id: String,
    title: String,
    body: String,
    category: &'static str,
    /// Each tag with the address of the posts that carry it.
    tags: Vec<(String, String)>,
    author: String,
    own: bool,
    lapses_in: String,
    place: Option<String>,
}

fn category_label(category: &str) -> &'static str {
    CATEGORIES
        .iter()
        .position(|c| *c == category)
        .map_or(TEXT.none, |i| TEXT.market.categories[i])
}

impl PostView {
    fn of(post: &Value, names: &Names, now: i64) -> Option<Self> {
        let text = |key: &str| post[key].as_str().unwrap_or_default().to_owned();
        let author = NodeId::parse(post["author"].as_str()?).ok()?;
        let lapses_at = post["expires_at"]
            .as_str()
            .and_then(|t| Timestamp::parse(t).ok())
            .map_or(now, |t| t.unix());
        Some(Self {
            event_id: text("event_id"),
            title: text("title"),
            body: text("body"),
            category: category_label(post["category"].as_str().unwrap_or_default()),
            tags: post["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|tag| {
                    let shown = Shown {
                        tag: Some(tag.to_owned()),
                        ..Shown::default()
                    };
                    (tag.to_owned(), format!("/market?{}", shown.query_string()))
                })
                .collect(),
            own: author == names.me(),
            author: names.of_node(&author),
            lapses_in: TEXT.duration(lapses_at.saturating_sub(now).max(0) as u64),
            place: post["location"]["label"]
                .as_str()
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        })
    }
}

/// The posts as shown: their list, how a search ranked them, or why
/// there is none.
pub struct PostsView {
    posts: Vec<PostView>,
    filtered: bool,
    ranking: Option<&'static str>,
    failure: Option<CallFailure>,
}

impl PostsView {
    async fn of(ui: &UiState, status: &Status, shown: &Shown) -> Self {
        let names = Names::of(status, TEXT.market.you);
        let answer = match &shown.query {
            Some(query) => {
                let input = json!({"query": query, "k": hearthnet_market::MAX_K});
                ui.call(
                    hearthnet_market::SEARCH,
                    json!({"params": {}, "input": input}),
                )
                .await
            }
            None => {
                let mut input = json!({"limit": LIST_LIMIT});
                if let Some(c) = &shown.category {
                    input["category"] = json!(c);
                }
                if let Some(t) = &shown.tag {
                    input["tags"] = json!([t]);
                }
                ui.call(
                    hearthnet_market::LIST,
                    json!({"params": {}, "input": input}),
                )
                .await
            }
        };
        let answer = match answer {
            Ok(a) => a,
            Err(failure) => {
                return Self {
                    posts: Vec::new(),
                    filtered: !shown.is_everything(),
                    ranking: None,
                    failure: Some(failure),
                };
            }
        };
        let ranking = shown
            .query
            .as_ref()
            .map(|_| match answer["meta"]["retrieval"].as_str() {
                Some("semantic") => TEXT.market.by_meaning,
                _ => TEXT.market.by_full_text,
            });
        let now = Timestamp::now().unix();
        // A search is not filtered by the service: category and tag apply
        // here.
        let wanted = |post: &&Value| {
            shown
                .category
                .as_ref()
                .is_none_or(|c| post["category"].as_str() == Some(c))
                && shown.tag.as_ref().is_none_or(|t| {
                    post["tags"]
                        .as_array()
                        .is_some_and(|tags| tags.iter().any(|x| x.as_str() == Some(t)))
                })
        };
        let posts = answer["output"]["posts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(wanted)
            .filter_map(|p| PostView::of(p, &names, now))
            // Whoever answered, the page shows what it asked for.
            .take(LIST_LIMIT)
            .collect();
        Self {
            posts,
            filtered: !shown.is_everything(),
            ranking,
            failure: None,
        }
    }
}

#[derive(Template)]
#[template(path = "market_posts.html")]
struct PostsFragment {
    t: &'static Text,
    v: PostsView,
}

/// The live list of every current post: what the `market` event of the
/// page's live stream carries.
pub async fn market_fragment(ui: &UiState, status: &Status) -> Result<String, askama::Error> {
    PostsFragment {
        t: &TEXT,
        v: PostsView::of(ui, status, &Shown::default()).await,
    }
    .render()
}

/// The post form's fields, as entered.
#[derive(Default)]
struct PostFields {
    client_id: String,
    title: String,
    body: String,
    category: String,
    tags: String,
    days: String,
    place: String,
    lat: String,
    lng: String,
}

impl PostFields {
    fn fresh() -> Self {
        Self {
            client_id: client_id(),
            category: CATEGORIES[0].to_owned(),
            days: DEFAULT_DAYS.to_string(),
            ..Self::default()
        }
    }

    fn from_form(body: &[u8]) -> Self {
        let f = Form::parse(body);
        let take = |key: &str| f.field(key).to_owned();
        Self {
            client_id: take("client_id"),
            title: take("title"),
            body: take("body"),
            category: take("category"),
            tags: take("tags"),
            days: take("days"),
            place: take("place"),
            lat: take("lat"),
            lng: take("lng"),
        }
    }

    /// `market.post`'s input, checked by the log's own rules; else the
    /// plain words for what is wrong and the rule's own detail.
    fn input(&self) -> Result<Value, CallFailure> {
        let refuse = |advice: &'static str, detail: String| CallFailure { advice, detail };
        let mut data = Map::new();
        data.insert("client_id".into(), json!(self.client_id));
        data.insert("title".into(), json!(self.title.trim()));
        data.insert("body".into(), json!(self.body.trim()));
        data.insert("category".into(), json!(self.category));
        let tags: Vec<String> = self
            .tags
            .split([',', ' ', '\t', '\n', '\r'])
            .filter(|t| !t.is_empty())
            .map(str::to_lowercase)
            .collect();
        if !tags.is_empty() {
            data.insert("tags".into(), json!(tags));
        }
        let days = self
            .days
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|d| (1..=MAX_DAYS).contains(d))
            .ok_or_else(|| refuse(TEXT.market.bad_days, self.days.chars().take(16).collect()))?;
        data.insert("ttl_seconds".into(), json!(days * 86_400));
        if let Some(location) = self.location()? {
            data.insert("location".into(), location);
        }
        rules::check_post(&data).map_err(|e| refuse(advice_for(&e), e.under("")))?;
        Ok(Value::Object(data))
    }

    /// The optional place: a name with its latitude and longitude, or
    /// nothing at all.
    fn location(&self) -> Result<Option<Value>, CallFailure> {
        let (place, lat, lng) = (self.place.trim(), self.lat.trim(), self.lng.trim());
        if place.is_empty() && lat.is_empty() && lng.is_empty() {
            return Ok(None);
        }
        let number = |text: &str| text.parse::<f64>().ok().filter(|x| x.is_finite());
        match (number(lat), number(lng)) {
            (Some(lat), Some(lng)) => Ok(Some(json!({"lat": lat, "lng": lng, "label": place}))),
            _ => Err(CallFailure {
                advice: TEXT.market.bad_place,
                detail: String::new(),
            }),
        }
    }
}

/// The plain words for a field the log's rules refuse.
fn advice_for(e: &FieldError) -> &'static str {
    let field = e.field.split(['.', '[']).next().unwrap_or_default();
    match field {
        "title" => TEXT.market.bad_title,
        "body" => TEXT.market.bad_body,
        "category" => TEXT.market.bad_category,
        "tags" => TEXT.market.bad_tags,
        "ttl_seconds" => TEXT.market.bad_days,
        "location" => TEXT.market.bad_place,
        "client_id" => TEXT.market.bad_form,
        _ => TEXT.market.bad_post,
    }
}

struct CategoryOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

fn category_options(selected: Option<&str>) -> Vec<CategoryOption> {
    CATEGORIES
        .iter()
        .zip(TEXT.market.categories)
        .map(|(value, label)| CategoryOption {
            value,
            label,
            selected: selected == Some(*value),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "market_form.html")]
struct PostForm {
    t: &'static Text,
    f: PostFields,
    categories: Vec<CategoryOption>,
    max_days: u64,
    done: Option<&'static str>,
    failure: Option<CallFailure>,
}

impl PostForm {
    fn new(f: PostFields, done: Option<&'static str>, failure: Option<CallFailure>) -> Self {
        Self {
            t: &TEXT,
            categories: category_options(Some(&f.category)),
            f,
            max_days: MAX_DAYS,
            done,
            failure,
        }
    }
}

#[derive(Template)]
#[template(path = "market.html")]
struct MarketPage {
    t: &'static Text,
    chrome: Chrome,
    shown: Shown,
    refresh: String,
    categories: Vec<CategoryOption>,
    v: PostsView,
    /// The post form, rendered on its own (it is also the answer to a post).
    form: String,
}

/// What the query string asks to see, or the words saying why it
/// cannot be shown.
fn shown(asked: Result<Query<Asked>, ApiError>) -> Result<Shown, &'static str> {
    match asked {
        Ok(Query(asked)) => checked(asked),
        Err(_) => Err(TEXT.market.refused_query),
    }
}

/// A filter or search the page cannot show: a page saying so.
fn refused(message: &'static str) -> Response {
    plain_page(StatusCode::BAD_REQUEST, TEXT.market.refused_title, message)
}

async fn market(
    State(ui): State<Arc<UiState>>,
    Extension(session): Extension<Session>,
    asked: Result<Query<Asked>, ApiError>,
) -> Result<Response, PageError> {
    let shown = match shown(asked) {
        Ok(shown) => shown,
        Err(message) => return Ok(refused(message)),
    };
    let s = status(&ui).await?;
    let page = MarketPage {
        t: &TEXT,
        chrome: Chrome::of(Page::Market, &session, &s),
        refresh: shown.query_string(),
        categories: category_options(shown.category.as_deref()),
        v: PostsView::of(&ui, &s, &shown).await,
        shown,
        form: PostForm::new(PostFields::fresh(), None, None).render()?,
    };
    Ok(Html(page.render()?).into_response())
}

/// The list as filtered: what a filtered page fetches again when the
/// live stream says the posts changed.
async fn posts(
    State(ui): State<Arc<UiState>>,
    asked: Result<Query<Asked>, ApiError>,
) -> Result<Response, PageError> {
    let shown = match shown(asked) {
        Ok(shown) => shown,
        Err(message) => return Ok(refused(message)),
    };
    let s = status(&ui).await?;
    let fragment = PostsFragment {
        t: &TEXT,
        v: PostsView::of(&ui, &s, &shown).await,
    };
    Ok(Html(fragment.render()?).into_response())
}

/// Post, and answer with the form again: empty with a fresh `client_id`
/// and a note once posted, else as entered with what to change.
async fn post_form(State(ui): State<Arc<UiState>>, body: Bytes) -> Result<Html<String>, PageError> {
    let fields = PostFields::from_form(&body);
    let outcome = match fields.input() {
        Ok(input) => ui
            .call(
                hearthnet_market::POST,
                json!({"params": {}, "input": input}),
            )
            .await
            .map(|_| ()),
        Err(refusal) => Err(refusal),
    };
    let form = match outcome {
        Ok(()) => PostForm::new(PostFields::fresh(), Some(TEXT.market.posted), None),
        Err(failure) => PostForm::new(fields, None, Some(failure)),
    };
    Ok(Html(form.render()?))
}

/// End one of this node's posts; the list drops it when the log changes.
async fn expire(State(ui): State<Arc<UiState>>, body: Bytes) -> Response {
    let event_id = Form::parse(&body).field("event_id").to_owned();
    if event_id.is_empty() || event_id.len() > 64 {
        return CallFailure {
            advice: TEXT.market.bad_form,
            detail: String::new(),
        }
        .into_response();
    }
    // One expiry per post: ending it twice is the same request.
    let input = json!({
        "client_id": format!("ui-expire:{event_id}"),
        "event_id": event_id,
        "reason": EXPIRY_REASON,
    });
    match ui
        .call(
            hearthnet_market::EXPIRE,
            json!({"params": {}, "input": input}),
        )
        .await
    {
        Ok(_) => Done {
            message: TEXT.market.expired.to_owned(),
        }
        .into_response(),
        Err(failure) => failure.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(title: &str, category: &str, tags: &str, days: &str) -> PostFields {
        PostFields {
            client_id: "c1".into(),
            title: title.into(),
            category: category.into(),
            tags: tags.into(),
            days: days.into(),
            ..PostFields::default()
        }
    }

    #[test]
    fn a_post_is_checked_by_the_logs_rules_and_refused_in_plain_words() {
        let ok = fields("Ladder to lend", "offer", "Tools, garden tools", "3")
            .input()
            .unwrap();
        assert_eq!(ok["ttl_seconds"], 3 * 86_400);
        assert_eq!(ok["tags"], json!(["tools", "garden", "tools"]));
        let cases = [
            (
                fields(&"x".repeat(201), "offer", "", "7"),
                TEXT.market.bad_title,
            ),
            (fields("  ", "offer", "", "7"), TEXT.market.bad_title),
            (fields("t", "bargain", "", "7"), TEXT.market.bad_category),
            (
                fields("t", "offer", &"a".repeat(33), "7"),
                TEXT.market.bad_tags,
            ),
            (fields("t", "offer", "", "31"), TEXT.market.bad_days),
            (fields("t", "offer", "", "0"), TEXT.market.bad_days),
            (fields("t", "offer", "", "soon"), TEXT.market.bad_days),
        ];
        for (f, advice) in cases {
            let refused = f.input().unwrap_err();
            assert_eq!(refused.advice, advice, "{}", refused.detail);
        }
        let mut place_only = fields("t", "offer", "", "7");
        place_only.place = "the bakery".into();
        assert_eq!(
            place_only.input().unwrap_err().advice,
            TEXT.market.bad_place
        );
        place_only.lat = "48.2".into();
        place_only.lng = "16.37".into();
        assert_eq!(
            place_only.input().unwrap()["location"]["label"],
            "the bakery"
        );
        place_only.lat = "91".into();
        assert_eq!(
            place_only.input().unwrap_err().advice,
            TEXT.market.bad_place
        );
    }

    #[test]
    fn a_filter_is_bounded_before_anything_is_asked() {
        let asked = |q: &str, category: &str, tag: &str| Asked {
            q: Some(q.into()),
            category: Some(category.into()),
            tag: Some(tag.into()),
        };
        let all = checked(asked(" ", "", "")).unwrap();
        assert!(all.is_everything());
        let some = checked(asked("ladder", "offer", "Tools")).unwrap();
        assert_eq!(some.tag.as_deref(), Some("tools"));
        assert_eq!(some.query_string(), "q=ladder&category=offer&tag=tools");
        let long = "x".repeat(hearthnet_market::MAX_QUERY_CHARS + 1);
        assert_eq!(
            checked(asked(&long, "", "")).err(),
            Some(TEXT.market.refused_search)
        );
        assert_eq!(
            checked(asked("", "bargain", "")).err(),
            Some(TEXT.market.refused_category)
        );
        assert_eq!(
            checked(asked("", "", "two words")).err(),
            Some(TEXT.market.refused_tag)
        );
    }
}
