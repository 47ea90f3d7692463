//! Files: add a file from the browser (its bytes as the request body,
//! with an upload progress bar), the files on this node, fetching one
//! from the neighbours by its CID (its progress followed live), pinning,
//! and downloading.
//!
//! The node's file service reads and writes paths (`file.local.add`,
//! `file.local.get` with `out`), so an upload is written to a private
//! temporary folder first and a download exported to one; the folder is
//! gone when the request is.

use std::path::Path as FsPath;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use hearthnet_base::{Blake3Id, ErrorCode};
use hearthnet_bus::{CallError, Frame};
use hearthnet_observability::doctor::human_bytes;
use hearthnet_transport::http::{ApiError, Query};
use hearthnet_wire::local::{FileAdded, FileGot, FileList, FilePinned, FileProgress};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::running::Shown;
use super::{Chrome, Form, Page, PageError, alert, decoded, done, status};
use crate::UiState;
use crate::access::Session;
use crate::calls::CallFailure;
use crate::text::{TEXT, Text};

pub const UPLOAD_PATH: &str = "/files/upload";
/// The largest file added from the browser. Larger files are added with
/// `hearthnet file add`, which hands the node a path instead of bytes.
pub const MAX_UPLOAD_BYTES: u64 = 256 * 1024 * 1024;
/// `blake3:` and 64 hex digits.
const CID_CHARS: usize = 71;
/// An upload that sends nothing for this long is dropped, so a stalled
/// browser does not keep a temporary file and a connection forever.
const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(60);
/// However it trickles, an upload holds its slot at most this long.
const UPLOAD_WHOLE: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// Downloads exported at once: each writes a whole copy to a temporary
/// file first.
static DOWNLOAD_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// The longest file name passed on with an upload (the node keeps 255
/// bytes of it).
const MAX_UPLOAD_NAME_BYTES: usize = 1024;
/// Files listed at most (the newest used first).
const LISTED: usize = 500;
/// Uploads written to disk at once (in this process, which serves one
/// UI): each may take up to [`MAX_UPLOAD_BYTES`] of temporary space.
const UPLOADS_AT_ONCE: usize = 2;
static UPLOAD_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(UPLOADS_AT_ONCE);
/// A download's file name, when the link names one (a citation's title).
const MAX_NAME_CHARS: usize = 100;

pub(super) fn routes() -> Router<Arc<UiState>> {
    Router::new()
        .route(Page::Files.href(), get(files_page))
        .route("/files/list", get(list_fragment))
        .route(UPLOAD_PATH, post(upload))
        .route("/files/fetch", post(fetch))
        .route("/files/pin", post(pin))
        .route("/files/blob/{cid}", get(download))
}

/// A CID as typed or linked, bounded before it is parsed.
pub fn checked_cid(text: &str) -> Option<Blake3Id> {
    let text = text.trim();
    (text.len() <= CID_CHARS)
        .then(|| Blake3Id::parse(text).ok())
        .flatten()
}

struct BlobRow {
    /// What it was added as; empty when no name was given.
    name: String,
    cid: String,
    /// Its download, under its name.
    href: String,
    size: String,
    pinned: bool,
    offered: bool,
}

struct Listing {
    rows: Vec<BlobRow>,
    disk: String,
    failure: Option<CallFailure>,
}

impl Listing {
    async fn of(ui: &UiState) -> Self {
        let listed = ui
            .call("file.local.list", json!({"params": {}, "input": {}}))
            .await
            .and_then(|v| decoded::<FileList>("file.local.list's answer", v));
        match listed {
            Ok(list) => {
                let mut blobs = list.blobs;
                blobs.sort_by_key(|b| std::cmp::Reverse(b.last_used));
                Self {
                    rows: blobs
                        .into_iter()
                        .take(LISTED)
                        .map(|b| BlobRow {
                            href: download_href(&b.cid, b.name.as_deref().unwrap_or_default()),
                            name: b.name.unwrap_or_default(),
                            cid: b.cid.to_string(),
                            size: human_bytes(b.size_bytes),
                            pinned: b.pinned,
                            offered: b.offered,
                        })
                        .collect(),
                    disk: human_bytes(list.disk_bytes),
                    failure: None,
                }
            }
            Err(f) => Self {
                rows: Vec::new(),
                disk: String::new(),
                failure: Some(f),
            },
        }
    }
}

#[derive(Template)]
#[template(path = "files_list.html")]
struct ListFragment {
    t: &'static Text,
    l: Listing,
}

