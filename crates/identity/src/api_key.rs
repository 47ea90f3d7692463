//! The local API key (SYSTEM.md item 8): the bearer token with which
//! programs that cannot sign requests (the `openai` client libraries, Open
//! WebUI, LangChain) use the node's OpenAI-compatible gateway.
//!
//! It lives beside the device key, `<keys_dir>/local-api.key`, one line:
//! `hn-` and 256 random bits in lowercase base32. The file is created
//! 0600 from its first byte and linked into place only if none is there
//! (two `hearthnet api-key` racing show the same key); a rotation replaces
//! it atomically. A file others can read is refused, as the device key is:
//! the key may have leaked, and only a new one helps.
//!
//! [`ApiKeyCheck`] is the node's side: it compares a presented key with
//! the file's in constant time and reads the file again only when it
//! changed, so a rotation takes effect at the next request, without a
//! restart.

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rand_core::{OsRng, RngCore};

/// The key's file name in the keys directory.
pub const API_KEY_FILE: &str = "local-api.key";
/// What every key starts with, so a leaked one is recognisable (and
/// secret scanners can be taught it).
const PREFIX: &str = "hn-";
/// Random bytes in a key: 256 bits, far beyond guessing over loopback.
const RANDOM_BYTES: usize = 32;
/// The longest file read: a key and its newline, with room to spare. A
/// larger file is not ours.
const MAX_FILE_BYTES: u64 = 256;

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error(
        "this node has no local API key yet ({}): `hearthnet api-key` makes one",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error(
        "the local API key {} has mode {mode:04o}, readable by other users: run `hearthnet api-key --rotate` for a new one (consider the old one leaked)",
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "{} does not hold a local API key (`hn-` and 52 base32 characters): run `hearthnet api-key --rotate`",
        path.display()
    )]
    Malformed { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// A local API key. Its `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(hn-…)")
    }
}

impl ApiKey {
    fn generate() -> Self {
        let mut random = [0u8; RANDOM_BYTES];
        OsRng.fill_bytes(&mut random);
        let text = data_encoding::BASE32_NOPAD
            .encode(&random)
            .to_ascii_lowercase();
        Self(format!("{PREFIX}{text}"))
    }

