//! A QR code read from a picture the browser uploads (a phone camera's
//! photo, a screenshot): the invite on the join page, a device's identity
//! card on Settings. Read within [`MAX_PICTURE_BYTES`], one picture at a
//! time per UI, decoded off the runtime's threads by
//! `onboarding::qr::read`, which bounds the work by the picture's header.

use std::sync::Arc;

use axum::body::Body;
use hearthnet_onboarding::qr::{self, MAX_PICTURE_BYTES, ReadError};
use hearthnet_transport::http::{BodyBudget, read_bytes};

use crate::calls::CallFailure;
use crate::text::TEXT;

/// The budget of one picture at a time.
pub(crate) fn budget() -> Arc<BodyBudget> {
    BodyBudget::new(MAX_PICTURE_BYTES, 0)
}

/// The text of the QR code in the picture `body`, or why there is none in
/// plain words.
pub(crate) async fn read_code(
    pictures: &Arc<BodyBudget>,
    body: Body,
) -> Result<String, CallFailure> {
    let w = &TEXT.join;
    let mut held = pictures
        .reserve(MAX_PICTURE_BYTES)
        .map_err(|_| CallFailure::refused(w.picture_busy))?;
    let bytes = read_bytes(body, MAX_PICTURE_BYTES, &mut held)
        .await
        .map_err(|_| CallFailure::refused(w.picture_too_many_bytes))?;
    // The slot goes with the decoding, not with the request: a browser
    // that hangs up does not free it while the work goes on.
    let read = tokio::task::spawn_blocking(move || {
        let _held = held;
        qr::read(&bytes)
    })
    .await
    .map_err(|e| CallFailure {
        advice: TEXT.failed,
        detail: e.to_string(),
    })?;
    read.map_err(|e| unreadable(&e))
}

fn unreadable(e: &ReadError) -> CallFailure {
    let w = &TEXT.join;
    CallFailure::refused(match e {
        ReadError::TooManyBytes => w.picture_too_many_bytes,
        ReadError::TooLarge => w.picture_too_large,
        ReadError::NotAPicture => w.not_a_picture,
        ReadError::Damaged(_) => w.picture_damaged,
        ReadError::NoCode => w.no_code,
    })
}
