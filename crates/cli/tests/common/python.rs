//! The Python programs some tests run (the official `openai` client),
//! installed by `scripts/python` (which `scripts/test` runs) into a venv
//! whose interpreter is `HEARTHNET_TEST_PYTHON`, default
//! `target/test-python/bin/python`. A test that finds none fails and says
//! what to run.

use std::path::PathBuf;
use std::process::Command;

/// The venv's interpreter, with nothing of the caller's Python setup
/// inherited.
pub fn command(script: &str) -> Command {
    let python = std::env::var_os("HEARTHNET_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-python/bin/python")
        });
    assert!(
        python.exists(),
        "no test Python at {}: run scripts/python (scripts/test does)",
        python.display()
    );
    let mut cmd = Command::new(python);
    cmd.arg(testdata(script))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// A file of `testdata/`.
pub fn testdata(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(relative)
}
