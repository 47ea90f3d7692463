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

use serde::Deserialize;
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
    /// `config` as loaded: [`save`] writes the changes made since.
    as_loaded: Config,
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
        as_loaded: config.clone(),
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

/// What `loaded`'s file says now, without this run's `HEARTHNET_*`
/// overrides (all defaults when there is no file): another process may
/// have written it since it was loaded.
pub fn saved(loaded: &LoadedConfig) -> Result<Config, ConfigError> {
    let text = match std::fs::read_to_string(&loaded.path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(ConfigError::Read {
                path: loaded.path.clone(),
                source,
            });
        }
    };
    let no_overrides = Env::from_pairs(std::iter::empty::<(&str, &str)>());
    schema::parse(text.as_deref(), &loaded.path, &no_overrides)
}

/// Write the changes made to `loaded.config` since it was loaded to its
/// file, over what the file says now (read again, without overrides): a
/// value that came from a `HEARTHNET_*` variable of this run is not
/// written unless it was changed, and an edit made to the file meanwhile
/// is kept. A file that is valid only with this run's overrides is
/// written back with them. Atomic, so a crash leaves either the old file
/// or the new one, never half of either.
pub fn save(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    let table =
        |c: &Config| toml::Table::try_from(c).map_err(|e| ConfigError::Encode(e.to_string()));
    let file_now = match saved(loaded) {
        Ok(config) => config,
        Err(ConfigError::Read { path, source }) => return Err(ConfigError::Read { path, source }),
        Err(_) => loaded.as_loaded.clone(),
    };
    let mut file = table(&file_now)?;
    changes_onto(
        &mut file,
        &table(&loaded.as_loaded)?,
        &table(&loaded.config)?,
    );
    let config = Config::deserialize(toml::Value::Table(file))
        .map_err(|e| ConfigError::Encode(e.to_string()))?;
    let text = config.to_toml()?;
    hearthnet_base::fsio::atomic_write(&loaded.path, text.as_bytes(), 0o644).map_err(|source| {
        ConfigError::Write {
            path: loaded.path.clone(),
            source,
        }
    })
}

/// Set in `file` every key whose value differs between `before` and
/// `after` (tables key by key, anything else whole), and remove what
/// `after` no longer has.
fn changes_onto(file: &mut toml::Table, before: &toml::Table, after: &toml::Table) {
    for (key, now) in after {
        match (before.get(key), now) {
            (Some(was), _) if was == now => {}
            (Some(toml::Value::Table(was)), toml::Value::Table(now)) => {
                let entry = file
                    .entry(key.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if !entry.is_table() {
                    *entry = toml::Value::Table(toml::Table::new());
                }
                if let toml::Value::Table(inner) = entry {
                    changes_onto(inner, was, now);
                }
            }
            _ => {
                file.insert(key.clone(), now.clone());
            }
        }
    }
    for key in before.keys().filter(|k| !after.contains_key(*k)) {
        file.remove(key);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;

    #[test]
    fn saving_writes_the_changes_over_the_file_and_no_override_of_this_run() {
        let home = tempfile::tempdir().unwrap();
        let home_str = home.path().to_str().unwrap();
        let plain = Env::from_pairs([("HOME", home_str)]);
        let mut first = load(None, &plain).unwrap();
        first.config.identity.display_name = "den".into();
        first.config.ui.port = 7870;
        save(&first).unwrap();

        // This run moves the UI and the API elsewhere by its environment,
        // then changes the name: only the name is written.
        let overridden = Env::from_pairs([
            ("HOME", home_str),
            ("HEARTHNET_UI_PORT", "0"),
            ("HEARTHNET_TRANSPORT_API_PORT", "0"),
        ]);
        let mut run = load(None, &overridden).unwrap();
        assert_eq!(run.config.ui.port, 0);
        run.config.identity.display_name = "kitchen".into();
        save(&run).unwrap();

        let saved = load(None, &plain).unwrap().config;
        assert_eq!(saved.identity.display_name, "kitchen");
        assert_eq!(saved.ui.port, 7870, "the file's own value stays");
        assert_eq!(
            saved.transport.api_port,
            Config::default().transport.api_port,
            "the override is not written"
        );
        // A value this run changed is written even where it overrode it,
        // and an edit made to the file meanwhile stays.
        let mut edited = load(None, &plain).unwrap();
        edited.config.ui.lan_enabled = true;
        save(&edited).unwrap();
        run.config.ui.port = 7880;
        save(&run).unwrap();
        let saved = load(None, &plain).unwrap().config;
        assert_eq!(saved.ui.port, 7880);
        assert!(saved.ui.lan_enabled, "the edit made meanwhile stays");
    }
}
