//! M07: the file service. Offers the contract's `file.read@1.0`,
//! `file.list@1.0` and `file.advertise@1.0` to members, and to this node's
//! own CLI `file.local.add`, `file.local.get`, `file.local.list` and
//! `file.local.pin` (self only, streamed `progress` frames). Keeps
//! [`Holders`] (who holds what, from `file.cid.*` events) and fetches blobs
//! from peers through the bus ([`fetch`]). Blob bytes live in
//! `hearthnet-blobs`; this crate moves them.
//!
//! Our extension to `file.read`: `input.chunks`, a list of chunk indices,
//! streams the manifest and only those chunks (`[]`: the manifest alone),
//! so several holders can each serve a share of one blob. The same request
//! is served as raw bytes by [`FileService::serve_chunks`] (the node's
//! `/blobs/v1/chunks`), which fetches use first through a [`ChunkSource`];
//! `file.read` stays the contract's way and the fallback.
//!
//! Fetched copies are committed with
//! [`AtNextSync`](hearthnet_blobs::Durability::AtNextSync): visible
//! as soon as they are complete and verified, and advertised to the
//! community only once a sync has put them on disk.
//!
//! `file.put@1.0` (trusted callers) answers the offered manifest with
//! `ready {"needed": [indices]}`, then *pulls* those chunks from the caller
//! with `file.read` and ends with `done {"received", "ms"}`: the contract's
//! exchange, except that the chunks travel as the answer to our request
//! instead of on the caller's request stream, which HTTP as the contract
//! uses it (server-sent events) cannot carry.

mod fetch;
mod holders;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use hearthnet_base::{Blake3Id, DeviceKey, ErrorCode, NodeId, Stability, TrustLevel};
use hearthnet_blobs::{BlobError, BlobStore, Manifest, encode_b64};
use hearthnet_bus::{
    Bus, Call, CallError, Capability, CapabilityDescriptor, FrameSink, Service, Trust,
};
use hearthnet_events::EventLog;
use hearthnet_wire::local;
use hearthnet_wire::peer::ChunksRequest;
use serde_json::{Value, json};

pub use fetch::{ChunkSource, fetch};
pub use holders::Holders;

pub const READ: &str = "file.read";
pub const LIST: &str = "file.list";
pub const ADVERTISE: &str = "file.advertise";
pub const PUT: &str = "file.put";
pub const LOCAL_ADD: &str = "file.local.add";
pub const LOCAL_GET: &str = "file.local.get";
pub const LOCAL_LIST: &str = "file.local.list";
pub const LOCAL_PIN: &str = "file.local.pin";
const READ_TIMEOUT_SECONDS: u64 = 300;
const PUT_TIMEOUT_SECONDS: u64 = 600;
/// `file.put` is refused when less than this would stay free (M07 §5.7).
const PUT_MIN_FREE_BYTES: u64 = 1 << 30;
/// Progress frames at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// Chunks read ahead of a slow reader, per stream (1 MiB).
const READ_AHEAD: usize = 4;
/// Raw chunk streams served at once (like `file.read`'s `max_concurrent`).
const MAX_SERVED_STREAMS: usize = 8;
/// ... and to one caller, so one member cannot take them all.
const MAX_STREAMS_PER_CALLER: usize = 2;
/// A reader that takes no chunk for this long loses its stream (and its
/// slot).
const READER_STALL: Duration = Duration::from_secs(60);

/// One caller's share of the served streams, given back on drop.
struct StreamSlot {
    counts: Arc<parking_lot::Mutex<std::collections::HashMap<NodeId, usize>>>,
    caller: NodeId,
}

impl StreamSlot {
    fn take(
        counts: &Arc<parking_lot::Mutex<std::collections::HashMap<NodeId, usize>>>,
        caller: NodeId,
    ) -> Option<Self> {
        let mut map = counts.lock();
        let n = map.entry(caller).or_default();
        if *n >= MAX_STREAMS_PER_CALLER {
            return None;
        }
        *n += 1;
        Some(Self {
            counts: counts.clone(),
            caller,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock();
        if let Some(n) = map.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.caller);
            }
        }
    }
}

