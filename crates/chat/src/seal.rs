//! The end-to-end encryption of a direct message's content (SECURITY.md,
//! "Direct messages").
//!
//! Both ends derive one key for their pair from their device keys: the
//! X25519 form of each Ed25519 key (the secret scalar of the seed, the
//! Montgomery form of the public point), the X25519 shared secret, then
//! HKDF-SHA256 with a label and the community and both node ids (in a
//! fixed order, so both ends get the same key). The content is sealed
//! with XChaCha20-Poly1305 under a fresh random 192-bit nonce, with the
//! envelope fields that place it (community, author, recipient,
//! `client_id`) as associated data, so a ciphertext copied into another
//! event does not open.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use curve25519_dalek::montgomery::MontgomeryPoint;
use hearthnet_base::{CommunityId, DeviceKey, NodeId};
use hkdf::Hkdf;
use parking_lot::Mutex;
use rand_core::RngCore;
use sha2::Sha256;

/// What a sealed body starts with: the construction and its version.
pub const SEALED_PREFIX: &str = "e2e1:";

/// The largest plaintext (canonical JSON of text and attachments) sealed.
pub const MAX_SEALED_PLAINTEXT: usize = 16 * 1024;

/// The longest sealed body accepted: the prefix and the Base64 of nonce,
/// the largest plaintext and the tag. Longer ones are refused before any
/// decoding.
pub const MAX_SEALED_CHARS: usize =
    SEALED_PREFIX.len() + (NONCE_BYTES + MAX_SEALED_PLAINTEXT + TAG_BYTES).div_ceil(3) * 4;

const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// HKDF's info starts with this, so the key serves this purpose only.
const KEY_LABEL: &[u8] = b"hearthnet/chat/direct-message/v1";
/// The associated data starts with this.
const AAD_LABEL: &str = "hearthnet/chat/direct-message/v1";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the peer's node id is not a usable public key")]
    BadPeerKey,
    #[error("the key agreement with the peer gave no secret (a small-order key)")]
    WeakSharedSecret,
    #[error("the content is {0} bytes, more than the {MAX_SEALED_PLAINTEXT} a message may carry")]
    TooLarge(usize),
    #[error("the body is not sealed (it does not start with `{SEALED_PREFIX}`)")]
    NotSealed,
    #[error("the sealed body is {0} characters, more than {MAX_SEALED_CHARS}")]
    SealedTooLong(usize),
    #[error("the sealed body is not Base64url")]
    BadEncoding,
    #[error("the sealed body is too short to hold a nonce and a tag")]
    Truncated,
    #[error(
        "the sealed body does not open: not for this pair, or altered, or moved to another envelope"
    )]
    DoesNotOpen,
}

/// Where a sealed body belongs: the envelope fields bound to it.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    pub community: CommunityId,
    pub author: NodeId,
    pub recipient: NodeId,
    pub client_id: &'a str,
}

impl Placement<'_> {
    /// The label and the four fields, each preceded by its length (u32,
    /// big-endian), so no two placements share their bytes.
    fn associated_data(&self) -> Vec<u8> {
        let community = self.community.full();
        let fields = [
            AAD_LABEL.as_bytes(),
            community.as_bytes(),
            self.author.as_bytes(),
            self.recipient.as_bytes(),
            self.client_id.as_bytes(),
        ];
        let mut aad = Vec::with_capacity(fields.iter().map(|f| f.len() + 4).sum());
        for field in fields {
            // Every field is far shorter than 4 GiB (a client id is at most
            // 128 characters, an event at most 64 KiB).
            aad.extend_from_slice(&(field.len() as u32).to_be_bytes());
            aad.extend_from_slice(field);
        }
        aad
    }

    /// The other end, seen from `me`.
    fn peer_of(&self, me: NodeId) -> NodeId {
        if self.author == me {
            self.recipient
        } else {
            self.author
        }
    }
}

