//! `hearthnet-loadgen`: signed calls to a running node's
//! `experimental.echo` at several concurrency levels, beside an unsigned
//! hello-world served by the same HTTP stack (`hearthnet_transport::serve`)
//! in the same run. Prints calls/s, p50/p99 latency and the CPU time spent
//! per call (load generator and node together, and the node's share) per
//! row.
//!
//! Signed calls are measured twice: signing each request just before it is
//! sent, and with every request signed (fresh timestamp, unique id) before
//! the row starts, so that the load generator's own signing, which a real
//! caller does on its own machine, does not take the node's CPU.
//!
//! Each concurrency level runs `ROUNDS` (default 3) rounds of the three
//! rows in turn and prints the medians, with each signed row's rate as a
//! share of the hello-world's in the same round.
//!
//! Usage: `[ROUNDS=N] hearthnet-loadgen [SECONDS_PER_ROW [CONCURRENCY…]]`
//! with `HOME` (or the XDG variables) pointing at an initialised node that
//! is running.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use axum::routing::post;
use hearthnet_base::request::SignedHeaders;
use hearthnet_base::{CommunityId, DeviceKey};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio_util::sync::CancellationToken;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// How the requests of a row are signed.
#[derive(Clone)]
enum Signing {
    /// Not at all (the bare HTTP stack).
    Unsigned,
    /// Each request just before it is sent.
    Inline(Arc<DeviceKey>, CommunityId),
    /// All before the row starts; callers take the next one.
    Ahead(Arc<Presigned>),
}

struct Presigned {
    headers: Vec<HeaderMap>,
    next: AtomicUsize,
}

#[derive(Clone)]
struct Target {
    url: String,
    signing: Signing,
}

fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5);
    let mut levels: Vec<usize> = std::env::args()
        .skip(2)
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    if levels.is_empty() {
        levels = vec![1, 16, 64];
    }
    let rounds: usize = match std::env::var("ROUNDS") {
        Ok(n) => n.parse().context("ROUNDS must be a whole number")?,
        Err(_) => 3,
    };
    let env = hearthnet_config::Env::from_process();
    let loaded = hearthnet_config::load(None, &env)?;
    let paths = loaded.paths();
    let key = hearthnet_identity::KeyStore::new(&paths.keys_dir).load()?;
    let community = loaded
        .config
        .community_id()
        .context("the node has no community; run `hearthnet init`")?;
    let runtime = hearthnet_config::runtime::RuntimeInfo::read(&paths.runtime_dir)
        .context("no running node found; start one with `hearthnet run`")?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let hello = start_hello_world().await?;
        let hello_world = Target {
            url: format!("http://{hello}/hello"),
            signing: Signing::Unsigned,
        };
        let echo = format!("http://{}/bus/v1/call", runtime.api);
        println!(
            "{:<40} {:>5} {:>9} {:>8} {:>8} {:>8} {:>9} {:>11} {:>9}",
            "target (median of rounds)",
            "conc",
            "calls/s",
            "of bare",
            "p50 ms",
            "p99 ms",
            "refused/s",
            "CPU µs/call",
            "node µs"
        );
        for &concurrency in &levels {
            let length = Duration::from_secs(seconds);
            let mut results: [Vec<Measured>; 3] = Default::default();
            // Rounds alternate the three kinds so that a machine whose
            // speed drifts treats them alike; medians are reported.
            for _ in 0..rounds {
                for (kind, results) in results.iter_mut().enumerate() {
                    let target = match kind {
                        0 => hello_world.clone(),
                        1 => Target {
                            url: echo.clone(),
                            signing: Signing::Inline(Arc::new(key.clone()), community),
                        },
                        _ => Target {
                            url: echo.clone(),
                            signing: Signing::Ahead(Arc::new(presign(
                                &key,
                                community,
                                concurrency,
                                length,
                            )?)),
                        },
                    };
                    results.push(measure(&target, concurrency, length, runtime.pid).await?);
                }
            }
            for (kind, name) in ROW_NAMES.iter().enumerate() {
                let of_bare: Vec<f64> = results[kind]
                    .iter()
                    .zip(&results[0])
                    .map(|(m, bare)| m.row.rate / bare.row.rate * 100.0)
                    .collect();
                let rows = &results[kind];
                let median_of = |f: &dyn Fn(&Measured) -> f64| median(rows.iter().map(f).collect());
                let node = if kind == 0 {
                    "-".to_owned()
                } else {
                    format!("{:.0}", median_of(&|m| m.node_per_call))
                };
                println!(
                    "{name:<40} {concurrency:>5} {:>9.0} {:>6.0} % {:>8.3} {:>8.3} {:>9.1} {:>11.0} {:>9}",
                    median_of(&|m| m.row.rate),
                    median(of_bare),
                    median_of(&|m| m.row.p50),
                    median_of(&|m| m.row.p99),
                    median_of(&|m| m.row.refused),
                    median_of(&|m| m.cpu_per_call),
                    node
                );
            }
        }
        Ok(())
    })
}

const ROW_NAMES: [&str; 3] = [
    "unsigned hello-world (same stack)",
    "signed echo, signing inline",
    "signed echo, signed before the row",
];

/// One row's figures, with the CPU time spent per call by this process and
/// the node together, and by the node alone. (For the hello-world both
/// ends run in this process.)
struct Measured {
    row: Row,
    cpu_per_call: f64,
    node_per_call: f64,
}