/// Chunks of a blob as they are read or received: `(index, bytes)`, or
/// the error that ends the stream.
pub type Chunks = BoxStream<'static, Result<(usize, Bytes), CallError>>;

pub struct FileService {
    pub store: Arc<BlobStore>,
    pub holders: Arc<Holders>,
    pub log: EventLog,
    pub key: DeviceKey,
    /// To reach peers (weak: the bus owns this service).
    bus: std::sync::Weak<Bus>,
    /// Raw chunk transfer to peers, where the node has it.
    chunk_source: Option<Arc<dyn ChunkSource>>,
    served_streams: Arc<tokio::sync::Semaphore>,
    streams_per_caller: Arc<parking_lot::Mutex<std::collections::HashMap<NodeId, usize>>>,
}

fn blob_error(e: BlobError) -> CallError {
    CallError::new(e.code(), e.to_string())
}

fn internal(e: impl std::fmt::Display) -> CallError {
    CallError::new(ErrorCode::InternalError, e.to_string())
}

/// What `file.read`'s input says when it decodes.
const READ_INPUT: &str = "file.read's input";

/// `file.read`'s input, the same request as `/blobs/v1/chunks`'s body; a
/// malformed one is `bad_request` naming the field.
fn read_request(input: &Value) -> Result<ChunksRequest, CallError> {
    hearthnet_wire::from_value(READ_INPUT, input.clone())
        .map_err(|e| CallError::bad_request(e.to_string()))
}

/// The chunk indices `chunks` asks for (all when absent): indices of
/// `manifest`, strictly increasing, so each chunk at most once per call.
fn selection(chunks: Option<&[u64]>, manifest: &Manifest) -> Result<Vec<usize>, CallError> {
    let Some(list) = chunks else {
        return Ok((0..manifest.chunks.len()).collect());
    };
    list.iter()
        .map(|&i| {
            usize::try_from(i)
                .ok()
                .filter(|i| *i < manifest.chunks.len())
        })
        .collect::<Option<Vec<usize>>>()
        .filter(|i| i.windows(2).all(|w| w[0] < w[1]))
        .ok_or_else(|| {
            CallError::bad_request(
                "chunks must list chunk indices of this blob, increasing, each once",
            )
        })
}

fn cid_field(input: &Value, key: &str) -> Result<Blake3Id, CallError> {
    input[key]
        .as_str()
        .and_then(|c| Blake3Id::parse(c).ok())
        .ok_or_else(|| {
            CallError::bad_request(format!(
                "input.{key} must be a CID (blake3:<64 hex digits>)"
            ))
        })
}

/// Sends `progress` frames, no more often than [`PROGRESS_EVERY`].
struct Progress {
    frames: FrameSink,
    cancel: tokio_util::sync::CancellationToken,
    stage: &'static str,
    last: parking_lot::Mutex<Option<Instant>>,
    runtime: tokio::runtime::Handle,
}

