//! The embedder against sentence-transformers: the packaged
//! all-MiniLM-L6-v2 (`scripts/models` installs it; `HEARTHNET_TEST_MODELS`
//! says where, default `target/test-models`) must give the vectors of
//! `testdata/embed/all-minilm-l6-v2.reference.json` (made by the real
//! library, see `make-reference.py` beside it) to 1e-4 cosine.

use hearthnet_embed::{ModelDir, Pooling};
use hearthnet_test_models::{cosine, minilm, minilm_reference};

#[test]
fn minilm_matches_sentence_transformers() {
    let reference = minilm_reference();
    let sentences: Vec<String> = serde_json::from_value(reference["sentences"].clone()).unwrap();
    let expected: Vec<Vec<f64>> = serde_json::from_value(reference["vectors"].clone()).unwrap();

    let dir = ModelDir::inspect(&minilm()).unwrap();
    assert_eq!(dir.pooling, Pooling::Mean);
    assert!(dir.normalize, "modules.json lists Normalize");
    assert_eq!(
        dir.max_tokens, 256,
        "sentence_bert_config.json, not the tokenizer's 128"
    );
    assert_eq!(dir.dim, 384);
    let model = dir.load().unwrap();

    // All at once (one padded batch, the 300-word text cut at 256 tokens)…
    let together = model.embed(&sentences, false, &|| false).unwrap();
    // …and one by one (no padding): the same vectors.
    for (i, sentence) in sentences.iter().enumerate() {
        let alone = model
            .embed(std::slice::from_ref(sentence), false, &|| false)
            .unwrap();
        let c = cosine(&together[i], &expected[i]);
        assert!(c > 1.0 - 1e-4, "sentence {i} ({sentence:.40}): cosine {c}");
        let c = cosine(&alone[0], &expected[i]);
        assert!(c > 1.0 - 1e-4, "sentence {i} alone: cosine {c}");
        let norm: f32 = together[i].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "sentence {i}: norm {norm}");
    }
    // Different sentences are told apart.
    assert!(cosine(&together[0], &expected[1]) < 0.9);
}

#[test]
fn cancelling_stops_between_batches() {
    let model = ModelDir::inspect(&minilm()).unwrap().load().unwrap();
    let texts = vec!["a text".to_owned(); 3 * hearthnet_embed::model::BATCH];
    let asked = std::cell::Cell::new(0);
    let result = model.embed(&texts, true, &|| {
        asked.set(asked.get() + 1);
        asked.get() > 1
    });
    assert!(matches!(
        result,
        Err(hearthnet_embed::EmbedError::Cancelled)
    ));
    assert_eq!(
        asked.get(),
        2,
        "asked before each batch, stopped at the second"
    );
}
