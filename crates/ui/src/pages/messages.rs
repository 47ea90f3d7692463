//! Messages: this node's conversations (`chat.history`), one opened
//! (`/messages?with=NODE_ID`) with its delivered and read marks and its
//! attachments, and a form to write (`chat.send`). The recipient is chosen
//! by name among the members in reach. Both follow the event log: the
//! conversations are the page's live fragment, and the open conversation
//! is fetched again whenever that fragment changes (reading it is what
//! writes the read receipts).

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use hearthnet_base::{NodeId, Timestamp};
use hearthnet_transport::http::{ApiError, Query};
use hearthnet_wire::local::Status;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Chrome, Form, Names, Page, PageError, client_id, plain_page, status};
use crate::UiState;
use crate::access::Session;
use crate::calls::CallFailure;
use crate::text::{TEXT, Text};

/// Messages of one conversation shown, the newest.
const SHOWN_MESSAGES: usize = 100;
/// Characters of the last message shown in the list of conversations.
const PREVIEW_CHARS: usize = 80;
/// Members of the community's manifest offered as recipients at most.
const MAX_MEMBERS_OFFERED: usize = 500;
/// Pages of everyone's history the list of conversations reads at most.
const MAX_HISTORY_PAGES: usize = 8;
/// The longest `with=` worth parsing: a full node id is 72 characters.
const MAX_NODE_ID_CHARS: usize = 100;

pub(super) fn routes() -> Router<Arc<UiState>> {
    Router::new()
        .route(Page::Messages.href(), get(messages))
        .route("/messages/conversation", get(conversation))
        .route("/messages/send", post(send))
}

#[derive(Deserialize)]
struct With {
    with: Option<String>,
}

/// The node `with=` names, if any; `Err` when it names none. (Naming
/// this node itself is refused once its id is known.)
fn member(with: Result<Query<With>, ApiError>) -> Result<Option<NodeId>, ()> {
    let Query(With { with }) = with.map_err(|_| ())?;
    match with.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) if text.len() > MAX_NODE_ID_CHARS => Err(()),
        Some(text) => NodeId::parse(text).map(Some).map_err(|_| ()),
    }
}

fn refused() -> Response {
    plain_page(
        StatusCode::BAD_REQUEST,
        TEXT.messages.refused_title,
        TEXT.messages.refused_with,
    )
}

