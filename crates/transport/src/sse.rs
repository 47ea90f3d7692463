//! Encoding bus items as `text/event-stream` (Contract §5.3): one
//! `event:`/`data:` pair per frame, data on a single line, and exactly one
//! terminal `done` or `error` frame.

use hearthnet_bus::{CallStream, Item};
use serde_json::Value;

fn frame_bytes(event: &str, data: &Value) -> Vec<u8> {
    // Compact serde_json output never contains a raw newline.
    format!("event: {event}\ndata: {data}\n\n").into_bytes()
}

/// The SSE body of a running call. Owning the [`CallStream`] means that
/// when the client disconnects and hyper drops the body, the call is
/// cancelled.
pub fn body(stream: CallStream) -> axum::body::Body {
    let frames = futures_util::stream::unfold(Some(stream), |state| async move {
        let mut stream = state?;
        let (bytes, more) = match stream.next().await {
            Some(Item::Frame(f)) => (frame_bytes(&f.event, &f.data), true),
            Some(Item::Done(v)) => (frame_bytes("done", &v), false),
            Some(Item::Failed(e)) => (frame_bytes("error", &e.to_body()), false),
            None => return None,
        };
        Some((
            Ok::<_, std::convert::Infallible>(bytes),
            more.then_some(stream),
        ))
    });
    axum::body::Body::from_stream(frames)
}
