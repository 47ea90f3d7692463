//! X04: the node's configuration.
//!
//! Owns `config.toml` (its schema, defaults, validation and atomic saving),
//! the XDG directory layout of the GLOSSARY, and `HEARTHNET_<SECTION>_<KEY>`
//! environment overrides. Every other crate receives a [`Config`]; none reads
//! files, flags or environment variables for its settings.
//!
//! Errors name the file (or environment variable), the key, the value and
//! what was expected; unknown keys are errors, never silently dropped.

mod env;
mod error;
mod llm;
mod locate;
mod paths;
pub mod runtime;
mod schema;
mod values;

pub use env::Env;
pub use error::{ConfigError, Origin};
pub use llm::{ApiKey, BaseUrl, BaseUrlError};
pub use paths::{BaseDirs, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, PrivateError};
pub use schema::*;

use std::path::{Path, PathBuf};

/// Sections of the file, in the order they are written.
pub const SECTIONS: [&str; 15] = [
    "identity",
    "community",
    "transport",
    "bus",
    "discovery",
    "events",
    "file",
    "embedding",
    "llm",
    "rag",
    "market",
    "chat",
    "emergency",
    "ui",
    "observability",
];

/// A loaded, validated configuration plus where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The file it was read from, or would be written to.
    pub path: PathBuf,
    /// Whether that file existed (otherwise every value is a default).
    pub file_existed: bool,
    pub dirs: BaseDirs,
}

impl LoadedConfig {
    /// Resolved locations of everything the node keeps on disk.
    pub fn paths(&self) -> NodePaths {
        NodePaths::resolve(&self.config, &self.dirs)
    }
}

/// Load the configuration: `explicit` (from `--config`), else
/// Where `hearthnet init` looks for models installed as Python packages:
/// directories separated by `:`, searched instead of Python's own
/// site-packages (empty: search nowhere). Not a config override.
pub const MODELS_PATH_ENV: &str = "HEARTHNET_MODELS_PATH";

/// `$HEARTHNET_CONFIG`, else `<CONFIG>/config.toml`. A missing file at the
/// default location means "all defaults"; a missing explicit file is an
/// error.
pub fn load(explicit: Option<&Path>, env: &Env) -> Result<LoadedConfig, ConfigError> {
    let dirs = BaseDirs::from_env(env)?;
    let (path, must_exist) = config_path(explicit, env, &dirs);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => None,
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let config = schema::parse(text.as_deref(), &path, env)?;
    Ok(LoadedConfig {
        config,
        file_existed: text.is_some(),
        path,
        dirs,
    })
}

/// The parsing and validation of [`load`] on `text` as if read from a file,
/// for the fuzz targets (`fuzz/`) only: not part of the crate's API.
#[cfg(feature = "fuzzing")]
pub fn fuzz_parse(text: &str, env: &Env) -> Result<Config, ConfigError> {
    schema::parse(Some(text), Path::new("config.toml"), env)
}

/// Which file to read, and whether it must exist: `explicit`, else
/// `$HEARTHNET_CONFIG` (both must exist), else `<CONFIG>/config.toml`.
pub fn config_path(explicit: Option<&Path>, env: &Env, dirs: &BaseDirs) -> (PathBuf, bool) {
    match (explicit, env.get("HEARTHNET_CONFIG")) {
        (Some(p), _) => (p.to_path_buf(), true),
        (None, Some(p)) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (dirs.config.join("config.toml"), false),
    }
}

/// Write `config` to `path` atomically, so a crash leaves either the old
/// file or the new one, never half of either.
pub fn save(config: &Config, path: &Path) -> Result<(), ConfigError> {
    let text = config.to_toml()?;
    hearthnet_base::fsio::atomic_write(path, text.as_bytes(), 0o644).map_err(|source| {
        ConfigError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}
