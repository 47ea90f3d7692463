//! Messages: this node's conversations (`chat.history`), one opened
//! (`/messages?with=NODE_ID`) with its delivered and read marks and its
//! attachments, and a form to write (`chat.send`) with files attached.
//! The recipient is chosen by name among the members in reach. Both
//! follow the event log: the conversations are the page's live fragment,
//! and the open conversation is fetched again whenever that fragment
//! changes.
//!
//! Reading never writes a read receipt (`mark_read: false`). Receipts are
//! written only by `POST /messages/read`, naming the newest message shown
//! (`read_up_to`), which
//! the page's script sends while the page is visible (and a "Mark as
//! read" button without script). Attachments are uploaded one file per
//! request through the Files page's upload path ([`store_upload`]),
//! pinned, and sent by their CIDs.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use hearthnet_base::{NodeId, Timestamp};
use hearthnet_observability::doctor::human_bytes;
use hearthnet_transport::http::{ApiError, Query};
use hearthnet_wire::local::{FileList, Status};
use serde::Deserialize;
use serde_json::{Value, json};

use super::files::{MAX_UPLOAD_BYTES, checked_cid, store_upload};
use super::{Chrome, Form, Names, Page, PageError, client_id, decoded, plain_page, status};
use crate::UiState;
use crate::access::{CSRF_HEADER, Session};
use crate::calls::CallFailure;
use crate::text::{TEXT, Text};
use hearthnet_chat::{MAX_ATTACHMENTS, MAX_EVENT_ID_CHARS, MAX_READ_RECEIPTS_PER_CALL};

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
/// `chat.history` calls one mark-read makes at most: a conversation
/// shows [`SHOWN_MESSAGES`].
const MAX_READ_ROUNDS: usize = 4;
/// Where the send form uploads each attached file (a body the gate hands
/// on unread, [`super::UPLOAD_PATHS`]).
pub const ATTACH_PATH: &str = "/messages/attach";

pub(super) fn routes() -> Router<Arc<UiState>> {
    Router::new()
        .route(Page::Messages.href(), get(messages))
        .route("/messages/conversation", get(conversation))
        .route("/messages/send", post(send))
        .route(ATTACH_PATH, post(attach))
        .route("/messages/read", post(read))
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
        Some(text) => checked_node(text).map(Some).ok_or(()),
    }
}

/// A full node id as a form or address names it, bounded before parsing.
fn checked_node(text: &str) -> Option<NodeId> {
    Some(text.trim())
        .filter(|t| t.len() <= MAX_NODE_ID_CHARS)
        .and_then(|t| NodeId::parse(t).ok())
}

fn refused() -> Response {
    plain_page(
        StatusCode::BAD_REQUEST,
        TEXT.messages.refused_title,
        TEXT.messages.refused_with,
    )
}

