//! The store on disk: its layout, atomic manifest writes, verified reads
//! and quarantine, adding and exporting whole blobs, and pins. Chunks are
//! written by [`ChunkWriter`] (`writer`), and space is reclaimed by the
//! collector (`gc`); both work on the layout and locks defined here.

mod gc;
mod kept;
mod writer;

pub use kept::{MAX_NAME_BYTES, clean_name, pinned_with_names};

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use hearthnet_base::Blake3Id;
use hearthnet_base::constants::CHUNK_SIZE_BYTES;
use parking_lot::{Mutex, MutexGuard};
use serde::Serialize;

pub use gc::{DiskUsage, GcReport};
pub use writer::{ChunkWriter, VerifiedChunk};

use crate::{BlobError, ChunkRef, Manifest};

/// When a write reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Before it becomes visible: for what only this node has (an added
    /// file), which a crash must not lose.
    BeforeVisible,
    /// At the next [`BlobStore::sync`]: for copies fetched from peers.
    /// Visible at once (complete and verified, so a killed process loses
    /// nothing); a power cut before the sync can lose or damage what peers
    /// still hold, which reads detect and fetches replace.
    AtNextSync,
}

#[derive(Debug, Clone, Serialize)]
pub struct BlobInfo {
    pub cid: Blake3Id,
    pub size_bytes: u64,
    pub chunks: usize,
    pub pinned: bool,
    /// Unix seconds of the last use (LRU order for collection).
    pub last_used: u64,
    /// The name it was added under, if one was given.
    pub name: Option<String>,
}

pub struct BlobStore {
    root: PathBuf,
    /// The store's directory, for `syncfs`.
    flush_handle: Arc<File>,
    gc_threshold: f64,
    /// Serialises changes to `pinned.txt`, and GC against them.
    pins: Mutex<BTreeSet<Blake3Id>>,
    /// The names blobs were added under; serialises changes to `names.json`.
    names: Mutex<BTreeMap<Blake3Id, String>>,
    /// Held while a manifest is committed and while chunks are removed.
    /// It guards nothing in memory: what it orders is on disk, where each
    /// step is a rename or a removal that a crash could cut off just as
    /// well, so a holder that panics leaves nothing to repair.
    commits: Mutex<()>,
    tmp_seq: AtomicU64,
}

