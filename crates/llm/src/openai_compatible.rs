//! The backend that forwards to an OpenAI-compatible server (llama.cpp
//! server, Ollama, vLLM, LM Studio): `POST {base_url}/chat/completions` and
//! `{base_url}/completions` with `stream: true`, and `GET {base_url}/models`
//! for `doctor`.
//!
//! Owns the HTTP client (HTTP/1.1 over TCP, TLS by rustls against the
//! system's roots), the reading of the server's event stream and what a
//! server may make us do. The server is not trusted: everything read from
//! it is bounded before work is done on it (a line, an event, the whole
//! answer, the text chunks forwarded past `max_tokens`, its silences), and
//! whatever it sends that breaks the rules ends the call with an error
//! naming what it did, never a panic. One connection per call, owned by
//! the call's future: a caller who leaves drops it, which closes the
//! connection at once and so stops the server's generation.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hearthnet_base::ErrorCode;
use hearthnet_bus::CallError;
use hearthnet_config::{BaseUrl, LlmBackendConfig, LlmBackendKind};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER, USER_AGENT,
};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::generate::{Finished, Pushed, StopReason, StopText};
use crate::{Backend, Job, Options, Prompt};

/// Longest line of an event stream: a chunk carrying one token is a few
/// hundred bytes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most data in one event (a `data:` field may span several lines).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Most bytes of one answer: 8192 tokens in chunks of under 1 KiB, twice.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Text chunks past `max_tokens` taken before the stream is cut: servers
/// may spread one token's bytes over two chunks, and count differently.
pub const TOKEN_SLACK: usize = 8;
/// Most bytes of an error answer or a model list that are read.
const MAX_SMALL_ANSWER_BYTES: usize = 1024 * 1024;
/// Most characters of a server's error message repeated to callers.
const MAX_MESSAGE_CHARS: usize = 300;
/// Once the server has said why it finished, how long to wait for the
/// usage chunk and the end of the stream before taking the answer as it is.
const AFTER_FINISH_GRACE: Duration = Duration::from_secs(5);
/// `doctor`'s bound on asking the server for its models.
pub const DOCTOR_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a backend cannot be set up from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("kind = \"openai_compatible\" needs a base_url")]
    NoBaseUrl,
    #[error(
        "the environment variable {0} named by api_key_env is not set where this runs: set it to the server's API key, or remove api_key_env"
    )]
    KeyNotSet(String),
    #[error(
        "the value of {0} (api_key_env) cannot go in an HTTP header: it holds a line break or another control character"
    )]
    KeyUnusable(String),
    #[error(
        "no trusted root certificate found for https:// ({0}): install the system's CA certificates (Debian: ca-certificates) or set SSL_CERT_FILE"
    )]
    NoRoots(String),
    #[error("setting up TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// What went wrong with the server during a call.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot reach the OpenAI-compatible server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the server at {url} sent nothing for {secs} s ({when})")]
    Silent {
        url: String,
        secs: u64,
        when: &'static str,
    },
    #[error("the server did not finish within {0} s (timeout_seconds)")]
    TooLong(u64),
    #[error("the server answered HTTP {status}{hint}: {message}")]
    Status {
        status: u16,
        message: String,
        hint: &'static str,
        retry_after_ms: Option<u64>,
    },
    #[error("the server answered {0} instead of an event stream, although stream: true was asked")]
    NotAStream(String),
    #[error("the server broke the event stream's rules: {0}")]
    Malformed(String),
    #[error("the server reported an error: {0}")]
    Reported(String),
    #[error("the server's stream broke off: {0}")]
    Broken(String),
}

impl ServerError {
    /// The wire code (M04 §5): the server's 5xx, a broken or hostile
    /// stream and an unreachable server are failures of this provider;
    /// its 429 is passed on with its delay; a model it does not know is
    /// `not_found`; a request it refuses is the caller's `bad_request`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Silent { .. } | Self::TooLong(_) => ErrorCode::Timeout,
            Self::Status { status: 429, .. } => ErrorCode::RateLimited,
            Self::Status { status: 404, .. } => ErrorCode::NotFound,
            Self::Status {
                status: 400 | 413 | 422,
                ..
            } => ErrorCode::BadRequest,
            _ => ErrorCode::InternalError,
        }
    }
}

