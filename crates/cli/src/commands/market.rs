//! `hearthnet market post|ls|search|expire` (M06 through the bus):
//! `market.post` and `market.expire` on the node's own key (the post is
//! the node's event), `market.list` and `market.search` as any member may
//! call them. Usage errors (a location that does not parse, a TTL over 30
//! days) are caught here, before the node is asked; the node checks again.

use std::path::Path;

use anyhow::anyhow;
use hearthnet_client::{CallReply, LocalClient};
use hearthnet_config::Env;
use hearthnet_events::market::MAX_TTL_SECONDS;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{file, node_client};
use crate::cli::{
    ExpiryReason, MarketCategory, MarketExpireArgs, MarketLsArgs, MarketPostArgs, MarketSearchArgs,
};
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;

/// A post as `market.list` and `market.search` return it (Contract §4.11).
#[derive(Debug, Deserialize, Serialize)]
struct Post {
    event_id: String,
    lamport: u64,
    author: String,
    category: String,
    title: String,
    body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    location: Option<Value>,
    tags: Vec<String>,
    created_at: String,
    expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
}

#[derive(Debug, Deserialize, Serialize)]
struct Posts {
    posts: Vec<Post>,
    max_lamport: u64,
}

/// What `market.search` says of its ranking.
#[derive(Debug, Deserialize, Serialize)]
struct SearchMeta {
    retrieval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    embedding_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    embedding_error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Answer<O, M> {
    output: O,
    meta: M,
}

/// `market.post` and `market.expire` answer with the event written.
#[derive(Debug, Deserialize, Serialize)]
struct Written {
    event_id: String,
    lamport: u64,
}

fn usage(message: String) -> CliError {
    CliError::new(ExitStatus::Usage, anyhow!(message))
}

fn category(c: MarketCategory) -> &'static str {
    match c {
        MarketCategory::Offer => "offer",
        MarketCategory::Request => "request",
        MarketCategory::Info => "info",
        MarketCategory::Emergency => "emergency",
    }
}

fn reason(r: ExpiryReason) -> &'static str {
    match r {
        ExpiryReason::Fulfilled => "fulfilled",
        ExpiryReason::Withdrawn => "withdrawn",
        ExpiryReason::UserRequest => "user_request",
        ExpiryReason::Stale => "stale",
    }
}

/// `LAT,LNG[,LABEL]` as the contract's location object.
fn location(text: &str) -> Result<Value, CliError> {
    let mut parts = text.splitn(3, ',');
    let mut degrees = |name: &str, bound: f64| {
        parts
            .next()
            .and_then(|p| p.trim().parse::<f64>().ok())
            .filter(|x| x.is_finite() && (-bound..=bound).contains(x))
            .ok_or_else(|| {
                usage(format!(
                    "--location `{text}`: the {name} must be a number from -{bound} to {bound} (LAT,LNG[,LABEL])"
                ))
            })
    };
    let lat = degrees("latitude", 90.0)?;
    let lng = degrees("longitude", 180.0)?;
    Ok(match parts.next().map(str::trim) {
        Some(label) => json!({"lat": lat, "lng": lng, "label": label}),
        None => json!({"lat": lat, "lng": lng}),
    })
}

/// Seconds, or a number with `s`, `m`, `h` or `d`; 1 s to 30 days.
fn ttl(text: &str) -> Result<u64, CliError> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => 0,
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(per))
        .filter(|s| (1..=MAX_TTL_SECONDS).contains(s))
        .ok_or_else(|| {
            usage(format!(
                "--ttl `{text}`: a duration from 1s to 30d (seconds, or a number with s, m, h or d)"
            ))
        })
}

/// A non-streamed call; its whole answer, decoded.
fn answer<T: DeserializeOwned>(
    client: &LocalClient,
    capability: &'static str,
    input: Value,
) -> Result<T, CliError> {
    let body = json!({"params": {}, "input": input});
    match client
        .call(capability, "1.0", &body, false, None)
        .map_err(CliError::from_client)?
    {
        CallReply::Json(v) => file::decoded(capability, v),
        CallReply::Stream(_) => Err(CliError::new(
            ExitStatus::Failure,
            anyhow!("{capability} answered with a stream"),
        )),
    }
}

fn new_client_id(given: Option<String>) -> String {
    given.unwrap_or_else(|| ulid::Ulid::new().to_string())
}