impl BlobStore {
    /// Open (creating) the store at `root`; leftovers of interrupted writes
    /// in `tmp/` are removed.
    pub fn open(root: &Path, gc_threshold: f64) -> Result<Self, BlobError> {
        for dir in [
            root.to_path_buf(),
            root.join("tmp"),
            root.join("quarantine"),
        ] {
            fs::create_dir_all(&dir)
                .map_err(|e| BlobError::io(format!("cannot create {}", dir.display()), e))?;
        }
        if let Ok(entries) = fs::read_dir(root.join("tmp")) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        let pins = kept::read_pins(root)?;
        let names = kept::read_names(root)?;
        // Held open for the store's life: `syncfs` reports write-back
        // errors since this handle was opened, not only since each call.
        let flush_handle = File::open(root)
            .map(Arc::new)
            .map_err(|e| BlobError::io(format!("cannot open {}", root.display()), e))?;
        Ok(Self {
            root: root.to_path_buf(),
            flush_handle,
            gc_threshold,
            pins: Mutex::new(pins),
            names: Mutex::new(names),
            commits: Mutex::new(()),
            tmp_seq: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, cid: &Blake3Id, suffix: &str) -> PathBuf {
        path_in(&self.root, cid, suffix)
    }

    fn chunk_path(&self, cid: &Blake3Id) -> PathBuf {
        self.path_of(cid, ".bin")
    }

    fn manifest_path(&self, cid: &Blake3Id) -> PathBuf {
        self.path_of(cid, ".manifest.json")
    }

    pub fn has_chunk(&self, cid: &Blake3Id) -> bool {
        self.chunk_path(cid).is_file()
    }

    /// A new file `<dir>/<prefix><pid>.<n>.part` no one else has open.
    fn create_temp(&self, dir: &Path, prefix: &str) -> Result<(PathBuf, File), BlobError> {
        let tmp = dir.join(format!(
            "{prefix}{}.{}.part",
            std::process::id(),
            self.tmp_seq.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| BlobError::io(format!("cannot create {}", tmp.display()), e))?;
        Ok((tmp, file))
    }

    /// Write to `tmp/`, flush to disk (when `durability` says now), then
    /// rename into place: readers see the whole file or nothing, even if
    /// the process dies midway.
    fn write_atomically(
        &self,
        path: &Path,
        bytes: &[u8],
        durability: Durability,
    ) -> Result<(), BlobError> {
        let now = durability == Durability::BeforeVisible;
        let (tmp, mut file) = self.create_temp(&self.root.join("tmp"), "")?;
        let result = (|| {
            file.write_all(bytes)
                .and_then(|()| if now { file.sync_all() } else { Ok(()) })
                .map_err(|e| BlobError::io(format!("cannot write {}", tmp.display()), e))?;
            let dir = path.parent().unwrap_or(&self.root);
            fs::create_dir_all(dir)
                .and_then(|()| fs::rename(&tmp, path))
                .and_then(|()| {
                    if now {
                        File::open(dir)?.sync_all()
                    } else {
                        Ok(())
                    }
                })
                .map_err(|e| BlobError::io(format!("cannot store {}", path.display()), e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// A chunk's bytes, verified. A chunk whose bytes no longer match is
    /// moved to `quarantine/` and reported missing, so it is fetched again.
    pub fn read_chunk(&self, cid: &Blake3Id) -> Result<Vec<u8>, BlobError> {
        let path = self.chunk_path(cid);
        let bytes = read_stored(&path, cid)?;
        let actual = Blake3Id::of(&bytes);
        if actual != *cid {
            let hex = cid.to_string();
            let dest = self.root.join("quarantine").join(format!(
                "{}.{}",
                hex.trim_start_matches("blake3:"),
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            ));
            tracing::warn!(chunk = %cid.short(), "chunk damaged on disk; quarantined");
            let _ = fs::rename(&path, dest);
            return Err(BlobError::NotFound(*cid));
        }
        Ok(bytes)
    }

    /// Commit a blob: every chunk must be present; then its manifest
    /// appears, and the blob with it.
    pub fn write_manifest(
        &self,
        manifest: &Manifest,
        durability: Durability,
    ) -> Result<(), BlobError> {
        let _commits = self.commit_lock();
        if let Some(missing) = manifest.chunks.iter().find(|c| !self.has_chunk(&c.cid)) {
            return Err(BlobError::NotFound(missing.cid));
        }
        // The chunks' directory entries first: after a crash, a manifest
        // never names a chunk that is not there.
        if durability == Durability::BeforeVisible {
            let dirs: BTreeSet<PathBuf> = manifest
                .chunks
                .iter()
                .filter_map(|c| self.chunk_path(&c.cid).parent().map(Path::to_path_buf))
                .collect();
            for dir in dirs {
                File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| BlobError::io(format!("cannot sync {}", dir.display()), e))?;
            }
        }
        let bytes = manifest.to_wire().to_string().into_bytes();
        let path = self.manifest_path(&manifest.cid);
        self.write_atomically(&path, &bytes, durability)
    }

    /// Make every write so far durable (one `syncfs` of the store's file
    /// system).
    pub fn sync(&self) -> Result<(), BlobError> {
        sync_file_system(&self.flush_handle, &self.root)
    }

    /// A stored blob's manifest. Reading it counts as a use (LRU).
    pub fn manifest(&self, cid: &Blake3Id) -> Result<Manifest, BlobError> {
        let path = self.manifest_path(cid);
        let bytes = read_stored(&path, cid)?;
        let parsed = serde_json::from_slice(&bytes)
            .map_err(|e| BlobError::ManifestInvalid(e.to_string()))
            .and_then(|value| Manifest::from_wire(&value))
            .and_then(|m| {
                if m.cid == *cid {
                    Ok(m)
                } else {
                    Err(BlobError::ManifestInvalid(format!("it holds {}", m.cid)))
                }
            });
        match parsed {
            Ok(manifest) => {
                touch(&path);
                Ok(manifest)
            }
            // Damaged on disk: out of the way, and missing (fetched again
            // where peers have it).
            Err(e) => {
                tracing::warn!(blob = %cid.short(), error = %e, "manifest damaged on disk; quarantined");
                let hex = cid.to_string();
                let _ = fs::rename(
                    &path,
                    self.root.join("quarantine").join(format!(
                        "{}.manifest.json",
                        hex.trim_start_matches("blake3:")
                    )),
                );
                Err(BlobError::NotFound(*cid))
            }
        }
    }

    pub fn has_blob(&self, cid: &Blake3Id) -> bool {
        self.manifest_path(cid).is_file()
    }

    /// Indices of the chunks of `manifest` this store lacks.
    pub fn missing_chunks(&self, manifest: &Manifest) -> Vec<usize> {
        manifest
            .chunks
            .iter()
            .enumerate()
            .filter(|(_, c)| !self.has_chunk(&c.cid))
            .map(|(i, _)| i)
            .collect()
    }

    /// Read every chunk of `manifest` (quarantining any that no longer
    /// match) and return the indices this store lacks afterwards.
    pub fn verify(&self, manifest: &Manifest) -> Vec<usize> {
        manifest
            .chunks
            .iter()
            .enumerate()
            .filter(|(_, c)| self.read_chunk(&c.cid).is_err())
            .map(|(i, _)| i)
            .collect()
    }

    /// Chunk and store `reader`'s bytes, calling `progress(bytes so far)`;
    /// memory use is one chunk whatever the size.
    pub fn add(
        &self,
        reader: &mut dyn Read,
        mut progress: impl FnMut(u64) -> Result<(), BlobError>,
    ) -> Result<Manifest, BlobError> {
        let mut chunks = Vec::new();
        let mut writer = self.writer(Durability::BeforeVisible);
        let mut buf = vec![0u8; CHUNK_SIZE_BYTES];
        let mut total = 0u64;
        let result = (|| {
            loop {
                let n = read_full(reader, &mut buf)
                    .map_err(|e| BlobError::io("cannot read the input", e))?;
                if n == 0 {
                    break;
                }
                let chunk = VerifiedChunk::of(&buf[..n]);
                writer.put_verified(&chunk)?;
                chunks.push(ChunkRef {
                    cid: chunk.cid(),
                    size_bytes: n as u64,
                });
                total += n as u64;
                progress(total)?;
                if n < buf.len() {
                    break;
                }
            }
            writer.flush()?;
            let manifest = Manifest::new(std::mem::take(&mut chunks));
            self.write_manifest(&manifest, Durability::BeforeVisible)?;
            Ok(manifest)
        })();
        if result.is_err() {
            // A full disk must not stay full of a blob that never appeared;
            // chunks a committed blob shares stay. The batch in flight
            // lands (or not) first.
            let created = writer.created().to_vec();
            drop(writer);
            let _commits = self.commit_lock();
            let named: HashSet<Blake3Id> = self
                .manifests()
                .iter()
                .filter_map(|(cid, _)| self.manifest_quietly(cid))
                .flat_map(|m| m.chunks.into_iter().map(|c| c.cid))
                .collect();
            for cid in &created {
                if !named.contains(cid) {
                    self.remove_chunk(cid);
                }
            }
        }
        result
    }

    /// Write blob `cid` to `out` (a temporary file beside it, renamed when
    /// complete, so `out` is never half-written), every chunk verified on
    /// the way.
    pub fn export(
        &self,
        cid: &Blake3Id,
        out: &Path,
        mut progress: impl FnMut(u64) -> Result<(), BlobError>,
    ) -> Result<Manifest, BlobError> {
        let manifest = self.manifest(cid)?;
        let dir = match out.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (tmp, mut file) = self.create_temp(&dir, &format!(".{name}."))?;
        let result = (|| {
            let mut done = 0;
            for chunk in &manifest.chunks {
                let bytes = self.read_chunk(&chunk.cid)?;
                file.write_all(&bytes)
                    .map_err(|e| BlobError::io(format!("cannot write {}", tmp.display()), e))?;
                done += bytes.len() as u64;
                progress(done)?;
            }
            // Like cp or curl, leave flushing the copy to the kernel: the
            // blob itself is safe in the store.
            fs::rename(&tmp, out)
                .map_err(|e| BlobError::io(format!("cannot write {}", out.display()), e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| manifest)
    }

    fn manifests(&self) -> Vec<(Blake3Id, PathBuf)> {
        let mut found = Vec::new();
        let Ok(shards) = fs::read_dir(&self.root) else {
            return found;
        };
        for shard in shards.flatten() {
            let prefix = shard.file_name().to_string_lossy().into_owned();
            if prefix.len() != 2 {
                continue;
            }
            let Ok(files) = fs::read_dir(shard.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if let Some(rest) = name.strip_suffix(".manifest.json")
                    && let Ok(cid) = Blake3Id::parse(&format!("blake3:{prefix}{rest}"))
                {
                    found.push((cid, file.path()));
                }
            }
        }
        found
    }

    /// Every stored blob, least recently used first.
    pub fn list(&self) -> Vec<BlobInfo> {
        let pins = self.pins.lock().clone();
        self.list_with(&pins)
    }

    fn list_with(&self, pins: &BTreeSet<Blake3Id>) -> Vec<BlobInfo> {
        let names = self.names.lock().clone();
        let mut blobs: Vec<BlobInfo> = self
            .manifests()
            .into_iter()
            .filter_map(|(cid, path)| {
                let value = serde_json::from_slice(&fs::read(&path).ok()?).ok()?;
                let manifest = Manifest::from_wire(&value).ok()?;
                Some(BlobInfo {
                    cid,
                    size_bytes: manifest.size_bytes,
                    chunks: manifest.chunks.len(),
                    pinned: pins.contains(&cid),
                    last_used: mtime(&path),
                    name: names.get(&cid).cloned(),
                })
            })
            .collect();
        blobs.sort_by_key(|b| (b.last_used, b.cid.to_string()));
        blobs
    }

    /// Bytes of chunks and manifests on disk.
    pub fn disk_bytes(&self) -> u64 {
        let mut total = 0;
        let Ok(shards) = fs::read_dir(&self.root) else {
            return 0;
        };
        for shard in shards.flatten() {
            if shard.file_name().len() != 2 {
                continue;
            }
            if let Ok(files) = fs::read_dir(shard.path()) {
                total += files
                    .flatten()
                    .filter_map(|f| f.metadata().ok())
                    .map(|m| m.len())
                    .sum::<u64>();
            }
        }
        total
    }

    pub fn is_pinned(&self, cid: &Blake3Id) -> bool {
        self.pins.lock().contains(cid)
    }

    /// Pin a stored blob (never collected); false if it already was.
    pub fn pin(&self, cid: &Blake3Id) -> Result<bool, BlobError> {
        if !self.has_blob(cid) {
            return Err(BlobError::NotFound(*cid));
        }
        self.change_pins(|p| p.insert(*cid))
    }

    /// Unpin; false if it was not pinned.
    pub fn unpin(&self, cid: &Blake3Id) -> Result<bool, BlobError> {
        self.change_pins(|p| p.remove(cid))
    }

    /// Keep `name` (cleaned by [`clean_name`]) as what `cid` was added
    /// under, replacing an earlier name; names of blobs no longer here are
    /// dropped on the way. False when nothing was left of the name.
    pub fn set_name(&self, cid: &Blake3Id, name: &str) -> Result<bool, BlobError> {
        if !self.has_blob(cid) {
            return Err(BlobError::NotFound(*cid));
        }
        let Some(name) = clean_name(name) else {
            return Ok(false);
        };
        let mut names = self.names.lock();
        let mut next: BTreeMap<Blake3Id, String> = names
            .iter()
            .filter(|(c, _)| self.has_blob(c))
            .map(|(c, n)| (*c, n.clone()))
            .collect();
        next.insert(*cid, name);
        kept::write_names(&self.root, &next)?;
        *names = next;
        Ok(true)
    }

    fn change_pins(
        &self,
        f: impl FnOnce(&mut BTreeSet<Blake3Id>) -> bool,
    ) -> Result<bool, BlobError> {
        // Changed on a copy, and the copy kept only once `pinned.txt` says
        // the same: a panic in `f` or a failed write leaves both as they were.
        let mut pins = self.pins.lock();
        let mut next = pins.clone();
        if !f(&mut next) {
            return Ok(false);
        }
        let text: Vec<String> = next.iter().map(ToString::to_string).collect();
        hearthnet_base::fsio::atomic_write(
            &self.root.join(kept::PINS_FILE),
            text.join("\n").as_bytes(),
            0o600,
        )
        .map_err(|e| BlobError::io("cannot write pinned.txt", e))?;
        *pins = next;
        Ok(true)
    }

    /// Remove a chunk file; the bytes it held.
    fn remove_chunk(&self, cid: &Blake3Id) -> u64 {
        let path = self.chunk_path(cid);
        let len = fs::metadata(&path).map_or(0, |m| m.len());
        match fs::remove_file(&path) {
            Ok(()) => len,
            Err(_) => 0,
        }
    }

    /// Serialises manifest commits against chunk removal.
    fn commit_lock(&self) -> MutexGuard<'_, ()> {
        self.commits.lock()
    }

    /// A manifest without counting it as a use.
    fn manifest_quietly(&self, cid: &Blake3Id) -> Option<Manifest> {
        let value = serde_json::from_slice(&fs::read(self.manifest_path(cid)).ok()?).ok()?;
        Manifest::from_wire(&value).ok()
    }
}

/// `<root>/<aa>/<rest><suffix>`: where a CID's file lives.
fn path_in(root: &Path, cid: &Blake3Id, suffix: &str) -> PathBuf {
    let hex = cid.to_string();
    let hex = hex.trim_start_matches("blake3:");
    root.join(&hex[..2]).join(format!("{}{suffix}", &hex[2..]))
}

/// Read until `buf` is full or the input ends.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn mtime(path: &Path) -> u64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Mark a use: reads do not change mtime by themselves (M07 §5.3 assumes
/// they do), so set it.
fn touch(path: &Path) {
    if let Ok(file) = File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// The bytes of the file that stores `cid` (its chunk or its manifest).
fn read_stored(path: &Path, cid: &Blake3Id) -> Result<Vec<u8>, BlobError> {
    fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BlobError::NotFound(*cid),
        _ => BlobError::io(format!("cannot read {}", path.display()), e),
    })
}

fn sync_file_system(handle: &File, root: &Path) -> Result<(), BlobError> {
    rustix::fs::syncfs(handle)
        .map_err(|e| BlobError::io(format!("cannot flush {}", root.display()), e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One chunk through a writer, flushed.
    pub(super) fn put(store: &BlobStore, cid: &Blake3Id, bytes: &[u8]) -> Result<bool, BlobError> {
        let mut writer = store.writer(Durability::BeforeVisible);
        let new = writer.put(cid, bytes)?;
        writer.flush()?;
        Ok(new)
    }

    pub(super) fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("blobs"), 0.8).unwrap();
        (dir, store)
    }

    pub(super) fn assert_no_temporary_files(store: &BlobStore) {
        let left: Vec<_> = fs::read_dir(store.root().join("tmp")).unwrap().collect();
        assert!(left.is_empty(), "left in tmp/: {left:?}");
    }

    pub(super) fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn add_then_export_returns_the_same_bytes_at_every_size() {
        let (dir, store) = store();
        for len in [
            0,
            1,
            CHUNK_SIZE_BYTES - 1,
            CHUNK_SIZE_BYTES,
            CHUNK_SIZE_BYTES * 3 + 17,
        ] {
            let input = data(len, 3);
            let mut seen = 0;
            let m = store
                .add(&mut &input[..], |n| {
                    seen = n;
                    Ok(())
                })
                .unwrap();
            assert_eq!(seen, len as u64);
            assert_eq!(m.size_bytes, len as u64);
            assert_eq!(m.chunks.len(), len.div_ceil(CHUNK_SIZE_BYTES));
            let out = dir.path().join(format!("out-{len}"));
            store.export(&m.cid, &out, |_| Ok(())).unwrap();
            assert_eq!(fs::read(&out).unwrap(), input);
            assert!(store.has_blob(&m.cid));
        }
        assert_no_temporary_files(&store);
    }
    #[test]
    fn wrong_bytes_are_refused_and_damage_is_quarantined() {
        let (_dir, store) = store();
        let good = data(1000, 1);
        let cid = Blake3Id::of(&good);
        let mut flipped = good.clone();
        flipped[500] ^= 1;
        assert!(matches!(
            put(&store, &cid, &flipped),
            Err(BlobError::HashMismatch { .. })
        ));
        assert!(!store.has_chunk(&cid));
        assert!(put(&store, &cid, &good).unwrap());
        assert!(!put(&store, &cid, &good).unwrap(), "already there");
        // The disk flips a bit behind our back.
        fs::write(store.chunk_path(&cid), &flipped).unwrap();
        assert!(matches!(
            store.read_chunk(&cid),
            Err(BlobError::NotFound(_))
        ));
        assert!(!store.has_chunk(&cid));
        assert_eq!(
            fs::read_dir(store.root().join("quarantine"))
                .unwrap()
                .count(),
            1
        );
    }
    #[test]
    fn a_manifest_appears_only_with_all_its_chunks() {
        let (_dir, store) = store();
        let input = data(CHUNK_SIZE_BYTES + 10, 9);
        let m = store.add(&mut &input[..], |_| Ok(())).unwrap();
        let other = BlobStore::open(&store.root().with_file_name("other"), 0.8).unwrap();
        assert!(matches!(
            other.write_manifest(&m, Durability::BeforeVisible),
            Err(BlobError::NotFound(_))
        ));
        assert_eq!(other.missing_chunks(&m), vec![0, 1]);
        let first = store.read_chunk(&m.chunks[0].cid).unwrap();
        put(&other, &m.chunks[0].cid, &first).unwrap();
        assert_eq!(other.missing_chunks(&m), vec![1]);
        assert!(!other.has_blob(&m.cid));
    }

    #[test]
    fn a_panic_while_changing_pins_leaves_them_as_they_were_and_usable() {
        let (_dir, store) = store();
        let kept = store.add(&mut &data(10, 1)[..], |_| Ok(())).unwrap();
        let other = store.add(&mut &data(10, 2)[..], |_| Ok(())).unwrap();
        assert!(store.pin(&kept.cid).unwrap());
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store.change_pins(|p| {
                p.clear();
                panic!("a holder of the pin list fails midway")
            })
        }));
        assert!(panicked.is_err());
        // The lock is free again and the list is the one from before.
        assert!(store.is_pinned(&kept.cid));
        assert!(store.pin(&other.cid).unwrap());
        let reopened = BlobStore::open(store.root(), 0.8).unwrap();
        assert!(reopened.is_pinned(&kept.cid) && reopened.is_pinned(&other.cid));
    }
}
