//! A phone on the LAN: the UI over HTTPS on a listener of its own, entered
//! with a pairing code, only when `ui.lan_enabled` says so.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use fantoccini::Locator;

use crate::browser::{chromedriver, click, lan_browser, shoot, wait_for};
use crate::common::{self, Sandbox};

fn lan_addr(sb: &Sandbox) -> Option<SocketAddr> {
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.data_dir().join("run/node.json")).unwrap())
            .unwrap();
    info["ui_lan"].as_str().and_then(|a| a.parse().ok())
}

/// `hearthnet ui pair`: the code (stdout) and what it said (stderr).
fn pairing_code(sb: &Sandbox) -> (String, String) {
    let run = sb.run(&["ui", "pair"], None);
    assert_eq!(run.code, 0, "{run:?}");
    (run.stdout.trim().to_owned(), run.stderr)
}

#[test]
fn without_the_setting_no_lan_listener_and_no_pairing_code() {
    let sb = Sandbox::new();
    sb.init_non_interactive("den");
    let _node = sb.start_node_with_ui(&[]);
    assert_eq!(lan_addr(&sb), None);
    let run = sb.run(&["ui", "pair"], None);
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stderr.contains("ui.lan_enabled = true"), "{run:?}");
}

#[test]
fn a_phone_pairs_over_https_with_a_code_and_nothing_else_gets_in() {
    let sb = Sandbox::new();
    sb.init_non_interactive("den");
    let _node = sb.start_node_with_ui(&[
        ("HEARTHNET_UI_LAN_ENABLED", "true"),
        ("HEARTHNET_UI_LAN_HOST", "127.0.0.1"),
        ("HEARTHNET_UI_LAN_PORT", "0"),
    ]);
    let lan = lan_addr(&sb).expect("the LAN listener is announced");

    // Plain HTTP gets no page: the LAN listener speaks TLS only.
    let mut plain = TcpStream::connect(lan).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(format!("GET / HTTP/1.1\r\nhost: {lan}\r\nconnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"));

    let (code, said) = pairing_code(&sb);
    assert_eq!(code.len(), 11, "{code}");
    assert!(said.contains(&format!("https://{lan}/pair")), "{said}");
    let fingerprint = said
        .split("fingerprint is ")
        .nth(1)
        .map(str::trim)
        .unwrap_or_default();
    assert_eq!(fingerprint.len(), 95, "{said}");

    let driver = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let origin = format!("https://{lan}");
    common::runtime().block_on(async {
        let c = lan_browser(&driver, profile.path()).await;
        // Without a session: nothing but the pairing form.
        c.goto(&format!("{origin}/")).await.unwrap();
        let body = c
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!body.contains(&sb.key().node_id().full()), "{body}");
        // A login link is for this computer's browser, not the LAN.
        let link = sb.run(&["ui", "link"], None);
        let path = link
            .stdout
            .trim()
            .split_once("/login")
            .unwrap()
            .1
            .to_owned();
        c.goto(&format!("{origin}/login{path}")).await.unwrap();
        assert!(
            c.find(Locator::Id("node-id")).await.is_err(),
            "a login link works on the LAN"
        );

        c.goto(&format!("{origin}/pair")).await.unwrap();
        c.set_window_size(360, 800).await.unwrap();
        let field = c.find(Locator::Id("pair-code")).await.unwrap();
        field.send_keys("AAAAA-AAAAA").await.unwrap();
        click(&c, Locator::Css("form button")).await;
        wait_for(
            &c,
            Locator::Css("[role=alert]"),
            "a wrong code is said to be wrong",
        )
        .await;
        shoot(&c, "pair").await;

        // Typed as a person might: lower case, a space for the dash.
        let typed = code.to_lowercase().replace('-', " ");
        let field = c.find(Locator::Id("pair-code")).await.unwrap();
        field.send_keys(&typed).await.unwrap();
        click(&c, Locator::Css("form button")).await;
        let id = wait_for(&c, Locator::Id("node-id"), "the right code leads to Home").await;
        assert_eq!(id.text().await.unwrap(), sb.key().node_id().full());
        let cookie = c.get_named_cookie("hearthnet_session").await.unwrap();
        assert_eq!(
            cookie.secure(),
            Some(true),
            "the LAN session cookie is Secure"
        );
        assert_eq!(cookie.http_only(), Some(true));
        c.close().await.unwrap();
    });
    // The code was spent.
    let again = sb.run(&["ui", "pair"], None);
    assert_ne!(again.stdout.trim(), code);
}