impl Progress {
    fn new(call: &Call, stage: &'static str) -> Self {
        Self {
            frames: call.frames.clone(),
            cancel: call.cancel.clone(),
            stage,
            last: Default::default(),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Report, and stop the blocking work once the caller has left: an
    /// abandoned `file get` must not still write its file afterwards.
    fn report_or_stop(&self, current: u64, total: u64) -> Result<(), BlobError> {
        if self.cancel.is_cancelled() {
            return Err(BlobError::Cancelled);
        }
        self.report(current, total);
        Ok(())
    }

    fn report(&self, current: u64, total: u64) {
        let due = {
            let mut last = self.last.lock();
            let due = current == total || last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            let frames = self.frames.clone();
            let data = serde_json::to_value(local::FileProgress {
                current,
                total,
                stage: self.stage.into(),
            })
            .unwrap_or_default();
            // Progress is best effort: never wait for a slow reader.
            self.runtime.spawn(async move {
                let _ = frames.send("progress", data).await;
            });
        }
    }
}

impl FileService {
    /// The service over `store`, reaching peers through `bus` (and
    /// `chunk_source` for raw chunks, when given).
    pub fn new(
        store: Arc<BlobStore>,
        holders: Arc<Holders>,
        log: EventLog,
        key: DeviceKey,
        bus: std::sync::Weak<Bus>,
        chunk_source: Option<Arc<dyn ChunkSource>>,
    ) -> Self {
        Self {
            store,
            holders,
            log,
            key,
            bus,
            chunk_source,
            served_streams: Arc::new(tokio::sync::Semaphore::new(MAX_SERVED_STREAMS)),
            streams_per_caller: Default::default(),
        }
    }

    /// Chunks `indices` of `manifest`, read and verified on a blocking
    /// thread a few ahead of the reader. A reader that goes away stops it,
    /// and so does one that takes nothing for [`READER_STALL`] (the stream
    /// then ends with `timeout`); `hold` (a serving slot) is released when
    /// the thread stops, whatever the reader does.
    fn chunk_stream(
        &self,
        manifest: Manifest,
        indices: Vec<usize>,
        hold: impl Send + 'static,
    ) -> Chunks {
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        let store = self.store.clone();
        let runtime = tokio::runtime::Handle::current();
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stalled_here = stalled.clone();
        tokio::task::spawn_blocking(move || {
            let _hold = hold;
            for i in indices {
                let item = store
                    .read_chunk(&manifest.chunks[i].cid)
                    .map(|bytes| (i, Bytes::from(bytes)))
                    .map_err(blob_error);
                let failed = item.is_err();
                match runtime.block_on(tokio::time::timeout(READER_STALL, tx.send(item))) {
                    Ok(Ok(())) if !failed => {}
                    Ok(_) => return,
                    Err(_) => {
                        stalled_here.store(true, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                }
            }
        });
        futures_util::stream::unfold(Some(rx), move |rx| {
            let stalled = stalled.clone();
            async move {
                let mut rx = rx?;
                match rx.recv().await {
                    Some(item) => Some((item, Some(rx))),
                    None if stalled.load(std::sync::atomic::Ordering::Relaxed) => {
                        let e = CallError::new(
                            ErrorCode::Timeout,
                            format!("the reader took nothing for {} s", READER_STALL.as_secs()),
                        );
                        Some((Err(e), None))
                    }
                    None => None,
                }
            }
        })
        .boxed()
    }

    /// The raw-bytes side of `file.read` (the same request), for the
    /// node's `/blobs/v1/chunks`: members only, checked there. At most
    /// [`MAX_SERVED_STREAMS`] at once, and [`MAX_STREAMS_PER_CALLER`] of
    /// them for one caller.
    pub fn serve_chunks(
        self: &Arc<Self>,
        caller: NodeId,
        request: ChunksRequest,
    ) -> BoxFuture<'static, Result<Chunks, CallError>> {
        let this = self.clone();
        Box::pin(async move {
            let cid = request.cid;
            let busy =
                |what: String| CallError::new(ErrorCode::CapacityExceeded, what).retry_after(500);
            let slot = StreamSlot::take(&this.streams_per_caller, caller).ok_or_else(|| {
                busy(format!(
                    "{} already has {MAX_STREAMS_PER_CALLER} chunk streams from this node",
                    caller.short()
                ))
            })?;
            let permit = this
                .served_streams
                .clone()
                .try_acquire_owned()
                .map_err(|_| {
                    busy(format!(
                        "{MAX_SERVED_STREAMS} chunk streams are already being served"
                    ))
                })?;
            let manifest = this.blocking(move |s| s.manifest(&cid)).await?;
            let indices = selection(request.chunks.as_deref(), &manifest)?;
            Ok(this.chunk_stream(manifest, indices, (permit, slot)))
        })
    }

    fn bus(&self) -> Result<Arc<Bus>, CallError> {
        self.bus
            .upgrade()
            .ok_or_else(|| CallError::new(ErrorCode::Partition, "the node is shutting down"))
    }

    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&BlobStore) -> Result<R, BlobError> + Send + 'static,
    ) -> Result<R, CallError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(internal)?
            .map_err(blob_error)
    }

