//! Settings' and Join's forms through the router: what a hostile or
//! mistaken form gets back.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use axum::http::StatusCode;

use crate::Ui;
use crate::tests::{logged_in, open_page, ui};
use crate::text::TEXT;

/// POST `fields` (already encoded) to `path` as the logged-in browser.
async fn post_form(ui: &Ui, path: &str, fields: &str) -> String {
    let cookie = logged_in(ui).await;
    let answer = crate::tests::post_form(ui, &cookie, path, fields).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

fn enc(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The alert `body` carries says `advice`, in HTML-escaped form.
fn says(body: &str, advice: &str) -> bool {
    let escaped = advice
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    body.contains(r#"role="alert""#) && body.contains(&escaped)
}

#[tokio::test]
async fn the_settings_and_join_pages_show_their_parts() {
    let ui = ui();
    let cookie = logged_in(&ui).await;
    for (path, marks) in [
        (
            "/settings",
            &[
                "invite-form",
                "proposal-form",
                "gateway-h",
                "models-h",
                "members-h",
            ][..],
        ),
        ("/join", &["join-form", "hearthnet init --join"][..]),
    ] {
        let page = open_page(&ui, &cookie, path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        for mark in marks {
            assert!(page.body.contains(mark), "{path} lacks {mark}");
        }
    }
}

#[tokio::test]
async fn an_invite_form_without_a_card_or_with_a_long_name_is_refused_plainly() {
    let ui = ui();
    let t = &TEXT.settings;
    let id = hearthnet_wire::local::samples::node_id(2).full();
    let cases = [
        (
            "card=hello&level=member&hours=24".to_owned(),
            t.refused_not_a_card,
        ),
        (
            format!("card={}&level=member&hours=24", "a".repeat(5000)),
            t.refused_not_a_card,
        ),
        (
            format!(
                "card={}&name={}&level=member&hours=24",
                enc(&id),
                "n".repeat(65)
            ),
            t.refused_name_too_long,
        ),
        (
            format!(
                "card={}&name={}&level=member&hours=24",
                enc(&id),
                enc("Tab\nlet")
            ),
            t.refused_name_control,
        ),
        (
            format!("card={}&level=anchor&hours=24", enc(&id)),
            t.refused_level,
        ),
        (
            format!("card={}&level=member&hours=100000", enc(&id)),
            t.refused_validity,
        ),
    ];
    for (fields, advice) in cases {
        let body = post_form(&ui, "/settings/invite", &fields).await;
        assert!(says(&body, advice), "{fields}: {body}");
    }
    // A valid form reaches the bus, where no node offers invites here.
    let body = post_form(
        &ui,
        "/settings/invite",
        &format!("card={}&name=Tablet&level=trusted&hours=1", enc(&id)),
    )
    .await;
    assert!(
        says(&body, TEXT.error_for(hearthnet_base::ErrorCode::NotFound)),
        "{body}"
    );
}

#[tokio::test]
async fn a_malformed_proposal_is_refused_before_the_node_sees_it() {
    let ui = ui();
    let t = &TEXT.settings;
    let garbled = "hearthnet-proposal://v1/!!!not-base64";
    let not_object = format!(
        "hearthnet-proposal://v1/{}",
        data_encoding::BASE64URL_NOPAD.encode(b"[1,2]")
    );
    for path in ["/settings/proposal/cosign", "/settings/proposal/submit"] {
        for text in ["", "hello", garbled, &not_object] {
            let body = post_form(&ui, path, &format!("proposal={}", enc(text))).await;
            assert!(
                says(&body, t.refused_not_a_proposal),
                "{path} {text}: {body}"
            );
        }
        let long = format!("hearthnet-proposal://v1/{}", "A".repeat(13 * 1024));
        let body = post_form(&ui, path, &format!("proposal={long}")).await;
        assert!(says(&body, t.refused_too_long), "{path}: {body}");
    }
    let id = hearthnet_wire::local::samples::node_id(2).full();
    for (fields, advice) in [
        (
            "target=nobody&kind=revoke&reason=inactive".to_owned(),
            t.refused_target,
        ),
        (
            format!("target={}&kind=erase&reason=inactive", enc(&id)),
            t.refused_kind,
        ),
        (
            format!("target={}&kind=revoke&reason=spite", enc(&id)),
            t.refused_reason,
        ),
        (
            format!("target={}&kind=demote&new_level=anchor", enc(&id)),
            t.refused_level,
        ),
    ] {
        let body = post_form(&ui, "/settings/proposal/create", &fields).await;
        assert!(says(&body, advice), "{fields}: {body}");
    }
}

#[tokio::test]
async fn a_paste_that_is_not_an_invite_is_refused_and_says_what_it_is() {
    let ui = ui();
    let t = &TEXT.settings;
    let card = hearthnet_onboarding::IdentityCard {
        node_id_full: hearthnet_wire::local::samples::node_id(2),
        display_name: "Tablet".into(),
    }
    .encode();
    let forged = format!(
        "hearthnet://v1/{}",
        data_encoding::BASE64URL_NOPAD.encode(br#"{"schema_version":1}"#)
    );
    for (text, advice) in [
        ("hello".to_owned(), t.refused_not_an_invite),
        (card, t.refused_card_not_invite),
        (forged, t.refused_invite_damaged),
        (
            format!("hearthnet://v1/{}", "A".repeat(5000)),
            t.refused_too_long,
        ),
    ] {
        let body = post_form(&ui, "/join/check", &format!("invite={}", enc(&text))).await;
        assert!(says(&body, advice), "{text}: {body}");
    }
}

#[tokio::test]
async fn the_gateway_key_is_made_once_shown_once_and_rotated_only_when_confirmed() {
    let keys = tempfile::tempdir().unwrap();
    let file = hearthnet_identity::ApiKeyFile::in_dir(keys.path().join("keys"));
    let ui = crate::tests::ui_with_key(file.clone());
    let t = &TEXT.settings;

    let made = post_form(&ui, "/settings/gateway-key", "action=create").await;
    let key = file.load().unwrap();
    assert!(made.contains(key.as_str()), "{made}");
    assert!(made.contains(t.gateway_exists), "{made}");
    // Creating again makes nothing and shows no key.
    let again = post_form(&ui, "/settings/gateway-key", "action=create").await;
    assert!(!again.contains(key.as_str()), "{again}");
    assert_eq!(file.load().unwrap(), key);

    let unconfirmed = post_form(&ui, "/settings/gateway-key", "action=rotate").await;
    assert!(
        says(&unconfirmed, t.refused_rotate_unconfirmed),
        "{unconfirmed}"
    );
    assert_eq!(file.load().unwrap(), key, "nothing rotated");
    let odd = post_form(&ui, "/settings/gateway-key", "action=delete").await;
    assert!(says(&odd, t.refused_action), "{odd}");

    let rotated = post_form(&ui, "/settings/gateway-key", "action=rotate&confirm=yes").await;
    let new = file.load().unwrap();
    assert_ne!(new, key);
    assert!(rotated.contains(new.as_str()), "{rotated}");
}

/// A signed invite of a fresh community for a fresh device, expiring at
/// `expires_at`.
fn signed_invite(expires_at: hearthnet_base::Timestamp) -> (String, hearthnet_onboarding::Invite) {
    use hearthnet_identity::{CommunityPolicy, Genesis};
    let founder = hearthnet_base::DeviceKey::generate();
    let genesis = Genesis::create(&founder, "Hof am Deich", CommunityPolicy::default()).unwrap();
    let invite = hearthnet_onboarding::Invite::create(
        hearthnet_onboarding::InviteRequest {
            community_id: genesis.manifest.community_id,
            community_name: &genesis.manifest.name,
            invitee: hearthnet_base::DeviceKey::generate().node_id(),
            level: hearthnet_base::TrustLevel::Trusted,
            bootstrap_endpoints: Vec::new(),
            expires_at,
            invite_event_id: "01HXR3F7J8Q2W0KQ5M1N9ZB6TC",
            invite_lamport: 3,
        },
        &founder,
    )
    .unwrap();
    (invite.encode(), invite)
}

#[tokio::test]
async fn a_pasted_invite_is_read_back_and_an_expired_one_says_so() {
    let ui = ui();
    let t = &TEXT.settings;
    let now = hearthnet_base::Timestamp::now();

    let (text, invite) = signed_invite(now.plus_seconds(3600));
    let body = post_form(&ui, "/join/check", &format!("invite={}", enc(&text))).await;
    assert!(body.contains(r#"data-expired="false""#), "{body}");
    assert!(body.contains("Hof am Deich"), "{body}");
    assert!(body.contains(&invite.inviter_node_id.short()), "{body}");
    assert!(body.contains(&invite.invitee_node_id.short()), "{body}");
    assert!(body.contains(t.level_trusted), "{body}");
    assert!(body.contains("hearthnet init --join"), "{body}");

    let (text, _) = signed_invite(now.plus_seconds(-60));
    let body = post_form(&ui, "/join/check", &format!("invite={}", enc(&text))).await;
    assert!(body.contains(r#"data-expired="true""#), "{body}");
    assert!(!body.contains("hearthnet init --join"), "{body}");
}

#[tokio::test]
async fn settings_makes_a_pairing_code_only_when_the_lan_listener_is_on() {
    let off = post_form(&ui(), "/settings/pair", "").await;
    assert!(off.contains("ui.lan_enabled = true"), "{off}");
    assert!(!off.contains("pairing-code"), "{off}");

    let lan = crate::tests::ui_with_lan();
    let made = post_form(&lan, "/settings/pair", "").await;
    let at = made.find(r#"id="pairing-code">"#).unwrap() + r#"id="pairing-code">"#.len();
    let code = &made[at..at + 11];
    assert!(made.contains("https://192.168.1.20:7861/pair"), "{made}");
    assert!(made.contains("AB:CD"), "{made}");
    // The code shown is one the LAN's pairing form takes.
    let cookie = lan.state.access.pair(code);
    assert!(cookie.is_some(), "{code}");
}

#[tokio::test]
async fn a_picture_of_a_devices_card_fills_the_invite_form_or_says_why_not() {
    use axum::body::Body;
    use axum::http::header;
    use hearthnet_onboarding::{IdentityCard, Qr};

    use crate::tests::{csrf, post_request, send};

    let ui = ui();
    let cookie = logged_in(&ui).await;
    let token = csrf(&ui, &cookie).await;
    let scan = |bytes: Vec<u8>| {
        post_request(super::CARD_SCAN_PATH, &cookie, &token)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from(bytes))
            .unwrap()
    };
    let device = hearthnet_base::DeviceKey::generate().node_id();
    let card = IdentityCard {
        node_id_full: device,
        display_name: "Tablet".into(),
    }
    .encode();
    let picture = Qr::new(&card).unwrap().to_png(4).unwrap();
    let answer = send(&ui, scan(picture)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(
        answer.body.contains(r#"data-fills="invite-card""#)
            && answer.body.contains(&format!(r#"data-value="{card}""#)),
        "{}",
        answer.body
    );
    assert!(
        answer
            .body
            .contains(&format!("Tablet ({})", device.short()))
    );

    // A code that is no card, and a picture with no code at all.
    let not_a_card = Qr::new("https://example.org/").unwrap().to_png(4).unwrap();
    let answer = send(&ui, scan(not_a_card)).await;
    assert!(
        says(&answer.body, TEXT.settings.refused_not_a_card),
        "{}",
        answer.body
    );
    assert!(!answer.body.contains("data-fills"));
    let answer = send(&ui, scan(b"not a picture".to_vec())).await;
    assert!(
        says(&answer.body, TEXT.join.not_a_picture),
        "{}",
        answer.body
    );
    // More than a picture may hold is refused on its declared length.
    let declared = post_request(super::CARD_SCAN_PATH, &cookie, &token)
        .header(
            header::CONTENT_LENGTH,
            hearthnet_onboarding::qr::MAX_PICTURE_BYTES + 1,
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&ui, declared).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}
