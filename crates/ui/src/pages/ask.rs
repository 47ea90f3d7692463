//! Ask: a question answered by `llm.chat` token by token, from the
//! documents of a collection (a RAG corpus) when one is chosen, with the
//! passages it was given as numbered sources that open the document; the
//! model and collection pickers; adding a document to a collection.
//!
//! The question's POST retrieves the passages (`rag.query`), starts the
//! streamed `llm.chat` and answers with the sources and a fragment that
//! follows the call ([`super::running`]): each token is appended as it
//! arrives. As `hearthnet ask` does, nothing is asked of the model when
//! no passage matches, since a small model handed unrelated passages
//! answers anyway.

use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use hearthnet_bus::{CallError, Frame};
use hearthnet_transport::http::{ApiError, Query};
use hearthnet_wire::rag::{Found, MAX_QUESTION_CHARS, Passage, relevant};
use serde::Deserialize;
use serde_json::{Value, json};

use super::files::store_upload;
use super::running::Shown;
use super::{Chrome, Form, Page, PageError, alert, decoded, done, status};
use crate::UiState;
use crate::access::Session;
use crate::calls::CallFailure;
use crate::text::{TEXT, Text};

pub const INGEST_PATH: &str = "/ask/ingest";
/// `rag.query`'s own bound on a collection's name.
const MAX_CORPUS_CHARS: usize = 64;
/// A model's name as offered; longer is not one.
const MAX_MODEL_CHARS: usize = 128;
/// A document's file name given to `rag.ingest` (its title).
const MAX_FILENAME_CHARS: usize = 200;
/// Passages asked of `rag.query`.
const PASSAGES: u8 = 4;
/// The longest answer asked for.
const MAX_ANSWER_TOKENS: u32 = 256;

pub(super) fn routes() -> Router<Arc<UiState>> {
    Router::new()
        .route(Page::Ask.href(), get(ask_page).post(ask))
        .route(INGEST_PATH, post(ingest))
}

