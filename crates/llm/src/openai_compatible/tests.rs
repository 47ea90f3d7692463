//! The backend against servers that answer exactly the bytes a test
//! writes: [`Scripted`] is a hand-rolled HTTP/1.1 server on loopback, a
//! test double for a well-behaved, broken or hostile OpenAI-compatible
//! server (the bytes a real one would never send are the point).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearthnet_base::{DeviceKey, TrustLevel};
use hearthnet_bus::{Bus, BusSettings, InboundCall, Item, Version};
use hearthnet_config::{ApiKey, LlmBackendConfig, LlmBackendKind};
use hearthnet_observability::metrics::Metrics;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::*;
use crate::LlmService;
use crate::generate::Sampling;
use crate::template::Message;

/// What a scripted server does after reading the request.
enum Step {
    Send(Vec<u8>),
    Pause(Duration),
    /// Read until the client closes; the time that took is reported.
    AwaitClose,
}

/// What the scripted server saw.
struct Seen {
    head: String,
    body: Value,
    /// When the client closed the connection.
    closed_at: Option<Instant>,
}

struct Scripted {
    addr: SocketAddr,
    seen: JoinHandle<Seen>,
}

impl Scripted {
    async fn start(steps: Vec<Step>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            play(stream, steps).await
        });
        Self { addr, seen }
    }

    async fn seen(self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen)
            .await
            .expect("the scripted server never finished")
            .unwrap()
    }
}

async fn play<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, steps: Vec<Step>) -> Seen {
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the client closed before its request");
        read.extend_from_slice(&buf[..n]);
        if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8(read[..head_end].to_vec()).unwrap();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    while read.len() < head_end + length {
        let n = stream.read(&mut buf).await.unwrap();
        read.extend_from_slice(&buf[..n]);
    }
    let body = serde_json::from_slice(&read[head_end..]).unwrap_or(Value::Null);
    let mut closed_at = None;
    for step in steps {
        match step {
            // A client that left makes writes fail: the script ends.
            Step::Send(bytes) => {
                if stream.write_all(&bytes).await.is_err() || stream.flush().await.is_err() {
                    break;
                }
            }
            Step::Pause(d) => tokio::time::sleep(d).await,
            Step::AwaitClose => {
                while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                closed_at = Some(Instant::now());
            }
        }
    }
    Seen {
        head,
        body,
        closed_at,
    }
}

fn head(status: &str, content_type: &str, extra: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n{extra}connection: close\r\n\r\n")
        .into_bytes()
}

fn stream_head() -> Step {
    Step::Send(head("200 OK", "text/event-stream", ""))
}