#[derive(Template)]
#[template(path = "files.html")]
struct FilesPage {
    t: &'static Text,
    chrome: Chrome,
    l: Listing,
    max_upload: u64,
}

async fn files_page(
    State(ui): State<Arc<UiState>>,
    Extension(session): Extension<Session>,
) -> Result<Html<String>, PageError> {
    let s = status(&ui).await?;
    let page = FilesPage {
        t: &TEXT,
        chrome: Chrome::of(Page::Files, &session, &s),
        l: Listing::of(&ui).await,
        max_upload: MAX_UPLOAD_BYTES,
    };
    Ok(Html(page.render()?))
}

async fn list_fragment(State(ui): State<Arc<UiState>>) -> Result<Html<String>, PageError> {
    let fragment = ListFragment {
        t: &TEXT,
        l: Listing::of(&ui).await,
    };
    Ok(Html(fragment.render()?))
}

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("more than {MAX_UPLOAD_BYTES} bytes")]
    TooLarge,
    #[error("an empty file")]
    Empty,
    #[error("the body broke off: {0}")]
    Body(String),
    #[error("another upload is under way")]
    Busy,
    #[error("the temporary copy: {0}")]
    Disk(#[from] std::io::Error),
    #[error("file.local.add: {}", .0.detail)]
    Call(CallFailure),
}

impl UploadError {
    /// What the person reads where the form's answer goes.
    pub fn fragment(&self) -> String {
        let f = &TEXT.files;
        match self {
            Self::TooLarge => alert(f.too_large),
            Self::Empty => alert(f.empty_upload),
            Self::Body(_) => alert(f.upload_failed),
            Self::Busy => alert(f.busy),
            Self::Disk(e) => {
                tracing::warn!(error = %e, "an upload could not be written");
                alert(f.disk_failed)
            }
            Self::Call(failure) => failure.fragment(),
        }
    }
}

/// Write `body` to `dir` as it arrives, refusing it once it is larger
/// than `limit`; its size.
async fn spool(
    body: Body,
    dir: &FsPath,
    limit: u64,
) -> Result<(std::path::PathBuf, u64), UploadError> {
    let path = dir.join("upload");
    let mut file = tokio::fs::File::create(&path).await?;
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    loop {
        let next = tokio::time::timeout(UPLOAD_IDLE, stream.next())
            .await
            .map_err(|_| UploadError::Body("nothing arrived for a minute".into()))?;
        let Some(chunk) = next else {
            break;
        };
        let chunk = chunk.map_err(|e| UploadError::Body(e.to_string()))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(UploadError::TooLarge);
        }
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    if size == 0 {
        return Err(UploadError::Empty);
    }
    Ok((path, size))
}

/// Store an uploaded file's bytes on this node (`file.local.add`), kept
/// under `name` (the node cleans and bounds it) when one is given.
pub async fn store_upload(
    ui: &UiState,
    body: Body,
    pin: bool,
    name: Option<&str>,
) -> Result<FileAdded, UploadError> {
    let _slot = UPLOAD_SLOTS.try_acquire().map_err(|_| UploadError::Busy)?;
    // Private (0700) and removed with its content when dropped.
    let dir = tempfile::tempdir()?;
    let (path, _) = tokio::time::timeout(UPLOAD_WHOLE, spool(body, dir.path(), MAX_UPLOAD_BYTES))
        .await
        .map_err(|_| UploadError::Body("the upload took longer than half an hour".into()))??;
    let mut input = json!({"path": path, "pin": pin});
    if let Some(name) = name.filter(|n| n.len() <= MAX_UPLOAD_NAME_BYTES) {
        input["name"] = json!(name);
    }
    let added = ui
        .call("file.local.add", json!({"params": {}, "input": input}))
        .await
        .and_then(|v| decoded::<FileAdded>("file.local.add's answer", v))
        .map_err(UploadError::Call)?;
    Ok(added)
}

#[derive(Deserialize)]
struct UploadQuery {
    #[serde(default)]
    pin: bool,
    /// The file's name on the person's device, kept with the blob.
    name: Option<String>,
}

#[derive(Template)]
#[template(path = "files_added.html")]
struct Added<'a> {
    t: &'static Text,
    cid: &'a str,
    size: String,
}

/// The list refreshes itself on this event (`hx-trigger`).
const CHANGED: &str = "files-changed";

