//! Fetching a blob from the peers that hold it (M07 §5.5–§5.6): the
//! manifest first, then the missing chunks split among the holders and
//! streamed from all of them at once, each chunk verified as it arrives.
//! A holder that fails or sends a bad chunk is dropped and what it still
//! owed goes to the others; chunks already stored are never fetched again,
//! so a fetch cut off midway resumes where it stopped. Chunks travel as
//! raw bytes through a [`ChunkSource`] where the holder offers that, else
//! as `file.read` frames over the bus.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use hearthnet_base::{Blake3Id, ErrorCode, NodeId, TrustLevel};
use hearthnet_blobs::{BlobStore, Durability, Manifest, VerifiedChunk, decode_b64};
use hearthnet_bus::{Bus, CallError, InboundCall, Item, Version};
use hearthnet_wire::peer::ChunksRequest;
use serde_json::json;

use crate::Chunks;

/// A way to a holder's chunks as raw bytes (the node's `/blobs/v1/chunks`
/// client), faster than `file.read` frames.
pub trait ChunkSource: Send + Sync {
    /// Chunks `indices` of blob `cid` from `holder`, as they arrive;
    /// `Ok(None)` when the holder does not offer raw chunks.
    fn chunks(
        &self,
        holder: NodeId,
        cid: Blake3Id,
        indices: Vec<usize>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Option<Chunks>, CallError>>;
}

/// Holders streamed from at once.
const PARALLEL_HOLDERS: usize = 4;
/// A chunk that failed this often fails the fetch (M07 §5.6).
const ATTEMPTS_PER_CHUNK: u32 = 3;
/// Chunks asked of one holder in one `file.read` call (16 MiB): bounded
/// calls keep the deadline per call meaningful on slow links, and the
/// budget of 10 calls a second per peer still allows 160 MiB/s from each
/// holder.
const CHUNKS_PER_CALL: usize = 64;
/// Chunks asked in one raw request (256 MiB): it has no deadline, only an
/// idle timeout, and each new request empties the pipeline once, so fewer
/// are faster; bounded still, so holders are rebalanced between rounds.
const RAW_CHUNKS_PER_CALL: usize = 1024;
/// Times a holder may answer "busy" (`capacity_exceeded`, `rate_limited`)
/// in one fetch before it is dropped from it.
const MAX_BUSY_WAITS: u32 = 20;
/// A holder that sends no chunk for this long is dropped: it must keep
/// going, not merely stay connected.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// The manifest comes first and is small: a holder that does not send it
/// promptly is skipped.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Fetch blob `cid` into `store` from `holders`. `progress` receives the
/// bytes of the blob present so far.
pub async fn fetch(
    bus: &Arc<Bus>,
    source: Option<&Arc<dyn ChunkSource>>,
    store: &Arc<BlobStore>,
    cid: Blake3Id,
    holders: &[NodeId],
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<(Manifest, Vec<NodeId>), CallError> {
    let (manifest, first) = manifest_from(bus, cid, holders).await?;
    let mut ledger = Ledger::new(&manifest, first, holders);
    let have = AtomicU64::new(0);
    loop {
        let missing = missing_chunks(store, &manifest).await?;
        ledger.charge(&missing)?;
        let missing_bytes = ensure_room(store, &manifest, &missing)?;
        let present = manifest.size_bytes - missing_bytes;
        have.store(present, Ordering::Relaxed);
        progress(present, manifest.size_bytes);
        if missing.is_empty() {
            break;
        }
        let (manifest, have) = (&manifest, &have);
        let rounds = ledger
            .plan(&missing)?
            .into_iter()
            .map(|(holder, share)| async move {
                match chunks_from(bus, source, manifest, holder, share).await {
                    Ok((chunks, share)) => {
                        let (stored, outcome) =
                            store_chunks(chunks, store, manifest, holder, &share, have, progress)
                                .await;
                        Part {
                            holder,
                            share,
                            stored,
                            outcome,
                        }
                    }
                    Err((e, share)) => Part {
                        holder,
                        share,
                        stored: 0,
                        outcome: Err(Failure::Holder(e)),
                    },
                }
            });
        let mut wait = Duration::ZERO;
        for part in futures_util::future::join_all(rounds).await {
            wait = wait.max(ledger.receive(part)?);
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    let store2 = store.clone();
    let m2 = manifest.clone();
    tokio::task::spawn_blocking(move || store2.write_manifest(&m2, Durability::AtNextSync))
        .await
        .map_err(internal)?
        .map_err(|e| CallError::new(e.code(), e.to_string()))?;
    Ok((manifest, ledger.served_by.into_iter().collect()))
}

/// The bytes of `missing` chunks, refused as a full disk
/// (`capacity_exceeded`) when the store's disk has less free: checked
/// before any chunk is asked for, so a large blob does not fill the disk
/// and fail halfway.
fn ensure_room(
    store: &BlobStore,
    manifest: &Manifest,
    missing: &[usize],
) -> Result<u64, CallError> {
    let bytes = missing
        .iter()
        .filter_map(|i| manifest.chunks.get(*i))
        .fold(0u64, |sum, c| sum.saturating_add(c.size_bytes));
    store
        .ensure_room(bytes)
        .map_err(|e| CallError::new(e.code(), e.to_string()))?;
    Ok(bytes)
}

/// Indices of the chunks of `manifest` that `store` lacks (off the async
/// threads: it looks at every chunk's file).
async fn missing_chunks(
    store: &Arc<BlobStore>,
    manifest: &Manifest,
) -> Result<Vec<usize>, CallError> {
    let (store, manifest) = (store.clone(), manifest.clone());
    tokio::task::spawn_blocking(move || store.missing_chunks(&manifest))
        .await
        .map_err(internal)
}

/// What a fetch has learnt between rounds: which holders are still in it
/// and which served, how often each chunk failed and each holder was busy.
/// It decides what the next round asks of whom and when the fetch gives
/// up; it does no IO ([`fetch`] runs the rounds).
struct Ledger {
    cid: Blake3Id,
    chunk_count: usize,
    /// Holders still in this fetch, the one that sent the manifest first.
    healthy: Vec<NodeId>,
    /// Holders that stored at least one chunk.
    served_by: BTreeSet<NodeId>,
    /// Failed attempts per chunk index.
    failures: BTreeMap<usize, u32>,
    /// Chunks asked for in the last round: those still missing failed.
    attempted: BTreeSet<usize>,
    /// How often each holder said it was busy.
    busy: BTreeMap<NodeId, u32>,
}

/// One holder's part of a round: what it was asked, how many chunks of it
/// were stored, and why it ended early, if it did.
struct Part {
    holder: NodeId,
    share: Vec<usize>,
    stored: usize,
    outcome: Result<(), Failure>,
}

impl Ledger {
    fn new(manifest: &Manifest, first: NodeId, holders: &[NodeId]) -> Self {
        Self {
            cid: manifest.cid,
            chunk_count: manifest.chunks.len(),
            healthy: std::iter::once(first)
                .chain(holders.iter().copied().filter(|h| *h != first))
                .collect(),
            served_by: BTreeSet::new(),
            failures: BTreeMap::new(),
            attempted: BTreeSet::new(),
            busy: BTreeMap::new(),
        }
    }

    /// Charge a failed attempt to every chunk asked for in the last round
    /// that is still `missing`; one that failed [`ATTEMPTS_PER_CHUNK`]
    /// times fails the fetch (M07 §5.6).
    fn charge(&mut self, missing: &[usize]) -> Result<(), CallError> {
        for i in missing.iter().filter(|i| self.attempted.contains(*i)) {
            let n = self.failures.entry(*i).or_default();
            *n += 1;
            if *n >= ATTEMPTS_PER_CHUNK {
                return Err(CallError::new(
                    ErrorCode::Partition,
                    format!(
                        "chunk {i} of {} failed {ATTEMPTS_PER_CHUNK} times",
                        self.cid.short()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The next round's shares of `missing`, in stripes: holder k of the
    /// first [`PARALLEL_HOLDERS`] is asked chunks k, k+n, k+2n, … (a
    /// bounded batch of them). Fails when no holder is left.
    fn plan(&mut self, missing: &[usize]) -> Result<Vec<(NodeId, Vec<usize>)>, CallError> {
        if self.healthy.is_empty() {
            return Err(CallError::new(
                ErrorCode::Partition,
                format!(
                    "no holder could supply {} of the {} chunks of {}",
                    missing.len(),
                    self.chunk_count,
                    self.cid.short()
                ),
            ));
        }
        self.attempted.clear();
        let workers: Vec<NodeId> = self
            .healthy
            .iter()
            .copied()
            .take(PARALLEL_HOLDERS)
            .collect();
        let n = workers.len();
        Ok(workers
            .into_iter()
            .enumerate()
            .map(|(k, holder)| {
                let share = missing
                    .iter()
                    .copied()
                    .skip(k)
                    .step_by(n)
                    .take(RAW_CHUNKS_PER_CALL)
                    .collect();
                (holder, share)
            })
            .collect())
    }

    /// Take in how one holder's part went: how long to wait before the
    /// next round (the holder said it was busy), or the local failure that
    /// ends the whole fetch.
    fn receive(&mut self, part: Part) -> Result<Duration, CallError> {
        let Part {
            holder,
            share,
            stored,
            outcome,
        } = part;
        if stored > 0 {
            self.served_by.insert(holder);
        }
        // A holder's chunks count as tried only if it sent some: one
        // refusing at once is dropped (or waited for), not charged.
        if stored > 0 || outcome.is_ok() {
            self.attempted.extend(share.iter().copied());
        }
        match outcome {
            Ok(()) if stored == share.len() => {}
            Ok(()) => {
                tracing::warn!(holder = %holder.short(), blob = %self.cid.short(), "holder ended early; others take over");
                self.drop_holder(holder);
            }
            Err(Failure::Local(e)) => return Err(e),
            // Busy or over its rate budget before it started: wait as told
            // and keep it, a bounded number of times.
            Err(Failure::Holder(e))
                if stored == 0
                    && matches!(e.code, ErrorCode::RateLimited | ErrorCode::CapacityExceeded) =>
            {
                let waits = self.busy.entry(holder).or_default();
                *waits += 1;
                if *waits <= MAX_BUSY_WAITS {
                    let told = e.retry_after_ms.unwrap_or(1000).min(10_000);
                    return Ok(Duration::from_millis(told));
                }
                tracing::warn!(holder = %holder.short(), blob = %self.cid.short(), "holder stayed busy; dropped from this fetch");
                self.drop_holder(holder);
            }
            Err(Failure::Holder(e)) => {
                tracing::warn!(holder = %holder.short(), blob = %self.cid.short(), error = %e, "holder dropped from this fetch");
                self.drop_holder(holder);
            }
        }
        Ok(Duration::ZERO)
    }

    fn drop_holder(&mut self, holder: NodeId) {
        self.healthy.retain(|h| *h != holder);
    }
}

fn internal(e: impl std::fmt::Display) -> CallError {
    CallError::new(ErrorCode::InternalError, e.to_string())
}

fn read_call(bus: &Bus, holder: NodeId, input: &ChunksRequest) -> InboundCall {
    InboundCall {
        timeout: Some(Duration::from_secs(crate::READ_TIMEOUT_SECONDS)),
        stream: true,
        target: Some(holder),
        ..InboundCall::new(
            crate::READ,
            Version::new(1, 0),
            json!({"params": {}, "input": input}),
            bus.node_id(),
            TrustLevel::Anchor,
        )
    }
}

/// The manifest, from the first holder that has a valid one.
async fn manifest_from(
    bus: &Bus,
    cid: Blake3Id,
    holders: &[NodeId],
) -> Result<(Manifest, NodeId), CallError> {
    let mut last = CallError::new(
        ErrorCode::NotFound,
        format!("no peer is known to hold {cid}"),
    );
    for holder in holders {
        // `chunks: []` asks for the manifest alone (our extension).
        let request = ChunksRequest {
            cid,
            chunks: Some(Vec::new()),
        };
        let mut call = read_call(bus, *holder, &request);
        call.timeout = Some(MANIFEST_TIMEOUT);
        let mut stream = match bus.call(call) {
            Ok(s) => s,
            Err(e) => {
                last = e;
                continue;
            }
        };
        while let Some(item) = stream.next().await {
            match item {
                Item::Frame(f) if f.event == "manifest" => {
                    match Manifest::from_wire(&f.data) {
                        Ok(m) if m.cid == cid => return Ok((m, *holder)),
                        Ok(_) | Err(_) => {
                            last = CallError::new(
                                ErrorCode::BadRequest,
                                format!(
                                    "{} sent a manifest that does not match {cid}",
                                    holder.short()
                                ),
                            );
                        }
                    }
                    break;
                }
                Item::Frame(_) => {}
                Item::Done(_) => break,
                Item::Failed(e) => {
                    last = e;
                    break;
                }
            }
        }
    }
    Err(last)
}

/// Chunks of `manifest` from `holder`, the ones of `share` that one call
/// asks for (all of them as raw bytes where the holder offers that, else
/// the first [`CHUNKS_PER_CALL`] as `file.read` frames over the bus); with
/// the share actually asked, or its failure.
async fn chunks_from(
    bus: &Bus,
    source: Option<&Arc<dyn ChunkSource>>,
    manifest: &Manifest,
    holder: NodeId,
    mut share: Vec<usize>,
) -> Result<(Chunks, Vec<usize>), (CallError, Vec<usize>)> {
    let timeout = Duration::from_secs(crate::READ_TIMEOUT_SECONDS);
    if let Some(source) = source {
        match source
            .chunks(holder, manifest.cid, share.clone(), timeout)
            .await
        {
            Ok(Some(chunks)) => return Ok((chunks, share)),
            Ok(None) => {}
            Err(e) => return Err((e, share)),
        }
    }
    share.truncate(CHUNKS_PER_CALL);
    let request = ChunksRequest {
        cid: manifest.cid,
        chunks: Some(share.iter().map(|&i| i as u64).collect()),
    };
    let call = read_call(bus, holder, &request);
    let stream = match bus.call(call) {
        Ok(stream) => stream,
        Err(e) => return Err((e, share)),
    };
    let chunks = futures_util::stream::unfold(Some(stream), |stream| async move {
        let mut stream = stream?;
        loop {
            let frame = match stream.next().await? {
                Item::Frame(f) => f,
                Item::Done(_) => return None,
                Item::Failed(e) => return Some((Err(e), None)),
            };
            if frame.event != "chunk" {
                continue;
            }
            let Some(i) = frame.data["i"].as_u64().map(|i| i as usize) else {
                return Some((
                    Err(CallError::bad_request("a chunk frame without `i`")),
                    None,
                ));
            };
            let Some(bytes) = frame.data["data_b64"].as_str().and_then(decode_b64) else {
                let e = CallError::bad_request(format!("chunk {i}: `data_b64` is not Base64"));
                return Some((Err(e), None));
            };
            return Some((Ok((i, Bytes::from(bytes))), Some(stream)));
        }
    })
    .boxed();
    Ok((chunks, share))
}

/// Chunks waiting for each writer while more arrive (1 MiB).
const WRITE_AHEAD: usize = 4;
/// Threads writing one holder's chunks: copying into the page cache is
/// the slowest step of a fetch, and it scales with cores.
const WRITERS: usize = 2;

/// Verify and store `chunks` (asked for: `share`) as they arrive, the
/// network and the disk working at once: how many were stored, and why
/// the holder's part ended early, if it did. Each chunk is taken once and
/// must come within [`CHUNK_TIMEOUT`] of the last, so a holder can neither
/// repeat itself nor drip forever.
async fn store_chunks(
    mut chunks: Chunks,
    store: &Arc<BlobStore>,
    manifest: &Manifest,
    holder: NodeId,
    share: &[usize],
    have: &AtomicU64,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> (usize, Result<(), Failure>) {
    let mut wanted: BTreeSet<usize> = share.iter().copied().collect();
    // Writers stop at the first chunk that fails; what they stored so far
    // stays, even when the holder failed, so a later round (or fetch)
    // resumes.
    let (to_disk, disks): (Vec<_>, Vec<_>) = (0..WRITERS)
        .map(|_| {
            let (tx, mut arriving) =
                tokio::sync::mpsc::channel::<VerifiedChunk<Bytes>>(WRITE_AHEAD);
            let store = store.clone();
            let disk = tokio::task::spawn_blocking(move || {
                let mut writer = store.writer(Durability::AtNextSync);
                let mut stored = 0;
                while let Some(chunk) = arriving.blocking_recv() {
                    if let Err(e) = writer.put_verified(&chunk) {
                        return (stored, Err(e));
                    }
                    stored += 1;
                }
                (stored, writer.flush())
            });
            (tx, disk)
        })
        .unzip();
    let mut next_writer = (0..WRITERS).cycle();
    // Hashing here and writing there: the two run at once.
    let outcome = loop {
        if wanted.is_empty() {
            break Ok(()); // all there: no need to wait for the end mark
        }
        let (i, bytes) = match tokio::time::timeout(CHUNK_TIMEOUT, chunks.next()).await {
            Err(_) => {
                break Err(CallError::new(
                    ErrorCode::Timeout,
                    format!(
                        "no chunk from {} for {} s",
                        holder.short(),
                        CHUNK_TIMEOUT.as_secs()
                    ),
                ));
            }
            Ok(None) => break Ok(()),
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(e))) => break Err(e),
        };
        let Some(expected) = manifest.chunks.get(i).filter(|_| wanted.remove(&i)) else {
            break Err(CallError::bad_request(format!(
                "chunk {i} was not asked for, or came twice"
            )));
        };
        let size = bytes.len() as u64;
        let chunk = match VerifiedChunk::new(expected.cid, bytes) {
            Ok(chunk) => chunk,
            // A chunk that does not hash to its CID ends this holder's part.
            Err(e) => {
                tracing::warn!(holder = %holder.short(), chunk = i, error = %e, "bad chunk from a holder");
                break Err(CallError::new(
                    e.code(),
                    format!("chunk {i} from {}: {e}", holder.short()),
                ));
            }
        };
        let writer = next_writer.next().unwrap_or(0);
        if to_disk[writer].send(chunk).await.is_err() {
            break Ok(()); // the disk side stopped: its reason follows
        }
        let now = have.fetch_add(size, Ordering::Relaxed) + size;
        progress(now, manifest.size_bytes);
    };
    drop(to_disk);
    // Our disk, not the holder: a failure there stops the whole fetch (a
    // full disk is `capacity_exceeded`).
    let mut stored = 0;
    let mut local = None;
    for disk in disks {
        match disk.await {
            Ok((n, written)) => {
                stored += n;
                if let Err(e) = written {
                    local.get_or_insert(CallError::new(e.code(), e.to_string()));
                }
            }
            Err(e) => {
                local.get_or_insert(internal(e));
            }
        }
    }
    if let Some(e) = local {
        return (stored, Err(Failure::Local(e)));
    }
    (stored, outcome.map_err(Failure::Holder))
}

/// Why a holder's part ended: the holder's doing, or ours (the disk).
enum Failure {
    Holder(CallError),
    Local(CallError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearthnet_base::DeviceKey;
    use hearthnet_base::constants::CHUNK_SIZE_BYTES;

    /// A store holding a 3-chunk blob, and an empty one to fetch into.
    fn stores() -> (tempfile::TempDir, Arc<BlobStore>, Arc<BlobStore>, Manifest) {
        let dir = tempfile::tempdir().unwrap();
        let source = BlobStore::open(&dir.path().join("source"), 0.8).unwrap();
        let input: Vec<u8> = (0..2 * CHUNK_SIZE_BYTES + 9)
            .map(|i| (i / 7 % 251) as u8)
            .collect();
        let manifest = source.add(&mut &input[..], |_| Ok(())).unwrap();
        let target = BlobStore::open(&dir.path().join("target"), 0.8).unwrap();
        (dir, Arc::new(source), Arc::new(target), manifest)
    }

    fn chunk(
        source: &BlobStore,
        manifest: &Manifest,
        i: usize,
    ) -> Result<(usize, Bytes), CallError> {
        Ok((
            i,
            Bytes::from(source.read_chunk(&manifest.chunks[i].cid).unwrap()),
        ))
    }

    async fn store(
        items: Vec<Result<(usize, Bytes), CallError>>,
        target: &Arc<BlobStore>,
        manifest: &Manifest,
        share: &[usize],
    ) -> (usize, Result<(), Failure>) {
        let holder = DeviceKey::generate().node_id();
        let have = AtomicU64::new(0);
        let chunks = futures_util::stream::iter(items).boxed();
        store_chunks(chunks, target, manifest, holder, share, &have, &|_, _| {}).await
    }

    #[test]
    fn a_fetch_without_room_for_the_missing_chunks_is_capacity_exceeded() {
        let (_dir, _source, target, manifest) = stores();
        let all: Vec<usize> = (0..manifest.chunks.len()).collect();
        assert_eq!(
            ensure_room(&target, &manifest, &all).unwrap(),
            manifest.size_bytes
        );
        // No disk has room for 2 × 2^62 bytes.
        let huge = Manifest::new(
            (0..2)
                .map(|i| hearthnet_blobs::ChunkRef {
                    cid: Blake3Id::of(&[i]),
                    size_bytes: 1 << 62,
                })
                .collect(),
        );
        let refused = ensure_room(&target, &huge, &[0, 1]).unwrap_err();
        assert_eq!(refused.code, ErrorCode::CapacityExceeded);
        assert!(refused.message.contains("full"), "{refused}");
        // Only what is missing counts.
        assert_eq!(ensure_room(&target, &huge, &[]).unwrap(), 0);
    }

    #[tokio::test]
    async fn a_bad_chunk_ends_the_holders_part_and_what_came_before_stays() {
        let (_dir, source, target, manifest) = stores();
        let mut bad = chunk(&source, &manifest, 1).unwrap();
        bad.1 = Bytes::from(vec![0u8; bad.1.len()]);
        let items = vec![
            chunk(&source, &manifest, 0),
            Ok(bad),
            chunk(&source, &manifest, 2),
        ];
        match store(items, &target, &manifest, &[0, 1, 2]).await {
            (1, Err(Failure::Holder(e))) => assert!(e.message.contains("chunk 1"), "{e}"),
            (stored, other) => panic!(
                "expected the holder to fail, got {stored}, {:?}",
                other.ok()
            ),
        }
        assert_eq!(target.missing_chunks(&manifest), vec![1, 2]);
    }

    #[tokio::test]
    async fn a_chunk_not_asked_for_or_a_broken_stream_is_the_holders_failure() {
        let (_dir, source, target, manifest) = stores();
        let items = vec![chunk(&source, &manifest, 2)];
        assert!(matches!(
            store(items, &target, &manifest, &[0, 1]).await,
            (0, Err(Failure::Holder(_)))
        ));
        assert_eq!(target.missing_chunks(&manifest), vec![0, 1, 2]);
        let cut = CallError::new(ErrorCode::Partition, "the stream broke");
        let items = vec![chunk(&source, &manifest, 0), Err(cut)];
        assert!(matches!(
            store(items, &target, &manifest, &[0, 1]).await,
            (1, Err(Failure::Holder(e))) if e.code == ErrorCode::Partition
        ));
        // The chunk that arrived before the break is kept: a resume skips it.
        assert_eq!(target.missing_chunks(&manifest), vec![1, 2]);
        let rest = vec![chunk(&source, &manifest, 1), chunk(&source, &manifest, 2)];
        assert!(matches!(
            store(rest, &target, &manifest, &[1, 2]).await,
            (2, Ok(()))
        ));
        assert!(target.missing_chunks(&manifest).is_empty());
    }

    #[tokio::test]
    async fn a_holder_repeating_a_chunk_fails_and_is_not_counted_twice() {
        let (_dir, source, target, manifest) = stores();
        let again = || chunk(&source, &manifest, 0);
        let items = vec![again(), again(), again()];
        match store(items, &target, &manifest, &[0, 1, 2]).await {
            (1, Err(Failure::Holder(e))) => assert!(e.message.contains("twice"), "{e}"),
            (stored, other) => panic!(
                "expected a failure after 1 chunk: {stored}, {:?}",
                other.ok()
            ),
        }
        // An endless stream of the same chunk ends as soon as it repeats.
        let first = chunk(&source, &manifest, 0);
        let endless = futures_util::stream::repeat_with(move || first.clone()).boxed();
        let have = AtomicU64::new(0);
        let holder = DeviceKey::generate().node_id();
        let (stored, outcome) = store_chunks(
            endless,
            &target,
            &manifest,
            holder,
            &[0, 1],
            &have,
            &|_, _| {},
        )
        .await;
        assert_eq!(stored, 1);
        assert!(outcome.is_err());
    }

    fn node() -> NodeId {
        DeviceKey::generate().node_id()
    }

    fn part(holder: NodeId, share: &[usize], stored: usize, outcome: Result<(), Failure>) -> Part {
        Part {
            holder,
            share: share.to_vec(),
            stored,
            outcome,
        }
    }

    fn busy(retry_after_ms: Option<u64>) -> Result<(), Failure> {
        let mut e = CallError::new(ErrorCode::RateLimited, "slow down");
        e.retry_after_ms = retry_after_ms;
        Err(Failure::Holder(e))
    }

    #[test]
    fn a_round_stripes_the_missing_chunks_over_the_first_holders_manifest_sender_first() {
        let (_dir, _source, _target, manifest) = stores();
        let holders: Vec<NodeId> = (0..6).map(|_| node()).collect();
        let mut ledger = Ledger::new(&manifest, holders[3], &holders);
        let missing: Vec<usize> = (0..10).collect();
        let plan = ledger.plan(&missing).unwrap();
        let expected = [
            (holders[3], vec![0, 4, 8]),
            (holders[0], vec![1, 5, 9]),
            (holders[1], vec![2, 6]),
            (holders[2], vec![3, 7]),
        ];
        assert_eq!(plan, expected);
    }

    #[test]
    fn a_chunk_fails_the_fetch_only_after_its_third_failed_attempt() {
        let (_dir, _source, _target, manifest) = stores();
        let holder = node();
        let mut ledger = Ledger::new(&manifest, holder, &[holder]);
        // Nothing was asked yet, so nothing is charged.
        ledger.charge(&[1, 2]).unwrap();
        for attempt in 1..=ATTEMPTS_PER_CHUNK {
            assert_eq!(ledger.plan(&[1]).unwrap(), [(holder, vec![1])]);
            // The holder sent nothing, yet ended cleanly: chunk 1 was tried
            // (and the holder dropped, so put it back for the next round).
            let wait = ledger.receive(part(holder, &[1], 0, Ok(()))).unwrap();
            assert_eq!(wait, Duration::ZERO);
            assert!(ledger.healthy.is_empty());
            ledger.healthy = vec![holder];
            // Chunk 2 is missing too but was never asked for: not charged.
            let charged = ledger.charge(&[1, 2]);
            if attempt < ATTEMPTS_PER_CHUNK {
                charged.unwrap();
            } else {
                let e = charged.unwrap_err();
                assert_eq!(e.code, ErrorCode::Partition);
                assert!(e.message.contains("chunk 1 of"), "{e}");
            }
        }
        assert_eq!(ledger.failures.get(&2), None);
    }

    #[test]
    fn a_busy_holder_is_waited_for_a_bounded_number_of_times_and_never_charged() {
        let (_dir, _source, _target, manifest) = stores();
        let (busy_one, other) = (node(), node());
        let mut ledger = Ledger::new(&manifest, busy_one, &[busy_one, other]);
        ledger.plan(&[0, 1]).unwrap();
        assert_eq!(
            ledger
                .receive(part(busy_one, &[0], 0, busy(Some(250))))
                .unwrap(),
            Duration::from_millis(250)
        );
        // Told nothing: a second; told too long: at most ten.
        assert_eq!(
            ledger.receive(part(busy_one, &[0], 0, busy(None))).unwrap(),
            Duration::from_secs(1)
        );
        assert_eq!(
            ledger
                .receive(part(busy_one, &[0], 0, busy(Some(60_000))))
                .unwrap(),
            Duration::from_secs(10)
        );
        assert!(ledger.attempted.is_empty(), "a refusal is not an attempt");
        assert!(ledger.healthy.contains(&busy_one));
        for _ in 3..MAX_BUSY_WAITS {
            ledger
                .receive(part(busy_one, &[0], 0, busy(Some(1))))
                .unwrap();
        }
        assert!(ledger.healthy.contains(&busy_one));
        assert_eq!(
            ledger
                .receive(part(busy_one, &[0], 0, busy(Some(1))))
                .unwrap(),
            Duration::ZERO
        );
        assert_eq!(ledger.healthy, [other]);
        assert!(ledger.served_by.is_empty());
    }

    #[test]
    fn holders_that_end_early_or_fail_are_dropped_and_a_local_failure_ends_the_fetch() {
        let (_dir, _source, _target, manifest) = stores();
        let (short, broken, good) = (node(), node(), node());
        let mut ledger = Ledger::new(&manifest, short, &[short, broken, good]);
        ledger.plan(&[0, 1, 2]).unwrap();
        ledger.receive(part(short, &[0], 0, Ok(()))).unwrap();
        let cut = CallError::new(ErrorCode::Partition, "the stream broke");
        ledger
            .receive(part(broken, &[1], 1, Err(Failure::Holder(cut))))
            .unwrap();
        ledger.receive(part(good, &[2], 1, Ok(()))).unwrap();
        assert_eq!(ledger.healthy, [good]);
        assert_eq!(ledger.served_by, BTreeSet::from([broken, good]));
        assert_eq!(ledger.attempted, BTreeSet::from([0, 1, 2]));
        let full = CallError::new(ErrorCode::CapacityExceeded, "disk full");
        let ended = ledger.receive(part(good, &[2], 0, Err(Failure::Local(full))));
        assert_eq!(ended.unwrap_err().code, ErrorCode::CapacityExceeded);
        ledger.healthy.clear();
        assert_eq!(ledger.plan(&[1]).unwrap_err().code, ErrorCode::Partition);
    }
}
