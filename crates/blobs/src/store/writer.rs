//! Chunk writes: staged in `tmp/`, made durable in batches (one `syncfs`
//! per batch, on a thread of its own) or not at all, then renamed into
//! place. Owns [`ChunkWriter`] and [`VerifiedChunk`]; the store hands out
//! writers and commits the manifests that name their chunks.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hearthnet_base::Blake3Id;
use hearthnet_base::constants::CHUNK_SIZE_BYTES;
use parking_lot::Mutex;

use super::{BlobStore, Durability, path_in, sync_file_system};
use crate::BlobError;

impl BlobStore {
    /// A writer that stores many chunks with one flush to disk per batch
    /// instead of one per chunk, or none (see [`ChunkWriter`]).
    pub fn writer(&self, durability: Durability) -> ChunkWriter {
        ChunkWriter {
            durability,
            flush_handle: self.flush_handle.clone(),
            root: self.root.clone(),
            prefix: format!(
                "{}.w{}",
                std::process::id(),
                self.tmp_seq.fetch_add(1, Ordering::Relaxed)
            ),
            staged: Vec::new(),
            staged_bytes: 0,
            written: 0,
            created: Vec::new(),
            in_flight: None,
        }
    }
}

/// Chunks written in batches: each goes to `tmp/` unflushed. With
/// [`Durability::BeforeVisible`], every 16 MiB (`BATCH_BYTES`; and at
/// [`flush`](Self::flush)) one `syncfs` makes the batch durable and only
/// then are its chunks renamed into place: a chunk appears only once its
/// bytes are on disk, at the cost of one flush per batch rather than per
/// chunk, and that flush runs on a thread of its own while the next batch
/// is written. With [`Durability::AtNextSync`] each chunk is renamed into place
/// as soon as it is written. Unflushed chunks are dropped with the writer.
pub struct ChunkWriter {
    durability: Durability,
    flush_handle: Arc<File>,
    root: PathBuf,
    prefix: String,
    /// (temporary file, final path)
    staged: Vec<(PathBuf, PathBuf)>,
    staged_bytes: usize,
    /// Temporary files written so far (their names' counter).
    written: u64,
    created: Vec<Blake3Id>,
    /// The previous batch, flushed and renamed on a thread of its own
    /// while the next one is written.
    in_flight: Option<std::thread::JoinHandle<Result<(), BlobError>>>,
}

/// Bytes staged before a flush: 64 chunks.
const BATCH_BYTES: usize = 64 * CHUNK_SIZE_BYTES;

/// Bytes found to hash to their CID: checked where it suits the caller
/// (another thread than the one writing), stored by
/// [`ChunkWriter::put_verified`].
pub struct VerifiedChunk<B> {
    cid: Blake3Id,
    bytes: B,
}

impl<B: AsRef<[u8]>> VerifiedChunk<B> {
    pub fn new(cid: Blake3Id, bytes: B) -> Result<Self, BlobError> {
        let actual = Blake3Id::of(bytes.as_ref());
        if actual != cid {
            return Err(BlobError::HashMismatch {
                expected: cid,
                actual,
            });
        }
        Ok(Self { cid, bytes })
    }

    /// Bytes and the CID they hash to (nothing to check against).
    pub fn of(bytes: B) -> Self {
        Self {
            cid: Blake3Id::of(bytes.as_ref()),
            bytes,
        }
    }

    pub fn cid(&self) -> Blake3Id {
        self.cid
    }
}

impl ChunkWriter {
    /// Stage a chunk whose bytes must hash to `cid`; false if the store
    /// (or this batch) already has it.
    pub fn put(&mut self, cid: &Blake3Id, bytes: &[u8]) -> Result<bool, BlobError> {
        self.put_verified(&VerifiedChunk::new(*cid, bytes)?)
    }

