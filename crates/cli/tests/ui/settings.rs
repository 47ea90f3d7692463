//! Settings and Join in Chromium against real nodes: an invite made on
//! the page, its QR code read off the screen and used by a new device,
//! which then appears among the members without a reload; the invite
//! checked on Join; the gateway key made on the page and accepted by the
//! gateway.

use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::browser::{
    assert_not_reloaded, browser, chromedriver, click, live_text, log_in, mark, shoot, type_into,
    value_of, wait_for_within,
};
use crate::common::{self, Sandbox};

const WAIT: Duration = Duration::from_secs(30);

/// The text of the one QR code in a PNG screenshot.
fn decode_qr(png_bytes: &[u8]) -> String {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    // Black on white: any one channel is the brightness.
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[(y * w + x) * channels]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code on screen");
    grids[0].decode().expect("the QR code decodes").1
}

/// The UI's `path`, at the origin of the login `link`.
fn page(link: &str, path: &str) -> String {
    format!("{}{path}", &link[..link.find("/login").unwrap()])
}

/// Wait until the image `id` is decoded (a data URL loads after the
/// element is in the page) and scrolled into view.
async fn image_shown(c: &Client, id: &str) {
    // In view too: an element's screenshot holds only what is on screen.
    let script = format!(
        "const i = document.getElementById('{id}'); i.scrollIntoView(); \
         return i.complete && i.naturalWidth > 0"
    );
    let deadline = std::time::Instant::now() + WAIT;
    while c.execute(&script, vec![]).await.unwrap() != serde_json::json!(true) {
        assert!(std::time::Instant::now() < deadline, "the image {id} loads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn an_invite_made_on_settings_scans_joins_a_device_that_appears_live_and_checks_on_join() {
    let founder = Sandbox::new();
    founder.init_non_interactive("founder");
    let mut node = founder.start_node_with_ui(&[]);
    let link = node.first_ui_link();
    let tablet = Sandbox::new();
    let card = tablet.identity_card("tablet");
    let tablet_id = tablet.key().node_id().full();

    let driver = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    common::runtime().block_on(async {
        let c = browser(&driver, profile.path()).await;
        log_in(&c, &link).await;
        click(&c, Locator::LinkText("Settings")).await;
        wait_for_within(&c, WAIT, Locator::Css("#invite-form"), "Settings opens").await;
        let founder_row = format!(
            "#members tr[data-node-id='{}']",
            founder.key().node_id().full()
        );
        wait_for_within(
            &c,
            WAIT,
            Locator::Css(&founder_row),
            "the founder is a member",
        )
        .await;
        shoot(&c, "settings").await;

        mark(&c).await;
        // The member scans the new device's card (a photo of the QR code
        // its join page shows): it lands in the invite form's field.
        let card_png = tablet.home().join("card.png");
        hearthnet_onboarding::Qr::new(&card)
            .unwrap()
            .write_png(&card_png, 4)
            .unwrap();
        type_into(&c, Locator::Id("card-picture"), card_png.to_str().unwrap()).await;
        click(&c, Locator::Css("#card-scan-form button[type=submit]")).await;
        wait_for_within(
            &c,
            WAIT,
            Locator::Css("#card-scanned .done"),
            "the card is read from its picture",
        )
        .await;
        assert_eq!(
            value_of(&c, Locator::Id("invite-card")).await,
            card,
            "the card fills the field"
        );
        shoot(&c, "settings-card-scanned").await;
        type_into(&c, Locator::Css("#invite-name"), "Tablet").await;
        click(&c, Locator::Css("#invite-form button[type=submit]")).await;
        let qr = wait_for_within(
            &c,
            WAIT,
            Locator::Css("#invite-qr"),
            "the invite's QR code is shown",
        )
        .await;
        let shown = value_of(&c, Locator::Id("invite-text")).await;
        assert!(shown.starts_with("hearthnet://v1/"), "{shown}");
        image_shown(&c, "invite-qr").await;
        let scanned = decode_qr(&qr.screenshot().await.unwrap());
        assert_eq!(scanned, shown, "the QR code on screen is the invite");
        shoot(&c, "settings-invite").await;

        // The new device joins with what it scanned.
        let joined = tablet.run(&["init", "--join", &scanned], None);
        assert_eq!(joined.code, 0, "{joined:?}");
        let row = format!("#members tr[data-node-id='{tablet_id}']");
        wait_for_within(
            &c,
            WAIT,
            Locator::Css(&row),
            "the new member appears without a reload",
        )
        .await;
        assert!(live_text(&c, Locator::Css(&row)).await.contains("Member"));
        assert_not_reloaded(&c).await;

        // Join reads the invite back: whose, for whom, without using it.
        c.goto(&page(&link, "/join")).await.unwrap();
        wait_for_within(&c, WAIT, Locator::Css("#join-form"), "Join opens").await;
        shoot(&c, "join").await;
        type_into(&c, Locator::Css("#join-invite"), &scanned).await;
        click(&c, Locator::Css("#join-form button[type=submit]")).await;
        wait_for_within(
            &c,
            WAIT,
            Locator::Css("#invite-check"),
            "the invite is read back",
        )
        .await;
        let community = c
            .find(Locator::Id("invite-community"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(community.contains("founder's community"), "{community}");
        let invitee = c
            .find(Locator::Id("invite-invitee"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            invitee.contains(&tablet.key().node_id().short()),
            "{invitee}"
        );
        // The tablet used it already, and the page knows.
        c.find(Locator::Id("invite-joined")).await.unwrap();
        shoot(&c, "join-checked").await;

        // Not an invite: refused in plain words.
        let field = c.find(Locator::Id("join-invite")).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(&card).await.unwrap();
        click(&c, Locator::Css("#join-form button[type=submit]")).await;
        let alert = wait_for_within(
            &c,
            WAIT,
            Locator::Css("#join-result [role=alert]"),
            "a card is refused",
        )
        .await;
        assert!(alert.text().await.unwrap().contains("identity card"));
        c.close().await.unwrap();
    });
}

#[test]
fn the_gateway_key_made_on_settings_is_shown_once_and_the_gateway_takes_it() {
    let sb = Sandbox::new();
    sb.init_non_interactive("keeper");
    let mut node = sb.start_node_with_ui(&[]);
    let link = node.first_ui_link();
    let api = node.api;
    let settings = page(&link, "/settings");

    let driver = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    common::runtime().block_on(async {
        let c = browser(&driver, profile.path()).await;
        log_in(&c, &link).await;
        c.goto(&settings).await.unwrap();
        let state = wait_for_within(
            &c,
            WAIT,
            Locator::Css("#gateway-state"),
            "the gateway section",
        )
        .await;
        assert!(state.text().await.unwrap().contains("no gateway key"));
        click(&c, Locator::Css("#gateway button[type=submit]")).await;
        let key = wait_for_within(
            &c,
            WAIT,
            Locator::Css("#gateway-key"),
            "the new key is shown",
        )
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
        assert!(key.starts_with("hn-"), "{key}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let models = agent
            .get(format!("http://{api}/v1/models"))
            .header("Authorization", format!("Bearer {key}"))
            .call()
            .unwrap();
        assert_eq!(models.status().as_u16(), 200, "the gateway takes the key");

        // Shown once: the page opened again says a key exists, not which.
        c.goto(&settings).await.unwrap();
        let state = wait_for_within(
            &c,
            WAIT,
            Locator::Css("#gateway-state"),
            "the gateway section",
        )
        .await;
        assert!(state.text().await.unwrap().contains("A gateway key exists"));
        assert!(!c.source().await.unwrap().contains(&key));
        c.close().await.unwrap();
    });
}

/// Replace what the field `css` holds with `text`.
async fn paste(c: &Client, css: &str, text: &str) {
    let field = c.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

#[test]
fn a_revocation_is_proposed_co_signed_and_submitted_on_settings_pages() {
    use crate::common::community::{FAST_SYNC, member_at};

    // Two trusted members with a UI each, reaching one another through
    // the founder; the revocation needs three signatures (the default).
    let founder = Sandbox::new();
    founder.init_non_interactive("founder");
    let _founder_node = founder.start_node(&[FAST_SYNC]);
    let t1 = member_at(&founder, "t1", "trusted");
    let t2 = member_at(&founder, "t2", "trusted");
    let target = member_at(&founder, "target", "member");
    let peers = format!(r#"["{}"]"#, founder.peer_addr());
    let env = [FAST_SYNC, ("HEARTHNET_DISCOVERY_STATIC_PEERS", &peers)];
    let mut t1_node = t1.start_node_with_ui(&env);
    let mut t2_node = t2.start_node_with_ui(&env);
    let _target_node = target.start_node(&env);
    let (t1_link, t2_link) = (t1_node.first_ui_link(), t2_node.first_ui_link());
    for sb in [&founder, &t1, &t2, &target] {
        common::wait_until(WAIT, "every node knows every member", || {
            sb.status().is_some_and(|s| s.community.members == 4)
        });
    }
    let target_id = target.key().node_id().full();

    let driver = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    common::runtime().block_on(async {
        let c = browser(&driver, profile.path()).await;

        // t1 proposes; its node signs at once, and says who may follow.
        log_in(&c, &t1_link).await;
        c.goto(&page(&t1_link, "/settings")).await.unwrap();
        wait_for_within(
            &c,
            WAIT,
            Locator::Css("#change-form"),
            "the co-signing form",
        )
        .await;
        c.find(Locator::Id("change-target"))
            .await
            .unwrap()
            .select_by_value(&target_id)
            .await
            .unwrap();
        c.find(Locator::Id("change-reason"))
            .await
            .unwrap()
            .select_by_value("compromised")
            .await
            .unwrap();
        click(&c, Locator::Css("#change-form button[type=submit]")).await;
        let standing = wait_for_within(
            &c,
            WAIT,
            Locator::Css("#standing[data-missing='2']"),
            "two missing",
        )
        .await;
        assert!(standing.text().await.unwrap().contains("1 of 3"));
        let result = c
            .find(Locator::Id("proposal-result"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for may in [&founder, &t2] {
            let short = may.key().node_id().short();
            assert!(result.contains(&short), "{short} may sign: {result}");
        }
        let proposed = value_of(&c, Locator::Id("standing-text")).await;
        assert!(
            proposed.starts_with("hearthnet-proposal://v1/"),
            "{proposed}"
        );
        shoot(&c, "settings-proposal").await;

        // t2 co-signs it on its own node's page.
        log_in(&c, &t2_link).await;
        c.goto(&page(&t2_link, "/settings")).await.unwrap();
        wait_for_within(
            &c,
            WAIT,
            Locator::Css("#proposal-form"),
            "the proposal form",
        )
        .await;
        paste(&c, "#proposal-text", &proposed).await;
        click(&c, Locator::Css("#proposal-form button[hx-post$='cosign']")).await;
        wait_for_within(
            &c,
            WAIT,
            Locator::Css("#standing[data-missing='1']"),
            "one missing",
        )
        .await;
        let cosigned = value_of(&c, Locator::Id("standing-text")).await;
        assert_ne!(cosigned, proposed);

        // Submitting too early is refused in plain words; nothing changes.
        paste(&c, "#proposal-text", &cosigned).await;
        click(&c, Locator::Css("#proposal-form button[hx-post$='submit']")).await;
        let alert = wait_for_within(
            &c,
            WAIT,
            Locator::Css("#proposal-result [role=alert]"),
            "an early submit",
        )
        .await;
        assert!(alert.text().await.unwrap().contains("1 still missing"));
        let target_row = format!("#members tr[data-node-id='{target_id}']");
        c.find(Locator::Css(&target_row)).await.unwrap();

        // The founder signs from its terminal; t2 submits on the page, and
        // the member leaves the list without a reload.
        let third = founder.run(&["proposal", "cosign", "-"], Some(&cosigned));
        assert_eq!(third.code, 0, "{third:?}");
        paste(&c, "#proposal-text", third.stdout.trim()).await;
        click(&c, Locator::Css("#proposal-form button[hx-post$='submit']")).await;
        let done = wait_for_within(
            &c,
            WAIT,
            Locator::Css("#proposal-result .done"),
            "the submit",
        )
        .await;
        assert!(done.text().await.unwrap().contains("removed"));
        let deadline = std::time::Instant::now() + WAIT;
        while !c
            .find_all(Locator::Css(&target_row))
            .await
            .unwrap()
            .is_empty()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the revoked member leaves the list"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shoot(&c, "settings-revoked").await;
        c.close().await.unwrap();
    });
}
