//! The join page through its router: the card shown, invites pasted and
//! scanned, pictures refused before decoding, the redemption and its
//! failures in plain words, the gate, and the session the full UI takes
//! over.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{StatusCode, header};
use hearthnet_base::{DeviceKey, ErrorCode, Timestamp, TrustLevel};
use hearthnet_bus::CallError;
use hearthnet_identity::{CommunityPolicy, Endpoint, Genesis};
use hearthnet_onboarding::{IdentityCard, Invite, InviteRequest, Qr, qr};

use super::*;
use crate::tests::{
    PORT, csrf, form_request, get, logged_in, open_page, post_form, post_request, send,
};

/// A device's join page whose redemptions answer `outcome`, counted.
fn joining(
    device: &DeviceKey,
    outcome: Result<&'static str, ErrorCode>,
) -> (Joining, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let redeem: Redeemer = Arc::new(move |_text| {
        counted.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            outcome
                .map(str::to_owned)
                .map_err(|code| CallError::new(code, "the inviter said so"))
        })
    });
    let page = Joining::new(JoiningParts {
        card: IdentityCard {
            node_id_full: device.node_id(),
            display_name: "tablet".into(),
        },
        addr: ([127, 0, 0, 1], PORT).into(),
        redeem,
    });
    (page, calls)
}

/// An invite to "Den" for `invitee`, valid for `hours` (negative: expired).
fn invite_for(invitee: &DeviceKey, hours: i64) -> String {
    let founder = DeviceKey::generate();
    let genesis = Genesis::create(&founder, "Den", CommunityPolicy::default()).unwrap();
    Invite::create(
        InviteRequest {
            community_id: genesis.manifest.community_id,
            community_name: "Den",
            invitee: invitee.node_id(),
            level: TrustLevel::Member,
            bootstrap_endpoints: vec![Endpoint {
                transport: "https".into(),
                host: "192.168.1.20".into(),
                port: 7443,
            }],
            expires_at: Timestamp::now().plus_seconds(hours * 3600),
            invite_event_id: "01HXR3F7J8Q2W0KQ5M1N9ZB6TC",
            invite_lamport: 1,
        },
        &founder,
    )
    .unwrap()
    .encode()
}

/// `words` as the page shows them (HTML-escaped).
fn shown(words: &str) -> String {
    words.replace('\'', "&#39;")
}

fn form(invite: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("invite", invite)
        .finish()
}

/// POST a picture to the scan path as the page's script sends it.
async fn scan_picture(page: &Joining, cookie: &str, bytes: Vec<u8>) -> crate::tests::Answer {
    let token = csrf(page, cookie).await;
    let req = post_request(SCAN_PATH, cookie, &token)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from(bytes))
        .unwrap();
    send(page, req).await
}

#[tokio::test]
async fn the_page_shows_this_devices_card_as_text_and_as_a_qr_code() {
    let device = DeviceKey::generate();
    let (page, _) = joining(&device, Ok("Den"));
    let cookie = logged_in(&page).await;
    let shown = open_page(&page, &cookie, "/").await;
    assert_eq!(shown.status, StatusCode::OK);
    let card = IdentityCard {
        node_id_full: device.node_id(),
        display_name: "tablet".into(),
    }
    .encode();
    assert!(shown.body.contains(&card), "{}", shown.body);
    let at = shown.body.find("data:image/png;base64,").unwrap() + 22;
    let end = at + shown.body[at..].find('"').unwrap();
    let png = data_encoding::BASE64
        .decode(&shown.body.as_bytes()[at..end])
        .unwrap();
    assert_eq!(qr::read(&png).unwrap(), card, "the QR code is the card");
    for part in [
        r#"type="file""#,
        r#"accept="image/*""#,
        r#"capture="environment""#,
        r#"action="/join/scan""#,
    ] {
        assert!(shown.body.contains(part), "{part}");
    }
    assert!(
        !shown.body.contains("sse-connect"),
        "nothing live to follow"
    );
    assert!(!shown.body.contains("<nav"), "no other page to go to");
}