impl From<ServerError> for CallError {
    fn from(e: ServerError) -> Self {
        let retry = match &e {
            ServerError::Status {
                retry_after_ms: Some(ms),
                ..
            } => Some(*ms),
            _ => None,
        };
        let error = CallError::new(e.code(), e.to_string());
        match retry {
            Some(ms) => error.retry_after(ms),
            None => error,
        }
    }
}

/// One model on an OpenAI-compatible server.
pub struct OpenAiCompatible {
    base_url: BaseUrl,
    remote_model: String,
    authorization: Option<HeaderValue>,
    requires_internet: bool,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    timeout: Duration,
    /// For `https://` only.
    tls: Option<TlsConnector>,
}

/// A request before its options: the endpoint and what it is about.
pub struct Prepared {
    endpoint: &'static str,
    field: &'static str,
    value: Value,
}

impl OpenAiCompatible {
    /// The backend `config` describes, its https certificates checked
    /// against the system's roots.
    pub fn new(config: &LlmBackendConfig) -> Result<Self, SetupError> {
        let https = config.base_url.as_ref().is_some_and(BaseUrl::is_https);
        let roots = if https { Some(system_roots()?) } else { None };
        Self::with_roots(config, roots)
    }

    fn with_roots(
        config: &LlmBackendConfig,
        roots: Option<RootCertStore>,
    ) -> Result<Self, SetupError> {
        let base_url = config.base_url.clone().ok_or(SetupError::NoBaseUrl)?;
        let authorization = match (&config.api_key_env, &config.api_key) {
            (None, _) => None,
            (Some(name), None) => return Err(SetupError::KeyNotSet(name.clone())),
            (Some(name), Some(key)) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", key.reveal()))
                    .map_err(|_| SetupError::KeyUnusable(name.clone()))?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let tls = roots.map(tls_connector).transpose()?;
        Ok(Self {
            base_url,
            remote_model: config.remote_model().to_owned(),
            authorization,
            requires_internet: config.requires_internet(),
            connect_timeout: config.connect_timeout(),
            first_byte_timeout: config.first_byte_timeout(),
            timeout: config.timeout(),
            tls,
        })
    }

    /// The names of the models the server lists (`GET {base_url}/models`),
    /// within [`DOCTOR_TIMEOUT`].
    pub async fn models(&self) -> Result<Vec<String>, ServerError> {
        #[derive(Deserialize)]
        struct Listed {
            data: Vec<Model>,
        }
        #[derive(Deserialize)]
        struct Model {
            id: String,
        }
        let ask = async {
            let exchange = self.send(Method::GET, "/models", None).await?;
            let bytes = exchange.success().await?.small_answer().await?;
            let listed: Listed = serde_json::from_slice(&bytes).map_err(|e| {
                ServerError::Malformed(format!(
                    "GET /models is not a list of models ({{\"data\": [{{\"id\": …}}]}}): {e}"
                ))
            })?;
            Ok(listed.data.into_iter().map(|m| m.id).collect())
        };
        tokio::time::timeout(DOCTOR_TIMEOUT, ask)
            .await
            .map_err(|_| ServerError::TooLong(DOCTOR_TIMEOUT.as_secs()))?
    }

    /// Connect, send `body` to `endpoint` under the base URL and wait for
    /// the answer's head.
    async fn send(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Exchange, ServerError> {
        let url = self.base_url.to_string();
        let unreachable = |reason: String| ServerError::Unreachable {
            url: url.clone(),
            reason,
        };
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(self.base_url.path_of(endpoint))
            .header(HOST, self.base_url.authority())
            .header(USER_AGENT, concat!("hearthnet/", env!("CARGO_PKG_VERSION")))
            .header(
                ACCEPT,
                if body.is_some() {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            );
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| unreachable(format!("the request cannot be made: {e}")))?;
        let (mut sender, driver) = tokio::time::timeout(self.connect_timeout, self.connect())
            .await
            .map_err(|_| {
                unreachable(format!(
                    "no connection within {} s (connect_timeout_seconds)",
                    self.connect_timeout.as_secs()
                ))
            })?
            .map_err(unreachable)?;
        let response = tokio::time::timeout(self.first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| ServerError::Silent {
                url: url.clone(),
                secs: self.first_byte_timeout.as_secs(),
                when: "before its first byte; first_byte_timeout_seconds",
            })?
            .map_err(|e| ServerError::Broken(e.to_string()))?;
        Ok(Exchange {
            response,
            _driver: driver,
            first_byte_timeout: self.first_byte_timeout,
        })
    }

    /// A new connection: TCP, TLS for https, the HTTP/1.1 handshake.
    async fn connect(&self) -> Result<(SendRequest<Full<Bytes>>, AbortOnDropHandle<()>), String> {
        let host = self.base_url.host();
        let tcp = TcpStream::connect((host.as_str(), self.base_url.port()))
            .await
            .map_err(|e| e.to_string())?;
        // Tokens go out as they come: no waiting to fill a packet.
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(tcp).await,
            Some(tls) => {
                let name = ServerName::try_from(host).map_err(|e| e.to_string())?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                handshake(stream).await
            }
        }
    }

    /// The request body of `prepared` with `options` (Contract §4.1 to
    /// OpenAI's names, which are the same but for the model's).
    fn body(&self, prepared: Prepared, options: &Options) -> Vec<u8> {
        let mut body = Map::new();
        body.insert("model".into(), json!(self.remote_model));
        body.insert(prepared.field.into(), prepared.value);
        body.insert("stream".into(), json!(true));
        // Asks for a last chunk with the token counts; servers that do not
        // know the option ignore it, and their counts are then unknown.
        body.insert("stream_options".into(), json!({"include_usage": true}));
        body.insert("max_tokens".into(), json!(options.max_tokens));
        body.insert("temperature".into(), json!(options.sampling.temperature));
        body.insert("top_p".into(), json!(options.sampling.top_p));
        if !options.stop.is_empty() {
            body.insert("stop".into(), json!(options.stop));
        }
        if let Some(seed) = options.sampling.seed {
            body.insert("seed".into(), json!(seed));
        }
        serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
    }

    /// Send the request and read its stream into `pieces` until the
    /// answer ends, a stop sequence or `max_tokens` cuts it, or `stop`.
    async fn stream(
        &self,
        prepared: Prepared,
        options: &Options,
        stop: &CancellationToken,
        pieces: &mpsc::Sender<String>,
    ) -> Result<Finished, ServerError> {
        let endpoint = prepared.endpoint;
        let body = self.body(prepared, options);
        let exchange = self.send(Method::POST, endpoint, Some(body)).await?;
        let exchange = exchange.success().await?;
        let media = content_type(&exchange.response);
        if media.as_deref() != Some("text/event-stream") {
            return Err(ServerError::NotAStream(
                media.unwrap_or_else(|| "no content type".into()),
            ));
        }
        let mut body = exchange.response.into_body();
        let mut events = EventStream::default();
        let mut answer = Answer::new(options, pieces);
        let mut received = 0usize;
        loop {
            let silence = if answer.finish.is_some() {
                self.first_byte_timeout.min(AFTER_FINISH_GRACE)
            } else {
                self.first_byte_timeout
            };
            let frame = tokio::select! {
                biased;
                () = stop.cancelled() => return Ok(answer.end(StopReason::Cancelled)),
                frame = tokio::time::timeout(silence, body.frame()) => frame,
            };
            let frame = match frame {
                Ok(frame) => frame,
                // The answer is complete; only its counts were awaited.
                Err(_) if answer.finish.is_some() => break,
                Err(_) => {
                    return Err(ServerError::Silent {
                        url: self.base_url.to_string(),
                        secs: silence.as_secs(),
                        when: "in the middle of its stream; first_byte_timeout_seconds",
                    });
                }
            };
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| ServerError::Broken(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            received += data.len();
            if received > MAX_RESPONSE_BYTES {
                return Err(ServerError::Malformed(format!(
                    "the answer is over {} MiB",
                    MAX_RESPONSE_BYTES / (1024 * 1024)
                )));
            }
            for event in events.push(&data)? {
                if let Some(finished) = answer.take(&event).await? {
                    return Ok(finished);
                }
            }
        }
        for event in events.end()? {
            if let Some(finished) = answer.take(&event).await? {
                return Ok(finished);
            }
        }
        answer.at_end_of_stream().await
    }
}

/// A stream's event: its type (`message` unless named) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: String,
    pub data: String,
}

/// The server-sent events format (WHATWG HTML §9.2) read from bytes as
/// they come: lines end in LF, CRLF or CR, `:` starts a comment, `data:`
/// lines accumulate (joined by LF), a blank line ends an event. Lines and
/// events are bounded, and a line must be UTF-8.
#[derive(Debug, Default)]
pub struct EventStream {
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// The last byte ended a line with CR: an LF next belongs to it.
    after_cr: bool,
    kind: Option<String>,
    data: Option<String>,
}

impl EventStream {
    /// Take `bytes`; the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, ServerError> {
        let mut events = Vec::new();
        for &byte in bytes {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_ended(&line)? {
                        events.push(event);
                    }
                }
                _ if self.line.len() >= MAX_LINE_BYTES => {
                    return Err(ServerError::Malformed(format!(
                        "a line is over {} KiB",
                        MAX_LINE_BYTES / 1024
                    )));
                }
                _ => self.line.push(byte),
            }
        }
        Ok(events)
    }

    /// The stream ended: an event it did not close with a blank line is
    /// taken all the same (some servers end on `data: [DONE]\n`).
    pub fn end(&mut self) -> Result<Vec<Event>, ServerError> {
        let line = std::mem::take(&mut self.line);
        let mut events: Vec<Event> = self.line_ended(&line)?.into_iter().collect();
        events.extend(self.line_ended(b"")?);
        Ok(events)
    }

    fn line_ended(&mut self, line: &[u8]) -> Result<Option<Event>, ServerError> {
        if line.is_empty() {
            return Ok(self.data.take().map(|data| Event {
                kind: self.kind.take().unwrap_or_else(|| "message".into()),
                data,
            }));
        }
        let line = std::str::from_utf8(line)
            .map_err(|e| ServerError::Malformed(format!("a line is not UTF-8 ({e})")))?;
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => {
                let held = self.data.as_ref().map_or(0, |d| d.len() + 1);
                if held + value.len() > MAX_EVENT_BYTES {
                    return Err(ServerError::Malformed(format!(
                        "an event's data is over {} KiB",
                        MAX_EVENT_BYTES / 1024
                    )));
                }
                match &mut self.data {
                    // Each further data line adds a line break first.
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                }
            }
            "event" => self.kind = Some(value.to_owned()),
            // `id`, `retry` and unknown fields mean nothing here.
            _ => {}
        }
        Ok(None)
    }
}

