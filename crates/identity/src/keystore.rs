//! The device key on disk (M01 §4): `device.ed25519` holds the raw 32-byte
//! secret seed with mode 0600, `device.pub` the raw 32-byte public key.
//!
//! The secret file is created with mode 0600 from its first byte (never a
//! moment readable by others), written to a temporary name, synced, and
//! linked into place only if no key exists yet, so a second `init` or a
//! race between two can never replace an existing identity.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hearthnet_base::DeviceKey;

pub const SECRET_FILE: &str = "device.ed25519";
pub const PUBLIC_FILE: &str = "device.pub";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no device key at {}; run `hearthnet init` to create one", path.display())]
    Missing { path: PathBuf },
    #[error(
        "device key {} has mode {mode:04o}, readable by other users; run `chmod 600 {}` (and consider the key exposed if others could log in)",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("device key {} is not a 32-byte Ed25519 key: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The key directory of one device.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn secret_path(&self) -> PathBuf {
        self.dir.join(SECRET_FILE)
    }

    pub fn public_path(&self) -> PathBuf {
        self.dir.join(PUBLIC_FILE)
    }

    pub fn exists(&self) -> bool {
        self.secret_path().exists()
    }

    /// Permission bits of the secret file, if it exists.
    pub fn secret_mode(&self) -> Result<u32, KeyError> {
        let path = self.secret_path();
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.permissions().mode() & 0o7777),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(KeyError::Missing { path }),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Load the device key, refusing one that others can read.
    pub fn load(&self) -> Result<DeviceKey, KeyError> {
        let path = self.secret_path();
        let mode = self.secret_mode()?;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path, mode });
        }
        self.load_ignoring_mode()
    }

    /// Read and check the key without looking at its permissions: for
    /// diagnostics, which report permissions separately.
    pub fn load_ignoring_mode(&self) -> Result<DeviceKey, KeyError> {
        let path = self.secret_path();
        let seed = read_exactly_32(&path)?;
        let key = DeviceKey::from_seed(seed);
        let public = self.public_path();
        if public.exists() {
            let stored = read_exactly_32(&public)?;
            if &stored != key.node_id().as_bytes() {
                return Err(KeyError::Invalid {
                    path: public,
                    reason: format!("it does not hold the public half of {}", path.display()),
                });
            }
        }
        Ok(key)
    }

    /// Load the existing key, or create one if there is none. The flag says
    /// whether it was created now.
    pub fn load_or_create(&self) -> Result<(DeviceKey, bool), KeyError> {
        if self.exists() {
            return Ok((self.load()?, false));
        }
        match self.create(&DeviceKey::generate()) {
            Ok(key) => Ok((key, true)),
            // Someone else created it between our check and our link.
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                Ok((self.load()?, false))
            }
            Err(e) => Err(e),
        }
    }

    /// Persist `key` as this device's key. Fails with `AlreadyExists` if a
    /// key is already there; never overwrites.
    pub fn create(&self, key: &DeviceKey) -> Result<DeviceKey, KeyError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err(&self.dir))?;
        let secret = self.secret_path();
        // Linked into place only if no key is there: never replaces one.
        hearthnet_base::fsio::atomic_create(&secret, &key.seed(), 0o600)
            .map_err(io_err(&secret))?;
        let public = self.public_path();
        // A stale device.pub from an earlier, removed key is replaced: the
        // secret file decides who we are.
        hearthnet_base::fsio::atomic_write(&public, key.node_id().as_bytes(), 0o644)
            .map_err(io_err(&public))?;
        Ok(key.clone())
    }
}

fn read_exactly_32(path: &Path) -> Result<[u8; 32], KeyError> {
    let mut bytes = Vec::with_capacity(33);
    File::open(path)
        .and_then(|f| f.take(33).read_to_end(&mut bytes))
        .map_err(io_err(path))?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| KeyError::Invalid {
        path: path.to_path_buf(),
        reason: format!("it holds {len}{} bytes", if len > 32 { "+" } else { "" }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_round_trips_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path().join("keys"));
        let (key, created) = store.load_or_create().unwrap();
        assert!(created);
        assert_eq!(store.secret_mode().unwrap(), 0o600);
        let dir_mode = fs::metadata(tmp.path().join("keys"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(
            fs::read(store.public_path()).unwrap(),
            key.node_id().as_bytes()
        );
        assert_eq!(store.load().unwrap().node_id(), key.node_id());
    }

    #[test]
    fn an_existing_key_is_never_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path());
        let (first, _) = store.load_or_create().unwrap();
        let (second, created) = store.load_or_create().unwrap();
        assert!(!created);
        assert_eq!(first.node_id(), second.node_id());
        let err = store.create(&DeviceKey::generate()).unwrap_err();
        assert!(
            matches!(err, KeyError::Io { ref source, .. } if source.kind() == io::ErrorKind::AlreadyExists)
        );
        assert_eq!(store.load().unwrap().node_id(), first.node_id());
    }

    #[test]
    fn readable_or_malformed_keys_are_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path());
        store.load_or_create().unwrap();
        fs::set_permissions(store.secret_path(), fs::Permissions::from_mode(0o644)).unwrap();
        let msg = store.load().unwrap_err().to_string();
        assert!(
            msg.contains("mode 0644") && msg.contains("chmod 600"),
            "{msg}"
        );

        fs::set_permissions(store.secret_path(), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(store.secret_path(), b"short").unwrap();
        assert!(matches!(store.load(), Err(KeyError::Invalid { .. })));

        let empty = KeyStore::new(tmp.path().join("none"));
        assert!(
            empty
                .load()
                .unwrap_err()
                .to_string()
                .contains("hearthnet init")
        );
    }

    #[test]
    fn a_public_file_of_another_key_is_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path());
        store.load_or_create().unwrap();
        fs::write(
            store.public_path(),
            DeviceKey::generate().node_id().as_bytes(),
        )
        .unwrap();
        assert!(matches!(store.load(), Err(KeyError::Invalid { .. })));
    }
}