/// Everyone's `chat.history` (which writes no read receipt): its
/// messages, in the order they were written, read page by page up to
/// [`MAX_HISTORY_PAGES`].
async fn history(ui: &UiState) -> Result<Vec<Value>, CallFailure> {
    let limit = hearthnet_chat::MAX_HISTORY_LIMIT;
    let mut all: Vec<Value> = Vec::new();
    for _ in 0..MAX_HISTORY_PAGES {
        let since = all.last().and_then(|m| m["lamport"].as_u64()).unwrap_or(0);
        let input = json!({"limit": limit, "since_lamport": since});
        let answer = ui
            .call("chat.history", json!({"params": {}, "input": input}))
            .await?;
        let page = answer["output"]["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let full = page.len() == limit;
        all.extend(page);
        if !full {
            break;
        }
    }
    Ok(all)
}

/// The conversation with `peer` (the service keeps at most as many
/// messages per peer as one call shows), read without writing a receipt.
async fn conversation_with(ui: &UiState, peer: NodeId) -> Result<Vec<Value>, CallFailure> {
    let input = json!({"peer": peer.full(), "mark_read": false,
        "limit": hearthnet_chat::MAX_HISTORY_LIMIT});
    let answer = ui
        .call("chat.history", json!({"params": {}, "input": input}))
        .await?;
    Ok(answer["output"]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The sizes of the files this node holds, by CID: what an attachment's
/// link says (a file not here yet, the recipient's until it fetches it,
/// shows none). Empty when the list cannot be read.
async fn held_sizes(ui: &UiState) -> HashMap<String, u64> {
    ui.call("file.local.list", json!({"params": {}, "input": {}}))
        .await
        .and_then(|v| decoded::<FileList>("file.local.list's answer", v))
        .map(|list| {
            list.blobs
                .into_iter()
                .map(|b| (b.cid.to_string(), b.size_bytes))
                .collect()
        })
        .unwrap_or_default()
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
        let messages = match history(ui).await {
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
    /// How large it is, when this node holds it; else empty.
    size: String,
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
    /// A received message without this node's read receipt.
    unread: bool,
    attachments: Vec<AttachmentView>,
}

impl MessageView {
    fn of(m: &Value, names: &Names, sizes: &HashMap<String, u64>) -> Option<Self> {
        let from = node_of(m, "from")?;
        let (mark, mark_text) = if !m["read_at"].is_null() {
            ("read", TEXT.messages.read)
        } else if !m["delivered_at"].is_null() {
            ("delivered", TEXT.messages.delivered)
        } else {
            ("sent", TEXT.messages.sent)
        };
        let mine = from == names.me();
        Some(Self {
            event_id: m["event_id"].as_str().unwrap_or_default().to_owned(),
            from: names.of_node(&from),
            mine,
            unread: !mine && m["read_at"].is_null(),
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
                    let href = checked_cid(&cid).map(|c| super::files::download_href(&c, &name));
                    let size = sizes.get(&cid).map(|n| human_bytes(*n)).unwrap_or_default();
                    AttachmentView {
                        name,
                        cid,
                        href,
                        size,
                    }
                })
                .collect(),
        })
    }
}

/// The "Mark as read" form under a conversation with unread messages:
/// what the page's script posts while the page is visible, a button
/// without script.
struct MarkRead {
    peer: String,
    /// The newest message shown: nothing after it is marked.
    up_to: String,
    csrf: String,
}

/// One conversation: its messages (the newest [`SHOWN_MESSAGES`]).
struct ThreadView {
    messages: Vec<MessageView>,
    earlier: bool,
    mark: Option<MarkRead>,
    failure: Option<CallFailure>,
}

impl ThreadView {
    async fn of(ui: &UiState, status: &Status, peer: NodeId, csrf: &str) -> Self {
        let names = Names::of(status, TEXT.messages.you);
        match conversation_with(ui, peer).await {
            Ok(all) => {
                let skip = all.len().saturating_sub(SHOWN_MESSAGES);
                let shown = &all[skip..];
                let attached = shown
                    .iter()
                    .any(|m| m["attachments"].as_array().is_some_and(|a| !a.is_empty()));
                let sizes = match attached {
                    true => held_sizes(ui).await,
                    false => HashMap::new(),
                };
                let messages: Vec<MessageView> = shown
                    .iter()
                    .filter_map(|m| MessageView::of(m, &names, &sizes))
                    .collect();
                let mark = messages
                    .iter()
                    .any(|m| m.unread)
                    .then(|| messages.last())
                    .flatten()
                    .map(|newest| MarkRead {
                        peer: peer.full(),
                        up_to: newest.event_id.clone(),
                        csrf: csrf.to_owned(),
                    });
                Self {
                    messages,
                    earlier: skip > 0,
                    mark,
                    failure: None,
                }
            }
            Err(failure) => Self {
                messages: Vec::new(),
                earlier: false,
                mark: None,
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

/// A file attached to the message being written, as its form lists it.
struct Attached {
    cid: String,
    name: String,
    /// Empty when not known (the form answered again after a refusal).
    size: String,
}

impl Attached {
    /// The hidden field's value: the CID, a space, the name (a CID has no
    /// space, a name may).
    fn value(&self) -> String {
        format!("{} {}", self.cid, self.name)
    }
}

#[derive(Template)]
#[template(path = "messages_attached.html")]
struct AttachedFragment<'a> {
    t: &'static Text,
    a: &'a Attached,
}

#[derive(Template)]
#[template(path = "messages_form.html")]
struct SendForm<'a> {
    t: &'static Text,
    recipient: &'a str,
    client_id: String,
    body: &'a str,
    attachments: Vec<Attached>,
    /// Set on the form answering a send, so the keyboard stays in it.
    focus: bool,
    done: Option<&'static str>,
    failure: Option<CallFailure>,
}

impl SendForm<'_> {
    /// The bounds the page's script checks before it uploads anything.
    fn max_count(&self) -> usize {
        MAX_ATTACHMENTS
    }

    fn max_bytes(&self) -> u64 {
        MAX_UPLOAD_BYTES
    }
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
                attachments: Vec::new(),
                focus: false,
                done: None,
                failure: None,
            }
            .render()?;
            Some(Open {
                name: names.of_node(&peer),
                thread: ThreadView::of(&ui, &s, peer, &session.csrf).await,
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
    Extension(session): Extension<Session>,
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
        v: ThreadView::of(&ui, &s, peer, &session.csrf).await,
    };
    Ok(Html(fragment.render()?).into_response())
}

/// A file's name as an attachment carries it: trimmed, at most
/// [`hearthnet_chat::MAX_ATTACHMENT_NAME_BYTES`] (cut at a character).
fn attachment_name(name: &str) -> String {
    let name = name.trim();
    let mut end = name.len().min(hearthnet_chat::MAX_ATTACHMENT_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// The files the form attaches (`attachment` fields, `CID NAME`), at
/// most [`MAX_ATTACHMENTS`]; else what to change.
fn attachments(fields: &Form) -> Result<Vec<Attached>, CallFailure> {
    let given: Vec<&str> = fields.all("attachment").take(MAX_ATTACHMENTS + 1).collect();
    if given.len() > MAX_ATTACHMENTS {
        return Err(CallFailure::refused(TEXT.messages.too_many_attachments));
    }
    given
        .into_iter()
        .map(|value| {
            let (cid, name) = value.split_once(' ')?;
            let cid = checked_cid(cid)?;
            let kept = attachment_name(name);
            (!kept.is_empty() && kept.len() == name.trim().len()).then(|| Attached {
                cid: cid.to_string(),
                name: kept,
                size: String::new(),
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| CallFailure::refused(TEXT.messages.bad_form))
}

/// `chat.send`'s input from the form, bounded; else what to change. A
/// message may be files alone.
fn send_input(fields: &Form) -> Result<Value, CallFailure> {
    let refuse = CallFailure::refused;
    let text = |key: &str| fields.field(key);
    let recipient =
        checked_node(text("recipient")).ok_or_else(|| refuse(TEXT.messages.bad_recipient))?;
    let client_id = Some(text("client_id"))
        .filter(|c| !c.is_empty() && c.chars().count() <= hearthnet_chat::MAX_CLIENT_ID_CHARS)
        .ok_or_else(|| refuse(TEXT.messages.bad_form))?;
    let attached = attachments(fields)?;
    let body = text("body").trim();
    if (body.is_empty() && attached.is_empty()) || body.len() > hearthnet_chat::MAX_TEXT_BYTES {
        return Err(refuse(TEXT.messages.bad_message));
    }
    let attached: Vec<Value> = attached
        .iter()
        .map(|a| json!({"cid": a.cid, "name": a.name}))
        .collect();
    Ok(json!({
        "recipient": recipient.full(),
        "client_id": client_id,
        "body": body,
        "attachments": attached,
    }))
}

/// Send, and answer with the form again: empty with a fresh `client_id`
/// and how the message went once sent, else as written (its files still
/// attached) with what to do.
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
            attachments: Vec::new(),
            focus: true,
            done: Some(done),
            failure: None,
        },
        Err(failure) => SendForm {
            t: &TEXT,
            recipient: text("recipient"),
            client_id: text("client_id").to_owned(),
            body: text("body"),
            attachments: attachments(&fields).unwrap_or_default(),
            focus: true,
            done: None,
            failure: Some(failure),
        },
    };
    Ok(Html(form.render()?))
}

#[derive(Deserialize)]
struct AttachQuery {
    /// The file's name on the person's device.
    name: Option<String>,
}

/// One file attached to the message being written, its bytes the body:
/// stored on this node through the Files page's upload path, pinned (the
/// recipient fetches it from here), and answered with its entry for the
/// form's list; else what went wrong, with status 422 so the script stops
/// there.
async fn attach(
    State(ui): State<Arc<UiState>>,
    query: Result<Query<AttachQuery>, ApiError>,
    body: Body,
) -> Response {
    let asked = query.ok().and_then(|Query(q)| q.name).unwrap_or_default();
    match store_upload(&ui, body, true, Some(&asked)).await {
        Ok(added) => {
            let kept = attachment_name(added.name.as_deref().unwrap_or(&asked));
            let attached = Attached {
                cid: added.cid.to_string(),
                name: match kept.is_empty() {
                    true => TEXT.messages.unnamed_file.to_owned(),
                    false => kept,
                },
                size: human_bytes(added.size_bytes),
            };
            let fragment = AttachedFragment {
                t: &TEXT,
                a: &attached,
            };
            match fragment.render() {
                Ok(html) => Html(html).into_response(),
                Err(e) => PageError::from(e).into_response(),
            }
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, Html(e.fragment())).into_response(),
    }
}

/// Write read receipts for what `peer` wrote in the conversation up to
/// the message `up_to`, none after it; `Ok(false)` when `up_to` is no
/// message of this conversation. Each call writes at most 64: it is
/// asked again while that is what it wrote.
async fn mark_read(ui: &UiState, peer: NodeId, up_to: &str) -> Result<bool, CallFailure> {
    let conversation = conversation_with(ui, peer).await?;
    let Some(end) = conversation.iter().position(|m| m["event_id"] == up_to) else {
        return Ok(false);
    };
    let unread = |m: &Value| node_of(m, "from") == Some(peer) && m["read_at"].is_null();
    if !conversation[..=end].iter().any(unread) {
        return Ok(true);
    }
    let input = json!({"peer": peer.full(), "read_up_to": up_to, "limit": 1});
    for _ in 0..MAX_READ_ROUNDS {
        let answer = ui
            .call("chat.history", json!({"params": {}, "input": input}))
            .await?;
        if answer["meta"]["marked_read"].as_u64() != Some(MAX_READ_RECEIPTS_PER_CALL as u64) {
            break;
        }
    }
    Ok(true)
}

/// Mark a conversation read up to the newest message the page showed
/// (`with`, `up_to`): the page's script posts it while the page is
/// visible (answered 204), the "Mark as read" button without script
/// (sent back to the conversation).
async fn read(
    State(ui): State<Arc<UiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let fields = Form::parse(&body);
    let peer = checked_node(fields.field("with"));
    let up_to =
        Some(fields.field("up_to")).filter(|id| !id.is_empty() && id.len() <= MAX_EVENT_ID_CHARS);
    let (Some(peer), Some(up_to)) = (peer, up_to) else {
        return Ok(read_refused());
    };
    if peer == status(&ui).await?.node.id {
        return Ok(read_refused());
    }
    match mark_read(&ui, peer, up_to).await {
        Ok(true) if headers.contains_key(CSRF_HEADER) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(true) => Ok(Redirect::to(&format!("/messages?with={}", peer.full())).into_response()),
        Ok(false) => Ok(read_refused()),
        Err(failure) => Ok(plain_page(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT.failed_title,
            failure.advice,
        )),
    }
}

fn read_refused() -> Response {
    plain_page(
        StatusCode::BAD_REQUEST,
        TEXT.refused_title,
        TEXT.messages.bad_read,
    )
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
        let sizes = HashMap::from([(cid.clone(), 2048)]);
        let view = MessageView::of(&m, &names, &sizes).unwrap();
        assert_eq!(
            view.attachments[0].href.as_deref(),
            Some(format!("/files/blob/{cid}?name=map+of+the+%3Cvillage%3E.png").as_str())
        );
        assert_eq!(view.attachments[0].size, "2.0 KiB", "held here: its size");
        assert_eq!(view.attachments[1].href, None);
        assert_eq!(view.attachments[1].size, "");
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

    #[test]
    fn a_message_may_be_files_alone_and_carries_at_most_the_services_count() {
        let to = hearthnet_wire::local::samples::node_id(2).full();
        let cid = format!("blake3:{}", "ab".repeat(32));
        let file = format!("{cid} the map.png");
        let head = [("recipient", to.as_str()), ("client_id", "c1")];
        let alone = send_input(&fields(&[head[0], head[1], ("attachment", &file)])).unwrap();
        assert_eq!(alone["body"], "");
        assert_eq!(
            alone["attachments"],
            json!([{"cid": cid, "name": "the map.png"}])
        );

        let mut many: Vec<(&str, &str)> = head.to_vec();
        many.extend(std::iter::repeat_n(
            ("attachment", file.as_str()),
            MAX_ATTACHMENTS,
        ));
        let most = send_input(&fields(&many)).unwrap();
        assert_eq!(
            most["attachments"].as_array().unwrap().len(),
            MAX_ATTACHMENTS
        );
        many.push(("attachment", &file));
        let refusal = send_input(&fields(&many)).unwrap_err();
        assert_eq!(refusal.advice, TEXT.messages.too_many_attachments);
        assert!(
            refusal.advice.contains("at most 16 files"),
            "{}",
            refusal.advice
        );
        assert_eq!(MAX_ATTACHMENTS, 16, "the words say 16");

        let long_name = format!(
            "{cid} {}",
            "n".repeat(hearthnet_chat::MAX_ATTACHMENT_NAME_BYTES + 1)
        );
        for bad in ["blake3:00 map.png", &cid, "javascript:x map", &long_name] {
            let refusal =
                send_input(&fields(&[head[0], head[1], ("attachment", bad)])).unwrap_err();
            assert_eq!(refusal.advice, TEXT.messages.bad_form, "{bad}");
        }
    }

    #[test]
    fn an_attachment_name_is_cut_at_a_character_within_the_services_bound() {
        let name = "ü".repeat(200);
        let kept = attachment_name(&name);
        assert!(kept.len() <= hearthnet_chat::MAX_ATTACHMENT_NAME_BYTES);
        assert_eq!(
            kept,
            "ü".repeat(hearthnet_chat::MAX_ATTACHMENT_NAME_BYTES / 2)
        );
        assert_eq!(attachment_name("  map.png "), "map.png");
    }

    /// A stand-in for the chat service: five messages, and every
    /// `chat.history` call with a peer (the one that writes receipts)
    /// recorded and applied as the service does.
    struct Chat {
        messages: parking_lot::Mutex<Vec<Value>>,
        marking: parking_lot::Mutex<Vec<Value>>,
    }

    impl hearthnet_bus::Service for Chat {
        fn name(&self) -> &'static str {
            "chat"
        }

        fn capabilities(self: Arc<Self>) -> Vec<hearthnet_bus::Capability> {
            let history = hearthnet_bus::CapabilityDescriptor {
                trust: hearthnet_bus::Trust::SelfOnly,
                ..hearthnet_bus::CapabilityDescriptor::new(
                    "chat.history",
                    json!({"type": "object"}),
                )
            };
            vec![hearthnet_bus::Capability::new(
                history,
                &self,
                |chat: Arc<Self>, call: hearthnet_bus::Call| async move {
                    let input = &call.input;
                    let since = input["since_lamport"].as_u64().unwrap_or(0);
                    let limit = input["limit"].as_u64().unwrap_or(200) as usize;
                    let peer = input["peer"].as_str().map(str::to_owned);
                    let marks = peer.is_some() && input["mark_read"] != false;
                    let up_to = input["read_up_to"].as_str();
                    let mut all = chat.messages.lock();
                    let with_peer = |m: &Value| {
                        peer.as_deref()
                            .is_none_or(|p| m["from"] == p || m["to"] == p)
                    };
                    let to_me = |m: &Value| m["to"] == sample(1).full() && m["read_at"].is_null();
                    let mut marked = 0;
                    let mut shown = Vec::new();
                    let mut reached = false;
                    for m in all.iter_mut() {
                        if !with_peer(m) {
                            continue;
                        }
                        let in_stretch = match up_to {
                            Some(id) => {
                                let before = !reached;
                                reached |= m["event_id"] == id;
                                before
                            }
                            None => m["lamport"].as_u64().unwrap() > since && shown.len() < limit,
                        };
                        if marks && in_stretch && to_me(m) {
                            m["read_at"] = json!("2026-01-01T00:00:00Z");
                            marked += 1;
                        }
                        if m["lamport"].as_u64().unwrap() > since && shown.len() < limit {
                            shown.push(m.clone());
                        }
                    }
                    if marks {
                        chat.marking.lock().push(input.clone());
                    }
                    Ok::<Value, hearthnet_bus::CallError>(
                        json!({"output": {"messages": shown}, "meta": {"marked_read": marked}}),
                    )
                },
            )]
        }
    }

    use hearthnet_wire::local::samples::node_id as sample;

    fn message(id: &str, lamport: u64, from: u8, to: u8) -> Value {
        json!({"event_id": id, "lamport": lamport, "from": sample(from).full(),
            "to": sample(to).full(), "body": id, "attachments": [], "read_at": null})
    }

    /// A UI on a bus with the stand-in chat: with peer 2, e1 e2 (ours) e3
    /// e5; e4 is from member 3.
    fn with_chat() -> (crate::Ui, Arc<Chat>) {
        let chat = Arc::new(Chat {
            messages: parking_lot::Mutex::new(vec![
                message("e1", 1, 2, 1),
                message("e2", 2, 1, 2),
                message("e3", 3, 2, 1),
                message("e4", 4, 3, 1),
                message("e5", 5, 2, 1),
            ]),
            marking: parking_lot::Mutex::new(Vec::new()),
        });
        let metrics = Arc::new(hearthnet_observability::metrics::Metrics::new());
        let bus = Arc::new(hearthnet_bus::Bus::new(
            sample(1),
            Default::default(),
            metrics,
        ));
        bus.register(chat.clone()).unwrap();
        (crate::tests::ui_on(bus), chat)
    }

    fn unread(chat: &Chat) -> Vec<String> {
        chat.messages
            .lock()
            .iter()
            .filter(|m| m["to"] == sample(1).full() && m["read_at"].is_null())
            .map(|m| m["event_id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn opening_or_refetching_a_conversation_marks_nothing_read_and_the_post_marks_up_to_what_was_shown()
     {
        use crate::tests::{csrf, form_request, logged_in, open_page, send};
        let (ui, chat) = with_chat();
        let cookie = logged_in(&ui).await;
        let peer = sample(2).full();
        let page = open_page(&ui, &cookie, &format!("/messages?with={peer}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            !page.body.contains(r#"data-event="e4""#),
            "another member's message is not in it"
        );
        let refetch = open_page(&ui, &cookie, &format!("/messages/conversation?with={peer}")).await;
        assert_eq!(refetch.status, StatusCode::OK);
        for shown in [&page.body, &refetch.body] {
            assert!(shown.contains(r#"id="mark-read""#), "{shown}");
            assert!(
                shown.contains(r#"name="up_to" value="e5""#),
                "the newest shown: {shown}"
            );
        }
        assert!(chat.marking.lock().is_empty(), "a GET writes no receipt");
        assert_eq!(unread(&chat), ["e1", "e3", "e4", "e5"]);

        // The script posts while the page is visible: marked up to e3 only.
        let token = csrf(&ui, &cookie).await;
        let body = format!("with={peer}&up_to=e3");
        let answer = send(&ui, form_request("/messages/read", &cookie, &token, &body)).await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
        assert_eq!(
            *chat.marking.lock(),
            [json!({"peer": peer, "read_up_to": "e3", "limit": 1})],
            "one call, marking up to e3"
        );
        assert_eq!(unread(&chat), ["e4", "e5"]);

        // The button without script: the token in the form, back to the
        // conversation; then nothing is left to mark and nothing is called.
        let no_script = crate::tests::with_form(
            crate::tests::page_post("/messages/read", &cookie),
            &format!("csrf={token}&{body}").replace("e3", "e5"),
        );
        let answer = send(&ui, no_script).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        assert_eq!(
            answer.headers[axum::http::header::LOCATION],
            format!("/messages?with={peer}").as_str()
        );
        assert_eq!(unread(&chat), ["e4"], "member 3's message stays unread");
        let calls = chat.marking.lock().len();
        let again = send(
            &ui,
            form_request(
                "/messages/read",
                &cookie,
                &token,
                &format!("with={peer}&up_to=e5"),
            ),
        )
        .await;
        assert_eq!(again.status, StatusCode::NO_CONTENT);
        assert_eq!(chat.marking.lock().len(), calls, "nothing unread: no call");
        let refetch = open_page(&ui, &cookie, &format!("/messages/conversation?with={peer}")).await;
        assert!(
            !refetch.body.contains(r#"id="mark-read""#),
            "nothing left to mark"
        );
    }

    #[tokio::test]
    async fn the_read_post_refuses_a_bad_peer_an_unknown_or_foreign_message_and_a_missing_token() {
        use crate::tests::{csrf, form_request, logged_in, page_post, send, with_form};
        let (ui, chat) = with_chat();
        let cookie = logged_in(&ui).await;
        let token = csrf(&ui, &cookie).await;
        let (peer, me) = (sample(2).full(), sample(1).full());
        let long = "e".repeat(MAX_EVENT_ID_CHARS + 1);
        for body in [
            "with=bob&up_to=e3".to_owned(),
            format!("with={me}&up_to=e1"),
            "up_to=e3".to_owned(),
            format!("with={peer}"),
            format!("with={peer}&up_to=nope"),
            format!("with={peer}&up_to=e4"),
            format!("with={peer}&up_to={long}"),
            format!("with={}&up_to=e3", "x".repeat(5000)),
        ] {
            let answer = send(&ui, form_request("/messages/read", &cookie, &token, &body)).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(
                answer.body.contains(TEXT.messages.bad_read),
                "{body}: {}",
                answer.body
            );
        }
        let fields = format!("with={peer}&up_to=e3");
        let without_token = form_request("/messages/read", &cookie, "forged", &fields);
        let answer = send(&ui, without_token).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "a wrong token");
        let missing = with_form(page_post("/messages/read", &cookie), &fields);
        let answer = send(&ui, missing).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "no token");
        assert!(chat.marking.lock().is_empty(), "nothing was marked");
        assert_eq!(unread(&chat), ["e1", "e3", "e4", "e5"]);
    }
}
