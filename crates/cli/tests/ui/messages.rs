//! Messages in Chromium against two real nodes of one community: a
//! message written on one node's page appears in the other's open
//! conversation and list of conversations without a reload, and, read
//! there, it turns read on the writer's open conversation, also without a
//! reload. A file attached on one page downloads as the same bytes on the
//! other, and a conversation open in a background tab marks nothing read
//! until the tab is in front.

use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::browser::{
    assert_not_reloaded, chromedriver, click, live_attr, live_text, mark, open, shoot, type_into,
    wait_for, wait_for_within,
};
use crate::common;
use crate::files::served;
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
    common::runtime().block_on(async {
        let both = p.log_in_both(&driver).await;
        let (a, b) = (&both.ada, &both.ben);
        // B opens its conversation with ada, a member out of its reach
        // (ada dials B, not the other way round), still empty.
        converse_with(b, &ada).await;
        mark(b).await;

        converse_with(a, &ben).await;
        type_into(a, Locator::Id("message-body"), TEXT).await;
        click(a, Locator::Css("#message-send button[type='submit']")).await;
        wait_for(a, Locator::Css("#message-send .done"), "the form says it sent").await;
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
        wait_for(a, Locator::XPath(&mine), "the message is in the writer's conversation").await;

        mark(a).await;

        // On B's open conversation, without a reload.
        let theirs = format!(
            "//div[@id='thread']//li[contains(@class, 'message')][not(contains(@class, 'mine'))][p[@class='message-body'][text()='{TEXT}']]"
        );
        wait_for_within(b, TRAVEL, Locator::XPath(&theirs), "the message appears in the open conversation").await;
        let conversation = format!("//div[@id='conversations']//a[contains(@href, '{ada}')]");
        wait_for(b, Locator::XPath(&conversation), "the list of conversations follows").await;
        let text = live_text(b, Locator::XPath(&conversation)).await;
        assert!(text.contains(&ada_short), "named by its short id: {text}");
        assert!(text.contains(TEXT), "{text}");
        assert_not_reloaded(b).await;
        shoot(b, "messages").await;

        // B's page showed it: on A's page it turns read.
        wait_for_within(a, TRAVEL, Locator::XPath(&format!("{mine}//span[@data-mark='read']")), "the writer sees it read").await;
        assert_not_reloaded(a).await;
        shoot(a, "messages-read").await;
        both.close().await;
    });
}

/// A manual to attach: text (so the bytes read back through the page
/// compare as a string), over one 256 KiB chunk long.
fn manual() -> String {
    (0..20_000)
        .map(|rung| format!("Rung {rung}: check the feet.\n"))
        .collect()
}

#[test]
fn an_attached_file_arrives_live_downloads_as_its_bytes_and_a_background_tab_marks_nothing_read() {
    let p = pair();
    let ada = p.ada.key().node_id().full();
    let ben = p.ben.key().node_id().full();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ladder-manual.txt");
    let text = manual();
    std::fs::write(&path, &text).unwrap();
    let driver = chromedriver();
    common::runtime().block_on(async {
        // Ben writes; ada reads (ada has ben in reach, so fetches from it).
        let both = p.log_in_both(&driver).await;
        let (writer, reader) = (&both.ben, &both.ada);

        // Ada opens the conversation, then puts another tab in front of it.
        converse_with(reader, &ben).await;
        mark(reader).await;
        reader
            .execute(
                "window.hearthnetSeen = [];
                 document.addEventListener('visibilitychange', () => hearthnetSeen.push(document.visibilityState));
                 return null",
                vec![],
            )
            .await
            .unwrap();
        let conversation_tab = reader.window().await.unwrap();
        let front = reader.new_window(true).await.unwrap();
        reader.switch_to_window(front.handle).await.unwrap();

        // Ben attaches the manual to a message: uploaded with its progress,
        // listed in the form, then sent.
        converse_with(writer, &ada).await;
        type_into(writer, Locator::Id("message-files"), &path.display().to_string()).await;
        type_into(writer, Locator::Id("message-body"), "The manual, as promised.").await;
        click(writer, Locator::Css("#message-send button[type='submit']")).await;
        wait_for_within(writer, TRAVEL, Locator::Css("#message-send .done"), "the message with its file is sent").await;
        let link = "a[contains(@href, '/files/blob/')][text()='ladder-manual.txt']";
        let mine = format!("//div[@id='thread']//li[contains(@class, 'mine')][.//{link}]");
        wait_for(writer, Locator::XPath(&mine), "the message is in the writer's conversation with its file").await;
        let said = live_text(writer, Locator::XPath(&mine)).await;
        assert!(said.contains("The manual, as promised."), "{said}");
        assert!(said.contains("KiB"), "the writer's node holds it: its size is shown: {said}");
        shoot(writer, "messages-attachment-sent").await;

        // Ada's node has it, but her conversation is in a background tab:
        // delivered, and still not read after several live updates.
        let mark_of = format!("{mine}//span[@data-mark]");
        wait_for_within(writer, TRAVEL, Locator::XPath(&format!("{mine}//span[@data-mark='delivered']")), "the reader's node has it").await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            live_attr(writer, Locator::XPath(&mark_of), "data-mark").await,
            "delivered",
            "a background tab marks nothing read"
        );

        // Ada's conversation in front again: the message is there, live.
        reader.close_window().await.unwrap();
        reader.switch_to_window(conversation_tab).await.unwrap();
        let seen = reader.execute("return window.hearthnetSeen", vec![]).await.unwrap();
        assert_eq!(seen[0], "hidden", "the conversation's tab was in the background: {seen}");
        let theirs = format!("//div[@id='thread']//li[not(contains(@class, 'mine'))][.//{link}]");
        wait_for_within(reader, TRAVEL, Locator::XPath(&theirs), "the message with its file is in the open conversation").await;
        assert_not_reloaded(reader).await;
        shoot(reader, "messages-attachment-received").await;
        // Now in front of her, it turns read on ben's page.
        wait_for_within(writer, TRAVEL, Locator::XPath(&format!("{mine}//span[@data-mark='read']")), "read once the tab is in front").await;

        // The link downloads exactly the manual's bytes (fetched from ben).
        let href = live_attr(reader, Locator::XPath(&format!("{theirs}//a")), "href").await;
        let got = served(reader, &href).await;
        assert_eq!(got.len(), text.len(), "{}", &got[..got.len().min(200)]);
        assert!(got == text, "other bytes than the file's");
        both.close().await;
    });
}
