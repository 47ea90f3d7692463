//! XDG base directories (the GLOSSARY's `<CONFIG>`, `<DATA>`, `<CACHE>`,
//! `<LOG>`), resolved from an [`Env`] snapshot per the XDG Base Directory
//! specification: an unset, empty or relative `XDG_*` falls back to its
//! default under `$HOME`.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::env::Env;
use crate::error::ConfigError;
use crate::schema::NodePaths;

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

/// Mode of every directory the node keeps state in.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of every state file (database, manifests, snapshots, keys).
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// How deep [`NodePaths::make_private`] walks below a state directory; the
/// layout is at most a few levels (`communities/<id>/snapshots/<file>`), and
/// the bound keeps a strange tree from turning a start into a long walk.
const MAX_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
#[error("cannot make {} private to this user: {source}", path.display())]
pub struct PrivateError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl NodePaths {
    /// Make the node's state private to its user, on every start, so that
    /// directories and files made by older versions (0755, 0644) are fixed
    /// too: the state directories become 0700 (created if missing) and the
    /// files below the community and runtime directories 0600.
    ///
    /// The device key's files keep their mode: the key store refuses a
    /// secret others could read (it may have leaked; the owner must know),
    /// and the public half is public.
    ///
    /// Blob chunks are left as they are: there can be very many of them, and
    /// the blobs directory being 0700 already keeps other users out. Links
    /// below a directory are never followed, so a link planted in the state
    /// cannot make the node change the mode of a file elsewhere.
    pub fn make_private(&self) -> Result<(), PrivateError> {
        let dirs = [
            Some(&self.data_dir),
            Some(&self.keys_dir),
            Some(&self.communities_dir),
            self.state_dir.as_ref(),
            Some(&self.blobs_dir),
            Some(&self.runtime_dir),
        ];
        for dir in dirs.into_iter().flatten() {
            private_dir(dir)?;
        }
        let walked = [
            Some(&self.communities_dir),
            self.state_dir.as_ref(),
            Some(&self.runtime_dir),
        ];
        for dir in walked.into_iter().flatten() {
            private_tree(dir, MAX_DEPTH)?;
        }
        Ok(())
    }
}

fn private_dir(dir: &Path) -> Result<(), PrivateError> {
    let failed = |source| PrivateError {
        path: dir.to_path_buf(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(failed)?;
    restrict(dir, PRIVATE_DIR_MODE).map_err(failed)
}

/// Directories below `dir` 0700, files 0600; links and other kinds untouched.
fn private_tree(dir: &Path, depth: usize) -> Result<(), PrivateError> {
    let failed = |path: &Path, source| PrivateError {
        path: path.to_path_buf(),
        source,
    };
    let entries = fs::read_dir(dir).map_err(|e| failed(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| failed(dir, e))?;
        let path = entry.path();
        // `file_type` does not follow links.
        let kind = entry.file_type().map_err(|e| failed(&path, e))?;
        if kind.is_file() {
            restrict(&path, PRIVATE_FILE_MODE).map_err(|e| failed(&path, e))?;
        } else if kind.is_dir() {
            restrict(&path, PRIVATE_DIR_MODE).map_err(|e| failed(&path, e))?;
            if depth > 0 {
                private_tree(&path, depth - 1)?;
            }
        }
    }
    Ok(())
}

/// Set `mode` unless it is already so: a start should not touch the inode
/// change time of every file for nothing.
fn restrict(path: &Path, mode: u32) -> io::Result<()> {
    let current = fs::metadata(path)?.permissions().mode() & 0o7777;
    if current == mode {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
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

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn an_old_open_data_dir_is_made_private_without_following_links() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let state = data.join("communities/c1");
        fs::create_dir_all(state.join("snapshots")).unwrap();
        fs::create_dir_all(data.join("keys")).unwrap();
        let open =
            |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        for dir in [
            &data,
            &data.join("communities"),
            &state,
            &state.join("snapshots"),
        ] {
            open(dir, 0o755);
        }
        let files = [
            state.join("events.sqlite"),
            state.join("events.sqlite-wal"),
            state.join("snapshots/00001.json"),
        ];
        for file in &files {
            fs::write(file, b"x").unwrap();
            open(file, 0o644);
        }
        fs::write(data.join("keys/device.ed25519"), b"x").unwrap();
        open(&data.join("keys/device.ed25519"), 0o644);
        // A file outside, linked from inside: its mode must not change.
        let outside = root.path().join("outside");
        fs::write(&outside, b"x").unwrap();
        open(&outside, 0o644);
        std::os::unix::fs::symlink(&outside, state.join("link")).unwrap();

        let paths = NodePaths {
            keys_dir: data.join("keys"),
            communities_dir: data.join("communities"),
            state_dir: Some(state.clone()),
            blobs_dir: data.join("blobs"),
            corpora_dir: root.path().join("cache"),
            log_dir: root.path().join("log"),
            runtime_dir: data.join("run"),
            data_dir: data.clone(),
        };
        paths.make_private().unwrap();

        for dir in [
            &data,
            &data.join("communities"),
            &state,
            &state.join("snapshots"),
        ] {
            assert_eq!(mode(dir), 0o700, "{}", dir.display());
        }
        for dir in [data.join("blobs"), data.join("run")] {
            assert_eq!(mode(&dir), 0o700, "created private: {}", dir.display());
        }
        for file in &files {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        assert_eq!(mode(&outside), 0o644);
        assert_eq!(mode(&data.join("keys")), 0o700);
        assert_eq!(
            mode(&data.join("keys/device.ed25519")),
            0o644,
            "left to the key store"
        );
        // A second start finds nothing to do and still succeeds.
        paths.make_private().unwrap();
    }
}