/// One chunk of a streamed answer, chat or completion: only the fields
/// read; a server's others are ignored.
#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    index: u64,
    /// `/chat/completions`.
    delta: Option<Delta>,
    /// `/completions`.
    text: Option<String>,
    finish_reason: Option<String>,
    /// vLLM's: the stop sequence that ended the answer.
    stop_reason: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

/// The answer as the stream builds it.
struct Answer<'a> {
    options: &'a Options,
    pieces: &'a mpsc::Sender<String>,
    /// Our own matching of the stop sequences as well as the server's:
    /// text the server lets through past one is never forwarded.
    text: StopText<'a>,
    /// Chunks that carried text: the count of tokens when the server
    /// reports none (servers send one chunk per token), and the bound
    /// against a server that goes on past `max_tokens`.
    chunks: usize,
    usage: Option<Usage>,
    finish: Option<StopReason>,
}

impl<'a> Answer<'a> {
    fn new(options: &'a Options, pieces: &'a mpsc::Sender<String>) -> Self {
        Self {
            options,
            pieces,
            text: StopText::new(&options.stop),
            chunks: 0,
            usage: None,
            finish: None,
        }
    }

    /// Take one event; the answer when it ends here.
    async fn take(&mut self, event: &Event) -> Result<Option<Finished>, ServerError> {
        if event.data == "[DONE]" {
            let reason = self.finish.unwrap_or(StopReason::End);
            return Ok(Some(self.complete(reason).await));
        }
        if event.kind == "error" {
            return Err(ServerError::Reported(clip(&event.data)));
        }
        // An empty event keeps a connection alive, as a comment does.
        if event.data.trim().is_empty() {
            return Ok(None);
        }
        let chunk: Chunk = serde_json::from_str(&event.data).map_err(|e| {
            ServerError::Malformed(format!("a chunk is not the JSON of a completion: {e}"))
        })?;
        if let Some(error) = &chunk.error {
            return Err(ServerError::Reported(error_message(error)));
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let Some(choice) = chunk.choices.into_iter().find(|c| c.index == 0) else {
            return Ok(None);
        };
        let content = choice
            .delta
            .and_then(|d| d.content)
            .or(choice.text)
            .unwrap_or_default();
        if !content.is_empty() {
            if self.chunks >= self.options.max_tokens + TOKEN_SLACK {
                tracing::warn!(
                    max_tokens = self.options.max_tokens,
                    "an OpenAI-compatible server went on past max_tokens: its answer is cut"
                );
                return Ok(Some(self.complete(StopReason::MaxTokens).await));
            }
            self.chunks += 1;
            let mut out = Vec::new();
            let pushed = self.text.push(&content, &mut |piece| {
                out.push(piece.to_owned());
                true
            });
            let gone = !self.send(out).await;
            match pushed {
                Pushed::Stopped => return Ok(Some(self.end(StopReason::StopSequence))),
                _ if gone => return Ok(Some(self.end(StopReason::Cancelled))),
                _ => {}
            }
        }
        if let Some(reason) = &choice.finish_reason {
            self.finish = Some(stop_reason(
                reason,
                choice.stop_reason.as_ref(),
                &self.options.stop,
            ));
        }
        Ok(None)
    }

    /// The stream closed without `[DONE]`: complete if the server had
    /// said why it finished, else broken off.
    async fn at_end_of_stream(mut self) -> Result<Finished, ServerError> {
        match self.finish {
            Some(reason) => Ok(self.complete(reason).await),
            None => Err(ServerError::Broken(
                "the connection closed before the answer finished (no finish_reason, no [DONE])"
                    .into(),
            )),
        }
    }

    /// The answer ended as the server says: text held back for a stop
    /// sequence that never came is part of it.
    async fn complete(&mut self, reason: StopReason) -> Finished {
        let mut out = Vec::new();
        self.text.flush(&mut |piece| {
            out.push(piece.to_owned());
            true
        });
        self.send(out).await;
        self.end(reason)
    }

    /// Whether anyone still takes the text.
    async fn send(&self, out: Vec<String>) -> bool {
        for piece in out {
            if self.pieces.send(piece).await.is_err() {
                return false;
            }
        }
        true
    }

    fn end(&mut self, stop_reason: StopReason) -> Finished {
        let text = std::mem::replace(&mut self.text, StopText::new(&[]));
        let usage = self.usage.as_ref();
        Finished {
            text: text.into_text(),
            // Without the server's usage the prompt's size is unknown
            // (its tokenizer is the server's): counted as 0.
            tokens_in: usage.and_then(|u| u.prompt_tokens).unwrap_or(0) as usize,
            tokens_out: usage
                .and_then(|u| u.completion_tokens)
                .map_or(self.chunks, |n| n as usize),
            stop_reason,
        }
    }
}

/// OpenAI's `finish_reason` as the contract's stop reason. `stop` covers
/// both the model's end and a stop sequence; only servers that name the
/// sequence (vLLM's `stop_reason`) let the two be told apart, else it is
/// `end` (our own matching reports `stop_sequence` when it cuts).
fn stop_reason(finish_reason: &str, matched: Option<&Value>, stops: &[String]) -> StopReason {
    match finish_reason {
        "length" => StopReason::MaxTokens,
        "stop"
            if matched
                .and_then(Value::as_str)
                .is_some_and(|m| stops.iter().any(|s| s == m)) =>
        {
            StopReason::StopSequence
        }
        _ => StopReason::End,
    }
}

/// A request sent and the head of its answer; the connection lives as
/// long as this does.
struct Exchange {
    response: hyper::Response<hyper::body::Incoming>,
    /// Drives the connection; dropping it closes the connection.
    _driver: AbortOnDropHandle<()>,
    first_byte_timeout: Duration,
}

impl Exchange {
    /// This exchange if the server said yes, else its refusal with the
    /// message its body gives.
    async fn success(self) -> Result<Self, ServerError> {
        let status = self.response.status();
        if status.is_success() {
            return Ok(self);
        }
        let retry_after_ms = (status == StatusCode::TOO_MANY_REQUESTS).then(|| {
            self.response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(1000, |s| s.min(3600) * 1000)
        });
        let hint = match status.as_u16() {
            401 | 403 => " (the API key was refused: check the variable api_key_env names)",
            404 => {
                " (is the model loaded there, and base_url its API root with /v1? `hearthnet doctor --check llm_backend_reachable` lists its models)"
            }
            _ => "",
        };
        let message = match self.small_answer().await {
            Ok(body) => serde_json::from_slice::<Value>(&body)
                .map(|v| error_message(&v))
                .unwrap_or_else(|_| clip(&String::from_utf8_lossy(&body))),
            Err(e) => e.to_string(),
        };
        Err(ServerError::Status {
            status: status.as_u16(),
            message,
            hint,
            retry_after_ms,
        })
    }