    /// Stage a chunk already verified; false if the store (or this batch)
    /// already has it.
    pub fn put_verified<B: AsRef<[u8]>>(
        &mut self,
        chunk: &VerifiedChunk<B>,
    ) -> Result<bool, BlobError> {
        let (cid, bytes) = (&chunk.cid, chunk.bytes.as_ref());
        let dest = path_in(&self.root, cid, ".bin");
        if dest.is_file() || self.staged.iter().any(|(_, d)| *d == dest) {
            return Ok(false);
        }
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}.{}", self.prefix, self.written));
        self.written += 1;
        if let Err(e) = fs::write(&tmp, bytes) {
            let _ = fs::remove_file(&tmp);
            return Err(BlobError::io(format!("cannot write {}", tmp.display()), e));
        }
        self.staged.push((tmp, dest));
        self.staged_bytes += bytes.len();
        self.created.push(*cid);
        match self.durability {
            Durability::AtNextSync => self.flush()?,
            Durability::BeforeVisible if self.staged_bytes >= BATCH_BYTES => {
                // The disk works on this batch while the next is written.
                self.finish_in_flight()?;
                let batch = Arc::new(Mutex::new(self.take_batch()));
                let (handle, root) = (self.flush_handle.clone(), self.root.clone());
                let theirs = batch.clone();
                let spawned = std::thread::Builder::new()
                    .name("blob-flush".into())
                    .spawn(move || make_visible(&handle, &root, take_all(&theirs), true));
                match spawned {
                    Ok(thread) => self.in_flight = Some(thread),
                    // No thread to be had: flush here instead.
                    Err(_) => {
                        make_visible(&self.flush_handle, &self.root, take_all(&batch), true)?;
                    }
                }
            }
            Durability::BeforeVisible => {}
        }
        Ok(true)
    }

    /// Make every staged chunk visible (durable first, if so asked).
    pub fn flush(&mut self) -> Result<(), BlobError> {
        self.finish_in_flight()?;
        let batch = self.take_batch();
        let durable = self.durability == Durability::BeforeVisible;
        make_visible(&self.flush_handle, &self.root, batch, durable)
    }

    fn take_batch(&mut self) -> Vec<(PathBuf, PathBuf)> {
        self.staged_bytes = 0;
        std::mem::take(&mut self.staged)
    }

    fn finish_in_flight(&mut self) -> Result<(), BlobError> {
        match self.in_flight.take() {
            Some(batch) => batch.join().unwrap_or(Err(BlobError::FlushPanicked)),
            None => Ok(()),
        }
    }

    /// Chunks this writer added to the store (flushed or not).
    pub fn created(&self) -> &[Blake3Id] {
        &self.created
    }
}

/// The batch a flushing thread was to take (it never ran if taking it
/// here finds it still full).
fn take_all(batch: &Mutex<Vec<(PathBuf, PathBuf)>>) -> Vec<(PathBuf, PathBuf)> {
    std::mem::take(&mut *batch.lock())
}

/// Flush `batch` to disk if `durable`, then rename its chunks into place;
/// on failure, its temporary files that were not renamed are removed.
fn make_visible(
    handle: &File,
    root: &Path,
    batch: Vec<(PathBuf, PathBuf)>,
    durable: bool,
) -> Result<(), BlobError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut outcome = if durable {
        sync_file_system(handle, root)
    } else {
        Ok(())
    };
    for (tmp, dest) in &batch {
        if outcome.is_ok() {
            outcome = rename_into_place(tmp, dest)
                .map_err(|e| BlobError::io(format!("cannot store {}", dest.display()), e));
        }
        if outcome.is_err() {
            let _ = fs::remove_file(tmp);
        }
    }
    outcome
}

/// Rename, creating the destination's directory only when it is missing
/// (a `mkdir` per chunk is a measurable share of a fetch).
fn rename_into_place(tmp: &Path, dest: &Path) -> std::io::Result<()> {
    match fs::rename(tmp, dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = dest.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::rename(tmp, dest)
        }
        outcome => outcome,
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        let _ = self.finish_in_flight();
        for (tmp, _) in &self.staged {
            let _ = fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{assert_no_temporary_files, data, store};

    #[test]
    fn a_replica_is_visible_at_once_and_a_blob_with_it() {
        let (_dir, store) = store();
        let source = store.root().with_file_name("source");
        let source = BlobStore::open(&source, 0.8).unwrap();
        let input = [
            data(CHUNK_SIZE_BYTES, 5),
            data(CHUNK_SIZE_BYTES, 6),
            data(3, 7),
        ]
        .concat();
        let m = source.add(&mut &input[..], |_| Ok(())).unwrap();
        let mut writer = store.writer(Durability::AtNextSync);
        for (i, chunk) in m.chunks.iter().enumerate() {
            let bytes = source.read_chunk(&chunk.cid).unwrap();
            assert!(writer.put(&chunk.cid, &bytes).unwrap());
            // No flush needed: each chunk appears as it is written.
            assert_eq!(store.missing_chunks(&m).len(), m.chunks.len() - i - 1);
        }
        drop(writer);
        store.write_manifest(&m, Durability::AtNextSync).unwrap();
        store.sync().unwrap();
        assert!(store.has_blob(&m.cid));
        assert!(store.verify(&m).is_empty());
        assert_no_temporary_files(&store);
    }

    #[test]
    fn a_flush_whose_thread_panicked_is_an_error_of_its_own() {
        let (_dir, store) = store();
        let mut writer = store.writer(Durability::BeforeVisible);
        writer.in_flight = Some(std::thread::spawn(|| panic!("the flushing thread dies")));
        assert!(matches!(writer.flush(), Err(BlobError::FlushPanicked)));
        // The writer is usable again: the next batch lands.
        let bytes = data(100, 4);
        let cid = Blake3Id::of(&bytes);
        assert!(writer.put(&cid, &bytes).unwrap());
        writer.flush().unwrap();
        assert_eq!(store.read_chunk(&cid).unwrap(), bytes);
    }
}