/// `chat.history` with `peer` (everyone when `None`): its messages, in
/// the order they were written. The service keeps at most a page per
/// peer, so a conversation is one page; everyone's is read page by page,
/// up to [`MAX_HISTORY_PAGES`].
async fn history(ui: &UiState, peer: Option<NodeId>) -> Result<Vec<Value>, CallFailure> {
    let limit = hearthnet_chat::MAX_HISTORY_LIMIT;
    let mut all: Vec<Value> = Vec::new();
    for _ in 0..MAX_HISTORY_PAGES {
        let since = all.last().and_then(|m| m["lamport"].as_u64()).unwrap_or(0);
        let mut input = json!({"limit": limit, "since_lamport": since});
        if let Some(peer) = peer {
            input["peer"] = json!(peer.full());
        }
        let answer = ui
            .call("chat.history", json!({"params": {}, "input": input}))
            .await?;
        let page = answer["output"]["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let full = page.len() == limit;
        all.extend(page);
        if !full || peer.is_some() {
            break;
        }
    }
    Ok(all)
}

fn node_of(message: &Value, key: &str) -> Option<NodeId> {
    NodeId::parse(message[key].as_str()?).ok()
}

struct ConversationView {
    href: String,
    name: String,
    last: String,
    count: usize,
}

/// Whom a message may be written to, as `(full id, what it is called)`:
/// the neighbours in reach by name, then the other members the
/// community's manifest lists (not revoked) by short id; a message to one
/// of those waits for it.
fn recipients(names: &Names, manifest: &Value) -> Vec<(String, String)> {
    let ids = |key: &str| -> Vec<NodeId> {
        manifest[key]
            .as_array()
            .into_iter()
            .flatten()
            .take(MAX_MEMBERS_OFFERED)
            .filter_map(|m| node_of(m, "node_id"))
            .collect()
    };
    let revoked = ids("revoked");
    let mut all: Vec<(NodeId, String)> = names.neighbours();
    for member in ids("members") {
        if member != names.me()
            && !revoked.contains(&member)
            && !all.iter().any(|(id, _)| *id == member)
        {
            all.push((
                member,
                format!("{} ({})", member.short(), TEXT.messages.away),
            ));
        }
    }
    all.into_iter()
        .map(|(id, name)| (id.full(), name))
        .collect()
}

/// The conversations, the latest first, or why they cannot be shown.
pub struct ConversationsView {
    list: Vec<ConversationView>,
    failure: Option<CallFailure>,
}

impl ConversationsView {
    async fn of(ui: &UiState, status: &Status) -> Self {
        let names = Names::of(status, TEXT.messages.you);
        let messages = match history(ui, None).await {
            Ok(m) => m,
            Err(failure) => {
                return Self {
                    list: Vec::new(),
                    failure: Some(failure),
                };
            }
        };
        // Per peer: its last message and how many there are, in the order
        // of each conversation's last message.
        let mut by_peer: HashMap<NodeId, (usize, usize, String)> = HashMap::new();
        for (at, m) in messages.iter().enumerate() {
            let (Some(from), Some(to)) = (node_of(m, "from"), node_of(m, "to")) else {
                continue;
            };
            let peer = if from == names.me() { to } else { from };
            let entry = by_peer.entry(peer).or_default();
            entry.0 = at;
            entry.1 += 1;
            entry.2 = m["body"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(PREVIEW_CHARS)
                .collect();
        }
        let mut list: Vec<(NodeId, (usize, usize, String))> = by_peer.into_iter().collect();
        list.sort_by_key(|(_, (last_at, _, _))| std::cmp::Reverse(*last_at));
        Self {
            list: list
                .into_iter()
                .map(|(peer, (_, count, last))| ConversationView {
                    href: format!("/messages?with={}", peer.full()),
                    name: names.of_node(&peer),
                    last,
                    count,
                })
                .collect(),
            failure: None,
        }
    }
}

#[derive(Template)]
#[template(path = "messages_list.html")]
struct ConversationsFragment {
    t: &'static Text,
    c: ConversationsView,
}

/// The list of conversations: what the `messages` event of the page's
/// live stream carries.
pub async fn conversations_fragment(
    ui: &UiState,
    status: &Status,
) -> Result<String, askama::Error> {
    ConversationsFragment {
        t: &TEXT,
        c: ConversationsView::of(ui, status).await,
    }
    .render()
}

struct AttachmentView {
    name: String,
    cid: String,
    /// Where it downloads from (fetched from the neighbours if need be);
    /// none for what is not a CID.
    href: Option<String>,
}

struct MessageView {
    event_id: String,
    from: String,
    mine: bool,
    body: String,
    at: String,
    /// For a message of ours: `sent`, `delivered` or `read`.
    mark: &'static str,
    mark_text: &'static str,
    attachments: Vec<AttachmentView>,
}

impl MessageView {
    fn of(m: &Value, names: &Names) -> Option<Self> {
        let from = node_of(m, "from")?;
        let (mark, mark_text) = if !m["read_at"].is_null() {
            ("read", TEXT.messages.read)
        } else if !m["delivered_at"].is_null() {
            ("delivered", TEXT.messages.delivered)
        } else {
            ("sent", TEXT.messages.sent)
        };
        Some(Self {
            event_id: m["event_id"].as_str().unwrap_or_default().to_owned(),
            from: names.of_node(&from),
            mine: from == names.me(),
            body: m["body"].as_str().unwrap_or_default().to_owned(),
            at: m["created_at"]
                .as_str()
                .and_then(|t| Timestamp::parse(t).ok())
                .map(|t| {
                    let ago = Timestamp::now().unix().saturating_sub(t.unix()).max(0);
                    TEXT.duration(ago as u64)
                })
                .unwrap_or_default(),
            mark,
            mark_text,
            attachments: m["attachments"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    let name = a["name"].as_str().unwrap_or_default().to_owned();
                    let cid = a["cid"].as_str().unwrap_or_default().to_owned();
                    let href = super::files::checked_cid(&cid)
                        .map(|c| super::files::download_href(&c, &name));
                    AttachmentView { name, cid, href }
                })
                .collect(),
        })
    }
}

/// One conversation: its messages (the newest [`SHOWN_MESSAGES`]).
struct ThreadView {
    messages: Vec<MessageView>,
    earlier: bool,
    failure: Option<CallFailure>,
}

impl ThreadView {
    async fn of(ui: &UiState, status: &Status, peer: NodeId) -> Self {
        let names = Names::of(status, TEXT.messages.you);
        match history(ui, Some(peer)).await {
            Ok(all) => {
                let skip = all.len().saturating_sub(SHOWN_MESSAGES);
                Self {
                    messages: all
                        .iter()
                        .skip(skip)
                        .filter_map(|m| MessageView::of(m, &names))
                        .collect(),
                    earlier: skip > 0,
                    failure: None,
                }
            }
            Err(failure) => Self {
                messages: Vec::new(),
                earlier: false,
                failure: Some(failure),
            },
        }
    }
}

#[derive(Template)]
#[template(path = "messages_thread.html")]
struct ThreadFragment {
    t: &'static Text,
    v: ThreadView,
}

#[derive(Template)]
#[template(path = "messages_form.html")]
struct SendForm<'a> {
    t: &'static Text,
    recipient: &'a str,
    client_id: String,
    body: &'a str,
    /// Set on the form answering a send, so the keyboard stays in it.
    focus: bool,
    done: Option<&'static str>,
    failure: Option<CallFailure>,
}

