//! XDG base directories (the GLOSSARY's `<CONFIG>`, `<DATA>`, `<CACHE>`,
//! `<LOG>`), resolved from an [`Env`] snapshot per the XDG Base Directory
//! specification: an unset, empty or relative `XDG_*` falls back to its
//! default under `$HOME`.

use std::path::{Path, PathBuf};

use crate::env::Env;
use crate::error::ConfigError;

const APP: &str = "hearthnet";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseDirs {
    /// `$XDG_CONFIG_HOME/hearthnet`
    pub config: PathBuf,
    /// `$XDG_DATA_HOME/hearthnet`
    pub data: PathBuf,
    /// `$XDG_CACHE_HOME/hearthnet`
    pub cache: PathBuf,
    /// `$XDG_STATE_HOME/hearthnet/log`
    pub log: PathBuf,
    /// `<DATA>/run`: the lock and address of the node running on this data
    /// directory. Beside the data, not in `$XDG_RUNTIME_DIR`, so two nodes
    /// with two data directories never share it.
    pub runtime: PathBuf,
}

impl BaseDirs {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let home = env
            .get("HOME")
            .filter(|h| Path::new(h).is_absolute())
            .map(PathBuf::from);
        let base = |var: &str, fallback: &str| -> Result<PathBuf, ConfigError> {
            if let Some(dir) = env.get(var).filter(|d| Path::new(d).is_absolute()) {
                return Ok(PathBuf::from(dir));
            }
            home.as_ref()
                .map(|h| h.join(fallback))
                .ok_or_else(|| ConfigError::NoHome {
                    var: var.to_owned(),
                })
        };
        let data = base("XDG_DATA_HOME", ".local/share")?.join(APP);
        let runtime = match env
            .get("XDG_RUNTIME_DIR")
            .filter(|d| Path::new(d).is_absolute())
        {
            Some(dir) => PathBuf::from(dir).join(APP),
            None => data.join("run"),
        };
        Ok(Self {
            config: base("XDG_CONFIG_HOME", ".config")?.join(APP),
            cache: base("XDG_CACHE_HOME", ".cache")?.join(APP),
            log: base("XDG_STATE_HOME", ".local/state")?
                .join(APP)
                .join("log"),
            data,
            runtime,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdg_variables_win_and_relative_ones_are_ignored() {
        let env = Env::from_pairs([
            ("HOME", "/home/ada"),
            ("XDG_DATA_HOME", "/srv/data"),
            ("XDG_CONFIG_HOME", "relative/ignored"),
        ]);
        let dirs = BaseDirs::from_env(&env).unwrap();
        assert_eq!(dirs.data, PathBuf::from("/srv/data/hearthnet"));
        assert_eq!(dirs.config, PathBuf::from("/home/ada/.config/hearthnet"));
        assert_eq!(dirs.cache, PathBuf::from("/home/ada/.cache/hearthnet"));
        assert_eq!(
            dirs.log,
            PathBuf::from("/home/ada/.local/state/hearthnet/log")
        );
        assert_eq!(dirs.runtime, PathBuf::from("/srv/data/hearthnet/run"));
    }

    #[test]
    fn no_home_and_no_xdg_is_an_error() {
        assert!(matches!(
            BaseDirs::from_env(&Env::default()),
            Err(ConfigError::NoHome { .. })
        ));
    }
}
