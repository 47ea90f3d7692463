//! Files in Chromium: a file added on one node's page is fetched by its
//! CID on a neighbour's page, and the neighbour then serves the same
//! bytes.

use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::browser::{browser, chromedriver, click, log_in, shoot, type_into, wait_for_within};
use crate::common::{self, Sandbox, community};

const WAIT: Duration = Duration::from_secs(60);

/// Text content, so the bytes read back through the browser compare as
/// a string: letters from a fixed seed, over one chunk (256 KiB) long.
fn content() -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

async fn open_files(c: &Client) {
    click(c, Locator::LinkText("Files")).await;
    wait_for_within(c, WAIT, Locator::Id("files-list"), "Files opens").await;
}

/// The bytes the page's own origin serves at `path`, fetched by the page
/// (its session cookie included).
pub async fn served(c: &Client, path: &str) -> String {
    let got = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0]).then(r => r.ok ? r.text() : 'status ' + r.status).then(done, e => done('failed ' + e));",
            vec![serde_json::json!(path)],
        )
        .await
        .unwrap();
    got.as_str().unwrap_or_default().to_owned()
}

#[test]
fn in_chromium_a_file_added_on_one_node_is_fetched_by_its_cid_on_another() {
    let a = Sandbox::new();
    a.init_non_interactive("a");
    let mut node_a = a.start_node_with_ui(&[community::FAST_SYNC]);
    let b = community::member(&a, "b");
    let peers = format!(r#"["{}"]"#, a.peer_addr());
    let mut node_b = b.start_node_with_ui(&[
        community::FAST_SYNC,
        ("HEARTHNET_DISCOVERY_STATIC_PEERS", &peers),
    ]);
    b.wait_for_peers(1);
    let link_a = node_a.first_ui_link();
    let link_b = node_b.first_ui_link();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let text = content();
    std::fs::write(&path, &text).unwrap();

    let driver = chromedriver();
    let (profile_a, profile_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    common::runtime().block_on(async {
        let ca = browser(&driver, profile_a.path()).await;
        log_in(&ca, &link_a).await;
        open_files(&ca).await;
        shoot(&ca, "files-empty").await;

        // Add it, pinned: the progress bar fills and the CID is shown.
        type_into(&ca, Locator::Id("upload-file"), &path.display().to_string()).await;
        click(&ca, Locator::Css("#upload-form input[name=pin]")).await;
        click(&ca, Locator::Css("#upload-form button[type=submit]")).await;
        let cid = wait_for_within(&ca, WAIT, Locator::Id("added-cid"), "the upload is acknowledged with its CID").await
            .text()
            .await
            .unwrap();
        assert!(cid.starts_with("blake3:"), "{cid}");
        let bar = ca
            .execute(
                "const b = document.getElementById('upload-progress'); return [b.value, b.max]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(bar[0], bar[1], "the progress bar is full: {bar}");
        assert!(bar[1].as_f64().unwrap() >= text.len() as f64, "{bar}");
        // The list follows without a reload, pinned.
        let row = wait_for_within(&ca, WAIT, Locator::Css(&format!("#files-list [data-cid='{cid}']")), "the new file is listed").await;
        let listed = row.text().await.unwrap();
        assert!(listed.contains("Pinned: yes"), "{listed}");
        assert!(listed.contains("notes.txt"), "listed under its name: {listed}");
        shoot(&ca, "files").await;

        // A malformed CID is refused in plain words on B.
        let cb = browser(&driver, profile_b.path()).await;
        log_in(&cb, &link_b).await;
        open_files(&cb).await;
        let field = cb.find(Locator::Id("fetch-cid")).await.unwrap();
        field.send_keys("blake3:not-a-cid").await.unwrap();
        click(&cb, Locator::Css("form[hx-post='/files/fetch'] button")).await;
        let refusal = wait_for_within(&cb, WAIT, Locator::Css("#fetch-result .alert"), "a refusal").await;
        assert!(
            refusal.text().await.unwrap().contains("not a content ID"),
            "{}",
            refusal.text().await.unwrap()
        );

        // Fetched by its CID from A, with its progress, then listed.
        field.clear().await.unwrap();
        field.send_keys(&cid).await.unwrap();
        click(&cb, Locator::Css("form[hx-post='/files/fetch'] button")).await;
        let outcome = wait_for_within(&cb, WAIT, Locator::Css("#fetch-end .done, #fetch-end .alert"), "the fetch ends").await;
        let said = outcome.text().await.unwrap();
        assert!(said.contains("Fetched from the neighbours"), "{said}");
        let progress = cb
            .execute(
                "const p = document.querySelector('#fetch-result progress'); return p && [p.value, p.max]",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            progress[0] == progress[1] && progress[1].as_f64().unwrap() >= text.len() as f64,
            "the fetch's progress was shown, full at the end: {progress}"
        );
        wait_for_within(&cb, WAIT, Locator::Css(&format!("#files-list [data-cid='{cid}']")), "the fetched file is listed").await;
        shoot(&cb, "files-fetched").await;

        // Pinned on B from its row, the row then says so.
        let row = format!("#files-list [data-cid='{cid}']");
        click(&cb, Locator::Css(&format!("{row} button"))).await;
        let pinned = wait_for_within(&cb, WAIT, Locator::Css("#pin-result .done, #pin-result .alert"), "the pin is acknowledged").await;
        let said = pinned.text().await.unwrap();
        assert!(said.contains("Pinned: this node keeps it"), "{said}");
        wait_for_within(&cb, WAIT, Locator::Css(&format!("{row}[data-pinned='true']")), "the list shows it pinned").await;

        // The bytes B now serves are the file's.
        let got = served(&cb, &format!("/files/blob/{cid}")).await;
        assert_eq!(got.len(), text.len());
        assert!(got == text, "B serves other bytes");

        ca.close().await.unwrap();
        cb.close().await.unwrap();
    });
}
