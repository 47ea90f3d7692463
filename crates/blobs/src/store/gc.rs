//! Collection (M07 §5.3): when the disk is fuller than the threshold,
//! unpinned blobs go, least recently used first, then chunks no manifest
//! names and the quarantine. Owns the policy (targets, grace window); the
//! store's locks keep it from racing commits and pins.

use std::collections::HashMap;
use std::fs;
use std::time::SystemTime;

use hearthnet_base::Blake3Id;
use serde::Serialize;

use super::{BlobInfo, BlobStore, mtime};
use crate::{BlobError, Manifest};

/// GC stops once the disk is back under this share (M07 §5.3), or under
/// the threshold's 7/8 when the threshold is set lower than 0.8.
const GC_TARGET: f64 = 0.7;
/// Blobs used this recently (just added, fetched or read) are never
/// collected, nor are unreferenced chunks this young (a fetch in progress
/// or waiting to resume).
const GC_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

/// How full the disk holding the store is.
#[derive(Debug, Clone, Copy)]
pub struct DiskUsage {
    pub used: u64,
    pub total: u64,
}

impl DiskUsage {
    fn fraction(self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.used as f64 / self.total as f64
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub blobs_removed: Vec<Blake3Id>,
    pub bytes_freed: u64,
}

impl BlobStore {
    /// The filesystem's usage where the store lives.
    pub fn disk_usage(&self) -> Option<DiskUsage> {
        let stat = rustix::fs::statvfs(&self.root).ok()?;
        let total = stat.f_blocks.saturating_mul(stat.f_frsize);
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        Some(DiskUsage {
            used: total.saturating_sub(free),
            total,
        })
    }

    /// Refuse, as a full disk, to take `needed` more bytes when the
    /// filesystem has less than that free: a fetch checks before its first
    /// chunk rather than filling the disk and failing halfway. Where usage
    /// cannot be read the write goes ahead; a full disk still fails it.
    pub fn ensure_room(&self, needed: u64) -> Result<(), BlobError> {
        self.ensure_room_with(needed, self.disk_usage())
    }

    /// [`ensure_room`](Self::ensure_room) against a given view of the disk.
    pub fn ensure_room_with(&self, needed: u64, usage: Option<DiskUsage>) -> Result<(), BlobError> {
        let Some(usage) = usage else {
            return Ok(());
        };
        let free = usage.total.saturating_sub(usage.used);
        if needed > free {
            return Err(BlobError::DiskFull(format!(
                "{} ({needed} bytes needed, {free} free)",
                self.root.display()
            )));
        }
        Ok(())
    }

    /// When the disk is fuller than the threshold, remove unpinned blobs,
    /// least recently used first, until it is under 70 % (M07 §5.3).
    /// Chunks another remaining blob uses stay.
    pub fn gc(&self) -> Result<GcReport, BlobError> {
        self.gc_with(&mut || self.disk_usage())
    }

    /// [`gc`](Self::gc) against a given view of the disk (for tests and
    /// quotas).
    pub fn gc_with(
        &self,
        usage: &mut dyn FnMut() -> Option<DiskUsage>,
    ) -> Result<GcReport, BlobError> {
        let mut report = GcReport::default();
        let Some(start) = usage() else {
            return Ok(report);
        };
        if start.fraction() <= self.gc_threshold {
            return Ok(report);
        }
        let target = GC_TARGET.min(self.gc_threshold * 0.875);
        // No manifest is committed while chunks are being removed (a
        // commit checks its chunks under this lock), and nothing gets
        // pinned midway.
        let _commits = self.commit_lock();
        // Only read here, so a panic below leaves the pins as they were;
        // the files already removed are gone whole (a manifest first, so
        // no blob is left naming a missing chunk).
        let pins = self.pins.lock();
        let now = SystemTime::now();
        let recent = |unix: u64| {
            let used = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(unix);
            now.duration_since(used).map_or(true, |age| age < GC_GRACE)
        };
        let blobs: Vec<(BlobInfo, Manifest)> = self
            .list_with(&pins)
            .into_iter()
            .filter_map(|info| self.manifest_quietly(&info.cid).map(|m| (info, m)))
            .collect();
        let mut references: HashMap<Blake3Id, usize> = HashMap::new();
        for (_, m) in &blobs {
            for c in &m.chunks {
                *references.entry(c.cid).or_default() += 1;
            }
        }
        // Freed space as the store counts it: some filesystems show it
        // late, and re-reading would evict far past the target.
        let over = |freed: u64| {
            let used = start.used.saturating_sub(freed);
            start.total > 0 && used as f64 / start.total as f64 >= target
        };
        for (info, manifest) in &blobs {
            if !over(report.bytes_freed) {
                break;
            }
            // Pinned, or used in the last minutes (just added or fetched,
            // being read): kept.
            if pins.contains(&info.cid) || recent(info.last_used) {
                continue;
            }
            let _ = fs::remove_file(self.manifest_path(&info.cid));
            for chunk in &manifest.chunks {
                let left = references.get_mut(&chunk.cid).map(|n| {
                    *n -= 1;
                    *n
                });
                if left == Some(0) {
                    report.bytes_freed += self.remove_chunk(&chunk.cid);
                }
            }
            report.blobs_removed.push(info.cid);
        }
        if over(report.bytes_freed) {
            report.bytes_freed += self.remove_debris(&references, &recent);
        }
        if !report.blobs_removed.is_empty() || report.bytes_freed > 0 {
            tracing::info!(
                blobs = report.blobs_removed.len(),
                bytes = report.bytes_freed,
                "collected unpinned blobs"
            );
        }
        Ok(report)
    }

