//! The new device's join page in Chromium against real nodes: a device
//! that has a key but no community runs `hearthnet run` and serves its
//! join page; its card read off the page makes an invite on the founder's
//! node; a picture of the invite's QR code uploaded there joins it, and
//! the browser lands on the full UI's Home, still logged in, while the
//! founder lists the new member. Without its UI such a device refuses to
//! run, as before.

use std::time::Duration;

use fantoccini::Locator;

use crate::browser::{
    browser, chromedriver, click, live_text, log_in, shoot, value_of, wait_for_within,
};
use crate::common::{self, Sandbox};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_device_that_has_not_joined_refuses_to_run_without_its_web_ui() {
    let sb = Sandbox::new();
    sb.identity_card("tablet");
    for env in [vec![], vec![("HEARTHNET_UI_ENABLED", "false")]] {
        let args: &[&str] = if env.is_empty() {
            &["run", "--no-ui"]
        } else {
            &["run"]
        };
        let run = sb.run_with_env(args, &env);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.stderr.contains("has not joined a community yet"),
            "{run:?}"
        );
        assert!(run.stderr.contains("hearthnet init --join"), "{run:?}");
        assert!(!run.stdout.contains("http://"), "no page: {run:?}");
    }
}

#[test]
fn a_new_device_shows_its_card_scans_its_invite_joins_and_lands_on_home() {
    let founder = Sandbox::new();
    founder.init_non_interactive("founder");
    let mut founder_node = founder.start_node_with_ui(&[]);
    let founder_link = founder_node.first_ui_link();
    let tablet = Sandbox::new();
    tablet.identity_card("tablet");
    let tablet_id = tablet.key().node_id().full();
    let mut joining = tablet.start_joining();
    let link = joining.first_ui_link();

    let driver = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    common::runtime().block_on(async {
        let c = browser(&driver, profile.path()).await;
        c.goto(&link).await.unwrap();
        let card = wait_for_within(&c, WAIT, Locator::Id("card-text"), "the join page")
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap();
        assert!(card.starts_with("hearthnet-id://"), "{card}");
        assert!(
            !c.current_url().await.unwrap().as_str().contains("token"),
            "the token leaves the address bar"
        );
        c.find(Locator::Id("card-qr")).await.unwrap();
        shoot(&c, "join-device").await;

        // The member makes the invite for the card the page shows.
        let (invite, png) = common::invite(&founder, &card, &[]);

        // A picture of its QR code, through the file input.
        c.find(Locator::Id("scan-file"))
            .await
            .unwrap()
            .send_keys(png.to_str().unwrap())
            .await
            .unwrap();
        click(&c, Locator::Css("#scan-form button[type=submit]")).await;
        wait_for_within(
            &c,
            WAIT,
            Locator::Css("#redeem-form"),
            "the invite read off the picture",
        )
        .await;
        let community = live_text(&c, Locator::Id("invite-community")).await;
        assert!(community.contains("founder's community"), "{community}");
        let held = value_of(&c, Locator::Css("#redeem-form input[name=invite]")).await;
        assert_eq!(held, invite, "the picture held the invite");
        shoot(&c, "join-device-invite").await;

        // Join: the node becomes a member and the browser lands on Home.
        click(&c, Locator::Css("#redeem-form button[type=submit]")).await;
        let id = wait_for_within(&c, WAIT, Locator::Id("node-id"), "Home after joining").await;
        assert_eq!(id.text().await.unwrap(), tablet_id);
        let home = c
            .find(Locator::Css("main"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(home.contains("founder's community"), "{home}");
        shoot(&c, "join-device-home").await;

        // The founder lists the new member.
        log_in(&c, &founder_link).await;
        c.goto(&format!(
            "{}/settings",
            &founder_link[..founder_link.find("/login").unwrap()]
        ))
        .await
        .unwrap();
        let row = format!("#members tr[data-node-id='{tablet_id}']");
        wait_for_within(&c, WAIT, Locator::Css(&row), "the founder lists the tablet").await;
        c.close().await.unwrap();
    });
    // A member now: the tablet's node answers as one.
    let status = tablet.status().expect("the tablet's node runs in full");
    assert_eq!(status.node.id.full(), tablet_id);
    drop(joining);
}