/// The open conversation on the page.
struct Open {
    peer: String,
    name: String,
    thread: ThreadView,
    form: String,
}

#[derive(Template)]
#[template(path = "messages.html")]
struct MessagesPage {
    t: &'static Text,
    chrome: Chrome,
    c: ConversationsView,
    recipients: Vec<(String, String)>,
    open: Option<Open>,
}

async fn messages(
    State(ui): State<Arc<UiState>>,
    Extension(session): Extension<Session>,
    with: Result<Query<With>, ApiError>,
) -> Result<Response, PageError> {
    let Ok(peer) = member(with) else {
        return Ok(refused());
    };
    let s = status(&ui).await?;
    if peer == Some(s.node.id) {
        return Ok(refused());
    }
    let names = Names::of(&s, TEXT.messages.you);
    let open = match peer {
        Some(peer) => {
            let full = peer.full();
            let form = SendForm {
                t: &TEXT,
                recipient: &full,
                client_id: client_id(),
                body: "",
                focus: false,
                done: None,
                failure: None,
            }
            .render()?;
            Some(Open {
                name: names.of_node(&peer),
                thread: ThreadView::of(&ui, &s, peer).await,
                peer: full,
                form,
            })
        }
        None => None,
    };
    let page = MessagesPage {
        t: &TEXT,
        chrome: Chrome::of(Page::Messages, &session, &s),
        c: ConversationsView::of(&ui, &s).await,
        recipients: recipients(&names, &ui.view.community_manifest()),
        open,
    };
    Ok(Html(page.render()?).into_response())
}

/// The open conversation again: what its element fetches when the live
/// stream says the messages changed.
async fn conversation(
    State(ui): State<Arc<UiState>>,
    with: Result<Query<With>, ApiError>,
) -> Result<Response, PageError> {
    let Ok(Some(peer)) = member(with) else {
        return Ok(refused());
    };
    let s = status(&ui).await?;
    if peer == s.node.id {
        return Ok(refused());
    }
    let fragment = ThreadFragment {
        t: &TEXT,
        v: ThreadView::of(&ui, &s, peer).await,
    };
    Ok(Html(fragment.render()?).into_response())
}

/// `chat.send`'s input from the form, bounded; else what to change.
fn send_input(fields: &Form) -> Result<Value, CallFailure> {
    let refuse = |advice: &'static str| CallFailure {
        advice,
        detail: String::new(),
    };
    let text = |key: &str| fields.field(key);
    let recipient = Some(text("recipient"))
        .filter(|r| r.len() <= MAX_NODE_ID_CHARS)
        .and_then(|r| NodeId::parse(r).ok())
        .ok_or_else(|| refuse(TEXT.messages.bad_recipient))?;
    let client_id = Some(text("client_id"))
        .filter(|c| !c.is_empty() && c.chars().count() <= hearthnet_chat::MAX_CLIENT_ID_CHARS)
        .ok_or_else(|| refuse(TEXT.messages.bad_form))?;
    let body = text("body").trim();
    if body.is_empty() || body.len() > hearthnet_chat::MAX_TEXT_BYTES {
        return Err(refuse(TEXT.messages.bad_message));
    }
    Ok(json!({"recipient": recipient.full(), "client_id": client_id, "body": body}))
}

