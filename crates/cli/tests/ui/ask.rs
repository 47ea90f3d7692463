//! Ask in Chromium against a node serving SmolLM2 and MiniLM: a document
//! added to a collection on the page, then a question whose answer grows
//! on the page token by token, with a source that opens the document.

use std::path::Path;
use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::browser::{browser, chromedriver, click, log_in, shoot, type_into, wait_for_within};
use crate::common::{self, Sandbox, models};
use crate::files::served;

const SMOLLM: &str = "smollm2-135m";
const WAIT: Duration = Duration::from_secs(180);

async fn js(c: &Client, script: &str) -> serde_json::Value {
    c.execute(script, vec![]).await.unwrap()
}

#[test]
fn in_chromium_a_question_is_answered_token_by_token_with_its_sources() {
    let water = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/rag/water.md")
        .canonicalize()
        .unwrap();
    let embed_dir = models::minilm().display().to_string();
    let backends = models::gguf_backend(SMOLLM, &models::smollm(), 1);
    let sb = Sandbox::new();
    sb.init_non_interactive("librarian");
    let mut node = sb.start_node_with_ui(&[
        ("HEARTHNET_EMBEDDING_MODEL", "all-minilm-l6-v2"),
        ("HEARTHNET_EMBEDDING_MODEL_DIR", &embed_dir),
        ("HEARTHNET_LLM_BACKENDS", &backends),
    ]);
    let link = node.first_ui_link();
    let driver = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    common::runtime().block_on(async {
        let c = browser(&driver, profile.path()).await;
        log_in(&c, &link).await;
        click(&c, Locator::Css("nav a[href='/ask']")).await;
        wait_for_within(&c, WAIT, Locator::Id("ask-form"), "Ask opens").await;
        let model = c.find(Locator::Css("#model option")).await.unwrap();
        assert_eq!(model.attr("value").await.unwrap().as_deref(), Some(SMOLLM));

        // A document into a new collection, from the page.
        type_into(&c, Locator::Id("ingest-file"), &water.display().to_string()).await;
        type_into(&c, Locator::Id("ingest-corpus"), "outage").await;
        click(&c, Locator::Css("#ingest-form button[type=submit]")).await;
        let added = wait_for_within(&c, WAIT, Locator::Css("#ingest-result .done, #ingest-result .alert"), "the document is acknowledged").await;
        let said = added.text().await.unwrap();
        assert!(said.contains("passages indexed"), "{said}");

        // On the page again, the collection is offered (and chosen first).
        c.refresh().await.unwrap();
        let corpus = wait_for_within(&c, WAIT, Locator::Css("#corpus option[value='outage']"), "the new collection is offered").await;
        assert_eq!(corpus.prop("selected").await.unwrap().as_deref(), Some("true"));

        // Every change of the answer's text, as the page sees it.
        js(
            &c,
            "window.answerLengths = [];
             new MutationObserver(() => {
               const a = document.getElementById('answer-text');
               if (a) { window.answerLengths.push(a.textContent.length); }
             }).observe(document.getElementById('answer'), {childList: true, subtree: true, characterData: true});
             return null",
        )
        .await;
        type_into(&c, Locator::Id("question"), "How long should water be boiled?").await;
        click(&c, Locator::Css("#ask-form button[type=submit]")).await;
        let cite = wait_for_within(&c, WAIT, Locator::Css("#citations a"), "the sources are shown").await;
        let end = wait_for_within(&c, WAIT, Locator::Css("#answer-end .done, #answer-end .alert"), "the answer ends").await;
        let said = end.text().await.unwrap();
        assert!(said.contains("Answered by smollm2-135m"), "{said}");

        let answer = c.find(Locator::Id("answer-text")).await.unwrap();
        assert!(!answer.text().await.unwrap().trim().is_empty());
        let tokens = js(&c, "return document.querySelectorAll('#answer-text span').length").await;
        assert!(tokens.as_u64().unwrap() > 1, "{tokens}");
        let lengths = js(&c, "return window.answerLengths").await;
        let mut grown: Vec<u64> = lengths
            .as_array()
            .unwrap()
            .iter()
            .filter_map(serde_json::Value::as_u64)
            .filter(|n| *n > 0)
            .collect();
        grown.dedup();
        assert!(
            grown.len() > 1 && grown.windows(2).all(|w| w[0] < w[1]),
            "the answer grew in steps: {lengths}"
        );

        // The source opens the document it cites.
        let href = cite.attr("href").await.unwrap().unwrap();
        assert!(href.starts_with("/files/blob/blake3:"), "{href}");
        assert_eq!(served(&c, &href).await, std::fs::read_to_string(&water).unwrap());
        shoot(&c, "ask").await;

        // Nothing matches: said so, no model asked.
        c.find(Locator::Id("question"))
            .await
            .unwrap()
            .clear()
            .await
            .unwrap();
        type_into(&c, Locator::Id("question"), "xylophone quasar zeppelin").await;
        click(&c, Locator::Css("#ask-form button[type=submit]")).await;
        let nothing = wait_for_within(&c, WAIT, Locator::Css("#answer > .done"), "nothing matches").await;
        assert!(nothing.text().await.unwrap().contains("model was not asked"));
        c.close().await.unwrap();
    });
}