pub fn post(config: Option<&Path>, env: &Env, args: MarketPostArgs) -> CliResult {
    let mut input = json!({
        "client_id": new_client_id(args.client_id),
        "category": category(args.category),
        "title": args.title,
        "body": args.body,
        "tags": args.tags,
    });
    if let Some(text) = &args.location {
        input["location"] = location(text)?;
    }
    if let Some(text) = &args.ttl {
        input["ttl_seconds"] = json!(ttl(text)?);
    }
    let client = node_client::connect(config, env)?;
    let written: Answer<Written, Value> = answer(&client, "market.post", input)?;
    if args.json {
        println!("{}", serde_json::to_string(&written.output)?);
    } else {
        println!("{}", written.output.event_id);
    }
    Ok(ExitStatus::Success)
}

pub fn ls(config: Option<&Path>, env: &Env, args: MarketLsArgs) -> CliResult {
    let mut input = json!({"tags": args.tags, "limit": args.limit});
    if let Some(c) = args.category {
        input["category"] = json!(category(c));
    }
    if let Some(l) = args.since_lamport {
        input["since_lamport"] = json!(l);
    }
    let client = node_client::connect(config, env)?;
    let listed: Answer<Posts, Value> = answer(&client, "market.list", input)?;
    if args.json {
        println!("{}", serde_json::to_string(&listed.output)?);
        return Ok(ExitStatus::Success);
    }
    print_posts(&listed.output.posts, false);
    Ok(ExitStatus::Success)
}

pub fn search(config: Option<&Path>, env: &Env, args: MarketSearchArgs) -> CliResult {
    let client = node_client::connect(config, env)?;
    let input = json!({"query": args.query, "k": args.k});
    let found: Answer<Posts, SearchMeta> = answer(&client, "market.search", input)?;
    if args.json {
        let both = json!({"posts": found.output.posts, "meta": found.meta});
        println!("{}", serde_json::to_string(&both)?);
        return Ok(ExitStatus::Success);
    }
    match (found.meta.retrieval.as_str(), &found.meta.embedding_model) {
        ("semantic", Some(model)) => printer::status(format!("ranked by meaning ({model})")),
        _ => {
            printer::status("ranked by the words of the posts");
            printer::hint(
                "no embedding model is in reach; with one (hearthnet caps --name embed.text) posts are found by meaning",
            );
        }
    }
    print_posts(&found.output.posts, true);
    Ok(ExitStatus::Success)
}

pub fn expire(config: Option<&Path>, env: &Env, args: MarketExpireArgs) -> CliResult {
    let input = json!({
        "client_id": new_client_id(args.client_id),
        "event_id": args.event_id,
        "reason": reason(args.reason),
    });
    let client = node_client::connect(config, env)?;
    let written: Answer<Written, Value> = answer(&client, "market.expire", input)?;
    if args.json {
        println!("{}", serde_json::to_string(&written.output)?);
    } else {
        println!("{}", written.output.event_id);
    }
    Ok(ExitStatus::Success)
}

fn print_posts(posts: &[Post], scored: bool) {
    let mut headers = vec!["EVENT ID", "CATEGORY", "TITLE", "TAGS", "EXPIRES"];
    if scored {
        headers.insert(0, "SCORE");
    }
    let rows: Vec<Vec<String>> = posts
        .iter()
        .map(|p| {
            let mut row = vec![
                p.event_id.clone(),
                p.category.clone(),
                p.title.clone(),
                p.tags.join(","),
                p.expires_at.clone(),
            ];
            if scored {
                row.insert(0, format!("{:.3}", p.score.unwrap_or_default()));
            }
            row
        })
        .collect();
    printer::table(&headers, &rows, if scored { 3 } else { 2 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_lat_lng_and_an_optional_label() {
        assert_eq!(
            location("51.5, 6.2, Issum, am Markt").unwrap(),
            json!({"lat": 51.5, "lng": 6.2, "label": "Issum, am Markt"})
        );
        assert_eq!(location("-1,2").unwrap(), json!({"lat": -1.0, "lng": 2.0}));
        for bad in ["91,0", "0,181", "x,1", "51.5", ""] {
            assert_eq!(
                location(bad).unwrap_err().status,
                ExitStatus::Usage,
                "{bad}"
            );
        }
    }

    #[test]
    fn a_ttl_is_seconds_or_has_a_unit_and_at_most_thirty_days() {
        assert_eq!(ttl("90").unwrap(), 90);
        assert_eq!(ttl("12h").unwrap(), 43_200);
        assert_eq!(ttl("30d").unwrap(), MAX_TTL_SECONDS);
        for bad in ["31d", "0", "3w", "-1", "d", ""] {
            assert_eq!(ttl(bad).unwrap_err().status, ExitStatus::Usage, "{bad}");
        }
    }
}