/// Send, and answer with the form again: empty with a fresh `client_id`
/// and how the message went once sent, else as written with what to do.
async fn send(State(ui): State<Arc<UiState>>, body: Bytes) -> Result<Html<String>, PageError> {
    let fields = Form::parse(&body);
    let outcome = match send_input(&fields) {
        Ok(input) => ui
            .call("chat.send", json!({"params": {}, "input": input}))
            .await
            .map(|answer| match answer["output"]["delivered"].as_str() {
                Some("direct") => TEXT.messages.sent_direct,
                Some("forwarded") => TEXT.messages.sent_forwarded,
                _ => TEXT.messages.sent_queued,
            }),
        Err(refusal) => Err(refusal),
    };
    let text = |key: &str| fields.field(key);
    let form = match outcome {
        Ok(done) => SendForm {
            t: &TEXT,
            recipient: text("recipient"),
            client_id: client_id(),
            body: "",
            focus: true,
            done: Some(done),
            failure: None,
        },
        Err(failure) => SendForm {
            t: &TEXT,
            recipient: text("recipient"),
            client_id: text("client_id").to_owned(),
            body: text("body"),
            focus: true,
            done: None,
            failure: Some(failure),
        },
    };
    Ok(Html(form.render()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attachment_links_to_its_download_only_when_it_is_a_cid() {
        let status = hearthnet_wire::local::samples::status(([127, 0, 0, 1], 7080).into());
        let names = Names::of(&status, "you");
        let cid = format!("blake3:{}", "ab".repeat(32));
        let m = serde_json::json!({
            "event_id": "e1", "from": status.node.id.full(), "body": "the map",
            "attachments": [
                {"name": "map of the <village>.png", "cid": cid},
                {"name": "odd", "cid": "javascript:alert(1)"},
            ],
        });
        let view = MessageView::of(&m, &names).unwrap();
        assert_eq!(
            view.attachments[0].href.as_deref(),
            Some(format!("/files/blob/{cid}?name=map+of+the+%3Cvillage%3E.png").as_str())
        );
        assert_eq!(view.attachments[1].href, None);
    }

    fn fields(pairs: &[(&str, &str)]) -> Form {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        Form::parse(body.as_bytes())
    }

    #[test]
    fn a_message_is_bounded_and_refused_in_plain_words() {
        let to = hearthnet_wire::local::samples::node_id(2).full();
        let ok = send_input(&fields(&[
            ("recipient", &to),
            ("client_id", "c1"),
            ("body", " hello "),
        ]))
        .unwrap();
        assert_eq!(ok["body"], "hello");
        let long = "x".repeat(hearthnet_chat::MAX_TEXT_BYTES + 1);
        let cases = [
            (
                vec![("recipient", "bob"), ("client_id", "c1"), ("body", "hi")],
                TEXT.messages.bad_recipient,
            ),
            (
                vec![("client_id", "c1"), ("body", "hi")],
                TEXT.messages.bad_recipient,
            ),
            (
                vec![("recipient", to.as_str()), ("body", "hi")],
                TEXT.messages.bad_form,
            ),
            (
                vec![
                    ("recipient", to.as_str()),
                    ("client_id", "c1"),
                    ("body", "  "),
                ],
                TEXT.messages.bad_message,
            ),
            (
                vec![
                    ("recipient", to.as_str()),
                    ("client_id", "c1"),
                    ("body", long.as_str()),
                ],
                TEXT.messages.bad_message,
            ),
        ];
        for (pairs, advice) in cases {
            assert_eq!(
                send_input(&fields(&pairs)).unwrap_err().advice,
                advice,
                "{pairs:?}"
            );
        }
    }
}
