//! Chunk bytes between our nodes without Base64, JSON or SSE: the answer
//! of `POST /blobs/v1/chunks` (our extension beside `file.read`, which
//! stays the contract's way and the fallback).
//!
//! The body (`application/vnd.hearthnet.chunks`) is a sequence of records:
//!
//! ```text
//! 0x01 index:u32be length:u32be bytes[length]   a chunk
//! 0x00                                          the end: all were sent
//! 0x02 length:u32be json[length]                an error body (Contract §5.4); last
//! ```
//!
//! A body that stops without `0x00` or `0x02` was cut off. The receiver
//! verifies every chunk against the manifest it already holds, so the
//! format needs no checksums of its own.

use std::fmt::Display;

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use hearthnet_bus::CallError;
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes};
use serde_json::Value;

pub const CHUNKS_PATH: &str = "/blobs/v1/chunks";
pub const CONTENT_TYPE: &str = "application/vnd.hearthnet.chunks";

const END: u8 = 0x00;
const CHUNK: u8 = 0x01;
const ERROR: u8 = 0x02;
/// Larger records are refused: chunks are 256 KiB, error bodies small.
const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;
/// A sender silent this long in the middle of a body is taken as gone.
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Chunks as a provider serves them: `(index in the blob, bytes)`, or the
/// error that ends the answer.
pub type ServedChunks = BoxStream<'static, Result<(u32, Bytes), CallError>>;

/// The body carrying `chunks`. Owning the stream means a client that
/// leaves stops the provider.
pub fn body(chunks: ServedChunks) -> axum::body::Body {
    enum State {
        Next(ServedChunks),
        Payload(Bytes, ServedChunks),
        Finished,
    }
    let records = futures_util::stream::unfold(State::Next(chunks), |state| async move {
        let (bytes, next) = match state {
            State::Finished => return None,
            State::Payload(payload, chunks) => (payload, State::Next(chunks)),
            State::Next(mut chunks) => match chunks.next().await {
                Some(Ok((index, payload))) => {
                    let mut header = Vec::with_capacity(9);
                    header.push(CHUNK);
                    header.extend_from_slice(&index.to_be_bytes());
                    header.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                    (Bytes::from(header), State::Payload(payload, chunks))
                }
                Some(Err(e)) => (error_record(&e.to_body()), State::Finished),
                None => (Bytes::from_static(&[END]), State::Finished),
            },
        };
        Some((Ok::<_, std::convert::Infallible>(bytes), next))
    });
    axum::body::Body::from_stream(records)
}

fn error_record(body: &Value) -> Bytes {
    let json = body.to_string().into_bytes();
    let mut record = Vec::with_capacity(5 + json.len());
    record.push(ERROR);
    record.extend_from_slice(&(json.len() as u32).to_be_bytes());
    record.extend_from_slice(&json);
    Bytes::from(record)
}

/// What ended a chunk body early.
#[derive(Debug, thiserror::Error)]
pub enum ChunkStreamError {
    /// The sender reported an error (its Contract §5.4 body).
    #[error("the peer reported: {0}")]
    Reported(Value),
    /// The body broke off, or is not in this format.
    #[error("{0}")]
    Broken(String),
}

/// Reads the records of a chunk body as they arrive.
pub struct ChunkReader<B> {
    body: B,
    /// Bytes received and not yet consumed.
    pending: Vec<u8>,
    finished: bool,
}

