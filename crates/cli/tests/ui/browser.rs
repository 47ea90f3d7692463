//! The browser side of the UI tests: chromedriver and a headless
//! Chromium session, screenshots at desktop and phone width.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::error::{CmdError, ErrorStatus};
use fantoccini::{Client, ClientBuilder, Locator};

use crate::common::{self, needs};

/// chromedriver on a free port, stopped when dropped.
pub struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn chromedriver() -> Driver {
    needs::program("chromium", "chromium");
    needs::program("chromedriver", "chromium-driver");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    common::wait_until(Duration::from_secs(20), "chromedriver listening", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Driver { child, url }
}

pub async fn browser(driver: &Driver, profile: &Path) -> Client {
    session(driver, profile, &[]).await
}

async fn session(driver: &Driver, profile: &Path, extra: &[&str]) -> Client {
    let mut args: Vec<String> = [
        "--headless=new",
        // Tests run as root in CI, where Chromium's sandbox cannot start.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--window-size=1280,900",
    ]
    .iter()
    .chain(extra)
    .map(ToString::to_string)
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"binary": "/usr/bin/chromium", "args": args}),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `page` at desktop and phone width, saved as `<name>-desktop.png` and
/// `<name>-phone.png`; at phone width nothing may be wider than the
/// screen, and at both axe-core finds nothing serious: every state a test
/// shows is checked, not only each page's first look.
pub async fn shoot(c: &Client, name: &str) {
    crate::axe::assert_accessible(c, name).await;
    for (width, label) in [(1280, "desktop"), (360, "phone")] {
        c.set_window_size(width, 900).await.unwrap();
        let png = c.screenshot().await.unwrap();
        std::fs::write(screenshots().join(format!("{name}-{label}.png")), png).unwrap();
        if width == 360 {
            let overflow = c
                .execute(
                    "return document.documentElement.scrollWidth > window.innerWidth",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(
                overflow,
                serde_json::json!(false),
                "{name} scrolls sideways at 360 px"
            );
        }
    }
    c.set_window_size(1280, 900).await.unwrap();
}

/// The mode the banner shows now. The banner is a live fragment.
pub async fn banner_mode(c: &Client) -> String {
    live_attr(c, Locator::Css("#banner [data-mode]"), "data-mode").await
}

/// Open the one-time login `link` in `c` and wait for Home.
pub async fn log_in(c: &Client, link: &str) {
    c.goto(link).await.unwrap();
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("node-id"))
        .await
        .expect("the login link leads to Home");
}

/// A browser whose system prefers dark mode, as a dark desktop or phone
/// would.
pub async fn dark_browser(driver: &Driver, profile: &Path) -> Client {
    let c = session(driver, profile, &["--force-dark-mode"]).await;
    let dark = c
        .execute(
            "return window.matchMedia('(prefers-color-scheme: dark)').matches",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(dark, serde_json::json!(true), "Chromium prefers dark");
    c
}

/// A browser that accepts the node's self-signed LAN certificate, as a
/// person does on their phone after comparing its fingerprint.
pub async fn lan_browser(driver: &Driver, profile: &Path) -> Client {
    session(driver, profile, &["--ignore-certificate-errors"]).await
}

/// Wait up to 20 s for `locator` ([`wait_for_within`]).
pub async fn wait_for(c: &Client, locator: Locator<'_>, what: &str) -> Element {
    wait_for_within(c, Duration::from_secs(20), locator, what).await
}

/// Wait up to `within` for `locator`; failing, say where the browser is
/// and what the page says.
pub async fn wait_for_within(
    c: &Client,
    within: Duration,
    locator: Locator<'_>,
    what: &str,
) -> Element {
    match c.wait().at_most(within).for_element(locator).await {
        Ok(found) => found,
        Err(e) => {
            let url = c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            let text = match c.find(Locator::Css("body")).await {
                Ok(body) => body.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            panic!("{what}: {e}; at {url} the page says:\n{text}")
        }
    }
}

/// Click the element `locator` finds.
pub async fn click(c: &Client, locator: Locator<'_>) {
    c.find(locator).await.unwrap().click().await.unwrap();
}

/// Type `text` into the field `locator` finds.
pub async fn type_into(c: &Client, locator: Locator<'_>, text: &str) {
    c.find(locator)
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// Set a mark only this document carries: a reload would lose it.
pub async fn mark(c: &Client) {
    c.execute("window.hearthnetMark = 'kept'; return null", vec![])
        .await
        .unwrap();
}

pub async fn assert_not_reloaded(c: &Client) {
    let mark = c
        .execute("return window.hearthnetMark", vec![])
        .await
        .unwrap();
    assert_eq!(mark, serde_json::json!("kept"), "changed without a reload");
}

/// Follow the menu to `page` and wait for `ready` on it.
pub async fn open(c: &Client, page: &str, ready: Locator<'_>) {
    click(c, Locator::LinkText(page)).await;
    wait_for(c, ready, &format!("{page} opens")).await;
}

/// Whether `e` says the element was replaced (a live update swapped it).
fn replaced(e: &CmdError) -> bool {
    matches!(e, CmdError::Standard(w) if w.error == ErrorStatus::StaleElementReference)
}

/// The attribute `name` of what `locator` finds now, found again when a
/// live update replaces it in between; empty when it has none.
pub async fn live_attr(c: &Client, locator: Locator<'_>, name: &str) -> String {
    for _ in 0..20 {
        match c.find(locator).await.unwrap().attr(name).await {
            Err(e) if replaced(&e) => continue,
            value => return value.unwrap().unwrap_or_default(),
        }
    }
    panic!("{locator:?} keeps being replaced");
}

/// The text of what `locator` finds now, found again when a live update
/// replaces it in between.
pub async fn live_text(c: &Client, locator: Locator<'_>) -> String {
    for _ in 0..20 {
        match c.find(locator).await.unwrap().text().await {
            Err(e) if replaced(&e) => continue,
            text => return text.unwrap(),
        }
    }
    panic!("{locator:?} keeps being replaced");
}

/// Click what `locator` finds, found again when a live update replaces it
/// in between.
pub async fn live_click(c: &Client, locator: Locator<'_>) {
    for _ in 0..20 {
        match c.find(locator).await.unwrap().click().await {
            Err(e) if replaced(&e) => continue,
            done => return done.unwrap(),
        }
    }
    panic!("{locator:?} keeps being replaced");
}

/// The value of the form field `locator` finds (empty when it has none).
pub async fn value_of(c: &Client, locator: Locator<'_>) -> String {
    c.find(locator)
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}