/// The key `me` shares with `peer` in `community`.
fn pair_key(
    me: &DeviceKey,
    peer: NodeId,
    community: CommunityId,
) -> Result<XChaCha20Poly1305, SealError> {
    let peer_point = peer
        .verifying_key()
        .map_err(|_| SealError::BadPeerKey)?
        .to_montgomery();
    let scalar = ed25519_dalek::SigningKey::from_bytes(&me.seed()).to_scalar_bytes();
    let shared: MontgomeryPoint = peer_point.mul_clamped(scalar);
    if shared.to_bytes() == [0; 32] {
        return Err(SealError::WeakSharedSecret);
    }
    let (a, b) = {
        let (x, y) = (me.node_id(), peer);
        if x.as_bytes() <= y.as_bytes() {
            (x, y)
        } else {
            (y, x)
        }
    };
    let mut info = KEY_LABEL.to_vec();
    info.extend_from_slice(community.full().as_bytes());
    info.extend_from_slice(a.as_bytes());
    info.extend_from_slice(b.as_bytes());
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(None, shared.as_bytes())
        .expand(&info, &mut key)
        // 32 bytes is far below HKDF-SHA256's limit of 8160.
        .map_err(|_| SealError::WeakSharedSecret)?;
    Ok(XChaCha20Poly1305::new(&key.into()))
}

/// The pair keys of one node in one community, each derived once: a
/// derivation is a scalar multiplication and HKDF, which a flood of
/// messages from one member would otherwise pay once per message.
pub struct PairKeys {
    me: DeviceKey,
    community: CommunityId,
    keys: Mutex<HashMap<NodeId, Result<XChaCha20Poly1305, SealError>>>,
    /// Derivations made, for the tests.
    derived: AtomicUsize,
}

/// Peers whose keys are kept at most: a community has far fewer members;
/// beyond, the cache starts again rather than grow.
const MAX_CACHED_KEYS: usize = 4096;

impl PairKeys {
    pub fn new(me: DeviceKey, community: CommunityId) -> Self {
        Self {
            me,
            community,
            keys: Mutex::new(HashMap::new()),
            derived: AtomicUsize::new(0),
        }
    }

    /// The key shared with `peer` (a refusal is kept too: it is a
    /// property of the peer's key).
    fn key(&self, peer: NodeId) -> Result<XChaCha20Poly1305, SealError> {
        if let Some(key) = self.keys.lock().get(&peer) {
            return key.clone();
        }
        self.derived.fetch_add(1, Ordering::Relaxed);
        let key = pair_key(&self.me, peer, self.community);
        let mut keys = self.keys.lock();
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        keys.insert(peer, key.clone());
        key
    }

    /// Seal `plaintext` from this node (the author) for the placement's
    /// recipient, under a fresh random nonce.
    pub fn seal(&self, at: &Placement, plaintext: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand_core::OsRng.fill_bytes(&mut nonce);
        self.seal_with_nonce(at, plaintext, nonce)
    }

