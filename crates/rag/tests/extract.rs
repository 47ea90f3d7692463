//! The text of the documents in `testdata/rag`, as ingest reads it.

mod common;

use common::testdata;
use hearthnet_rag::chunk::chunk_pages;
use hearthnet_rag::extract::{Hint, Media, extract};

#[test]
fn a_hand_written_pdf_gives_its_text_page_by_page() {
    let e = extract(testdata("two-pages.pdf"), Hint::default()).unwrap();
    assert_eq!(e.media, Media::Pdf);
    assert_eq!(e.pages.len(), 2);
    assert_eq!(e.pages[0].number, Some(1));
    let first = e.pages[0]
        .text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        first,
        "Rainwater from the roof barrel must be boiled for one minute before anyone drinks it."
    );
    assert!(e.pages[1].text.contains("Kirchplatz 7"), "{:?}", e.pages[1]);
    let chunks = chunk_pages(&e.pages);
    assert_eq!(
        chunks.iter().map(|c| c.page).collect::<Vec<_>>(),
        [Some(1), Some(2)]
    );
}

#[test]
fn html_keeps_its_text_and_title_but_not_script_or_style() {
    let e = extract(testdata("pump.html"), Hint::default()).unwrap();
    assert_eq!(e.media, Media::Html);
    assert_eq!(
        e.title.as_deref(),
        Some("The Kirchplatz hand pump & its keys")
    );
    let text = e.pages[0]
        .text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for kept in [
        "The hand pump at Kirchplatz 7 works without electricity. Its key hangs in the bakery.",
        "Pump slowly: twenty strokes fill a bucket.",
        "Report a broken seal to Jonas Weber.",
        "Depth",
        "14 m",
    ] {
        assert!(text.contains(kept), "{kept:?} is missing from {text:?}");
    }
    for dropped in ["console.log", "font-family", "never indexed"] {
        assert!(!text.contains(dropped), "{dropped:?} is in {text:?}");
    }
}

#[test]
fn markdown_keeps_its_text_without_markup() {
    let e = extract(
        testdata("water.md"),
        Hint {
            mime: None,
            filename: Some("water.md"),
        },
    )
    .unwrap();
    assert_eq!(e.media, Media::Markdown);
    assert_eq!(e.title.as_deref(), Some("Drinking water in an outage"));
    let text = &e.pages[0].text;
    for kept in [
        "When the mains fail, rainwater from the roof barrel is safe only\nafter it has been filtered and boiled.",
        "Bring the water to a rolling boil for one minute; at altitude, three.",
        "filter -> boil -> cool -> covered can",
        "Never store boiled water in an open bucket.",
    ] {
        assert!(text.contains(kept), "{kept:?} is missing from {text:?}");
    }
    assert!(
        !text.contains("**") && !text.contains("```") && !text.contains("# "),
        "{text}"
    );
}
