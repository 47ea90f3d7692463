//! Atomic file replacement, the one way every crate writes a document:
//! a crash leaves either the old file or the new one, never a torn mix;
//! atomic creation, for a secret that must never be replaced; and a
//! private empty file for a database to open.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};

/// How many random temporary names are tried before giving up. With 64
/// random bits a collision is only ever someone else's doing; a few tries
/// get past one that is left over, without looping on a directory that
/// refuses every name.
const TEMP_NAME_TRIES: usize = 8;

/// Write `bytes` to `path` through a temporary sibling, fsync it, rename it
/// over `path`, then fsync the directory. The result has exactly `mode`.
///
/// The temporary name is random and created with `O_EXCL` (`create_new`)
/// and mode 0600: another user of the directory can neither predict it nor
/// plant a file or link there for us to follow or overwrite, and nobody can
/// open it while it is being written.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    atomic_write_named(path, bytes, mode, random_suffix)
}

/// Write `bytes` to a new file at `path` with exactly `mode`, complete or
/// not at all, and never over an existing one: the bytes go to a temporary
/// sibling as in [`atomic_write`], which is then hard-linked to `path` (the
/// link fails with `AlreadyExists` if anything is there, even when two
/// writers race) and removed.
pub fn atomic_create(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_of(path);
    let name = file_name_of(path);
    let (mut file, tmp) = create_temp(dir, &name, &mut random_suffix)?;
    let result = (|| {
        file.write_all(bytes)?;
        if mode != 0o600 {
            file.set_permissions(Permissions::from_mode(mode))?;
        }
        file.sync_all()?;
        fs::hard_link(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    // The temporary name is ours in every case: once linked, `path` holds
    // the file; otherwise it is the only name of a file nobody wants.
    let _ = fs::remove_file(&tmp);
    result
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn random_suffix() -> String {
    format!("{:016x}", OsRng.next_u64())
}

fn atomic_write_named(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    mut suffix: impl FnMut() -> String,
) -> io::Result<()> {
    let dir = parent_of(path);
    fs::create_dir_all(dir)?;
    let name = file_name_of(path);
    let (mut file, tmp) = create_temp(dir, &name, &mut suffix)?;
    let result = (|| {
        file.write_all(bytes)?;
        if mode != 0o600 {
            file.set_permissions(Permissions::from_mode(mode))?;
        }
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    // Only ever remove the file this call created.
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Create `path` empty with mode 0600 if it is missing, before a
/// database (SQLite) creates it with the umask's mode: SQLite gives its
/// `-wal` and `-shm` files the database's mode, so all three stay private
/// to this user. `create_new` never follows a link planted at the path.
/// An existing file is left as it is.
pub fn create_private(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn create_temp(
    dir: &Path,
    name: &str,
    suffix: &mut impl FnMut() -> String,
) -> io::Result<(File, PathBuf)> {
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..TEMP_NAME_TRIES {
        let tmp = dir.join(format!(".{name}.{}.tmp", suffix()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(file) => return Ok((file, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_file_is_made_0600_once_and_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("index.sqlite");
        create_private(&db).unwrap();
        assert_eq!(
            fs::metadata(&db).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::write(&db, b"kept").unwrap();
        create_private(&db).unwrap();
        assert_eq!(fs::read(&db).unwrap(), b"kept");
        // A dangling link planted at the path is not followed.
        let link = dir.path().join("planted");
        std::os::unix::fs::symlink(dir.path().join("target"), &link).unwrap();
        create_private(&link).unwrap();
        assert!(!dir.path().join("target").exists());
    }

    #[test]
    fn replaces_contents_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/doc.json");
        atomic_write(&path, b"one", 0o600).unwrap();
        atomic_write(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn files_and_links_at_a_temporary_name_are_never_followed_or_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.json");
        let planted = dir.path().join(".doc.json.a.tmp");
        fs::write(&planted, b"theirs").unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, b"untouched").unwrap();
        let link = dir.path().join(".doc.json.b.tmp");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let dangling = dir.path().join(".doc.json.c.tmp");
        std::os::unix::fs::symlink(dir.path().join("would-be-created"), &dangling).unwrap();

        let mut names = ["a", "b", "c", "d"].into_iter().map(String::from);
        atomic_write_named(&path, b"ours", 0o644, || names.next().unwrap()).unwrap();

        assert_eq!(fs::read(&path).unwrap(), b"ours");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(fs::read(&planted).unwrap(), b"theirs");
        assert_eq!(fs::read(&target).unwrap(), b"untouched");
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(!dir.path().join("would-be-created").exists());
        assert!(!dir.path().join(".doc.json.d.tmp").exists(), "renamed away");
    }

    #[test]
    fn every_name_taken_is_an_error_that_removes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.json");
        let planted = dir.path().join(".doc.json.x.tmp");
        fs::write(&planted, b"theirs").unwrap();
        let mut tries = 0;
        let err = atomic_write_named(&path, b"ours", 0o600, || {
            tries += 1;
            "x".to_owned()
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(tries, TEMP_NAME_TRIES);
        assert_eq!(fs::read(&planted).unwrap(), b"theirs");
        assert!(!path.exists());
    }

    #[test]
    fn a_created_file_is_complete_private_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        atomic_create(&path, b"first", 0o600).unwrap();
        let err = atomic_create(&path, b"second", 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left, linked or not"
        );
    }

    #[test]
    fn temporary_names_differ_between_writes() {
        assert_ne!(random_suffix(), random_suffix());
    }
}