    /// A whole answer that is not a stream: bounded in size and time.
    async fn small_answer(self) -> Result<Bytes, ServerError> {
        let limited = Limited::new(self.response.into_body(), MAX_SMALL_ANSWER_BYTES);
        tokio::time::timeout(self.first_byte_timeout, limited.collect())
            .await
            .map_err(|_| ServerError::Broken("the answer did not arrive in time".into()))?
            .map(|c| c.to_bytes())
            .map_err(|e| ServerError::Broken(format!("reading the answer: {e}")))
    }
}

impl Backend for OpenAiCompatible {
    type Prepared = Prepared;

    fn kind(&self) -> LlmBackendKind {
        LlmBackendKind::OpenaiCompatible
    }

    /// The context length is the server's and unknown here.
    fn params(&self) -> Map<String, Value> {
        Map::new()
    }

    fn requires_internet(&self) -> bool {
        self.requires_internet
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn prepare(&self, prompt: Prompt) -> Result<Prepared, CallError> {
        Ok(match prompt {
            Prompt::Chat(messages) => Prepared {
                endpoint: "/chat/completions",
                field: "messages",
                value: json!(messages),
            },
            Prompt::Complete(text) => Prepared {
                endpoint: "/completions",
                field: "prompt",
                value: json!(text),
            },
        })
    }

    async fn generate(&self, job: Job<Prepared>) -> Result<Finished, CallError> {
        let Job {
            prepared,
            options,
            slot,
            stop,
            pieces,
        } = job;
        // Held while the stream is read; dropped with this future when
        // the caller leaves.
        let _slot = slot;
        tokio::time::timeout(
            self.timeout,
            self.stream(prepared, &options, &stop, &pieces),
        )
        .await
        .map_err(|_| ServerError::TooLong(self.timeout.as_secs()))?
        .map_err(CallError::from)
    }
}

/// `doctor`: whether the server of `config` answers and lists its model;
/// what it serves, or what is wrong and how to fix it. Blocking: runs its
/// own runtime on a thread of its own, so it works from any caller.
pub fn check(config: &LlmBackendConfig) -> Result<String, (String, String)> {
    let url = config
        .base_url
        .as_ref()
        .map_or_else(String::new, ToString::to_string);
    let backend = OpenAiCompatible::new(config).map_err(|e| {
        let fix = match e {
            SetupError::KeyNotSet(_) => "export the variable where the node (and doctor) runs, e.g. in the systemd unit's Environment=",
            _ => "correct the backend in config.toml (README, \"Models\")",
        };
        (e.to_string(), fix.to_owned())
    })?;
    let asked = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| ServerError::Broken(format!("no runtime for the check: {e}")))?;
                runtime.block_on(backend.models())
            })
            .join()
    });
    let listed = match asked {
        Ok(Ok(listed)) => listed,
        Ok(Err(e)) => {
            let fix = match &e {
                ServerError::Status {
                    status: 401 | 403, ..
                } => "set the variable api_key_env names to a key the server takes".to_owned(),
                ServerError::Status { .. } | ServerError::Malformed(_) => format!(
                    "make base_url the server's API root (e.g. http://127.0.0.1:11434/v1 for Ollama; now {url})"
                ),
                _ => format!(
                    "start the server at {url}, or correct base_url (the API root, e.g. http://127.0.0.1:11434/v1 for Ollama)"
                ),
            };
            return Err((e.to_string(), fix));
        }
        Err(_) => {
            return Err((
                "asking the server stopped unexpectedly".into(),
                "please report this".into(),
            ));
        }
    };
    let remote = config.remote_model();
    if listed.iter().any(|m| m == remote) {
        return Ok(format!("{remote} listed by {url}"));
    }
    let shown: Vec<&str> = listed.iter().take(10).map(String::as_str).collect();
    Err((
        format!(
            "the server at {url} does not list the model `{remote}` (it lists: {})",
            if shown.is_empty() {
                "nothing".to_owned()
            } else {
                shown.join(", ")
            }
        ),
        "set remote_model to a listed name, or load the model on the server (Ollama: `ollama pull NAME`)".into(),
    ))
}