/// The models `llm.chat` is offered with, here or at a neighbour.
fn models(ui: &UiState) -> Vec<String> {
    let mut models: Vec<String> = ui
        .bus
        .entries()
        .into_iter()
        .filter(|e| e.name == "llm.chat")
        .filter_map(|e| {
            e.params
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    models.sort();
    models.dedup();
    models
}

struct CorpusView {
    name: String,
    docs: u64,
    chunks: u64,
}

#[derive(Deserialize)]
struct CorpusInfo {
    name: String,
    #[serde(default)]
    docs: u64,
    #[serde(default)]
    chunks: u64,
}

#[derive(Deserialize)]
struct CorpusList {
    corpora: Vec<CorpusInfo>,
}

/// The collections `rag.list_corpora` lists.
async fn corpora(ui: &UiState) -> Result<Vec<CorpusView>, CallFailure> {
    let mut answer = ui
        .call("rag.list_corpora", json!({"params": {}, "input": {}}))
        .await?;
    let list: CorpusList = decoded("rag.list_corpora's output", answer["output"].take())?;
    Ok(list
        .corpora
        .into_iter()
        .map(|c| CorpusView {
            name: c.name,
            docs: c.docs,
            chunks: c.chunks,
        })
        .collect())
}

/// A collection's name as `rag` accepts it.
fn valid_corpus(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CORPUS_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[derive(Template)]
#[template(path = "ask.html")]
struct AskPage {
    t: &'static Text,
    chrome: Chrome,
    models: Vec<String>,
    corpora: Vec<CorpusView>,
    corpora_failed: bool,
    max_upload: u64,
}

async fn ask_page(
    State(ui): State<Arc<UiState>>,
    Extension(session): Extension<Session>,
) -> Result<Html<String>, PageError> {
    let s = status(&ui).await?;
    let (corpora, corpora_failed) = match corpora(&ui).await {
        Ok(c) => (c, false),
        Err(_) => (Vec::new(), true),
    };
    let page = AskPage {
        t: &TEXT,
        chrome: Chrome::of(Page::Ask, &session, &s),
        models: models(&ui),
        corpora,
        corpora_failed,
        max_upload: super::MAX_UPLOAD_BYTES,
    };
    Ok(Html(page.render()?))
}

/// The passages of `corpus` that match `question`
/// ([`hearthnet_wire::rag::relevant`]).
async fn retrieve(ui: &UiState, corpus: &str, question: &str) -> Result<Vec<Passage>, CallFailure> {
    let mut answer = ui
        .call(
            "rag.query",
            json!({"params": {"corpus": corpus}, "input": {"query": question, "k": PASSAGES}}),
        )
        .await?;
    let found: Found = decoded("rag.query's output", answer["output"].take())?;
    let mut chunks = found.chunks;
    chunks.truncate(usize::from(PASSAGES));
    Ok(relevant(chunks, answer["meta"]["retrieval"].as_str()))
}

/// A numbered source under the answer, linking to its document.
struct Citation {
    n: usize,
    title: String,
    href: String,
    page: Option<u32>,
}

impl Citation {
    fn of(n: usize, p: &Passage) -> Option<Self> {
        let cid = super::files::checked_cid(&p.metadata.doc_cid)?;
        Some(Self {
            n,
            title: p.metadata.doc_title.clone(),
            href: super::files::download_href(&cid, &p.metadata.doc_title),
            page: p.metadata.page,
        })
    }
}

#[derive(Template)]
#[template(path = "ask_answer.html")]
struct AnswerFragment<'a> {
    t: &'static Text,
    stream: &'a str,
    model: &'a str,
    citations: Vec<Citation>,
}

/// The answer as it streams: each token appended as a `<span>` (its
/// spaces kept), the model and time at the end.
struct AnswerShown {
    model: String,
    started: Instant,
}

#[derive(Template)]
#[template(source = "<span>{{ text }}</span>", ext = "html")]
struct Token<'a> {
    text: &'a str,
}

impl Shown for AnswerShown {
    fn frame(&mut self, frame: &Frame) -> Option<(&'static str, String)> {
        if frame.event != "token" {
            return None;
        }
        let text = frame.data.get("text").and_then(Value::as_str)?;
        Some(("token", Token { text }.render().ok()?))
    }

    fn end(&mut self, outcome: Result<Value, CallError>) -> String {
        match outcome {
            Ok(_) => done(&format!(
                "{} {} ({})",
                TEXT.ask.answered_by,
                self.model,
                TEXT.duration(self.started.elapsed().as_secs())
            )),
            Err(e) => CallFailure::from(e).fragment(),
        }
    }
}

/// What the form asked, checked: the question, the model, the collection.
struct Asked {
    question: String,
    model: String,
    corpus: Option<String>,
}

/// Check the form before any call; the refusal's words otherwise.
async fn checked(ui: &UiState, form: &[u8]) -> Result<Asked, String> {
    let form = Form::parse(form);
    let question = form.field("question");
    if question.is_empty() || question.chars().count() > MAX_QUESTION_CHARS {
        return Err(alert(TEXT.ask.bad_question));
    }
    let corpus = Some(form.field("corpus").to_owned()).filter(|c| !c.is_empty());
    if let Some(corpus) = &corpus {
        if !valid_corpus(corpus) {
            return Err(alert(TEXT.ask.bad_corpus));
        }
        let known = corpora(ui).await.map_err(|f| f.fragment())?;
        if !known.iter().any(|c| &c.name == corpus) {
            return Err(alert(TEXT.ask.bad_corpus));
        }
    }
    let offered = models(ui);
    if offered.is_empty() {
        return Err(alert(TEXT.ask.no_model));
    }
    let model = form.field("model").to_owned();
    if model.len() > MAX_MODEL_CHARS || !offered.contains(&model) {
        return Err(alert(TEXT.ask.unknown_model));
    }
    Ok(Asked {
        question: question.to_owned(),
        model,
        corpus,
    })
}

async fn ask(
    State(ui): State<Arc<UiState>>,
    Extension(session): Extension<Session>,
    form: Bytes,
) -> Response {
    let asked = match checked(&ui, &form).await {
        Ok(a) => a,
        Err(html) => return Html(html).into_response(),
    };
    let (passages, messages) = match &asked.corpus {
        None => (
            Vec::new(),
            json!([{"role": "user", "content": asked.question}]),
        ),
        Some(corpus) => {
            let passages = match retrieve(&ui, corpus, &asked.question).await {
                Ok(p) => p,
                Err(f) => return f.into_response(),
            };
            if passages.is_empty() {
                return Html(done(TEXT.ask.nothing_matches)).into_response();
            }
            let messages = hearthnet_wire::rag::messages(&passages, &asked.question);
            (passages, messages)
        }
    };
    let body = json!({
        "params": {"model": asked.model},
        "input": {"messages": messages, "max_tokens": MAX_ANSWER_TOKENS, "temperature": 0}
    });
    let call = match ui.start_call("llm.chat", body, true) {
        Ok(c) => c,
        Err(f) => return f.into_response(),
    };
    let stream = ui.running.keep(
        &session,
        call,
        AnswerShown {
            model: asked.model.clone(),
            started: Instant::now(),
        },
    );
    let fragment = AnswerFragment {
        t: &TEXT,
        stream: &stream,
        model: &asked.model,
        citations: passages
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Citation::of(i + 1, p))
            .collect(),
    };
    match fragment.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => PageError::from(e).into_response(),
    }
}

