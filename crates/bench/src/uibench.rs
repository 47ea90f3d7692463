//! The web UI's first page load in a real headless Chromium with a cold
//! cache, each run opening a fresh one-time login link (`hearthnet ui
//! link` of the node already running under this `HOME`), two ways:
//! a browser already running with its HTTP cache cleared before each run
//! (chromedriver's CDP `Network.clearBrowserCache`), as a person's first
//! visit is; and a browser started for the run with a fresh profile (no
//! HTTP cache, no compiled-script cache, a new renderer process), the
//! worst case. Prints each run and, per way, the median, 95th percentile
//! and worst of the load time (navigation start, the login's redirect
//! included, to the `load` event) and the bytes of the HTML, CSS and JS
//! together. `benches/run-ui-benchmarks.sh` starts the node and runs this.
//!
//! Usage: `hearthnet-uibench HEARTHNET_BINARY [RUNS]`

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// Everything the page itself loaded, after its `load` event: the live
/// stream (`/events`) stays open by design and is not part of the load.
const TIMINGS: &str = r"
const nav = performance.getEntriesByType('navigation')[0];
if (!nav || nav.loadEventEnd === 0) { return null; }
const assets = performance.getEntriesByType('resource')
  .filter(e => !e.name.includes('/events'))
  .map(e => ({name: e.name, transfer: e.transferSize, body: e.decodedBodySize}));
return {load_ms: nav.loadEventEnd, redirect_ms: nav.redirectEnd - nav.redirectStart,
        response_ms: nav.responseEnd, dom_ms: nav.domContentLoadedEventEnd,
        html: nav.decodedBodySize, html_transfer: nav.transferSize, assets: assets};
";

struct Run {
    load_ms: f64,
    bytes: u64,
    transferred: u64,
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let hearthnet = args
        .next()
        .context("usage: hearthnet-uibench HEARTHNET_BINARY [RUNS]")?;
    let runs: usize = match args.next() {
        Some(n) => n.parse().context("RUNS is a number")?,
        None => 20,
    };
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start chromedriver (Debian's chromium-driver)")?;
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("chromedriver did not listen within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        println!("A running browser, its cache cleared before each run:");
        let warm = measure(&hearthnet, port, runs, true).await?;
        println!("A browser started for each run with a fresh profile:");
        let fresh = measure(&hearthnet, port, runs, false).await?;
        anyhow::Ok((warm, fresh))
    });
    let _ = driver.kill();
    let _ = driver.wait();
    let (mut warm, mut fresh) = result?;
    println!();
    report("running browser, cache cleared", &mut warm);
    report("fresh browser and profile", &mut fresh);
    Ok(())
}

/// chromedriver's `POST /session/ID/goog/cdp/execute`: one DevTools
/// command, here emptying the HTTP cache.
#[derive(Debug)]
struct ClearBrowserCache;

impl fantoccini::wd::WebDriverCompatibleCommand for ClearBrowserCache {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"cmd": "Network.clearBrowserCache", "params": {}});
        (http::Method::POST, Some(body.to_string()))
    }
}

/// `runs` first loads, in one running browser (`running`) or each in a
/// browser of its own.
async fn measure(
    hearthnet: &str,
    port: u16,
    runs: usize,
    running: bool,
) -> anyhow::Result<Vec<Run>> {
    let mut done = Vec::with_capacity(runs);
    let profile = tempfile::tempdir()?;
    let mut shared = match running {
        true => Some(browser(port, profile.path()).await?),
        false => None,
    };
    for i in 0..runs {
        let own_profile = tempfile::tempdir()?;
        let c = match &shared {
            Some(c) => {
                c.goto("about:blank").await?;
                c.issue_cmd(ClearBrowserCache).await?;
                c.clone()
            }
            None => browser(port, own_profile.path()).await?,
        };
        let link = login_link(hearthnet)?;
        c.goto(&link).await?;
        c.wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Id("node-id"))
            .await?;
        let timings = loop {
            let t = c.execute(TIMINGS, vec![]).await?;
            if !t.is_null() {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if shared.is_none() {
            c.close().await?;
        }
        let run = summarise(&timings)?;
        println!(
            "run {:>2}: {:>6.1} ms (redirect {:.1} ms, HTML in at {:.1} ms, DOM ready at {:.1} ms), {} bytes ({} transferred): {}",
            i + 1,
            run.load_ms,
            timings["redirect_ms"].as_f64().unwrap_or(0.0),
            timings["response_ms"].as_f64().unwrap_or(0.0),
            timings["dom_ms"].as_f64().unwrap_or(0.0),
            run.bytes,
            run.transferred,
            assets(&timings)
        );
        done.push(run);
    }
    if let Some(c) = shared.take() {
        c.close().await?;
    }
    Ok(done)
}

async fn browser(port: u16, profile: &std::path::Path) -> anyhow::Result<Client> {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": "/usr/bin/chromium", "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--window-size=1280,900",
            format!("--user-data-dir={}", profile.display()),
        ]}),
    );
    Ok(
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await?,
    )
}

fn login_link(hearthnet: &str) -> anyhow::Result<String> {
    let out = Command::new(hearthnet).args(["ui", "link"]).output()?;
    if !out.status.success() {
        bail!(
            "`hearthnet ui link` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

fn summarise(t: &Value) -> anyhow::Result<Run> {
    let load_ms = t["load_ms"]
        .as_f64()
        .ok_or_else(|| anyhow!("no load time"))?;
    let list = t["assets"].as_array().cloned().unwrap_or_default();
    let sum = |field: &str| list.iter().filter_map(|a| a[field].as_u64()).sum::<u64>();
    Ok(Run {
        load_ms,
        bytes: t["html"].as_u64().unwrap_or(0) + sum("body"),
        transferred: t["html_transfer"].as_u64().unwrap_or(0) + sum("transfer"),
    })
}

fn assets(t: &Value) -> String {
    let list = t["assets"].as_array().cloned().unwrap_or_default();
    let named: Vec<String> = list
        .iter()
        .map(|a| {
            let name = a["name"].as_str().unwrap_or("?");
            let short = name.rsplit('/').next().unwrap_or(name);
            format!("{short} {}", a["body"].as_u64().unwrap_or(0))
        })
        .collect();
    format!("html {} + {}", t["html"], named.join(", "))
}

fn report(way: &str, runs: &mut [Run]) {
    if runs.is_empty() {
        return;
    }
    runs.sort_by(|a, b| a.load_ms.total_cmp(&b.load_ms));
    let at = |q: f64| runs[((runs.len() as f64 - 1.0) * q).round() as usize].load_ms;
    let bytes = runs.iter().map(|r| r.bytes).max().unwrap_or(0);
    let transferred = runs.iter().map(|r| r.transferred).max().unwrap_or(0);
    println!(
        "first page load, cold cache, {way}, {} runs: median {:.1} ms, p95 {:.1} ms, worst {:.1} ms",
        runs.len(),
        at(0.5),
        at(0.95),
        at(1.0)
    );
    println!(
        "HTML + CSS + JS: {bytes} bytes ({:.1} KiB), {transferred} bytes on the wire with headers",
        bytes as f64 / 1024.0
    );
}