async fn upload(
    State(ui): State<Arc<UiState>>,
    query: Result<Query<UploadQuery>, ApiError>,
    body: Body,
) -> Response {
    let (pin, name) = query.map_or((false, None), |Query(q)| (q.pin, q.name));
    match store_upload(&ui, body, pin, name.as_deref()).await {
        Ok(added) => {
            let html = Added {
                t: &TEXT,
                cid: &added.cid.to_string(),
                size: human_bytes(added.size_bytes),
            }
            .render()
            .unwrap_or_default();
            Html(html).into_response()
        }
        Err(e) => Html(e.fragment()).into_response(),
    }
}

/// A fetch's progress and outcome as the page shows them.
struct FetchShown;

#[derive(Template)]
#[template(path = "files_progress.html")]
struct ProgressFragment {
    t: &'static Text,
    current: u64,
    total: u64,
    said: String,
}

impl Shown for FetchShown {
    fn frame(&mut self, frame: &Frame) -> Option<(&'static str, String)> {
        let p: FileProgress = serde_json::from_value(frame.data.clone()).ok()?;
        Some(("progress", progress(p.current, p.total)))
    }

    /// The outcome replaces the progress (the last progress frame may
    /// come after it, or not at all): on success a full bar, the
    /// neighbours that served it, and the list read again.
    fn end(&mut self, outcome: Result<Value, CallError>) -> String {
        let got = outcome
            .map_err(CallFailure::from)
            .and_then(|v| decoded::<FileGot>("file.local.get's answer", v));
        match got {
            Ok(got) => {
                let message = if got.from.is_empty() {
                    TEXT.files.fetched_here.to_owned()
                } else {
                    let from: Vec<String> = got.from.iter().map(|n| n.short()).collect();
                    format!("{} {}", TEXT.files.fetched_from, from.join(", "))
                };
                format!(
                    "{}{}{}",
                    progress(got.size_bytes, got.size_bytes),
                    done(&message),
                    refresh_list()
                )
            }
            Err(f) => f.fragment(),
        }
    }
}

fn progress(current: u64, total: u64) -> String {
    ProgressFragment {
        t: &TEXT,
        current,
        total: total.max(current),
        said: format!("{} / {}", human_bytes(current), human_bytes(total)),
    }
    .render()
    .unwrap_or_default()
}

/// An element that, once swapped in, has the list read again.
fn refresh_list() -> &'static str {
    r##"<span hx-get="/files/list" hx-trigger="load" hx-target="#files-list" hx-swap="innerHTML"></span>"##
}

#[derive(Template)]
#[template(path = "files_fetching.html")]
struct Fetching<'a> {
    t: &'static Text,
    stream: &'a str,
}

async fn fetch(
    State(ui): State<Arc<UiState>>,
    Extension(session): Extension<Session>,
    form: Bytes,
) -> Response {
    let Some(cid) = checked_cid(Form::parse(&form).field("cid")) else {
        return Html(alert(TEXT.files.bad_cid)).into_response();
    };
    let call = match ui.start_call(
        "file.local.get",
        json!({"params": {}, "input": {"cid": cid}}),
        true,
    ) {
        Ok(call) => call,
        Err(f) => return f.into_response(),
    };
    let stream = ui.running.keep(&session, call, FetchShown);
    let html = Fetching {
        t: &TEXT,
        stream: &stream,
    }
    .render()
    .unwrap_or_default();
    Html(html).into_response()
}

async fn pin(State(ui): State<Arc<UiState>>, form: Bytes) -> Response {
    let form = Form::parse(&form);
    let cid = checked_cid(form.field("cid"));
    let pinned = form.field("pinned").parse::<bool>().ok();
    let (Some(cid), Some(pinned)) = (cid, pinned) else {
        return Html(alert(TEXT.files.bad_cid)).into_response();
    };
    let answer = ui
        .call(
            "file.local.pin",
            json!({"params": {}, "input": {"cid": cid, "pinned": pinned}}),
        )
        .await
        .and_then(|v| decoded::<FilePinned>("file.local.pin's answer", v));
    match answer {
        Ok(p) => {
            let message = match (p.changed, p.pinned) {
                (false, _) => TEXT.files.already,
                (true, true) => TEXT.files.now_pinned,
                (true, false) => TEXT.files.now_unpinned,
            };
            let mut resp = Html(done(message)).into_response();
            resp.headers_mut()
                .insert("hx-trigger", HeaderValue::from_static(CHANGED));
            resp
        }
        Err(f) => f.into_response(),
    }
}

#[derive(Deserialize)]
struct DownloadQuery {
    name: Option<String>,
}

/// Where a blob downloads as `name` (cleaned again on the way out, see
/// [`download_name`]): the link citations and attachments open.
pub fn download_href(cid: &Blake3Id, name: &str) -> String {
    let name: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
    format!("/files/blob/{cid}?name={name}")
}