#[tokio::test]
async fn a_pasted_invite_shows_its_facts_and_the_join_button_or_why_not() {
    let device = DeviceKey::generate();
    let (page, _) = joining(&device, Ok("Den"));
    let cookie = logged_in(&page).await;
    let w = &TEXT.join;

    let good = post_form(
        &page,
        &cookie,
        "/join/check",
        &form(&invite_for(&device, 24)),
    )
    .await;
    assert_eq!(good.status, StatusCode::OK);
    assert!(good.body.contains("Den"), "{}", good.body);
    assert!(good.body.contains("redeem-form"), "{}", good.body);
    assert!(good.body.contains(&shown(w.this_device)), "{}", good.body);

    let other = DeviceKey::generate();
    let foreign = post_form(
        &page,
        &cookie,
        "/join/check",
        &form(&invite_for(&other, 24)),
    )
    .await;
    assert!(
        foreign.body.contains(&shown(w.for_another_device)),
        "{}",
        foreign.body
    );
    assert!(!foreign.body.contains("redeem-form"));

    let expired = post_form(
        &page,
        &cookie,
        "/join/check",
        &form(&invite_for(&device, -1)),
    )
    .await;
    assert!(
        expired.body.contains(&shown(TEXT.settings.join_expired)),
        "{}",
        expired.body
    );
    assert!(!expired.body.contains("redeem-form"));

    let card = IdentityCard {
        node_id_full: device.node_id(),
        display_name: "tablet".into(),
    }
    .encode();
    let not_invite = post_form(&page, &cookie, "/join/check", &form(&card)).await;
    assert!(
        not_invite
            .body
            .contains(&shown(TEXT.settings.refused_card_not_invite))
    );
    let garbage = post_form(&page, &cookie, "/join/check", &form("hello")).await;
    assert!(
        garbage
            .body
            .contains(&shown(TEXT.settings.refused_not_an_invite))
    );
}