impl<B> ChunkReader<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    pub fn new(body: B) -> Self {
        Self {
            body,
            pending: Vec::new(),
            finished: false,
        }
    }

    /// The next chunk; `None` once the sender said all were sent.
    pub async fn next(&mut self) -> Option<Result<(u32, Bytes), ChunkStreamError>> {
        if self.finished {
            return None;
        }
        let outcome = self.record().await;
        if !matches!(outcome, Some(Ok(_))) {
            self.finished = true;
        }
        outcome
    }

    /// Every chunk, as a stream.
    pub fn into_stream(
        self,
    ) -> impl Stream<Item = Result<(u32, Bytes), ChunkStreamError>> + Send + 'static
    where
        B: Send + 'static,
    {
        futures_util::stream::unfold(self, |mut reader| async move {
            let item = reader.next().await?;
            Some((item, reader))
        })
    }

    async fn record(&mut self) -> Option<Result<(u32, Bytes), ChunkStreamError>> {
        let broken = |why: &str| Some(Err(ChunkStreamError::Broken(why.to_owned())));
        let header = match self.take(1).await {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        match header[0] {
            END => None,
            CHUNK => {
                let fields = match self.take(8).await {
                    Ok(f) => f,
                    Err(e) => return Some(Err(e)),
                };
                let index = u32::from_be_bytes([fields[0], fields[1], fields[2], fields[3]]);
                let len = u32::from_be_bytes([fields[4], fields[5], fields[6], fields[7]]) as usize;
                if len > MAX_RECORD_BYTES {
                    return broken("a chunk larger than the limit");
                }
                Some(
                    self.take(len)
                        .await
                        .map(|bytes| (index, Bytes::from(bytes))),
                )
            }
            ERROR => {
                let len = match self.take(4).await {
                    Ok(f) => u32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize,
                    Err(e) => return Some(Err(e)),
                };
                if len > MAX_RECORD_BYTES {
                    return broken("an error record larger than the limit");
                }
                let json = match self.take(len).await {
                    Ok(j) => j,
                    Err(e) => return Some(Err(e)),
                };
                match serde_json::from_slice(&json) {
                    Ok(body) => Some(Err(ChunkStreamError::Reported(body))),
                    Err(_) => broken("an error record that is not JSON"),
                }
            }
            _ => broken("not a chunk body (unknown record)"),
        }
    }

    /// Exactly `n` bytes, waiting for the body as needed: one copy from
    /// the network's buffers into the returned vector.
    async fn take(&mut self, n: usize) -> Result<Vec<u8>, ChunkStreamError> {
        let mut out = Vec::with_capacity(n);
        let from_pending = n.min(self.pending.len());
        out.extend(self.pending.drain(..from_pending));
        while out.len() < n {
            let frame = match tokio::time::timeout(IDLE, self.body.frame()).await {
                Err(_) => {
                    return Err(ChunkStreamError::Broken(format!(
                        "no data for {} s",
                        IDLE.as_secs()
                    )));
                }
                Ok(Some(Ok(frame))) => frame,
                Ok(Some(Err(e))) => return Err(ChunkStreamError::Broken(e.to_string())),
                Ok(None) => {
                    return Err(ChunkStreamError::Broken(
                        "the body ended in the middle of the answer".into(),
                    ));
                }
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let wanted = n - out.len();
            if data.len() <= wanted {
                out.extend_from_slice(&data);
            } else {
                out.extend_from_slice(&data[..wanted]);
                self.pending.extend_from_slice(&data[wanted..]);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearthnet_base::ErrorCode;

    fn served(items: Vec<Result<(u32, Bytes), CallError>>) -> ServedChunks {
        futures_util::stream::iter(items).boxed()
    }

    async fn read_all(body: axum::body::Body) -> Vec<Result<(u32, Bytes), String>> {
        let mut reader = ChunkReader::new(body);
        let mut out = Vec::new();
        while let Some(item) = reader.next().await {
            out.push(item.map_err(|e| e.to_string()));
        }
        out
    }

    #[tokio::test]
    async fn chunks_arrive_whole_and_in_order_then_the_end() {
        let big = Bytes::from(vec![7u8; 256 * 1024]);
        let got = read_all(body(served(vec![
            Ok((3, big.clone())),
            Ok((9, Bytes::new())),
            Ok((10, Bytes::from_static(b"xyz"))),
        ])))
        .await;
        assert_eq!(
            got,
            vec![
                Ok((3, big)),
                Ok((9, Bytes::new())),
                Ok((10, Bytes::from_static(b"xyz")))
            ]
        );
    }

    #[tokio::test]
    async fn records_split_anywhere_across_network_frames_read_the_same() {
        let encoded = axum::body::to_bytes(
            body(served(vec![
                Ok((7, Bytes::from(vec![1u8; 1000]))),
                Ok((8, Bytes::from_static(b"tail"))),
            ])),
            usize::MAX,
        )
        .await
        .unwrap();
        for size in [1, 3, 9, 4096] {
            let frames: Vec<Result<Bytes, std::convert::Infallible>> = encoded
                .chunks(size)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let got = read_all(axum::body::Body::from_stream(futures_util::stream::iter(
                frames,
            )))
            .await;
            assert_eq!(
                got,
                vec![
                    Ok((7, Bytes::from(vec![1u8; 1000]))),
                    Ok((8, Bytes::from_static(b"tail")))
                ],
                "frames of {size} bytes"
            );
        }
    }

    #[tokio::test]
    async fn an_error_ends_the_body_with_the_contract_body() {
        let got = read_all(body(served(vec![
            Ok((0, Bytes::from_static(b"a"))),
            Err(CallError::new(ErrorCode::NotFound, "gone")),
            Ok((1, Bytes::from_static(b"never sent"))),
        ])))
        .await;
        assert_eq!(got.len(), 2);
        let Err(e) = &got[1] else {
            panic!("expected the error, got {got:?}")
        };
        assert!(e.contains("not_found") && e.contains("gone"), "{e}");
    }

    #[tokio::test]
    async fn a_body_cut_off_midway_is_an_error_not_an_end() {
        let mut bytes = vec![CHUNK];
        bytes.extend_from_slice(&0u32.to_be_bytes());
        bytes.extend_from_slice(&100u32.to_be_bytes());
        bytes.extend_from_slice(&[1u8; 40]);
        let got = read_all(axum::body::Body::from(bytes)).await;
        assert_eq!(got.len(), 1);
        assert!(got[0].as_ref().is_err_and(|e| e.contains("ended")));
        // Clean EOF with no end record is cut off as well.
        let got = read_all(axum::body::Body::empty()).await;
        assert!(got[0].is_err());
        // A record too large to be a chunk is refused before it is read.
        let mut huge = vec![CHUNK];
        huge.extend_from_slice(&0u32.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        let got = read_all(axum::body::Body::from(huge)).await;
        assert!(got[0].as_ref().is_err_and(|e| e.contains("limit")));
        // An error record cut off is an error, not the peer's report.
        let mut cut_error = vec![ERROR];
        cut_error.extend_from_slice(&100u32.to_be_bytes());
        cut_error.extend_from_slice(b"{\"error\":");
        let got = read_all(axum::body::Body::from(cut_error)).await;
        assert!(got[0].as_ref().is_err_and(|e| e.contains("ended")));
        // A stranger's body is not mistaken for chunks.
        let got = read_all(axum::body::Body::from("{\"error\":1}")).await;
        assert!(got[0].as_ref().is_err_and(|e| e.contains("unknown")));
    }
}
