//! `hearthnet-loadgen`: signed calls to a running node's
//! `experimental.echo` at several concurrency levels, beside an unsigned
//! hello-world served by the same HTTP stack (`hearthnet_transport::serve`)
//! in the same run. Prints calls/s and p50/p99 latency per row.
//!
//! Usage: `hearthnet-loadgen [SECONDS_PER_ROW [CONCURRENCY…]]` with `HOME` (or the XDG
//! variables) pointing at an initialised node that is running.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use axum::routing::post;
use hearthnet_base::request::SignedHeaders;
use hearthnet_base::{CommunityId, DeviceKey};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio_util::sync::CancellationToken;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

#[derive(Clone)]
struct Target {
    url: String,
    signer: Option<(DeviceKey, CommunityId)>,
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
    let env = hearthnet_config::Env::from_process();
    let loaded = hearthnet_config::load(None, &env)?;
    let paths = loaded.paths();
    let key = hearthnet_identity::KeyStore::new(&paths.keys_dir).load()?;
    let community = loaded
        .config
        .community_id()
        .context("the node has no community; run `hearthnet init`")?;
    let api = hearthnet_config::runtime::RuntimeInfo::read(&paths.runtime_dir)
        .context("no running node found; start one with `hearthnet run`")?
        .api;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let levels = levels;
        let hello = start_hello_world().await?;
        let targets = [
            (
                "unsigned hello-world (same stack)",
                Target {
                    url: format!("http://{hello}/hello"),
                    signer: None,
                },
            ),
            (
                "signed experimental.echo",
                Target {
                    url: format!("http://{api}/bus/v1/call"),
                    signer: Some((key, community)),
                },
            ),
        ];
        println!(
            "{:<36} {:>6} {:>10} {:>9} {:>9} {:>10}",
            "target", "conc", "calls/s", "p50 ms", "p99 ms", "refused/s"
        );
        for &concurrency in &levels {
            for (name, target) in &targets {
                let row = run_row(target, concurrency, Duration::from_secs(seconds)).await?;
                println!(
                    "{name:<36} {concurrency:>6} {:>10.0} {:>9.3} {:>9.3} {:>10.1}",
                    row.rate, row.p50, row.p99, row.refused
                );
            }
        }
        Ok(())
    })
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
        None,
    ));
    Ok(addr)
}

/// Answered calls per second with their latency percentiles, and calls
/// per second refused for the rate budget (`rate_limited`, honoured by
/// waiting `retry_after_ms` as a client should).
struct Row {
    rate: f64,
    p50: f64,
    p99: f64,
    refused: f64,
}

async fn run_row(target: &Target, concurrency: usize, length: Duration) -> anyhow::Result<Row> {
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build_http();
    let body = json!({"params": {}, "input": {"text": "hello"}});
    let end = Instant::now() + length;
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
                match one_call(&client, &target, &body).await? {
                    None => latencies.push(t.elapsed().as_secs_f64() * 1000.0),
                    Some(wait) => {
                        refused += 1;
                        tokio::time::sleep(wait.min(end.saturating_duration_since(Instant::now())))
                            .await;
                    }
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
    all.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        all.get(((all.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(Row {
        rate: all.len() as f64 / length.as_secs_f64(),
        p50: pick(0.5),
        p99: pick(0.99),
        refused: refused as f64 / length.as_secs_f64(),
    })
}

/// `None` when answered, `Some(wait)` when refused for the rate budget.
async fn one_call(
    client: &HttpClient,
    target: &Target,
    body: &serde_json::Value,
) -> anyhow::Result<Option<Duration>> {
    let bytes = Bytes::from(serde_json::to_vec(body)?);
    let mut req = hyper::Request::post(&target.url).header("content-type", "application/json");
    if let Some((key, community)) = &target.signer {
        let headers = SignedHeaders::sign(key, *community, "experimental.echo", "1.0", body)?;
        for (name, value) in headers.to_pairs() {
            req = req.header(name, value);
        }
    }
    let resp = client.request(req.body(Full::new(bytes))?).await?;
    let status = resp.status();
    let answer = resp.into_body().collect().await?.to_bytes();
    if status == hyper::StatusCode::TOO_MANY_REQUESTS {
        let wait = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["retry_after_ms"].as_u64())
            .unwrap_or(1000);
        return Ok(Some(Duration::from_millis(wait)));
    }
    if !status.is_success() {
        return Err(anyhow!("{} answered {status}", target.url));
    }
    Ok(None)
}