/// A file name safe in a header and on any disk: letters, digits, `.`,
/// `-` and `_`, at most [`MAX_NAME_CHARS`]; else the CID's first digits.
fn download_name(asked: Option<&str>, cid: &Blake3Id) -> String {
    let cleaned: String = asked
        .unwrap_or_default()
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .take(MAX_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() {
        cid.to_string()["blake3:".len().."blake3:".len() + 16].to_owned()
    } else {
        cleaned.to_owned()
    }
}

/// A blob's bytes, as a download (never shown inline: a document from a
/// neighbour must not run as a page of this origin). Fetched from the
/// neighbours first when it is not here.
async fn download(
    State(ui): State<Arc<UiState>>,
    Path(cid): Path<String>,
    query: Result<Query<DownloadQuery>, ApiError>,
) -> Response {
    let Some(cid) = checked_cid(&cid) else {
        return super::plain_page(
            StatusCode::BAD_REQUEST,
            TEXT.failed_title,
            TEXT.files.bad_cid,
        );
    };
    let name = download_name(query.ok().and_then(|Query(q)| q.name).as_deref(), &cid);
    let Ok(_slot) = DOWNLOAD_SLOTS.try_acquire() else {
        return super::plain_page(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT.failed_title,
            TEXT.error_for(hearthnet_base::ErrorCode::CapacityExceeded),
        );
    };
    match exported(&ui, cid).await {
        Ok((file, size)) => {
            let body = Body::from_stream(futures_util::stream::unfold(file, |mut file| async {
                let mut buf = vec![0u8; 64 * 1024];
                match file.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok::<_, std::io::Error>(buf), file))
                    }
                    Err(e) => Some((Err(e), file)),
                }
            }));
            let mut resp = (StatusCode::OK, body).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        Err(f) => super::plain_page(StatusCode::NOT_FOUND, TEXT.failed_title, f.advice),
    }
}

/// `cid` exported to a private temporary file, opened; the file is
/// unlinked at once (the open handle still reads it).
async fn exported(ui: &UiState, cid: Blake3Id) -> Result<(tokio::fs::File, u64), CallFailure> {
    let io = |e: std::io::Error| {
        CallFailure::from(CallError::new(ErrorCode::InternalError, e.to_string()))
    };
    let dir = tempfile::tempdir().map_err(io)?;
    let out = dir.path().join("blob");
    let got = ui
        .call(
            "file.local.get",
            json!({"params": {}, "input": {"cid": cid, "out": out}}),
        )
        .await
        .and_then(|v| decoded::<FileGot>("file.local.get's answer", v))?;
    let file = tokio::fs::File::open(&out).await.map_err(io)?;
    drop(dir);
    Ok((file, got.size_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_cid_is_a_cid() {
        let good = format!("blake3:{}", "ab".repeat(32));
        assert!(checked_cid(&good).is_some());
        assert!(checked_cid(&format!(" {good}\n")).is_some());
        for bad in [
            "",
            "blake3:00",
            "sha256:abc",
            &format!("blake3:{}", "AB".repeat(32)),
            &format!("{good}{}", "0".repeat(10_000)),
        ] {
            assert!(checked_cid(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_download_name_cannot_escape_the_header_or_the_folder() {
        let cid = checked_cid(&format!("blake3:{}", "ab".repeat(32))).unwrap();
        assert_eq!(
            download_name(Some("Water notes.md"), &cid),
            "Water_notes.md"
        );
        assert_eq!(
            download_name(Some("../../etc/passwd"), &cid),
            "_.._etc_passwd"
        );
        assert_eq!(download_name(Some("a\"\r\nb"), &cid), "a___b");
        assert_eq!(download_name(None, &cid), "abababababababab");
        assert_eq!(
            download_name(Some(&"x".repeat(500)), &cid).len(),
            MAX_NAME_CHARS
        );
    }

    #[tokio::test]
    async fn an_upload_is_refused_once_it_grows_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![1; 600]), Ok(vec![2; 600])];
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let refused = spool(body, dir.path(), 1000).await;
        assert!(matches!(refused, Err(UploadError::TooLarge)), "{refused:?}");
        let (path, size) = spool(Body::from(vec![7u8; 1000]), dir.path(), 1000)
            .await
            .unwrap();
        assert_eq!(size, 1000);
        assert_eq!(std::fs::read(path).unwrap(), vec![7u8; 1000]);
        assert!(matches!(
            spool(Body::empty(), dir.path(), 1000).await,
            Err(UploadError::Empty)
        ));
    }
}
