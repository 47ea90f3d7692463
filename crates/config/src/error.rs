//! Configuration errors: each says where (file and line, or environment
//! variable), which key, which value, and what was expected.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File { path: PathBuf, line: Option<usize> },
    EnvVar(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, "{}:{line}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::EnvVar(var) => write!(f, "environment variable {var}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write config file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: not valid TOML: {message}")]
    Syntax { origin: Origin, message: String },
    #[error("{origin}: key `{key}` = {value}: expected {expected}")]
    Invalid {
        origin: Origin,
        key: String,
        value: String,
        expected: String,
    },
    #[error("{origin}: unknown key `{key}`{hint}")]
    UnknownKey {
        origin: Origin,
        key: String,
        hint: String,
    },
    #[error("{origin}: key `{key}` was removed: {reason}; delete it")]
    Removed {
        origin: Origin,
        key: String,
        reason: String,
    },
    #[error("neither {var} nor HOME is set to an absolute path; set HOME or {var}")]
    NoHome { var: String },
    #[error("cannot encode the configuration as TOML: {0}")]
    Encode(String),
}