async fn measure(
    target: &Target,
    concurrency: usize,
    length: Duration,
    node_pid: u32,
) -> anyhow::Result<Measured> {
    let node_before = cpu_seconds(node_pid)?;
    let own_before = cpu_seconds(std::process::id())?;
    let row = run_row(target, concurrency, length).await?;
    let node = cpu_seconds(node_pid)? - node_before;
    let own = cpu_seconds(std::process::id())? - own_before;
    let per_call = |s: f64| s * 1e6 / row.calls.max(1) as f64;
    Ok(Measured {
        cpu_per_call: per_call(node + own),
        node_per_call: per_call(node),
        row,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Enough signed requests for `concurrency` callers over `length` at a rate
/// well above what this machine reaches (a row ends early if they run out).
fn presign(
    key: &DeviceKey,
    community: CommunityId,
    concurrency: usize,
    length: Duration,
) -> anyhow::Result<Presigned> {
    const MAX_RATE: f64 = 25_000.0;
    // Requests for at most 20 s: signing them takes ~13 s, so even the
    // first is well inside the node's 60 s window when the row ends (a
    // longer row ends early if it uses them all), and memory stays bounded.
    const MOST_SECONDS: f64 = 20.0;
    let count = (MAX_RATE * length.as_secs_f64().min(MOST_SECONDS)) as usize + concurrency;
    let headers = (0..count)
        .map(|_| signed_headers(key, community))
        .collect::<anyhow::Result<_>>()?;
    Ok(Presigned {
        headers,
        next: AtomicUsize::new(0),
    })
}

fn signed_headers(key: &DeviceKey, community: CommunityId) -> anyhow::Result<HeaderMap> {
    let signed = SignedHeaders::sign(key, community, "experimental.echo", "1.0", &echo_body())?;
    let mut map = HeaderMap::with_capacity(8);
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in signed.to_pairs() {
        map.insert(HeaderName::from_static(name), HeaderValue::try_from(value)?);
    }
    Ok(map)
}

fn echo_body() -> serde_json::Value {
    json!({"params": {}, "input": {"text": "hello"}})
}

/// User plus system CPU time of process `pid` so far, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    // Linux reports these in USER_HZ ticks, which is 100 on every platform
    // it runs on.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading the CPU time of process {pid}"))?;
    // The command name (field 2) may contain spaces; count after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .with_context(|| format!("/proc/{pid}/stat is shorter than expected"))?
            .parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after ')'.
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
}

async fn start_hello_world() -> anyhow::Result<SocketAddr> {
    let router = axum::Router::new().route(
        "/hello",
        post(|| async { axum::Json(json!({"output": {"text": "hello"}})) }),
    );
    let listener = hearthnet_transport::Listener::bind("127.0.0.1:0".parse()?).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(hearthnet_transport::serve(
        listener,
        router,
        CancellationToken::new(),
        hearthnet_transport::Serving::local(),
    ));
    Ok(addr)
}

/// Answered calls per second with their latency percentiles, and calls
/// per second refused for the rate budget (`rate_limited`, honoured by
/// waiting `retry_after_ms` as a client should).
struct Row {
    calls: usize,
    rate: f64,
    p50: f64,
    p99: f64,
    refused: f64,
}

async fn run_row(target: &Target, concurrency: usize, length: Duration) -> anyhow::Result<Row> {
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http();
    let body = Bytes::from(serde_json::to_vec(&echo_body())?);
    let started = Instant::now();
    let end = started + length;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let target = target.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut refused = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                match one_call(&client, &target, body.clone()).await? {
                    Answer::Done => latencies.push(t.elapsed().as_secs_f64() * 1000.0),
                    Answer::Refused(wait) => {
                        refused += 1;
                        tokio::time::sleep(wait.min(end.saturating_duration_since(Instant::now())))
                            .await;
                    }
                    Answer::OutOfRequests => break,
                }
            }
            Ok::<_, anyhow::Error>((latencies, refused))
        }));
    }
    let mut all = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (latencies, r) = t.await??;
        all.extend(latencies);
        refused += r;
    }
    let elapsed = started.elapsed().min(length).as_secs_f64();
    all.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        all.get(((all.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(Row {
        calls: all.len(),
        rate: all.len() as f64 / elapsed,
        p50: pick(0.5),
        p99: pick(0.99),
        refused: refused as f64 / elapsed,
    })
}

enum Answer {
    Done,
    /// Refused for the rate budget: wait this long.
    Refused(Duration),
    /// Every request signed before the row was used.
    OutOfRequests,
}

async fn one_call(client: &HttpClient, target: &Target, body: Bytes) -> anyhow::Result<Answer> {
    let mut req = hyper::Request::post(&target.url).body(Full::new(body))?;
    let headers = req.headers_mut();
    match &target.signing {
        Signing::Unsigned => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Signing::Inline(key, community) => *headers = signed_headers(key, *community)?,
        Signing::Ahead(presigned) => {
            let i = presigned.next.fetch_add(1, Ordering::Relaxed);
            let Some(signed) = presigned.headers.get(i) else {
                return Ok(Answer::OutOfRequests);
            };
            *headers = signed.clone();
        }
    }
    let resp = client.request(req).await?;
    let status = resp.status();
    let answer = resp.into_body().collect().await?.to_bytes();
    if status == hyper::StatusCode::TOO_MANY_REQUESTS {
        let wait = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["retry_after_ms"].as_u64())
            .unwrap_or(1000);
        return Ok(Answer::Refused(Duration::from_millis(wait)));
    }
    if !status.is_success() {
        return Err(anyhow!(
            "{} answered {status}: {}",
            target.url,
            String::from_utf8_lossy(&answer)
        ));
    }
    Ok(Answer::Done)
}
