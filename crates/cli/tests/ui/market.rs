//! Market in Chromium against two real nodes of one community: an offer
//! posted on one node's page appears on the other's open page without a
//! reload, and goes from it when its author ends it.

use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::browser::{
    Driver, assert_not_reloaded, browser, chromedriver, click, live_click, live_text, log_in, mark,
    open, shoot, type_into, wait_for, wait_for_within,
};
use crate::common::community::{FAST_SYNC, member};
use crate::common::{self, RunningNode, Sandbox};

/// How long a post or a message may take to reach the other node's page
/// (sync runs every second).
pub const TRAVEL: Duration = Duration::from_secs(40);

/// Two members running with their web UIs: `ben` founded the community,
/// `ada` joined by invite and dials ben, so ada has ben in reach (ben
/// does not list ada among its verified peers).
pub struct Pair {
    pub ada: Sandbox,
    pub ben: Sandbox,
    pub ada_link: String,
    pub ben_link: String,
    _nodes: [RunningNode; 2],
}

pub fn pair() -> Pair {
    let ben = Sandbox::new();
    ben.init_non_interactive("ben");
    let mut ben_node = ben.start_node_with_ui(&[FAST_SYNC]);
    let ada = member(&ben, "ada");
    let peers = format!("[\"{}\"]", ben.peer_addr());
    let mut ada_node =
        ada.start_node_with_ui(&[FAST_SYNC, ("HEARTHNET_DISCOVERY_STATIC_PEERS", &peers)]);
    ada.wait_for_peers(1);
    Pair {
        ada_link: ada_node.first_ui_link(),
        ben_link: ben_node.first_ui_link(),
        ada,
        ben,
        _nodes: [ada_node, ben_node],
    }
}

/// A headless browser logged in on each node's UI; the profiles go last.
pub struct LoggedIn {
    pub ada: Client,
    pub ben: Client,
    _profiles: [tempfile::TempDir; 2],
}

impl Pair {
    pub async fn log_in_both(&self, driver: &Driver) -> LoggedIn {
        let profiles = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let ada = browser(driver, profiles[0].path()).await;
        let ben = browser(driver, profiles[1].path()).await;
        log_in(&ada, &self.ada_link).await;
        log_in(&ben, &self.ben_link).await;
        LoggedIn {
            ada,
            ben,
            _profiles: profiles,
        }
    }
}

impl LoggedIn {
    pub async fn close(self) {
        self.ada.close().await.unwrap();
        self.ben.close().await.unwrap();
    }
}

const POST: &str = "//li[contains(@class, 'post')][h3[text()='Ladder to lend']]";

#[test]
fn an_offer_posted_on_one_node_appears_live_on_the_other_and_goes_when_ended() {
    let p = pair();
    let driver = chromedriver();
    common::runtime().block_on(async {
        let both = p.log_in_both(&driver).await;
        let (a, b) = (&both.ada, &both.ben);
        open(b, "Market", Locator::Id("no-posts")).await;
        mark(b).await;

        open(a, "Market", Locator::Id("market-post")).await;
        let field = |id: &'static str| a.find(Locator::Id(id));
        field("post-title")
            .await
            .unwrap()
            .send_keys("Ladder to lend")
            .await
            .unwrap();
        field("post-body")
            .await
            .unwrap()
            .send_keys("Three metres, aluminium. Collect any evening.")
            .await
            .unwrap();
        field("post-tags")
            .await
            .unwrap()
            .send_keys("Tools, ladder")
            .await
            .unwrap();
        field("post-category")
            .await
            .unwrap()
            .select_by_value("offer")
            .await
            .unwrap();
        let days = field("post-days").await.unwrap();
        days.clear().await.unwrap();
        days.send_keys("3").await.unwrap();
        // Submitted twice at once (an impatient double click): one post.
        a.execute(
            "const b = document.getElementById('post-submit'); b.click(); b.click(); return null",
            vec![],
        )
        .await
        .unwrap();
        wait_for(a, Locator::Css("#market-post .done"), "the post form says it posted").await;
        let title = field("post-title").await.unwrap();
        assert_eq!(
            title.prop("value").await.unwrap().as_deref(),
            Some(""),
            "the form is fresh for the next post"
        );
        wait_for(a, Locator::XPath(POST), "the post is in the poster's own list").await;

        // On B's open page, without a reload: as A wrote it, not B's own.
        wait_for_within(b, TRAVEL, Locator::XPath(POST), "the post reaches the other node's open page").await;
        let text = live_text(b, Locator::XPath(POST)).await;
        let author = p.ada.key().node_id().short();
        for part in [
            "Offer",
            &author,
            "Three metres, aluminium.",
            "tools",
            "ladder",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        assert!(
            b.find(Locator::XPath(&format!("{POST}//form")))
                .await
                .is_err(),
            "no end button on someone else's post"
        );
        assert_not_reloaded(b).await;
        for c in [&a, &b] {
            let copies = c.find_all(Locator::XPath(POST)).await.unwrap();
            assert_eq!(copies.len(), 1, "posted once");
        }
        shoot(b, "market").await;

        // A filter by a tag the post does not carry shows it not.
        type_into(b, Locator::Css("form.market-find input[name='tag']"), "bread").await;
        click(b, Locator::Css("form.market-find button")).await;
        wait_for(b, Locator::Id("no-posts"), "nothing tagged bread").await;
        click(b, Locator::LinkText("Show everything")).await;
        wait_for(b, Locator::XPath(POST), "the post is listed again").await;

        // A search finds it by its words (no neighbour embeds) and says so;
        // the searched page follows the posts too.
        type_into(b, Locator::Css("form.market-find input[name='q']"), "aluminium").await;
        click(b, Locator::Css("form.market-find button")).await;
        // (The list is fetched again as the live stream starts: wait for
        // the words, not for an element to read.)
        wait_for(b, Locator::XPath(
                "//div[@id='market-posts']//p[contains(@class, 'ranking')][contains(., 'words they contain')]",
            ), "the search says it ranked by full text").await;
        wait_for(b, Locator::XPath(POST), "the search finds the post").await;
        mark(b).await;

        // A ends it: it goes from both pages.
        live_click(
            a,
            Locator::XPath(&format!("{POST}//form[@class='expire']//button")),
        )
        .await;
        wait_for(a, Locator::Css("#market-feedback .done"), "ending says so").await;
        wait_for(a, Locator::Id("no-posts"), "gone from the author's list").await;
        wait_for_within(b, TRAVEL, Locator::Id("no-posts"), "gone from the other node's open search").await;
        assert_not_reloaded(b).await;
        shoot(a, "market-ended").await;
        both.close().await;
    });
    drop(p);
}