    /// Chunks no manifest names (left by a fetch that never finished, kept
    /// for resuming) once they are older than the grace window, and the
    /// quarantine.
    fn remove_debris(
        &self,
        references: &HashMap<Blake3Id, usize>,
        recent: &dyn Fn(u64) -> bool,
    ) -> u64 {
        let mut freed = 0;
        for shard in fs::read_dir(&self.root).into_iter().flatten().flatten() {
            let prefix = shard.file_name().to_string_lossy().into_owned();
            if prefix.len() != 2 {
                continue;
            }
            for file in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_suffix(".bin") else {
                    continue;
                };
                let Ok(cid) = Blake3Id::parse(&format!("blake3:{prefix}{rest}")) else {
                    continue;
                };
                if references.get(&cid).copied().unwrap_or(0) == 0 && !recent(mtime(&file.path())) {
                    freed += self.remove_chunk(&cid);
                }
            }
        }
        for file in fs::read_dir(self.root.join("quarantine"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let len = file.metadata().map_or(0, |m| m.len());
            if fs::remove_file(file.path()).is_ok() {
                freed += len;
            }
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use hearthnet_base::constants::CHUNK_SIZE_BYTES;

    use super::*;
    use crate::store::tests::{data, store};

    #[test]
    fn room_is_refused_as_a_full_disk_when_less_is_free_than_needed() {
        let (_dir, store) = store();
        let usage = Some(DiskUsage {
            used: 900,
            total: 1000,
        });
        store.ensure_room_with(100, usage).unwrap();
        let refused = store.ensure_room_with(101, usage).unwrap_err();
        assert!(matches!(refused, BlobError::DiskFull(_)), "{refused:?}");
        assert_eq!(refused.code(), hearthnet_base::ErrorCode::CapacityExceeded);
        assert!(refused.to_string().contains("101 bytes needed, 100 free"));
        // Usage unknown: the write itself will tell.
        store.ensure_room_with(u64::MAX, None).unwrap();
        // The real disk has room for nothing at all, and not for 16 EiB.
        store.ensure_room(0).unwrap();
        assert!(matches!(
            store.ensure_room(u64::MAX),
            Err(BlobError::DiskFull(_))
        ));
    }

    #[test]
    fn gc_evicts_least_recently_used_unpinned_blobs_and_never_pinned_ones() {
        let (_dir, store) = store();
        let blobs: Vec<Manifest> = (0..4)
            .map(|i| {
                store
                    .add(&mut &data(CHUNK_SIZE_BYTES, i)[..], |_| Ok(()))
                    .unwrap()
            })
            .collect();
        // Oldest use first: 0, 1, 2, 3; then 0 is used again.
        for (i, m) in blobs.iter().enumerate() {
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + i as u64);
            File::options()
                .write(true)
                .open(store.manifest_path(&m.cid))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        store.manifest(&blobs[0].cid).unwrap();
        store.pin(&blobs[1].cid).unwrap();
        // A disk the size of 5 chunks: 4 stored is 80 %+ (over 0.8 needs > 4).
        let total = 5 * CHUNK_SIZE_BYTES as u64;
        let mut usage = || {
            Some(DiskUsage {
                used: store.disk_bytes() + CHUNK_SIZE_BYTES as u64 / 2,
                total,
            })
        };
        let report = store.gc_with(&mut usage).unwrap();
        // Needs two removals to get under 70 %: 2 then 3 (1 is pinned, 0 was used).
        assert_eq!(report.blobs_removed, vec![blobs[2].cid, blobs[3].cid]);
        assert!(store.has_blob(&blobs[0].cid) && store.has_blob(&blobs[1].cid));
        assert_eq!(report.bytes_freed, 2 * CHUNK_SIZE_BYTES as u64);
        // Pins survive a reopen.
        let reopened = BlobStore::open(store.root(), 0.8).unwrap();
        assert!(reopened.is_pinned(&blobs[1].cid));
        assert!(reopened.unpin(&blobs[1].cid).unwrap());
        assert!(
            !BlobStore::open(store.root(), 0.8)
                .unwrap()
                .is_pinned(&blobs[1].cid)
        );
    }
}