    fn seal_with_nonce(
        &self,
        at: &Placement,
        plaintext: &[u8],
        nonce: [u8; NONCE_BYTES],
    ) -> Result<String, SealError> {
        if plaintext.len() > MAX_SEALED_PLAINTEXT {
            return Err(SealError::TooLarge(plaintext.len()));
        }
        let cipher = self.key(at.peer_of(self.me.node_id()))?;
        let aad = at.associated_data();
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::TooLarge(plaintext.len()))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!(
            "{SEALED_PREFIX}{}",
            data_encoding::BASE64URL_NOPAD.encode(&bytes)
        ))
    }

    /// Open a sealed `body` as this node, the author or the recipient of
    /// `at`; malformed bodies are refused before a key is derived.
    pub fn open(&self, at: &Placement, body: &str) -> Result<Vec<u8>, SealError> {
        if body.len() > MAX_SEALED_CHARS {
            return Err(SealError::SealedTooLong(body.len()));
        }
        let encoded = body
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SealError::NotSealed)?;
        let bytes = data_encoding::BASE64URL_NOPAD
            .decode(encoded.as_bytes())
            .map_err(|_| SealError::BadEncoding)?;
        if bytes.len() < NONCE_BYTES + TAG_BYTES {
            return Err(SealError::Truncated);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let cipher = self.key(at.peer_of(self.me.node_id()))?;
        let aad = at.associated_data();
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::DoesNotOpen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One-off keys per call, as the tests of the construction want.
    fn seal(me: &DeviceKey, at: &Placement, plaintext: &[u8]) -> Result<String, SealError> {
        PairKeys::new(me.clone(), at.community).seal(at, plaintext)
    }

    fn open(me: &DeviceKey, at: &Placement, body: &str) -> Result<Vec<u8>, SealError> {
        PairKeys::new(me.clone(), at.community).open(at, body)
    }

    struct Pair {
        a: DeviceKey,
        b: DeviceKey,
        community: CommunityId,
    }

    fn pair() -> Pair {
        Pair {
            a: DeviceKey::generate(),
            b: DeviceKey::generate(),
            community: CommunityId::of_root(DeviceKey::generate().node_id()),
        }
    }

    impl Pair {
        fn a_to_b<'a>(&self, client_id: &'a str) -> Placement<'a> {
            Placement {
                community: self.community,
                author: self.a.node_id(),
                recipient: self.b.node_id(),
                client_id,
            }
        }
    }

    #[test]
    fn the_recipient_and_the_author_open_what_the_author_sealed() {
        let p = pair();
        let at = p.a_to_b("c1");
        let body = seal(&p.a, &at, b"Hast du heute Strom?").unwrap();
        assert!(body.starts_with(SEALED_PREFIX));
        assert!(!body.contains("Strom"));
        assert_eq!(open(&p.b, &at, &body).unwrap(), b"Hast du heute Strom?");
        assert_eq!(open(&p.a, &at, &body).unwrap(), b"Hast du heute Strom?");
    }

    #[test]
    fn a_third_member_cannot_open_it() {
        let p = pair();
        let at = p.a_to_b("c1");
        let body = seal(&p.a, &at, b"secret").unwrap();
        let third = DeviceKey::generate();
        assert_eq!(open(&third, &at, &body), Err(SealError::DoesNotOpen));
    }

    #[test]
    fn every_seal_takes_a_fresh_nonce() {
        let p = pair();
        let at = p.a_to_b("c1");
        assert_ne!(
            seal(&p.a, &at, b"same").unwrap(),
            seal(&p.a, &at, b"same").unwrap()
        );
    }

    #[test]
    fn a_body_moved_to_another_envelope_does_not_open() {
        let p = pair();
        let body = seal(&p.a, &p.a_to_b("c1"), b"secret").unwrap();
        // Another client id, the reverse direction (the same pair key),
        // another community: each is refused.
        assert_eq!(
            open(&p.b, &p.a_to_b("c2"), &body),
            Err(SealError::DoesNotOpen)
        );
        let reversed = Placement {
            author: p.b.node_id(),
            recipient: p.a.node_id(),
            ..p.a_to_b("c1")
        };
        assert_eq!(open(&p.b, &reversed, &body), Err(SealError::DoesNotOpen));
        let elsewhere = Placement {
            community: CommunityId::of_root(DeviceKey::generate().node_id()),
            ..p.a_to_b("c1")
        };
        assert_eq!(open(&p.b, &elsewhere, &body), Err(SealError::DoesNotOpen));
    }

    #[test]
    fn an_altered_body_does_not_open() {
        let p = pair();
        let at = p.a_to_b("c1");
        let body = seal(&p.a, &at, b"secret").unwrap();
        let mut bytes = data_encoding::BASE64URL_NOPAD
            .decode(&body.as_bytes()[SEALED_PREFIX.len()..])
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = format!(
            "{SEALED_PREFIX}{}",
            data_encoding::BASE64URL_NOPAD.encode(&bytes)
        );
        assert_eq!(open(&p.b, &at, &altered), Err(SealError::DoesNotOpen));
    }

    #[test]
    fn malformed_and_oversized_bodies_are_refused_before_decryption() {
        let p = pair();
        let at = p.a_to_b("c1");
        assert_eq!(open(&p.b, &at, "hello"), Err(SealError::NotSealed));
        assert_eq!(open(&p.b, &at, "e2e1:***"), Err(SealError::BadEncoding));
        assert_eq!(open(&p.b, &at, "e2e1:AAAA"), Err(SealError::Truncated));
        let long = format!("{SEALED_PREFIX}{}", "A".repeat(MAX_SEALED_CHARS));
        assert_eq!(
            open(&p.b, &at, &long),
            Err(SealError::SealedTooLong(long.len()))
        );
        let big = vec![b'x'; MAX_SEALED_PLAINTEXT + 1];
        assert_eq!(
            seal(&p.a, &at, &big),
            Err(SealError::TooLarge(MAX_SEALED_PLAINTEXT + 1))
        );
        // The largest plaintext fits the bound on sealed bodies.
        let largest = seal(&p.a, &at, &vec![b'x'; MAX_SEALED_PLAINTEXT]).unwrap();
        assert!(largest.len() <= MAX_SEALED_CHARS);
        assert_eq!(
            open(&p.b, &at, &largest).unwrap().len(),
            MAX_SEALED_PLAINTEXT
        );
    }

    #[test]
    fn a_small_order_peer_key_gives_no_key() {
        let p = pair();
        // The identity point (0, 1) is of small order: refused as a key,
        // and agreement with it would be all zeros.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let at = Placement {
            recipient: NodeId::from_bytes(identity),
            ..p.a_to_b("c1")
        };
        let refused = seal(&p.a, &at, b"x").unwrap_err();
        assert!(
            matches!(refused, SealError::BadPeerKey | SealError::WeakSharedSecret),
            "{refused:?}"
        );
    }

    /// The construction pinned by a vector computed without our code
    /// (`testdata/vectors/chat-seal.json`): a change here would leave
    /// every stored message unreadable.
    #[test]
    fn the_independent_vector_seals_and_opens() {
        let vector: serde_json::Value =
            serde_json::from_str(include_str!("../../../testdata/vectors/chat-seal.json")).unwrap();
        let field = |name: &str| vector[name].as_str().unwrap().to_owned();
        let bytes = |name: &str| {
            data_encoding::HEXLOWER
                .decode(field(name).as_bytes())
                .unwrap()
        };
        let a = DeviceKey::from_seed(bytes("author_seed_hex").try_into().unwrap());
        let b = DeviceKey::from_seed(bytes("recipient_seed_hex").try_into().unwrap());
        let client_id = field("client_id");
        let at = Placement {
            community: CommunityId::parse(&field("community_id")).unwrap(),
            author: a.node_id(),
            recipient: b.node_id(),
            client_id: &client_id,
        };
        let nonce = bytes("nonce_hex").try_into().unwrap();
        let plaintext = field("plaintext");
        let body = PairKeys::new(a.clone(), at.community)
            .seal_with_nonce(&at, plaintext.as_bytes(), nonce)
            .unwrap();
        assert_eq!(body, field("sealed"));
        assert_eq!(open(&b, &at, &body).unwrap(), plaintext.as_bytes());
    }

    #[test]
    fn the_x25519_keys_agree_with_the_ed25519_conversion() {
        // Both directions reach the same pair key: what A seals to B, B
        // opens; what B seals to A, A opens.
        let p = pair();
        let back = Placement {
            author: p.b.node_id(),
            recipient: p.a.node_id(),
            ..p.a_to_b("c9")
        };
        let body = seal(&p.b, &back, b"reply").unwrap();
        assert_eq!(open(&p.a, &back, &body).unwrap(), b"reply");
    }

    #[test]
    fn a_pair_key_is_derived_once_per_peer() {
        let p = pair();
        let keys = PairKeys::new(p.b.clone(), p.community);
        let (third, other) = (DeviceKey::generate(), DeviceKey::generate());
        for i in 0..20 {
            let id = format!("c{i}");
            let at = p.a_to_b(&id);
            let body = seal(&p.a, &at, b"flood").unwrap();
            assert_eq!(keys.open(&at, &body).unwrap(), b"flood");
            // A malformed body costs no derivation, whoever it names.
            let forged = Placement {
                author: third.node_id(),
                ..at
            };
            assert_eq!(keys.open(&forged, "e2e1:***"), Err(SealError::BadEncoding));
        }
        assert_eq!(keys.derived.load(Ordering::Relaxed), 1);
        let reply = Placement {
            author: p.b.node_id(),
            recipient: other.node_id(),
            ..p.a_to_b("r")
        };
        keys.seal(&reply, b"hi").unwrap();
        assert_eq!(keys.derived.load(Ordering::Relaxed), 2);
    }
}