async fn handshake<IO>(io: IO) -> Result<(SendRequest<Full<Bytes>>, AbortOnDropHandle<()>), String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        // Its end (or failure) shows in the exchange's reads.
        let _ = connection.await;
    });
    Ok((sender, AbortOnDropHandle::new(driver)))
}

fn content_type(response: &hyper::Response<hyper::body::Incoming>) -> Option<String> {
    let value = response.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

/// The message of an error body as servers write it: OpenAI's
/// `{"error": {"message"}}`, Ollama's `{"error": "…"}`, or `{"message"}`.
fn error_message(body: &Value) -> String {
    let text = body
        .pointer("/error/message")
        .or_else(|| body.get("error").filter(|e| e.is_string()))
        .or_else(|| body.get("message"))
        .and_then(Value::as_str)
        .map_or_else(|| body.to_string(), str::to_owned);
    clip(&text)
}

/// A server's text as we repeat it: bounded, on one line.
fn clip(text: &str) -> String {
    let mut clipped: String = text
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        clipped.push('…');
    }
    clipped
}

fn system_roots() -> Result<RootCertStore, SetupError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none installed".to_owned(), ToString::to_string);
        return Err(SetupError::NoRoots(why));
    }
    Ok(roots)
}

fn tls_connector(roots: RootCertStore) -> Result<TlsConnector, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests;