/// Chat chunks as servers send them, one `data:` event each, LF ended.
fn chat_chunks(pieces: &[&str], finish: Option<&str>) -> Vec<u8> {
    let mut out = String::new();
    for piece in pieces {
        let chunk =
            json!({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    if let Some(finish) = finish {
        let chunk = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    out.into_bytes()
}

fn config(addr: SocketAddr) -> LlmBackendConfig {
    LlmBackendConfig {
        name: "scripted".into(),
        kind: LlmBackendKind::OpenaiCompatible,
        model: "m".into(),
        model_path: None,
        base_url: Some(format!("http://{addr}/v1").parse().unwrap()),
        remote_model: Some("remote-m".into()),
        api_key_env: Some("SCRIPTED_KEY".into()),
        api_key: Some(ApiKey::new("sk-test")),
        requires_internet: None,
        connect_timeout: Some(Duration::from_secs(2)),
        first_byte_timeout: Some(Duration::from_millis(500)),
        timeout: Some(Duration::from_secs(10)),
        max_concurrent: 1,
    }
}

fn options(max_tokens: usize, stop: &[&str]) -> Options {
    Options {
        max_tokens,
        sampling: Sampling {
            temperature: 0.0,
            top_p: 0.9,
            seed: Some(7),
        },
        stop: stop.iter().map(|s| s.to_string()).collect(),
    }
}

fn chat() -> Prompt {
    Prompt::Chat(vec![Message {
        role: "user".into(),
        content: "Capital of France?".into(),
    }])
}

/// Run one generation on `backend`, collecting the text it forwards;
/// `cancel_after` pieces, the caller leaves.
async fn generate_with(
    backend: &OpenAiCompatible,
    prompt: Prompt,
    options: Options,
    cancel_after: Option<usize>,
) -> (Result<Finished, CallError>, Vec<String>) {
    let prepared = backend.prepare(prompt).await.unwrap();
    let slot = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
    let stop = CancellationToken::new();
    let (pieces, mut arriving) = mpsc::channel(64);
    let job = Job {
        prepared,
        options,
        slot,
        stop: stop.clone(),
        pieces,
    };
    let collect = async {
        let mut got = Vec::new();
        while let Some(piece) = arriving.recv().await {
            got.push(piece);
            if Some(got.len()) == cancel_after {
                stop.cancel();
            }
        }
        got
    };
    tokio::join!(backend.generate(job), collect)
}

async fn generate(
    server: &Scripted,
    options: Options,
) -> (Result<Finished, CallError>, Vec<String>) {
    let backend = OpenAiCompatible::new(&config(server.addr)).unwrap();
    generate_with(&backend, chat(), options, None).await
}

#[tokio::test]
async fn a_chat_streams_its_tokens_and_passes_every_option() {
    // CRLF line ends, a comment, an empty event, an event whose data spans
    // two lines, the role-only first chunk, usage in a last chunk, then
    // [DONE].
    let body = concat!(
        ": keep-alive\r\n\r\n",
        "data:\r\n\r\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\r\n\r\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"The capital\"}}]}\r\n\r\n",
        "data: {\"choices\":[{\"index\":0,\r\ndata: \"delta\":{\"content\":\" is Paris.\"}}]}\r\n\r\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\r\n\r\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5}}\r\n\r\n",
        "data: [DONE]\r\n\r\n",
    );
    let server = Scripted::start(vec![stream_head(), Step::Send(body.into())]).await;
    let (finished, pieces) = generate(&server, options(5, &["\n\n"])).await;
    let finished = finished.unwrap();
    assert_eq!(pieces.concat(), "The capital is Paris.");
    assert_eq!(
        finished,
        Finished {
            text: "The capital is Paris.".into(),
            tokens_in: 12,
            tokens_out: 5,
            stop_reason: StopReason::MaxTokens,
        }
    );

    let addr = server.addr;
    let seen = server.seen().await;
    assert!(
        seen.head
            .starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
        "{}",
        seen.head
    );
    let head = seen.head.to_ascii_lowercase();
    assert!(head.contains("authorization: bearer sk-test\r\n"), "{head}");
    assert!(head.contains(&format!("host: {addr}\r\n")), "{head}");
    assert_eq!(
        seen.body,
        json!({
            "model": "remote-m",
            "messages": [{"role": "user", "content": "Capital of France?"}],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 5,
            "temperature": 0.0,
            "top_p": 0.9,
            "stop": ["\n\n"],
            "seed": 7
        })
    );
}

#[tokio::test]
async fn a_completion_without_usage_counts_its_chunks_and_ends_at_the_close() {
    // Completions carry `text`; CR alone ends lines; no usage, no [DONE]:
    // the close after finish_reason ends the answer.
    let mut body = String::new();
    for piece in ["Paris", ",", " France"] {
        let chunk = json!({"choices": [{"index": 0, "text": piece, "finish_reason": null}]});
        body.push_str(&format!("data: {chunk}\r\r"));
    }
    body.push_str(
        "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"stop\"}]}\r\r",
    );
    let server = Scripted::start(vec![stream_head(), Step::Send(body.into())]).await;
    let backend = OpenAiCompatible::new(&config(server.addr)).unwrap();
    let prompt = Prompt::Complete("The capital of France is".into());
    let (finished, pieces) = generate_with(&backend, prompt, options(16, &[]), None).await;
    assert_eq!(pieces.concat(), "Paris, France");
    let finished = finished.unwrap();
    assert_eq!(
        (
            finished.tokens_in,
            finished.tokens_out,
            finished.stop_reason
        ),
        (0, 3, StopReason::End)
    );
    let seen = server.seen().await;
    assert!(
        seen.head.starts_with("POST /v1/completions "),
        "{}",
        seen.head
    );
    assert_eq!(seen.body["prompt"], "The capital of France is");
    assert!(seen.body.get("stop").is_none(), "no stop sequences, no key");
}

#[tokio::test]
async fn a_stop_sequence_the_server_lets_through_is_cut_here_and_the_connection_closed() {
    let server = Scripted::start(vec![
        stream_head(),
        Step::Send(chat_chunks(&["Hello", " wor", "ld! And", " more"], None)),
        Step::AwaitClose,
    ])
    .await;
    let (finished, pieces) = generate(&server, options(16, &[" world"])).await;
    let returned = Instant::now();
    let finished = finished.unwrap();
    assert_eq!(pieces.concat(), "Hello");
    assert_eq!(
        (finished.text.as_str(), finished.stop_reason),
        ("Hello", StopReason::StopSequence)
    );
    let closed = server.seen().await.closed_at.unwrap();
    assert!(closed.saturating_duration_since(returned) < Duration::from_millis(200));
}

#[test]
fn finish_reasons_map_to_the_contracts_stop_reasons() {
    let stops = vec!["END".to_owned()];
    assert_eq!(stop_reason("stop", None, &stops), StopReason::End);
    assert_eq!(stop_reason("length", None, &stops), StopReason::MaxTokens);
    assert_eq!(
        stop_reason("stop", Some(&json!("END")), &stops),
        StopReason::StopSequence
    );
    assert_eq!(
        stop_reason("stop", Some(&json!(2)), &stops),
        StopReason::End
    );
    assert_eq!(stop_reason("content_filter", None, &stops), StopReason::End);
}

#[test]
fn the_event_stream_is_read_the_same_however_its_bytes_are_cut() {
    let text = b": comment\r\ndata: a\r\ndata:b\r\n\r\nevent: error\ndata: {\"x\":1}\n\ndata\n\n\rdata: z\r\r";
    let want = vec![
        Event {
            kind: "message".into(),
            data: "a\nb".into(),
        },
        Event {
            kind: "error".into(),
            data: "{\"x\":1}".into(),
        },
        Event {
            kind: "message".into(),
            data: String::new(),
        },
        Event {
            kind: "message".into(),
            data: "z".into(),
        },
    ];
    let mut whole = EventStream::default();
    assert_eq!(whole.push(text).unwrap(), want);
    let mut bytewise = EventStream::default();
    let mut got = Vec::new();
    for byte in text {
        got.extend(bytewise.push(&[*byte]).unwrap());
    }
    assert_eq!(got, want);
    // A last event the server did not close with a blank line.
    let mut unclosed = EventStream::default();
    assert!(unclosed.push(b"data: [DONE]").unwrap().is_empty());
    assert_eq!(unclosed.end().unwrap()[0].data, "[DONE]");
}

/// Run one chat against a server sending `body` after a stream's head;
/// the error it ends with.
async fn refused(body: Vec<u8>) -> CallError {
    let server = Scripted::start(vec![stream_head(), Step::Send(body)]).await;
    let (finished, _) = generate(&server, options(16, &[])).await;
    finished.unwrap_err()
}

#[tokio::test]
async fn a_hostile_stream_is_refused_before_it_costs_anything() {
    let long_line = format!("data: {}\n\n", "x".repeat(MAX_LINE_BYTES)).into_bytes();
    let e = refused(long_line).await;
    assert_eq!(e.code, ErrorCode::InternalError);
    assert!(e.message.contains("a line is over 64 KiB"), "{}", e.message);

    let big_event = format!("data: {}\n", "y".repeat(40_000))
        .repeat(2)
        .into_bytes();
    let e = refused(big_event).await;
    assert!(
        e.message.contains("an event's data is over 64 KiB"),
        "{}",
        e.message
    );

    let comment = format!(": {}\n", "z".repeat(MAX_LINE_BYTES - 10));
    let endless = comment
        .repeat(MAX_RESPONSE_BYTES / comment.len() + 2)
        .into_bytes();
    let e = refused(endless).await;
    assert!(
        e.message.contains("the answer is over 16 MiB"),
        "{}",
        e.message
    );

    let e = refused(b"data: {\"choices\": [\xff\xfe]}\n\n".to_vec()).await;
    assert_eq!(e.code, ErrorCode::InternalError);
    assert!(e.message.contains("not UTF-8"), "{}", e.message);

    let e = refused(b"data: {\"choices\": [\n\n".to_vec()).await;
    assert!(
        e.message.contains("not the JSON of a completion"),
        "{}",
        e.message
    );

    let e = refused(b"data: {\"error\": {\"message\": \"out of memory\"}}\n\n".to_vec()).await;
    assert!(
        e.message.contains("reported an error: out of memory"),
        "{}",
        e.message
    );

    let e = refused(chat_chunks(&["half an answer"], None)).await;
    assert!(
        e.message.contains("closed before the answer finished"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn a_server_that_goes_on_past_max_tokens_is_cut_off() {
    let many: Vec<String> = (0..100).map(|i| format!("t{i} ")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let server = Scripted::start(vec![
        stream_head(),
        Step::Send(chat_chunks(&many, Some("length"))),
        Step::AwaitClose,
    ])
    .await;
    let (finished, pieces) = generate(&server, options(4, &[])).await;
    let finished = finished.unwrap();
    assert_eq!(pieces.len(), 4 + TOKEN_SLACK);
    assert_eq!(
        (finished.tokens_out, finished.stop_reason),
        (4 + TOKEN_SLACK, StopReason::MaxTokens)
    );
}

#[tokio::test]
async fn a_silent_or_stalled_server_times_out() {
    // Nothing at all after the request.
    let server = Scripted::start(vec![Step::Pause(Duration::from_secs(3))]).await;
    let (finished, _) = generate(&server, options(16, &[])).await;
    let e = finished.unwrap_err();
    assert_eq!(e.code, ErrorCode::Timeout);
    assert!(e.message.contains("before its first byte"), "{}", e.message);

    // A token, then silence.
    let server = Scripted::start(vec![
        stream_head(),
        Step::Send(chat_chunks(&["Hello"], None)),
        Step::Pause(Duration::from_secs(3)),
    ])
    .await;
    let started = Instant::now();
    let (finished, pieces) = generate(&server, options(16, &[])).await;
    let e = finished.unwrap_err();
    assert_eq!(
        (e.code, pieces.concat()),
        (ErrorCode::Timeout, "Hello".into())
    );
    assert!(
        e.message.contains("in the middle of its stream"),
        "{}",
        e.message
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // Nobody listening at all.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let backend = OpenAiCompatible::new(&config(addr)).unwrap();
    let (finished, _) = generate_with(&backend, chat(), options(16, &[]), None).await;
    let e = finished.unwrap_err();
    assert_eq!(e.code, ErrorCode::InternalError);
    assert!(
        e.message
            .contains("cannot reach the OpenAI-compatible server at http://"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn the_servers_refusals_become_the_contracts_codes() {
    let cases = [
        (
            head(
                "429 Too Many Requests",
                "application/json",
                "retry-after: 7\r\n",
            ),
            b"{\"error\": {\"message\": \"slow down\"}}".to_vec(),
            ErrorCode::RateLimited,
            "HTTP 429: slow down",
        ),
        (
            head("404 Not Found", "application/json", ""),
            b"{\"error\": \"model 'remote-m' not found\"}".to_vec(),
            ErrorCode::NotFound,
            "model 'remote-m' not found",
        ),
        (
            head("400 Bad Request", "application/json", ""),
            b"{\"message\": \"context too long\"}".to_vec(),
            ErrorCode::BadRequest,
            "context too long",
        ),
        (
            head("401 Unauthorized", "text/plain", ""),
            b"no\x07 key".to_vec(),
            ErrorCode::InternalError,
            "api_key_env names): no  key",
        ),
        (
            head("500 Internal Server Error", "text/html", ""),
            b"<h1>boom</h1>".to_vec(),
            ErrorCode::InternalError,
            "HTTP 500: <h1>boom</h1>",
        ),
        (
            head("200 OK", "application/json", ""),
            b"{\"choices\": []}".to_vec(),
            ErrorCode::InternalError,
            "answered application/json instead of an event stream",
        ),
    ];
    for (head, body, code, message) in cases {
        let server = Scripted::start(vec![Step::Send(head), Step::Send(body)]).await;
        let (finished, _) = generate(&server, options(16, &[])).await;
        let e = finished.unwrap_err();
        assert_eq!(e.code, code, "{}", e.message);
        assert!(e.message.contains(message), "{} lacks {message}", e.message);
        if code == ErrorCode::RateLimited {
            assert_eq!(e.retry_after_ms, Some(7000));
        }
    }
}

#[tokio::test]
async fn a_caller_who_leaves_closes_the_servers_connection_at_once() {
    let leaving = || {
        Scripted::start(vec![
            stream_head(),
            Step::Send(chat_chunks(&["Once"], None)),
            Step::AwaitClose,
        ])
    };
    // Cancelled through the stop token (the frames' reader left) as soon
    // as the first text arrives.
    let server = leaving().await;
    let backend = OpenAiCompatible::new(&config(server.addr)).unwrap();
    let started = Instant::now();
    let (finished, _) = generate_with(&backend, chat(), options(64, &[]), Some(1)).await;
    assert_eq!(finished.unwrap().stop_reason, StopReason::Cancelled);
    let closed = server
        .seen()
        .await
        .closed_at
        .unwrap()
        .saturating_duration_since(started);
    assert!(closed < Duration::from_millis(200), "{closed:?}");

    // The call's future dropped (the bus does this when the caller goes).
    let server = leaving().await;
    let backend = OpenAiCompatible::new(&config(server.addr)).unwrap();
    let call = generate_with(&backend, chat(), options(64, &[]), None);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), call)
            .await
            .is_err()
    );
    let dropped = Instant::now();
    let closed = server
        .seen()
        .await
        .closed_at
        .unwrap()
        .saturating_duration_since(dropped);
    assert!(closed < Duration::from_millis(200), "{closed:?}");
}

#[tokio::test]
async fn https_works_against_a_server_certificate_the_roots_hold() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let mut body = head("200 OK", "text/event-stream", "");
        body.extend(chat_chunks(&["secure"], Some("stop")));
        body.extend(b"data: [DONE]\n\n");
        let seen = play(tls, vec![Step::Send(body)]).await;
        // The next client does not trust us: its handshake fails.
        let (tcp, _) = listener.accept().await.unwrap();
        assert!(acceptor.accept(tcp).await.is_err());
        seen
    });

    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut config = config("127.0.0.1:1".parse().unwrap());
    config.base_url = Some(format!("https://localhost:{port}/v1").parse().unwrap());
    let backend = OpenAiCompatible::with_roots(&config, Some(roots)).unwrap();
    let (finished, pieces) = generate_with(&backend, chat(), options(8, &[]), None).await;
    assert_eq!(finished.unwrap().stop_reason, StopReason::End);
    assert_eq!(pieces.concat(), "secure");

    // The system's roots do not hold it: refused.
    let backend = OpenAiCompatible::new(&config).unwrap();
    let (finished, _) = generate_with(&backend, chat(), options(8, &[]), None).await;
    let e = finished.unwrap_err();
    assert!(e.message.contains("TLS"), "{}", e.message);
    assert!(
        served
            .await
            .unwrap()
            .head
            .starts_with("POST /v1/chat/completions")
    );
}

#[test]
fn a_key_that_is_not_set_or_not_a_header_keeps_the_backend_from_serving() {
    let mut config = config("127.0.0.1:1".parse().unwrap());
    config.api_key = None;
    let e = OpenAiCompatible::new(&config).err().unwrap();
    assert!(
        e.to_string()
            .contains("SCRIPTED_KEY named by api_key_env is not set"),
        "{e}"
    );
    config.api_key = Some(ApiKey::new("sk\nx"));
    let e = OpenAiCompatible::new(&config).err().unwrap();
    assert!(!e.to_string().contains("sk"), "never shown: {e}");
    assert!(matches!(e, SetupError::KeyUnusable(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_asks_the_server_for_its_models() {
    let listing = |models: Value| {
        let mut answer = head("200 OK", "application/json", "");
        answer.extend(
            json!({"object": "list", "data": models})
                .to_string()
                .into_bytes(),
        );
        vec![Step::Send(answer)]
    };
    let server = Scripted::start(listing(json!([{"id": "other"}, {"id": "remote-m"}]))).await;
    let cfg = config(server.addr);
    let checked = tokio::task::spawn_blocking(move || check(&cfg))
        .await
        .unwrap();
    assert!(checked.unwrap().starts_with("remote-m listed by http://"));
    let seen = server.seen().await;
    assert!(
        seen.head.starts_with("GET /v1/models HTTP/1.1"),
        "{}",
        seen.head
    );
    assert!(
        seen.head
            .to_ascii_lowercase()
            .contains("authorization: bearer sk-test")
    );

    let server = Scripted::start(listing(json!([{"id": "llama3"}]))).await;
    let cfg = config(server.addr);
    let (problem, fix) = tokio::task::spawn_blocking(move || check(&cfg))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        problem.contains("does not list the model `remote-m` (it lists: llama3)"),
        "{problem}"
    );
    assert!(fix.contains("remote_model"), "{fix}");

    let mut refusal = head("401 Unauthorized", "application/json", "");
    refusal.extend(b"{\"error\": {\"message\": \"bad key\"}}");
    let server = Scripted::start(vec![Step::Send(refusal)]).await;
    let cfg = config(server.addr);
    let (problem, fix) = tokio::task::spawn_blocking(move || check(&cfg))
        .await
        .unwrap()
        .unwrap_err();
    assert!(problem.contains("HTTP 401"), "{problem}");
    assert!(fix.contains("a key the server takes"), "{fix}");
    assert!(
        problem.contains("api_key_env") && problem.contains("bad key"),
        "{problem}"
    );

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = config(closed.local_addr().unwrap());
    drop(closed);
    let (problem, fix) = tokio::task::spawn_blocking(move || check(&cfg))
        .await
        .unwrap()
        .unwrap_err();
    assert!(problem.contains("cannot reach"), "{problem}");
    assert!(fix.contains("start the server"), "{fix}");
}

#[tokio::test]
async fn the_service_streams_frames_and_counts_the_model_on_metrics() {
    let body = [
        chat_chunks(&["Bon", "jour"], Some("stop")),
        b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n".to_vec(),
    ]
    .concat();
    let server = Scripted::start(vec![stream_head(), Step::Send(body)]).await;
    let metrics = Arc::new(Metrics::new());
    let backend = OpenAiCompatible::new(&config(server.addr)).unwrap();
    let service = LlmService::new("m", backend, 1, metrics.clone());
    let node = DeviceKey::generate().node_id();
    let bus = Bus::new(node, BusSettings::default(), metrics.clone());
    bus.register(Arc::new(service)).unwrap();
    let caps = bus.local_descriptors();
    let chat_cap = caps.iter().find(|c| c.name == "llm.chat").unwrap();
    assert_eq!(
        chat_cap.params,
        json!({"model": "m", "models": ["m"], "backend": "openai_compatible", "requires_internet": false})
    );

    let body = json!({"params": {"model": "m"}, "input": {"messages": [{"role": "user", "content": "Salut"}], "max_tokens": 8}});
    let call = InboundCall {
        stream: true,
        ..InboundCall::new(
            "llm.chat",
            Version::new(1, 0),
            body,
            node,
            TrustLevel::Member,
        )
    };
    let mut stream = bus.call(call).unwrap();
    let mut text = String::new();
    let done = loop {
        match stream.next().await.unwrap() {
            Item::Frame(frame) => text.push_str(frame.data["text"].as_str().unwrap()),
            Item::Done(done) => break done,
            Item::Failed(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(text, "Bonjour");
    assert_eq!(
        (
            &done["model"],
            &done["tokens_in"],
            &done["tokens_out"],
            &done["stop_reason"]
        ),
        (&json!("m"), &json!(9), &json!(2), &json!("end"))
    );
    let rendered = metrics.render();
    let labels = "{model=\"m\",backend=\"openai_compatible\"}";
    for line in [
        format!("hearthnet_llm_prompt_tokens_total{labels} 9"),
        format!("hearthnet_llm_tokens_generated_total{labels} 2"),
        format!("hearthnet_llm_time_to_first_token_seconds_count{labels} 1"),
        format!("hearthnet_llm_tokens_per_second_count{labels} 1"),
    ] {
        assert!(rendered.contains(&line), "{line} missing:\n{rendered}");
    }
}