    /// Tell the community we hold `cid` (`file.cid.advertised`).
    async fn advertise_held(&self, cid: Blake3Id, size: u64) {
        self.holders.add(cid, self.key.node_id());
        let data = json!({"cid": cid, "sizes_bytes": size});
        if let Err(e) = self
            .log
            .append_local("file.cid.advertised", data, &self.key)
            .await
        {
            tracing::warn!(blob = %cid.short(), error = %e, "cannot record file.cid.advertised");
        }
    }

    /// Copies `(cid, size)` reach the disk (one flush for all of them)
    /// before the community is told this node holds them; the caller has
    /// its answer before that.
    fn settle(self: &Arc<Self>, blobs: Vec<(Blake3Id, u64)>) {
        if blobs.is_empty() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            match this.blocking(|s| s.sync()).await {
                Ok(()) => {
                    for (cid, size) in blobs {
                        this.advertise_held(cid, size).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(blobs = blobs.len(), error = %e, "blobs could not be flushed to disk; not advertised");
                }
            }
        });
    }

    /// Bring what the community is told in line with what this store
    /// holds, once the log has been folded in: a blob held but never
    /// offered (the process died between fetching it and flushing it to
    /// disk) is read in full and offered if whole (damaged chunks are
    /// quarantined, and `file pin` fetches them again); a blob offered but
    /// gone (removed just before a crash) is withdrawn.
    pub fn reconcile_holdings(
        self: &Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            tokio::select! {
                () = this.holders.replayed() => {}
                () = stop.cancelled() => return,
            }
            let offered: HashSet<Blake3Id> = this
                .holders
                .held_by(&this.key.node_id())
                .into_iter()
                .collect();
            let held = match this.blocking(|s| Ok(s.list())).await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the blob store; holdings not reconciled");
                    return;
                }
            };
            let mut whole = Vec::new();
            for blob in held.iter().filter(|b| !offered.contains(&b.cid)) {
                if stop.is_cancelled() {
                    return;
                }
                match this.whole_size(blob.cid).await {
                    Ok(Some(size)) => whole.push((blob.cid, size)),
                    Ok(None) => tracing::warn!(
                        blob = %blob.cid.short(),
                        "a copy left damaged by a crash is not offered; `hearthnet file pin` fetches it again"
                    ),
                    Err(e) => {
                        tracing::warn!(blob = %blob.cid.short(), error = %e, "cannot check a stored blob")
                    }
                }
            }
            this.settle(whole);
            let held: HashSet<Blake3Id> = held.iter().map(|b| b.cid).collect();
            for &cid in offered.difference(&held) {
                // Fetched again since the store was listed: still ours.
                if this
                    .blocking(move |s| Ok(s.has_blob(&cid)))
                    .await
                    .unwrap_or(true)
                {
                    continue;
                }
                if let Err(e) = this
                    .log
                    .append_local("file.cid.unpinned", json!({"cid": cid}), &this.key)
                    .await
                {
                    tracing::warn!(blob = %cid.short(), error = %e, "cannot record file.cid.unpinned");
                }
            }
        }
    }

    /// The size of `cid` if this store holds it whole (every chunk read and
    /// checked; bad ones are quarantined), `None` if it is absent or
    /// damaged.
    async fn whole_size(&self, cid: Blake3Id) -> Result<Option<u64>, CallError> {
        self.blocking(move |s| match s.manifest(&cid) {
            Ok(manifest) => Ok(s
                .verify(&manifest)
                .is_empty()
                .then_some(manifest.size_bytes)),
            Err(BlobError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// Run GC when the disk is over the threshold; tell the community what
    /// this node no longer holds.
    async fn collect(&self) {
        let Ok(report) = self.blocking(|s| s.gc()).await else {
            return;
        };
        for cid in report.blobs_removed {
            let _ = self
                .log
                .append_local("file.cid.unpinned", json!({"cid": cid}), &self.key)
                .await;
        }
    }

    async fn read(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let started = Instant::now();
        let request = read_request(&call.input)?;
        let cid = request.cid;
        if !self.store.has_blob(&cid) {
            // A chunk by its own CID: one JSON answer.
            let bytes = self.blocking(move |s| s.read_chunk(&cid)).await?;
            return Ok(
                json!({"output": {"cid": cid, "size_bytes": bytes.len(), "data_b64": encode_b64(&bytes)},
                "meta": {"ms": started.elapsed().as_millis() as u64}}),
            );
        }
        if !call.stream {
            return Err(CallError::bad_request(
                "a blob is read as a stream: ask with Accept: text/event-stream",
            ));
        }
        let manifest = self.blocking(move |s| s.manifest(&cid)).await?;
        let indices = selection(request.chunks.as_deref(), &manifest)?;
        let count = indices.len();
        let gone = || CallError::new(ErrorCode::Partition, "the caller left");
        call.frames
            .send("manifest", manifest.to_wire())
            .await
            .map_err(|_| gone())?;
        let mut chunks = self.chunk_stream(manifest.clone(), indices, ());
        while let Some(item) = chunks.next().await {
            let (i, bytes) = item?;
            let frame = json!({"i": i, "cid": manifest.chunks[i].cid, "size_bytes": bytes.len(), "data_b64": encode_b64(&bytes)});
            call.frames.send("chunk", frame).await.map_err(|_| gone())?;
        }
        Ok(json!({"chunks": count, "ms": started.elapsed().as_millis() as u64}))
    }

    async fn put(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let started = Instant::now();
        let manifest = hearthnet_blobs::Manifest::from_wire(&call.input["manifest"])
            .map_err(|e| CallError::bad_request(format!("input.manifest: {e}")))?;
        let cid = manifest.cid;
        let needed: Vec<usize> = if self.store.has_blob(&cid) {
            Vec::new()
        } else {
            let m = manifest.clone();
            self.blocking(move |s| Ok(s.missing_chunks(&m))).await?
        };
        let needed_bytes: u64 = needed.iter().map(|i| manifest.chunks[*i].size_bytes).sum();
        if let Some(usage) = self.store.disk_usage() {
            let free = usage.total.saturating_sub(usage.used);
            if free.saturating_sub(needed_bytes) < PUT_MIN_FREE_BYTES {
                return Err(CallError::new(
                    ErrorCode::CapacityExceeded,
                    format!(
                        "taking {needed_bytes} bytes would leave less than 1 GiB free on this node's disk"
                    ),
                ));
            }
        }
        let gone = || CallError::new(ErrorCode::Partition, "the caller left");
        call.frames
            .send("ready", json!({"needed": needed}))
            .await
            .map_err(|_| gone())?;
        if !needed.is_empty() {
            let progress = Progress::new(&call, "receiving");
            fetch(
                &self.bus()?,
                self.chunk_source.as_ref(),
                &self.store,
                cid,
                &[call.caller],
                &|n, t| progress.report(n, t),
            )
            .await?;
            // The sender may drop its copy once we answer: on disk first.
            self.blocking(|s| s.sync()).await?;
            self.advertise_held(cid, manifest.size_bytes).await;
        }
        Ok(json!({"received": needed.len(), "ms": started.elapsed().as_millis() as u64}))
    }

    async fn add(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let path = PathBuf::from(
            call.input["path"]
                .as_str()
                .ok_or_else(|| CallError::bad_request("input.path (a file path) is required"))?,
        );
        let pin = call.input["pin"].as_bool().unwrap_or(false);
        // What the person calls it: given (an upload's file name), or the
        // path's last part.
        let name = call.input["name"]
            .as_str()
            .or_else(|| path.file_name().and_then(|n| n.to_str()))
            .and_then(hearthnet_blobs::clean_name);
        let file = std::fs::File::open(&path)
            .map_err(|e| CallError::bad_request(format!("cannot read {}: {e}", path.display())))?;
        let total = file.metadata().map_or(0, |m| m.len());
        let progress = Progress::new(&call, "hashing");
        let manifest = self
            .blocking(move |s| {
                let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
                s.add(&mut reader, |n| progress.report_or_stop(n, total))
            })
            .await?;
        let cid = manifest.cid;
        if pin {
            self.blocking(move |s| s.pin(&cid)).await?;
        }
        if let Some(name) = name.clone() {
            self.blocking(move |s| s.set_name(&cid, &name)).await?;
        }
        self.advertise_held(cid, manifest.size_bytes).await;
        self.collect().await;
        serde_json::to_value(local::FileAdded {
            cid,
            size_bytes: manifest.size_bytes,
            chunks: manifest.chunks.len(),
            pinned: pin,
            name,
        })
        .map_err(internal)
    }

    async fn get(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let cid = cid_field(&call.input, "cid")?;
        let out = call.input["out"].as_str().map(PathBuf::from);
        let mut from = Vec::new();
        if !self.store.has_blob(&cid) {
            from = self.fetch_from_peers(&call, cid).await?;
        }
        let Some(out) = out else {
            let manifest = self.blocking(move |s| s.manifest(&cid)).await?;
            return serde_json::to_value(local::FileGot {
                cid,
                size_bytes: manifest.size_bytes,
                from,
            })
            .map_err(internal);
        };
        let mut refetched = false;
        let manifest = loop {
            let progress = Progress::new(&call, "writing");
            let target = out.clone();
            match self
                .blocking(move |s| {
                    let total = s.manifest(&cid)?.size_bytes;
                    s.export(&cid, &target, |n| progress.report_or_stop(n, total))
                })
                .await
            {
                Ok(manifest) => break manifest,
                // A chunk found damaged (now quarantined): fetch it again
                // where a peer has it, once.
                Err(e) if e.code == ErrorCode::NotFound && !refetched => {
                    // Find every damaged chunk in one pass, then fetch them
                    // all at once.
                    let damaged = self
                        .blocking(move |s| {
                            let manifest = s.manifest(&cid)?;
                            Ok(s.verify(&manifest))
                        })
                        .await?;
                    tracing::warn!(blob = %cid.short(), chunks = damaged.len(), "damaged chunks; fetching them again from peers");
                    refetched = true;
                    from = self.fetch_from_peers(&call, cid).await?;
                }
                Err(e) => return Err(e),
            }
        };
        self.collect().await;
        serde_json::to_value(local::FileGot {
            cid,
            size_bytes: manifest.size_bytes,
            from,
        })
        .map_err(internal)
    }

    /// Pin or unpin; pinning a blob that is not here fetches it first, so
    /// this node keeps a copy for the community.
    async fn pin(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let cid = cid_field(&call.input, "cid")?;
        let pinned = call.input["pinned"]
            .as_bool()
            .ok_or_else(|| CallError::bad_request("input.pinned must be true or false"))?;
        let mut from = Vec::new();
        if pinned {
            // A copy kept for the community must be whole: check what is
            // here (a crash can leave a fetched copy damaged) and fetch
            // what is missing or bad.
            match self.whole_size(cid).await? {
                Some(size) if !self.holders.of(&cid).contains(&self.key.node_id()) => {
                    self.settle(vec![(cid, size)]);
                }
                Some(_) => {}
                None => from = self.fetch_from_peers(&call, cid).await?,
            }
        }
        let changed = self
            .blocking(move |s| if pinned { s.pin(&cid) } else { s.unpin(&cid) })
            .await?;
        if !pinned && changed {
            self.collect().await;
        }
        serde_json::to_value(local::FilePinned {
            cid,
            pinned,
            changed,
            from,
        })
        .map_err(internal)
    }

    /// Fetch what this store lacks of `cid` from the peers: those that
    /// advertised it first, then any other peer serving `file.read` (their
    /// advertisement may not have synced yet; M07 §5.5). Returns who served.
    async fn fetch_from_peers(
        self: &Arc<Self>,
        call: &Call,
        cid: Blake3Id,
    ) -> Result<Vec<NodeId>, CallError> {
        let us = self.key.node_id();
        let bus = self.bus()?;
        let advertised: Vec<NodeId> = self
            .holders
            .of(&cid)
            .into_iter()
            .filter(|h| *h != us)
            .collect();
        let others: Vec<NodeId> = bus
            .entries()
            .into_iter()
            .filter(|e| e.name == READ && !e.local)
            .map(|e| e.node)
            .filter(|n| !advertised.contains(n))
            .collect();
        let progress = Progress::new(call, "fetching");
        let report = |n, t| progress.report(n, t);
        let mut outcome = Err(CallError::new(
            ErrorCode::NotFound,
            format!("{cid} is not here and no peer has it"),
        ));
        for holders in [advertised, others] {
            if holders.is_empty() {
                continue;
            }
            // Chunks from a failed first try stay: the second resumes.
            let source = self.chunk_source.as_ref();
            outcome = fetch(&bus, source, &self.store, cid, &holders, &report).await;
            if outcome.is_ok() {
                break;
            }
        }
        let (manifest, served_by) = outcome?;
        self.settle(vec![(cid, manifest.size_bytes)]);
        Ok(served_by)
    }
}

impl FileService {
    async fn list(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let prefix = call.input["prefix"].as_str().unwrap_or("").to_owned();
        let cids: Vec<String> = self
            .blocking(|s| Ok(s.list()))
            .await?
            .into_iter()
            .map(|b| b.cid.to_string())
            .filter(|c| c.starts_with(&prefix))
            .collect();
        Ok(json!({"output": {"cids": cids}, "meta": {}}))
    }

    async fn advertise(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let cids = call.input["cids"]
            .as_array()
            .ok_or_else(|| CallError::bad_request("input.cids must be an array of CIDs"))?;
        let mut recorded = 0;
        for c in cids {
            let cid = c
                .as_str()
                .and_then(|c| Blake3Id::parse(c).ok())
                .ok_or_else(|| CallError::bad_request(format!("{c} is not a CID")))?;
            if self.holders.add_direct(cid, call.caller) {
                recorded += 1;
            }
        }
        Ok(json!({"output": {"recorded": recorded}, "meta": {}}))
    }

    async fn local_list(self: Arc<Self>, _call: Call) -> Result<Value, CallError> {
        let (blobs, bytes) = self.blocking(|s| Ok((s.list(), s.disk_bytes()))).await?;
        let offered: HashSet<Blake3Id> = self
            .holders
            .held_by(&self.key.node_id())
            .into_iter()
            .collect();
        let blobs = blobs
            .into_iter()
            .map(|b| local::LocalBlob {
                offered: offered.contains(&b.cid),
                cid: b.cid,
                size_bytes: b.size_bytes,
                chunks: b.chunks,
                pinned: b.pinned,
                last_used: b.last_used,
                name: b.name,
            })
            .collect();
        serde_json::to_value(local::FileList {
            blobs,
            disk_bytes: bytes,
        })
        .map_err(internal)
    }
}

impl Service for FileService {
    fn name(&self) -> &'static str {
        "file"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        let cid = json!({"type": "string", "pattern": "^blake3:[0-9a-f]{64}$"});
        let chunks = json!({"type": "array", "items": {"type": "integer", "minimum": 0}});
        let stable = |name: &str, input: Value| CapabilityDescriptor {
            stability: Stability::Stable,
            ..CapabilityDescriptor::new(name, input)
        };
        // The node's own CLI only: streamed progress, up to an hour.
        let own = |name: &str, input: Value| CapabilityDescriptor {
            stability: Stability::Beta,
            trust: Trust::SelfOnly,
            timeout: Duration::from_secs(3600),
            stream_schema: Some(json!({"type": "object"})),
            ..CapabilityDescriptor::new(name, input)
        };
        vec![
            Capability::new(
                CapabilityDescriptor {
                    stream_schema: Some(json!({"type": "object"})),
                    max_concurrent: 8,
                    timeout: Duration::from_secs(READ_TIMEOUT_SECONDS),
                    ..stable(
                        READ,
                        json!({"type": "object", "required": ["cid"], "properties": {"cid": cid, "chunks": chunks}}),
                    )
                },
                &self,
                Self::read,
            ),
            Capability::new(
                CapabilityDescriptor {
                    timeout: Duration::from_secs(5),
                    ..stable(
                        LIST,
                        json!({"type": "object", "properties": {"prefix": {"type": "string"}}}),
                    )
                },
                &self,
                Self::list,
            ),
            Capability::new(
                CapabilityDescriptor {
                    max_concurrent: 16,
                    timeout: Duration::from_secs(5),
                    ..stable(
                        ADVERTISE,
                        json!({"type": "object", "required": ["cids"], "properties": {"cids": {"type": "array", "items": cid}}}),
                    )
                },
                &self,
                Self::advertise,
            ),
            Capability::new(
                CapabilityDescriptor {
                    stream_schema: Some(json!({"type": "object"})),
                    // Disk-poisoning risk: trusted members only (M07 §4.2).
                    trust: Trust::Level(TrustLevel::Trusted),
                    max_concurrent: 2,
                    timeout: Duration::from_secs(PUT_TIMEOUT_SECONDS),
                    ..stable(
                        PUT,
                        json!({"type": "object", "required": ["manifest"], "properties": {"manifest": {"type": "object"}}}),
                    )
                },
                &self,
                Self::put,
            ),
            Capability::new(
                own(
                    LOCAL_ADD,
                    json!({"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}, "pin": {"type": "boolean"}, "name": {"type": "string", "maxLength": 4096}}}),
                ),
                &self,
                Self::add,
            ),
            Capability::new(
                own(
                    LOCAL_GET,
                    json!({"type": "object", "required": ["cid"], "properties": {"cid": cid, "out": {"type": "string"}}}),
                ),
                &self,
                Self::get,
            ),
            Capability::new(
                CapabilityDescriptor {
                    stream_schema: None,
                    timeout: Duration::from_secs(10),
                    ..own(LOCAL_LIST, json!({"type": "object"}))
                },
                &self,
                Self::local_list,
            ),
            Capability::new(
                own(
                    LOCAL_PIN,
                    json!({"type": "object", "required": ["cid", "pinned"], "properties": {"cid": cid, "pinned": {"type": "boolean"}}}),
                ),
                &self,
                Self::pin,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearthnet_blobs::ChunkRef;

    fn blob_of(n: usize) -> Manifest {
        Manifest::new(
            (0..n)
                .map(|i| ChunkRef {
                    cid: Blake3Id::of(&i.to_le_bytes()),
                    size_bytes: 1,
                })
                .collect(),
        )
    }

    #[test]
    fn a_malformed_read_request_is_a_bad_request_naming_the_field() {
        let cid = Blake3Id::of(b"a blob");
        for (input, field) in [
            (json!({"cid": "blake3:00"}), "field `cid`"),
            (json!({"chunks": [0]}), "field `cid`: missing field"),
            (json!({"cid": cid, "chunks": [0, "1"]}), "field `chunks[1]`"),
            (json!({"cid": cid, "chunks": {"0": 0}}), "field `chunks`"),
        ] {
            let e = read_request(&input).err();
            assert_eq!(e.as_ref().map(|e| e.code), Some(ErrorCode::BadRequest));
            let message = e.map(|e| e.message).unwrap_or_default();
            assert!(
                message.starts_with(READ_INPUT) && message.contains(field),
                "{input}: {message}"
            );
        }
        // The contract's form, and ours with `null` for "all chunks".
        for input in [json!({"cid": cid}), json!({"cid": cid, "chunks": null})] {
            let request = read_request(&input).ok();
            assert_eq!(request, Some(ChunksRequest { cid, chunks: None }));
        }
    }

    #[test]
    fn a_selection_is_increasing_indices_of_the_blob() {
        let blob = blob_of(3);
        assert_eq!(selection(None, &blob).ok(), Some(vec![0, 1, 2]));
        assert_eq!(selection(Some(&[]), &blob).ok(), Some(vec![]));
        assert_eq!(selection(Some(&[0, 2]), &blob).ok(), Some(vec![0, 2]));
        for bad in [&[3][..], &[1, 1], &[2, 0], &[u64::MAX]] {
            let e = selection(Some(bad), &blob).err().map(|e| e.code);
            assert_eq!(e, Some(ErrorCode::BadRequest), "{bad:?}");
        }
    }
}