#[tokio::test]
async fn a_scanned_picture_of_the_invite_reads_and_other_pictures_are_refused_plainly() {
    let device = DeviceKey::generate();
    let (page, _) = joining(&device, Ok("Den"));
    let cookie = logged_in(&page).await;
    let w = &TEXT.join;
    let invite = invite_for(&device, 24);

    // The PNG Settings shows for an invite.
    let data_url = crate::pages::qr_data_url(&invite).unwrap();
    let png = data_encoding::BASE64
        .decode(
            data_url
                .trim_start_matches("data:image/png;base64,")
                .as_bytes(),
        )
        .unwrap();
    let read = scan_picture(&page, &cookie, png).await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(read.body.contains("redeem-form"), "{}", read.body);
    assert!(read.body.contains(&invite), "the invite to redeem");

    // A code, but of no invite: said so.
    let other = Qr::new("https://example.org").unwrap().to_png(4).unwrap();
    let answer = scan_picture(&page, &cookie, other).await;
    assert!(
        answer
            .body
            .contains(&shown(TEXT.settings.refused_not_an_invite)),
        "{}",
        answer.body
    );

    let blank = Qr::new("x").unwrap().to_png(1).unwrap();
    let mut no_code = image::GrayImage::new(200, 200);
    no_code.fill(255);
    let mut bytes = Vec::new();
    no_code
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    let answer = scan_picture(&page, &cookie, bytes).await;
    assert!(answer.body.contains(&shown(w.no_code)), "{}", answer.body);

    let answer = scan_picture(&page, &cookie, b"just some text".to_vec()).await;
    assert!(
        answer.body.contains(&shown(w.not_a_picture)),
        "{}",
        answer.body
    );

    let mut cut = blank.clone();
    cut.truncate(cut.len() / 2);
    let answer = scan_picture(&page, &cookie, cut).await;
    assert!(
        answer.body.contains(&shown(w.picture_damaged)),
        "{}",
        answer.body
    );

    // Few bytes, too many pixels: refused on the header.
    let wide = image::GrayImage::new(qr::MAX_PICTURE_SIDE + 1, 1);
    let mut bytes = Vec::new();
    wide.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    let answer = scan_picture(&page, &cookie, bytes).await;
    assert!(
        answer.body.contains(&shown(w.picture_too_large)),
        "{}",
        answer.body
    );

    // More than 8 MiB: cut off as it arrives, and refused by the gate
    // before a byte is read when its length says so.
    let too_much = vec![0; MAX_PICTURE_BYTES + 1];
    let answer = scan_picture(&page, &cookie, too_much.clone()).await;
    assert!(answer.body.contains(&shown(w.picture_too_many_bytes)));
    let token = csrf(&page, &cookie).await;
    let declared = post_request(SCAN_PATH, &cookie, &token)
        .header(header::CONTENT_LENGTH, too_much.len())
        .body(Body::from(too_much))
        .unwrap();
    assert_eq!(
        send(&page, declared).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test]
async fn joining_redeems_once_and_sends_the_browser_home() {
    let device = DeviceKey::generate();
    let (page, calls) = joining(&device, Ok("Den"));
    let cookie = logged_in(&page).await;
    let body = form(&invite_for(&device, 24));
    let token = csrf(&page, &cookie).await;
    for _ in 0..2 {
        let joined = send(&page, form_request("/join/redeem", &cookie, &token, &body)).await;
        assert_eq!(joined.status, StatusCode::OK);
        assert_eq!(joined.headers["hx-redirect"], "/");
        assert!(
            joined.body.contains(&shown(TEXT.join.joined)),
            "{}",
            joined.body
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a double click joins once");
    // Until the full UI takes the address over, the page says so.
    let after = open_page(&page, &cookie, "/").await;
    assert!(
        after.body.contains(&shown(TEXT.join.starting)),
        "{}",
        after.body
    );
}

#[tokio::test]
async fn a_failed_redemption_says_what_happened_in_plain_words() {
    let device = DeviceKey::generate();
    let w = &TEXT.join;
    for (code, words) in [
        (ErrorCode::Partition, w.inviter_unreachable),
        (ErrorCode::Unauthorized, w.inviter_refused),
        (ErrorCode::Expired, TEXT.settings.join_expired),
        (ErrorCode::InvalidSignature, w.answer_unverified),
    ] {
        let (page, _) = joining(&device, Err(code));
        let cookie = logged_in(&page).await;
        let failed = post_form(
            &page,
            &cookie,
            "/join/redeem",
            &form(&invite_for(&device, 24)),
        )
        .await;
        assert!(
            failed.body.contains(&shown(words)),
            "{code}: {}",
            failed.body
        );
        assert!(failed.body.contains("the inviter said so"), "the detail");
        assert!(!failed.headers.contains_key("hx-redirect"));
    }
}

#[tokio::test]
async fn the_join_page_is_behind_the_same_gate_and_answers_every_path() {
    let device = DeviceKey::generate();
    let (page, calls) = joining(&device, Ok("Den"));
    let nobody = send(&page, get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
    let cookie = logged_in(&page).await;
    let rebound = send(
        &page,
        axum::http::Request::get("/")
            .header(header::HOST, "attacker.example:7860")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(rebound.status, StatusCode::FORBIDDEN);
    let body = form(&invite_for(&device, 24));
    let forged = send(
        &page,
        form_request("/join/redeem", &cookie, "not-the-token", &body),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let settings = open_page(&page, &cookie, "/settings").await;
    assert_eq!(settings.status, StatusCode::OK);
    assert!(settings.body.contains("card-text"), "the join page");
    let elsewhere = post_form(&page, &cookie, "/market/post", "title=x").await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    assert!(elsewhere.body.contains(&shown(TEXT.join.not_here)));
}

#[tokio::test]
async fn the_full_ui_keeps_the_browsers_session_once_the_device_has_joined() {
    let device = DeviceKey::generate();
    let (page, _) = joining(&device, Ok("Den"));
    let cookie = logged_in(&page).await;
    let metrics = Arc::new(hearthnet_observability::metrics::Metrics::new());
    let full = crate::tests::ui_with_access(
        Arc::new(hearthnet_bus::Bus::new(
            device.node_id(),
            Default::default(),
            metrics,
        )),
        page.access(),
    );
    let home = open_page(&full, &cookie, "/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(home.body.contains("node-id"), "Home: {}", home.body);
}
