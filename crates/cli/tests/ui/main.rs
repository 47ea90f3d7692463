//! The web UI of a real `hearthnet run`: who is let in, over plain HTTP
//! as any local program or web page could send it, and the pages in a
//! real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! which `scripts/test` installs). Screenshots of each page at desktop
//! (1280 px) and phone (360 px) width land in `target/ui-screenshots/`.
//!
//! One test binary for the whole UI: each page's tests are a module here
//! beside the shared [`browser`] harness.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod ask;
mod axe;
mod browser;
#[path = "../common/mod.rs"]
mod common;
mod files;
mod join;
mod market;
mod messages;
mod pairing;
mod settings;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use browser::{
    assert_not_reloaded, banner_mode, browser, chromedriver, click, dark_browser, log_in, mark,
    shoot, wait_for, wait_for_within,
};
use common::Sandbox;
use common::probes::{Probes, pairs};
use fantoccini::Locator;

/// An answer read off the socket: status, head and body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Send `request` (a whole HTTP/1.1 request but for `Connection: close`)
/// to `addr`, as bytes: nothing a client library would normalise.
fn raw(addr: SocketAddr, request: &str) -> Answer {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = request.replacen("\r\n", "\r\nconnection: close\r\n", 1);
    conn.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    conn.read_to_end(&mut bytes).unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Answer {
        status: head[9..12].parse().unwrap(),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn get(addr: SocketAddr, host: &str, path: &str, cookie: Option<&str>) -> Answer {
    let cookie = cookie.map_or(String::new(), |c| format!("cookie: {c}\r\n"));
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n{cookie}\r\n"),
    )
}

/// The session cookie (`name=value`) a login answer sets.
fn session_cookie(answer: &Answer) -> String {
    let line = answer
        .head
        .lines()
        .find(|l| l.to_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(line.contains(part), "{line}");
    }
    let value = line.split_once(':').unwrap().1.trim();
    value.split(';').next().unwrap().to_owned()
}

#[test]
fn a_login_link_works_once_and_nothing_else_gets_in() {
    let sb = Sandbox::new();
    sb.init_non_interactive("den");
    let mut node = sb.start_node_with_ui(&[]);
    let link = node.first_ui_link();
    let ui = sb.ui_addr();
    let host = ui.to_string();
    let path = link
        .strip_prefix(&format!("http://{ui}"))
        .expect("a link to the UI");

    // Without a session: refused, pages and assets alike.
    for p in ["/", "/emergency", "/assets/app.css", "/events"] {
        assert_eq!(get(ui, &host, p, None).status, 401, "{p}");
    }
    // The link, once.
    let login = get(ui, &host, path, None);
    assert_eq!(login.status, 303, "{}", login.body);
    let cookie = session_cookie(&login);
    assert_eq!(get(ui, &host, path, None).status, 401, "a link works once");

    let home = get(ui, &host, "/", Some(&cookie));
    assert_eq!(home.status, 200);
    assert!(
        home.body.contains(&sb.key().node_id().full()),
        "{}",
        home.body
    );
    let head = home.head.to_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'self'"),
        "{head}"
    );
    assert!(head.contains("x-frame-options: deny"), "{head}");

    // A foreign Host (DNS rebinding) is refused, session or not.
    let rebound = get(
        ui,
        &format!("attacker.example:{}", ui.port()),
        "/",
        Some(&cookie),
    );
    assert_eq!(rebound.status, 403);
    assert!(!rebound.body.contains("Node ID"));

    // A POST from another origin is refused, even with the session and
    // its CSRF token; from ours it works.
    let at = home.body.find(r#"name="csrf" value=""#).unwrap() + 19;
    let csrf = &home.body[at..at + 43];
    let logout = |origin: &str| {
        let body = format!("csrf={csrf}");
        raw(
            ui,
            &format!(
                "POST /logout HTTP/1.1\r\nhost: {host}\r\ncookie: {cookie}\r\norigin: {origin}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    assert_eq!(logout("http://attacker.example").status, 403);
    assert_eq!(
        logout(&format!("http://localhost:{}", ui.port())).status,
        403
    );
    assert_eq!(
        get(ui, &host, "/", Some(&cookie)).status,
        200,
        "still logged in"
    );
    assert_eq!(logout(&format!("http://{host}")).status, 200);
    assert_eq!(get(ui, &host, "/", Some(&cookie)).status, 401, "logged out");

    // `hearthnet ui link` asks the running node for a fresh link.
    let again = sb.run(&["ui", "link"], None);
    assert_eq!(again.code, 0, "{again:?}");
    let fresh = again.stdout.trim();
    assert_ne!(fresh, link);
    let path = fresh.strip_prefix(&format!("http://{ui}")).unwrap();
    assert_eq!(get(ui, &host, path, None).status, 303);
}

#[test]
fn without_the_ui_the_node_serves_none_and_says_so() {
    let sb = Sandbox::new();
    sb.init_non_interactive("den");
    let _node = sb.start_node(&[]);
    let run = sb.run(&["ui", "link"], None);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("serves no web UI"), "{run:?}");
}

#[test]
fn in_chromium_home_shows_the_node_and_the_banner_follows_the_probes_without_reload() {
    let mut probes = Probes::answering();
    let sb = Sandbox::new();
    sb.init_non_interactive("den");
    let mut node = sb.start_node_with_ui(&pairs(&probes.env()));
    let link = node.first_ui_link();
    let driver = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    common::runtime().block_on(async {
        let c = browser(&driver, profile.path()).await;
        // The link logs in and leads to Home, which shows this node's id.
        log_in(&c, &link).await;
        let id = c.find(Locator::Id("node-id")).await.unwrap();
        assert_eq!(id.text().await.unwrap(), sb.key().node_id().full());
        assert!(!c.current_url().await.unwrap().as_str().contains("token"));
        assert_eq!(banner_mode(&c).await, "online");
        // A call shows in the recent activity without a reload.
        mark(&c).await;
        let listed = sb.run(&["file", "ls"], None);
        assert_eq!(listed.code, 0, "{listed:?}");
        wait_for(
            &c,
            Locator::XPath("//td[text()='file.local.list']"),
            "the call appears under recent activity",
        )
        .await;
        assert_not_reloaded(&c).await;
        shoot(&c, "home").await;

        click(&c, Locator::LinkText("Emergency")).await;
        wait_for(&c, Locator::Id("emergency-mode"), "Emergency opens").await;
        shoot(&c, "emergency").await;

        mark(&c).await;
        probes.stop();
        wait_for_within(
            &c,
            Duration::from_secs(40),
            Locator::Css("#banner [data-mode='offline']"),
            "the banner turns offline",
        )
        .await;
        wait_for(
            &c,
            Locator::Css("#emergency-mode.mode-offline"),
            "the emergency details follow",
        )
        .await;
        assert_not_reloaded(&c).await;
        shoot(&c, "emergency-offline").await;
        c.close().await.unwrap();
    });
}

#[test]
fn every_page_in_light_and_dark_mode_has_no_serious_accessibility_violation() {
    let sb = Sandbox::new();
    sb.init_non_interactive("den");
    let mut node = sb.start_node_with_ui(&[]);
    let origin = format!("http://{}", sb.ui_addr());
    let driver = chromedriver();
    let mut link = node.first_ui_link();
    for dark in [false, true] {
        let profile = tempfile::tempdir().unwrap();
        common::runtime().block_on(async {
            let c = match dark {
                false => browser(&driver, profile.path()).await,
                true => dark_browser(&driver, profile.path()).await,
            };
            log_in(&c, &link).await;
            let mut pages = Vec::new();
            for a in c.find_all(Locator::Css("header nav a")).await.unwrap() {
                pages.push(a.attr("href").await.unwrap().unwrap());
            }
            assert!(pages.len() >= 7, "{pages:?}");
            // Not in the menu: Settings links it.
            pages.push("/join".to_owned());
            // The check itself finds a fault: an image without a text.
            c.execute(
                "document.querySelector('main').insertAdjacentHTML('beforeend', '<img src=\"/assets/app.css\">'); return null",
                vec![],
            )
            .await
            .unwrap();
            let found = axe::violations(&c).await;
            assert!(
                found.iter().any(|v| v["id"] == "image-alt"),
                "{found:?}"
            );
            for page in pages {
                c.goto(&format!("{origin}{page}")).await.unwrap();
                wait_for(&c, Locator::Css("main h1"), &page).await;
                axe::assert_accessible(&c, &page).await;
                if dark {
                    let name = match page.trim_start_matches('/') {
                        "" => "home",
                        other => other,
                    };
                    shoot(&c, &format!("{name}-dark")).await;
                }
            }
            c.close().await.unwrap();
        });
        let again = sb.run(&["ui", "link"], None);
        assert_eq!(again.code, 0, "{again:?}");
        link = again.stdout.trim().to_owned();
    }
}
