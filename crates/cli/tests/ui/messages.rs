//! Messages in Chromium against two real nodes of one community: a
//! message written on one node's page appears in the other's open
//! conversation and list of conversations without a reload, and, read
//! there, it turns read on the writer's open conversation, also without a
//! reload.

use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::browser::{
    assert_not_reloaded, browser, chromedriver, click, live_text, log_in, mark, open, shoot,
    type_into, wait_for, wait_for_within,
};
use crate::common;
use crate::market::{TRAVEL, pair};

const TEXT: &str = "Hello Ben, the ladder is yours.";

/// On the Messages page, open the conversation with the member `node`
/// (a full node id), chosen among the members in reach.
async fn converse_with(c: &Client, node: &str) {
    open(c, "Messages", Locator::Id("conversations")).await;
    c.find(Locator::Id("recipient"))
        .await
        .unwrap()
        .select_by_value(node)
        .await
        .unwrap();
    click(c, Locator::Id("open-conversation")).await;
    wait_for(
        c,
        Locator::Id("message-send"),
        "the conversation opens with its form",
    )
    .await;
}

#[test]
fn a_message_appears_live_in_the_open_conversation_and_comes_back_read() {
    let p = pair();
    let (ada, ben) = (p.ada.key().node_id().full(), p.ben.key().node_id().full());
    let ada_short = p.ada.key().node_id().short();
    let driver = chromedriver();
    let (profile_a, profile_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    common::runtime().block_on(async {
        let a = browser(&driver, profile_a.path()).await;
        let b = browser(&driver, profile_b.path()).await;
        log_in(&a, &p.ada_link).await;
        log_in(&b, &p.ben_link).await;
        // B opens its conversation with ada, a member out of its reach
        // (ada dials B, not the other way round), still empty.
        converse_with(&b, &ada).await;
        mark(&b).await;

        converse_with(&a, &ben).await;
        type_into(&a, Locator::Id("message-body"), TEXT).await;
        click(&a, Locator::Css("#message-send button[type='submit']")).await;
        wait_for(&a, Locator::Css("#message-send .done"), "the form says it sent").await;
        // htmx focuses the new form's field as it settles, just after the swap.
        let mut focused = serde_json::Value::Null;
        for _ in 0..50 {
            focused = a
                .execute("return document.activeElement.id", vec![])
                .await
                .unwrap();
            if focused == "message-body" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            focused,
            serde_json::json!("message-body"),
            "the keyboard stays in the form for the next message"
        );
        let mine = format!("//div[@id='thread']//li[contains(@class, 'mine')][p[@class='message-body'][text()='{TEXT}']]");
        wait_for(&a, Locator::XPath(&mine), "the message is in the writer's conversation").await;

        mark(&a).await;

        // On B's open conversation, without a reload.
        let theirs = format!(
            "//div[@id='thread']//li[contains(@class, 'message')][not(contains(@class, 'mine'))][p[@class='message-body'][text()='{TEXT}']]"
        );
        wait_for_within(&b, TRAVEL, Locator::XPath(&theirs), "the message appears in the open conversation").await;
        let conversation = format!("//div[@id='conversations']//a[contains(@href, '{ada}')]");
        wait_for(&b, Locator::XPath(&conversation), "the list of conversations follows").await;
        let text = live_text(&b, Locator::XPath(&conversation)).await;
        assert!(text.contains(&ada_short), "named by its short id: {text}");
        assert!(text.contains(TEXT), "{text}");
        assert_not_reloaded(&b).await;
        shoot(&b, "messages").await;

        // B's page showed it: on A's page it turns read.
        wait_for_within(&a, TRAVEL, Locator::XPath(&format!("{mine}//span[@data-mark='read']")), "the writer sees it read").await;
        assert_not_reloaded(&a).await;
        shoot(&a, "messages-read").await;
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}
