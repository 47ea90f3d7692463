//! Ask in Chromium against a node serving SmolLM2 and MiniLM: a document
//! added to a collection on the page, then a question whose answer grows
//! on the page token by token, with a source that opens the document.

use std::path::Path;
use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::browser::{browser, chromedriver, log_in, shoot};
use crate::common::{self, Sandbox, models};
use crate::files::served;

const SMOLLM: &str = "smollm2-135m";
const WAIT: Duration = Duration::from_secs(180);

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

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
        click(&c, "nav a[href='/ask']").await;
        c.wait()
            .at_most(WAIT)
            .for_element(Locator::Id("ask-form"))
            .await
            .unwrap();
        let model = c.find(Locator::Css("#model option")).await.unwrap();
        assert_eq!(model.attr("value").await.unwrap().as_deref(), Some(SMOLLM));

        // A document into a new collection, from the page.
        c.find(Locator::Id("ingest-file"))
            .await
            .unwrap()
            .send_keys(&water.display().to_string())
            .await
            .unwrap();
        c.find(Locator::Id("ingest-corpus"))
            .await
            .unwrap()
            .send_keys("outage")
            .await
            .unwrap();
        click(&c, "#ingest-form button[type=submit]").await;
        let added = c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("#ingest-result .done, #ingest-result .alert"))
            .await
            .expect("the document is acknowledged");
        let said = added.text().await.unwrap();
        assert!(said.contains("passages indexed"), "{said}");

        // On the page again, the collection is offered (and chosen first).
        c.refresh().await.unwrap();
        let corpus = c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("#corpus option[value='outage']"))
            .await
            .expect("the new collection is offered");
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
        c.find(Locator::Id("question"))
            .await
            .unwrap()
            .send_keys("How long should water be boiled?")
            .await
            .unwrap();
        click(&c, "#ask-form button[type=submit]").await;
        let cite = c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("#citations a"))
            .await
            .expect("the sources are shown");
        let end = c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("#answer-end .done, #answer-end .alert"))
            .await
            .expect("the answer ends");
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
        c.find(Locator::Id("question"))
            .await
            .unwrap()
            .send_keys("xylophone quasar zeppelin")
            .await
            .unwrap();
        click(&c, "#ask-form button[type=submit]").await;
        let nothing = c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("#answer > .done"))
            .await
            .expect("nothing matches");
        assert!(nothing.text().await.unwrap().contains("model was not asked"));
        c.close().await.unwrap();
    });
}