#[derive(Deserialize)]
struct IngestQuery {
    corpus: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Ingested {
    chunks_indexed: u64,
}

/// A document uploaded into a collection: stored (pinned, so its
/// citations keep opening it), then indexed by `rag.ingest`.
async fn ingest(
    State(ui): State<Arc<UiState>>,
    query: Result<Query<IngestQuery>, ApiError>,
    body: Body,
) -> Response {
    let (corpus, name) = match query {
        Ok(Query(q)) => (q.corpus.unwrap_or_default(), q.name.unwrap_or_default()),
        Err(_) => (String::new(), String::new()),
    };
    if !valid_corpus(&corpus) {
        return Html(alert(TEXT.ask.bad_corpus)).into_response();
    }
    let name: String = name.chars().take(MAX_FILENAME_CHARS).collect();
    let added = match store_upload(&ui, body, true, Some(&name)).await {
        Ok(a) => a,
        Err(e) => return Html(e.fragment()).into_response(),
    };
    let answer = ui
        .call(
            "rag.ingest",
            json!({"params": {"corpus": corpus}, "input": {"doc_cid": added.cid, "filename": name}}),
        )
        .await;
    let indexed =
        answer.and_then(|mut v| decoded::<Ingested>("rag.ingest's output", v["output"].take()));
    match indexed {
        Ok(i) => Html(done(&format!(
            "{} {} ({corpus})",
            TEXT.ask.indexed, i.chunks_indexed
        )))
        .into_response(),
        Err(f) => f.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(score: f64) -> Passage {
        Passage {
            score,
            text: "Boil water for one minute.".into(),
            metadata: hearthnet_wire::rag::PassageSource {
                doc_cid: format!("blake3:{}", "ab".repeat(32)),
                doc_title: "Water <notes>.md".into(),
                page: Some(2),
            },
        }
    }

    #[test]
    fn a_citation_links_to_its_document_by_cid_with_a_safe_name() {
        let c = Citation::of(1, &passage(0.9)).unwrap();
        assert_eq!(
            c.href,
            format!(
                "/files/blob/blake3:{}?name=Water+%3Cnotes%3E.md",
                "ab".repeat(32)
            )
        );
        let mut bad = passage(0.9);
        bad.metadata.doc_cid = "javascript:alert(1)".into();
        assert!(Citation::of(1, &bad).is_none(), "only a CID becomes a link");
    }

    #[test]
    fn collection_names_are_checked_like_rag_does() {
        assert!(valid_corpus("water-2"));
        for bad in ["", "Water", "a b", "../x", &"a".repeat(65)] {
            assert!(!valid_corpus(bad), "{bad}");
        }
    }

    #[test]
    fn a_token_is_escaped() {
        let mut shown = AnswerShown {
            model: "m".into(),
            started: Instant::now(),
        };
        let frame = Frame {
            event: "token".into(),
            data: json!({"text": " <b>Paris</b>"}),
        };
        assert_eq!(
            shown.frame(&frame),
            Some(("token", "<span> &#60;b&#62;Paris&#60;/b&#62;</span>".into()))
        );
    }
}