    /// The key as read from a file: surrounding whitespace (an editor's
    /// newline) ignored, anything but our form refused.
    fn parse(text: &str) -> Option<Self> {
        let key = text.trim();
        let encoded = key.strip_prefix(PREFIX)?;
        let decoded = data_encoding::BASE32_NOPAD
            .decode(encoded.to_ascii_uppercase().as_bytes())
            .ok()?;
        (decoded.len() == RANDOM_BYTES && encoded == encoded.to_ascii_lowercase())
            .then(|| Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn digest(&self) -> blake3::Hash {
        blake3::hash(self.0.as_bytes())
    }
}

/// The key file of one node.
#[derive(Debug, Clone)]
pub struct ApiKeyFile {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ApiKeyError + '_ {
    move |source| ApiKeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ApiKeyFile {
    /// The key file in `keys_dir` (the device key's directory).
    pub fn in_dir(keys_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: keys_dir.into(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(API_KEY_FILE)
    }

    /// The key, refusing a file others can read or one not of our form.
    pub fn load(&self) -> Result<ApiKey, ApiKeyError> {
        self.read().map(|(key, _)| key)
    }

    /// The key, made now if there is none; the flag says whether it was.
    pub fn load_or_create(&self) -> Result<(ApiKey, bool), ApiKeyError> {
        match self.load() {
            Err(ApiKeyError::Missing { .. }) => {}
            other => return other.map(|key| (key, false)),
        }
        let key = ApiKey::generate();
        let path = self.path();
        self.make_dir()?;
        match hearthnet_base::fsio::atomic_create(&path, line(&key).as_bytes(), 0o600) {
            Ok(()) => Ok((key, true)),
            // Another process made one between our look and our link:
            // theirs is the key.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((self.load()?, false)),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Replace the key with a new one: clients holding the old one are
    /// refused from their next request on.
    pub fn rotate(&self) -> Result<ApiKey, ApiKeyError> {
        let key = ApiKey::generate();
        let path = self.path();
        self.make_dir()?;
        hearthnet_base::fsio::atomic_write(&path, line(&key).as_bytes(), 0o600)
            .map_err(io_err(&path))?;
        Ok(key)
    }

    /// The keys directory as the device key's store makes it: private.
    fn make_dir(&self) -> Result<(), ApiKeyError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err(&self.dir))
    }

    /// The key and the identity of the file it was read from, both from
    /// one open file, so a rotation in between cannot pair one file's key
    /// with the other's identity.
    fn read(&self) -> Result<(ApiKey, Stamp), ApiKeyError> {
        let path = self.path();
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ApiKeyError::Missing { path: path.clone() },
            _ => io_err(&path)(e),
        })?;
        let meta = file.metadata().map_err(io_err(&path))?;
        let stamp = Stamp::of(&meta);
        refuse_readable(&path, &meta)?;
        let mut text = String::new();
        file.take(MAX_FILE_BYTES)
            .read_to_string(&mut text)
            .map_err(|_| ApiKeyError::Malformed { path: path.clone() })?;
        let key = ApiKey::parse(&text).ok_or(ApiKeyError::Malformed { path })?;
        Ok((key, stamp))
    }
}

fn line(key: &ApiKey) -> String {
    format!("{}\n", key.as_str())
}

fn refuse_readable(path: &Path, meta: &Metadata) -> Result<(), ApiKeyError> {
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(ApiKeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// What tells one version of the key file from another: a rotation renames
/// a new file into place (a new inode), an edit in place changes the size
/// or the modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

/// Checks presented keys against the key file, for the node.
pub struct ApiKeyCheck {
    file: ApiKeyFile,
    /// The digest of the key as last read, and which file it came from.
    cached: Mutex<Option<(Stamp, blake3::Hash)>>,
}

impl ApiKeyCheck {
    pub fn new(file: ApiKeyFile) -> Self {
        Self {
            file,
            cached: Mutex::new(None),
        }
    }

    /// Whether `presented` is the current key. One `stat` a call; the file
    /// is read again only when it changed. The comparison is of BLAKE3
    /// digests, whose equality takes the same time wherever they differ,
    /// so timing tells nothing about the key (nor its length). A file that
    /// is missing, readable by others or malformed is an error, whatever
    /// was presented.
    pub fn verify(&self, presented: &str) -> Result<bool, ApiKeyError> {
        let path = self.file.path();
        let meta = fs::metadata(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ApiKeyError::Missing { path: path.clone() },
            _ => io_err(&path)(e),
        })?;
        // Looked at on every call: a key made readable since it was read
        // may have leaked, and is refused at once.
        refuse_readable(&path, &meta)?;
        let stamp = Stamp::of(&meta);
        let cached = *self.cached.lock();
        let digest = match cached {
            Some((seen, digest)) if seen == stamp => digest,
            _ => {
                let (key, stamp) = self.file.read()?;
                let digest = key.digest();
                *self.cached.lock() = Some((stamp, digest));
                digest
            }
        };
        Ok(blake3::hash(presented.as_bytes()) == digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_is_made_once_private_and_shown_again() {
        let tmp = tempfile::tempdir().unwrap();
        let file = ApiKeyFile::in_dir(tmp.path().join("keys"));
        assert!(matches!(file.load(), Err(ApiKeyError::Missing { .. })));
        let (key, created) = file.load_or_create().unwrap();
        assert!(created);
        assert!(key.as_str().starts_with("hn-"), "{}", key.as_str());
        assert_eq!(key.as_str().len(), 3 + 52);
        assert_eq!(file.load_or_create().unwrap(), (key.clone(), false));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file.path()), 0o600);
        assert_eq!(mode(&tmp.path().join("keys")), 0o700);
        assert_eq!(
            fs::read_to_string(file.path()).unwrap(),
            format!("{}\n", key.as_str())
        );
        assert_ne!(ApiKey::generate(), ApiKey::generate());
        assert_eq!(format!("{key:?}"), "ApiKey(hn-…)", "no secret in logs");
    }

    #[test]
    fn files_others_can_read_or_not_of_our_form_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let file = ApiKeyFile::in_dir(tmp.path());
        let (key, _) = file.load_or_create().unwrap();
        fs::set_permissions(file.path(), fs::Permissions::from_mode(0o640)).unwrap();
        let err = file.load().unwrap_err();
        assert!(matches!(err, ApiKeyError::Permissions { mode: 0o640, .. }));
        assert!(
            err.to_string().contains("hearthnet api-key --rotate"),
            "{err}"
        );
        let check = ApiKeyCheck::new(file.clone());
        assert!(matches!(
            check.verify(key.as_str()),
            Err(ApiKeyError::Permissions { .. })
        ));

        for text in [
            "",
            "hn-short",
            "sk-aaaa",
            &key.as_str().to_uppercase(),
            &format!("{}x", key.as_str()),
            &"hn-".repeat(100),
        ] {
            fs::remove_file(file.path()).unwrap();
            hearthnet_base::fsio::atomic_create(&file.path(), text.as_bytes(), 0o600).unwrap();
            assert!(
                matches!(file.load(), Err(ApiKeyError::Malformed { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_check_takes_the_current_key_and_follows_rotations() {
        let tmp = tempfile::tempdir().unwrap();
        let file = ApiKeyFile::in_dir(tmp.path());
        let check = ApiKeyCheck::new(file.clone());
        assert!(matches!(
            check.verify("hn-anything"),
            Err(ApiKeyError::Missing { .. })
        ));
        let (old, _) = file.load_or_create().unwrap();
        assert!(check.verify(old.as_str()).unwrap());
        assert!(!check.verify("").unwrap());
        assert!(!check.verify(&old.as_str()[..20]).unwrap());
        assert!(!check.verify(&format!("{} ", old.as_str())).unwrap());

        let new = file.rotate().unwrap();
        assert_ne!(new, old);
        assert!(!check.verify(old.as_str()).unwrap(), "refused at once");
        assert!(check.verify(new.as_str()).unwrap());
        assert_eq!(file.load().unwrap(), new);
    }
}
