//! M07: the content-addressed blob store.
//!
//! A blob is split into 256 KiB chunks, each stored under its BLAKE3 CID;
//! its [`Manifest`] lists them and has a CID of its own. Layout under the
//! store's directory (GLOSSARY): `<aa>/<rest>.bin` for a chunk and
//! `<aa>/<rest>.manifest.json` for a manifest, where `aa` are the first two
//! hex digits of the CID; `pinned.txt` lists pinned blobs; `tmp/` holds
//! writes in progress and `quarantine/` chunks found damaged.
//!
//! Invariants: a chunk file appears (by rename) only once its bytes hash
//! to its name, and a manifest only once all its chunks are present, so a
//! partial chunk or blob is never visible. What only this node has is on
//! disk before it appears; copies fetched from peers reach the disk at the
//! next [`BlobStore::sync`] ([`Durability`]). Every read verifies the hash
//! again, and a chunk that no longer matches is moved to `quarantine/`
//! and reported missing. Owns no network and no events: the file service
//! builds on it.

mod manifest;
mod store;

pub use manifest::{ChunkRef, MAX_BLOB_BYTES, Manifest};
pub use store::{
    BlobInfo, BlobStore, ChunkWriter, DiskUsage, Durability, GcReport, MAX_NAME_BYTES,
    VerifiedChunk, clean_name, pinned_with_names,
};

use hearthnet_base::{Blake3Id, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{0} is not in this store")]
    NotFound(Blake3Id),
    #[error("bytes do not match {expected} (they hash to {actual})")]
    HashMismatch {
        expected: Blake3Id,
        actual: Blake3Id,
    },
    #[error("the disk holding {0} is full")]
    DiskFull(String),
    #[error("invalid manifest: {0}")]
    ManifestInvalid(String),
    /// The thread flushing a batch of chunks died before saying how far it
    /// got: some of the batch may be missing from the store.
    #[error("the thread flushing chunks to disk panicked")]
    FlushPanicked,
    /// The caller gave up (its progress callback said stop).
    #[error("cancelled")]
    Cancelled,
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl BlobError {
    /// The wire code (M07 §6).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::HashMismatch { .. } | Self::ManifestInvalid(_) => ErrorCode::BadRequest,
            Self::DiskFull(_) => ErrorCode::CapacityExceeded,
            Self::Cancelled => ErrorCode::Partition,
            Self::Io { .. } | Self::FlushPanicked => ErrorCode::InternalError,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        let context = context.into();
        // ENOSPC, or EDQUOT (a user's quota is as full as a disk).
        if matches!(source.raw_os_error(), Some(28 | 122))
            || source.kind() == std::io::ErrorKind::StorageFull
            || source.kind() == std::io::ErrorKind::QuotaExceeded
        {
            return Self::DiskFull(context);
        }
        Self::Io { context, source }
    }
}

/// Chunk bytes as `data_b64` carries them: standard Base64 with padding.
pub fn encode_b64(bytes: &[u8]) -> String {
    data_encoding::BASE64.encode(bytes)
}

/// `data_b64` as peers may send it: standard or URL-safe alphabet, padded
/// or not (the contract leaves the variant open).
pub fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim_end_matches('=');
    data_encoding::BASE64_NOPAD
        .decode(trimmed.as_bytes())
        .or_else(|_| data_encoding::BASE64URL_NOPAD.decode(trimmed.as_bytes()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_variants_are_all_read() {
        let bytes = [0xfbu8, 0xff, 0x01, 0x02];
        let standard = encode_b64(&bytes);
        assert_eq!(standard, "+/8BAg==");
        assert_eq!(decode_b64(&standard).unwrap(), bytes);
        assert_eq!(decode_b64("-_8BAg").unwrap(), bytes);
        assert!(decode_b64("not base64!").is_none());
    }
}
