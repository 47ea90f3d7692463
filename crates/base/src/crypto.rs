//! The signing primitive (Contract §1.3 and §10): Ed25519 over the canonical
//! JSON of a payload without its `signature` field; signatures travel as
//! `ed25519:<base64url-nopad>`.

use std::fmt;
use std::sync::LazyLock;

use data_encoding::BASE64URL_NOPAD;
use ed25519_dalek::{Signer, SigningKey, Verifier};
use serde_json::Value;

use crate::canonical::{CanonicalError, to_canonical_bytes};
use crate::ids::{ED25519_PREFIX, IdError, NodeId};

/// Name of the field that carries a document's own signature.
pub const SIGNATURE_FIELD: &str = "signature";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("payload cannot be canonicalised: {0}")]
    Canonical(#[from] CanonicalError),
    #[error("only JSON objects carry a `signature` field")]
    NotAnObject,
    #[error("the payload has no `signature` field")]
    Missing,
    #[error("signature `{0}` is malformed: expected `ed25519:` and 86 base64url characters")]
    Malformed(String),
    #[error("the signature does not match the payload and the signer's key")]
    Mismatch,
    #[error(transparent)]
    BadKey(#[from] IdError),
}

/// A device's Ed25519 signing key. Its public half is the node's identity.
#[derive(Clone)]
pub struct DeviceKey(SigningKey);

impl DeviceKey {
    /// A fresh key from the operating system's random generator.
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut rand_core::OsRng))
    }

    /// The key whose 32-byte secret seed is `seed` (the on-disk form, M01 §4).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn node_id(&self) -> NodeId {
        NodeId::from_bytes(self.0.verifying_key().to_bytes())
    }

    /// Sign raw bytes; the result is in the wire form `ed25519:<b64>`.
    pub fn sign_bytes(&self, message: &[u8]) -> String {
        encode_signature(&self.0.sign(message).to_bytes())
    }

    /// Sign the canonical form of `payload` as it is (nothing stripped).
    /// Used for synthetic envelopes such as the HTTP request of §5.1.
    pub fn sign_canonical(&self, payload: &Value) -> Result<String, SignatureError> {
        Ok(self.sign_bytes(&to_canonical_bytes(payload)?))
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceKey({}, secret redacted)", self.node_id().short())
    }
}

fn encode_signature(bytes: &[u8; 64]) -> String {
    format!("{ED25519_PREFIX}{}", BASE64URL_NOPAD.encode(bytes))
}

fn decode_signature(text: &str) -> Result<ed25519_dalek::Signature, SignatureError> {
    let malformed = || SignatureError::Malformed(text.to_owned());
    let body = text.strip_prefix(ED25519_PREFIX).ok_or_else(malformed)?;
    let bytes = BASE64URL_NOPAD
        .decode(body.as_bytes())
        .map_err(|_| malformed())?;
    let bytes: [u8; 64] = bytes.try_into().map_err(|_| malformed())?;
    Ok(ed25519_dalek::Signature::from_bytes(&bytes))
}

/// Check `signature` (wire form) over raw `message` by `signer`.
pub fn verify_bytes(
    message: &[u8],
    signature: &str,
    signer: &NodeId,
) -> Result<(), SignatureError> {
    check(
        &signer.verifying_key()?,
        message,
        &decode_signature(signature)?,
    )
}

/// The one single-signature check, used for every stored document (events,
/// co-signatures, invites, manifests, snapshots) and for requests checked
/// alone. Strict: besides the cofactorless equation it refuses a
/// small-order `R` or key and any non-canonical `R` or `S`, so every node,
/// whatever its library, judges a signature in the log the same way; the
/// lax `verify` accepts e.g. `R` = identity with `S = k·a`.
///
/// The verdict is `verify_strict`'s (the tests compare them), reached
/// without decompressing `R`, a tenth of the check's cost: the lax check
/// compares `R` as bytes with a point it compressed, so `R` passes it only
/// in canonical form, and a canonical `R` is of small order exactly when it
/// is one of the eight encodings of [`small_order_encodings`].
fn check(
    key: &ed25519_dalek::VerifyingKey,
    message: &[u8],
    signature: &ed25519_dalek::Signature,
) -> Result<(), SignatureError> {
    if key.is_weak() || small_order_encodings().contains(signature.r_bytes()) {
        return Err(SignatureError::Mismatch);
    }
    key.verify(message, signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// The canonical encodings of the eight points of small order.
fn small_order_encodings() -> &'static [[u8; 32]; 8] {
    static ENCODINGS: LazyLock<[[u8; 32]; 8]> = LazyLock::new(|| {
        curve25519_dalek::constants::EIGHT_TORSION.map(|point| point.compress().to_bytes())
    });
    &ENCODINGS
}

/// A signature ready to be checked: decoded, with its signer's key and the
/// message it claims to sign. Owned, so that checks can be gathered from
/// several requests and made together ([`verify_all`]).
pub struct SignedMessage {
    message: Vec<u8>,
    signature: ed25519_dalek::Signature,
    key: ed25519_dalek::VerifyingKey,
}

impl SignedMessage {
    /// Fails if the signature is malformed or the signer is no key.
    pub fn new(message: Vec<u8>, signature: &str, signer: &NodeId) -> Result<Self, SignatureError> {
        Ok(Self {
            message,
            signature: decode_signature(signature)?,
            key: signer.verifying_key()?,
        })
    }

    pub fn verify(&self) -> Result<(), SignatureError> {
        check(&self.key, &self.message, &self.signature)
    }
}

/// Check several signatures: for each, whether it is valid.
///
/// Several are checked with one batch equation (random linear combination,
/// about 40 % less work per signature at 16); if that fails, each is
/// checked alone, so an invalid one never takes valid ones down with it.
/// The batch equation is cofactorless, and it accepts signatures the strict
/// single check ([`check`]) refuses: an `R` of small order (the identity,
/// with `S = k·a`), a non-canonical encoding of `R` (it is decompressed,
/// not compared as bytes), and, with probability 1/8 per random
/// coefficient, an `R` with a small-order component. Only the key's holder
/// can make such a signature (keys of small order are refused as NodeIDs
/// before any check), and it signs the same message, so it proves nothing
/// about anyone else. Use this for answering requests, never for stored
/// documents, whose validity every node must judge the same way; those go
/// through [`verify_value`] / [`verify_canonical`] / [`verify_bytes`]. The
/// edge vectors in the tests pin both behaviours.
pub fn verify_all(items: &[SignedMessage]) -> Vec<bool> {
    let alone = || items.iter().map(|item| item.verify().is_ok()).collect();
    if items.len() < 2 {
        return alone();
    }
    let messages: Vec<&[u8]> = items.iter().map(|i| i.message.as_slice()).collect();
    let signatures: Vec<_> = items.iter().map(|i| i.signature).collect();
    let keys: Vec<_> = items.iter().map(|i| i.key).collect();
    match ed25519_dalek::verify_batch(&messages, &signatures, &keys) {
        Ok(()) => vec![true; items.len()],
        Err(_) => alone(),
    }
}

/// Check `signature` over the canonical form of `payload` as it is.
pub fn verify_canonical(
    payload: &Value,
    signature: &str,
    signer: &NodeId,
) -> Result<(), SignatureError> {
    verify_bytes(&to_canonical_bytes(payload)?, signature, signer)
}

/// Sign a document (§10): drop any old `signature`, sign the canonical rest,
/// then put the new signature back in.
pub fn sign_value(mut payload: Value, key: &DeviceKey) -> Result<Value, SignatureError> {
    let map = payload.as_object_mut().ok_or(SignatureError::NotAnObject)?;
    map.remove(SIGNATURE_FIELD);
    let signature = key.sign_canonical(&payload)?;
    if let Some(map) = payload.as_object_mut() {
        map.insert(SIGNATURE_FIELD.to_owned(), Value::String(signature));
    }
    Ok(payload)
}

/// Verify a document signed with [`sign_value`] against `signer`'s key.
///
/// Verification always runs on the JSON as received, never on a re-encoded
/// struct, so fields this build does not know still count.
pub fn verify_value(payload: &Value, signer: &NodeId) -> Result<(), SignatureError> {
    let map = payload.as_object().ok_or(SignatureError::NotAnObject)?;
    let signature = match map.get(SIGNATURE_FIELD) {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(SignatureError::Malformed("<not a string>".into())),
        None => return Err(SignatureError::Missing),
    };
    let mut unsigned = map.clone();
    unsigned.remove(SIGNATURE_FIELD);
    verify_canonical(&Value::Object(unsigned), &signature, signer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 8032 §7.1, TEST 1: the secret seed, its public key, and the
    /// signature of the empty message.
    const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const RFC8032_SIG_EMPTY: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    fn hex32(text: &str) -> [u8; 32] {
        data_encoding::HEXLOWER
            .decode(text.as_bytes())
            .unwrap()
            .try_into()
            .unwrap()
    }

    pub(crate) fn fixed_key() -> DeviceKey {
        DeviceKey::from_seed(hex32(RFC8032_SEED))
    }

    #[test]
    fn rfc8032_vector() {
        let key = fixed_key();
        assert_eq!(key.node_id().as_bytes(), &hex32(RFC8032_PUBLIC));
        let expected = data_encoding::HEXLOWER
            .decode(RFC8032_SIG_EMPTY.as_bytes())
            .unwrap();
        let expected: [u8; 64] = expected.try_into().unwrap();
        assert_eq!(key.sign_bytes(b""), encode_signature(&expected));
        assert_eq!(
            key.node_id().full(),
            "ed25519:11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
    }

    #[test]
    fn verify_all_answers_for_each_signature_even_when_one_is_bad() {
        let items = |bad: Option<usize>| -> Vec<SignedMessage> {
            (0..5)
                .map(|i| {
                    let key = DeviceKey::generate();
                    let message = vec![i as u8; 40];
                    let signature = key.sign_bytes(&message);
                    let checked = if Some(i) == bad { vec![9; 40] } else { message };
                    SignedMessage::new(checked, &signature, &key.node_id()).unwrap()
                })
                .collect()
        };
        assert_eq!(verify_all(&items(None)), vec![true; 5]);
        assert_eq!(
            verify_all(&items(Some(3))),
            vec![true, true, true, false, true]
        );
        assert_eq!(verify_all(&items(Some(0))[..1]), vec![false]);
        assert!(verify_all(&[]).is_empty());
    }

    #[test]
    fn sign_then_verify_and_tamper_detection() {
        let key = fixed_key();
        let doc = sign_value(json!({"b": [1.5, "x"], "a": {"n": null}}), &key).unwrap();
        verify_value(&doc, &key.node_id()).unwrap();

        let mut tampered = doc.clone();
        tampered["b"][0] = json!(1.25);
        assert_eq!(
            verify_value(&tampered, &key.node_id()),
            Err(SignatureError::Mismatch)
        );

        let other = DeviceKey::generate().node_id();
        assert_eq!(verify_value(&doc, &other), Err(SignatureError::Mismatch));

        let mut unsigned = doc.clone();
        unsigned.as_object_mut().unwrap().remove("signature");
        assert_eq!(
            verify_value(&unsigned, &key.node_id()),
            Err(SignatureError::Missing)
        );

        let mut garbled = doc;
        garbled["signature"] = json!("ed25519:xyz");
        assert!(matches!(
            verify_value(&garbled, &key.node_id()),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn equal_numbers_sign_identically() {
        let key = fixed_key();
        let a = sign_value(serde_json::from_str(r#"{"v":1.0}"#).unwrap(), &key).unwrap();
        let b = sign_value(serde_json::from_str(r#"{"v":1}"#).unwrap(), &key).unwrap();
        assert_eq!(a["signature"], b["signature"]);
    }

    /// Ed25519 edge cases: what the strict single check (every stored
    /// document) and the batch (requests only) each make of them.
    mod edge_vectors {
        use super::*;
        use curve25519_dalek::Scalar;
        use curve25519_dalek::edwards::CompressedEdwardsY;
        use ed25519_dalek::Verifier;
        use sha2::{Digest, Sha512};

        /// The eight points of small order, canonically encoded, as listed in
        /// "Taming the many EdDSAs" (Chalkias, Garillot, Nikolaenko, SSR 2020,
        /// table 6c) and ed25519-speccheck (github.com/novifinancial/ed25519-speccheck):
        /// orders 1, 2, 4, 4, 8, 8, 8, 8.
        const SMALL_ORDER: [&str; 8] = [
            "0100000000000000000000000000000000000000000000000000000000000000",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000000000000080",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        ];

        /// Non-canonical encodings of small-order points (same sources):
        /// y = p + 1 (the identity), the identity with the sign bit set,
        /// y = p (order 4), and y = −1 with the sign bit set (order 2).
        const NON_CANONICAL_SMALL_ORDER: [&str; 4] = [
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "0100000000000000000000000000000000000000000000000000000000000080",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ];

        /// ℓ, the order of the base point, little-endian.
        const ORDER: &str = "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010";

        const MESSAGE: &[u8] = b"hearthnet edge vector";

        fn signature_from(r: [u8; 32], s: [u8; 32]) -> String {
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(&r);
            bytes[32..].copy_from_slice(&s);
            encode_signature(&bytes)
        }

        fn challenge(r: &[u8; 32], key: &NodeId, message: &[u8]) -> Scalar {
            let digest: [u8; 64] = Sha512::new()
                .chain_update(r)
                .chain_update(key.as_bytes())
                .chain_update(message)
                .finalize()
                .into();
            Scalar::from_bytes_mod_order_wide(&digest)
        }

        fn honest(message: &[u8]) -> SignedMessage {
            let key = DeviceKey::generate();
            let signature = key.sign_bytes(message);
            SignedMessage::new(message.to_vec(), &signature, &key.node_id()).unwrap()
        }

        #[test]
        fn the_listed_points_are_the_small_order_points() {
            let mut points = Vec::new();
            for text in SMALL_ORDER.iter().chain(&NON_CANONICAL_SMALL_ORDER) {
                let point = CompressedEdwardsY(hex32(text)).decompress().unwrap();
                assert!(point.is_small_order(), "{text}");
                points.push(point);
            }
            for (i, a) in points[..8].iter().enumerate() {
                assert!(points[..i].iter().all(|b| b != a), "duplicate {i}");
            }
            for text in NON_CANONICAL_SMALL_ORDER {
                let point = CompressedEdwardsY(hex32(text)).decompress().unwrap();
                assert_ne!(
                    point.compress().to_bytes(),
                    hex32(text),
                    "{text} is canonical"
                );
            }
        }

        /// With the identity as key, `S = r` and `R = r·B` satisfy the
        /// cofactorless equation for every message: anyone can sign.
        #[test]
        fn small_order_keys_are_refused_on_every_path() {
            let r = Scalar::from(7u64);
            let big_r = curve25519_dalek::constants::ED25519_BASEPOINT_POINT * r;
            let forged = signature_from(big_r.compress().to_bytes(), r.to_bytes());
            let identity = ed25519_dalek::VerifyingKey::from_bytes(&hex32(SMALL_ORDER[0])).unwrap();
            let raw = decode_signature(&forged).unwrap();
            assert!(
                identity.verify(MESSAGE, &raw).is_ok(),
                "the lax check is fooled"
            );
            assert!(identity.verify_strict(MESSAGE, &raw).is_err());

            for text in SMALL_ORDER.iter().chain(&NON_CANONICAL_SMALL_ORDER) {
                let signer = NodeId::from_bytes(hex32(text));
                assert!(
                    matches!(
                        verify_bytes(MESSAGE, &forged, &signer),
                        Err(SignatureError::BadKey(_))
                    ),
                    "{text}"
                );
                // The batch takes only `SignedMessage`s, and none can be made.
                assert!(matches!(
                    SignedMessage::new(MESSAGE.to_vec(), &forged, &signer),
                    Err(SignatureError::BadKey(_))
                ));
            }
        }

        /// `R` of small order with `S = k·a`: only the key's holder can make
        /// it. Canonical identity, identity at y = p + 1, identity with the
        /// sign bit: the strict check refuses all three, the batch accepts
        /// all three, which is why stored documents never take the batch.
        #[test]
        fn small_order_and_non_canonical_r_are_refused_alone_but_pass_a_batch() {
            let key = fixed_key();
            let signer = key.node_id();
            let secret = key.0.to_scalar();
            let identities = [
                SMALL_ORDER[0],
                NON_CANONICAL_SMALL_ORDER[0],
                NON_CANONICAL_SMALL_ORDER[1],
            ];
            for (i, text) in identities.into_iter().enumerate() {
                let r = hex32(text);
                let s = challenge(&r, &signer, MESSAGE) * secret;
                let signature = signature_from(r, s.to_bytes());

                assert_eq!(
                    verify_bytes(MESSAGE, &signature, &signer),
                    Err(SignatureError::Mismatch)
                );
                // The same shape over a document, as events and invites are checked.
                let canonical = to_canonical_bytes(&json!({"n": 1})).unwrap();
                let s_doc = challenge(&r, &signer, &canonical) * secret;
                let doc = json!({"n": 1, "signature": signature_from(r, s_doc.to_bytes())});
                assert_eq!(verify_value(&doc, &signer), Err(SignatureError::Mismatch));

                let lax = signer
                    .verifying_key()
                    .unwrap()
                    .verify(MESSAGE, &decode_signature(&signature).unwrap())
                    .is_ok();
                // Only the canonical identity fools the lax single check:
                // it compares `R` as bytes after recomputing it.
                assert_eq!(lax, i == 0, "{text}");

                let edge = SignedMessage::new(MESSAGE.to_vec(), &signature, &signer).unwrap();
                assert!(edge.verify().is_err());
                assert_eq!(
                    verify_all(&[edge, honest(b"other")]),
                    vec![true, true],
                    "{text}"
                );
                // Alone, the batch falls back to the strict check.
                let edge = SignedMessage::new(MESSAGE.to_vec(), &signature, &signer).unwrap();
                assert_eq!(verify_all(&[edge]), vec![false]);
            }
        }

        /// Our strict check gives `verify_strict`'s verdict on every edge:
        /// each small-order `R` (canonical or not) with `S = k·a`, every
        /// non-canonical `R` (y ≥ p, either sign) with the same, honest
        /// signatures, and honest ones with a bit of `R` or `S` flipped.
        #[test]
        fn the_strict_check_agrees_with_verify_strict() {
            let key = fixed_key();
            let signer = key.node_id();
            let verifying = signer.verifying_key().unwrap();
            let secret = key.0.to_scalar();
            let mut candidates: Vec<[u8; 64]> = Vec::new();
            let mut r_values: Vec<[u8; 32]> = SMALL_ORDER
                .iter()
                .chain(&NON_CANONICAL_SMALL_ORDER)
                .map(|text| hex32(text))
                .collect();
            // y = p + i for the 19 values that fit in 255 bits, both signs.
            for i in 0..19u8 {
                let mut r = hex32(NON_CANONICAL_SMALL_ORDER[2]);
                r[0] += i;
                r_values.push(r);
                r[31] |= 0x80;
                r_values.push(r);
            }
            for r in r_values {
                let s = challenge(&r, &signer, MESSAGE) * secret;
                let mut bytes = [0u8; 64];
                bytes[..32].copy_from_slice(&r);
                bytes[32..].copy_from_slice(&s.to_bytes());
                candidates.push(bytes);
            }
            for n in 0..32u8 {
                let message = [MESSAGE, &[n]].concat();
                let honest = decode_signature(&key.sign_bytes(&message))
                    .unwrap()
                    .to_bytes();
                let mut flipped = honest;
                flipped[usize::from(n) * 2] ^= 1 << (n % 8);
                for bytes in [honest, flipped] {
                    let signature = ed25519_dalek::Signature::from_bytes(&bytes);
                    assert_eq!(
                        check(&verifying, &message, &signature).is_ok(),
                        verifying.verify_strict(&message, &signature).is_ok(),
                        "{n}"
                    );
                }
            }
            let mut accepted = 0;
            for bytes in candidates {
                let signature = ed25519_dalek::Signature::from_bytes(&bytes);
                let strict = verifying.verify_strict(MESSAGE, &signature).is_ok();
                assert_eq!(check(&verifying, MESSAGE, &signature).is_ok(), strict);
                accepted += usize::from(strict);
            }
            // None of the made-up signatures may pass.
            assert_eq!(accepted, 0);
        }

        /// `S` ≥ ℓ (a valid `S` plus ℓ), and `S` with its top bits set, are
        /// refused everywhere, the batch included.
        #[test]
        fn non_canonical_s_is_refused_on_every_path() {
            let order = hex32(ORDER);
            assert_eq!(Scalar::from_bytes_mod_order(order), Scalar::ZERO);
            let key = fixed_key();
            let signer = key.node_id();
            let valid = decode_signature(&key.sign_bytes(MESSAGE))
                .unwrap()
                .to_bytes();
            let mut r = [0u8; 32];
            r.copy_from_slice(&valid[..32]);
            let mut plus_order = [0u8; 32];
            let mut carry = 0u16;
            for i in 0..32 {
                let sum = u16::from(valid[32 + i]) + u16::from(order[i]) + carry;
                plus_order[i] = sum as u8;
                carry = sum >> 8;
            }
            assert_eq!(carry, 0);
            let mut top_bits = plus_order;
            top_bits[31] |= 0xe0;
            for s in [plus_order, top_bits] {
                let signature = signature_from(r, s);
                assert_eq!(
                    verify_bytes(MESSAGE, &signature, &signer),
                    Err(SignatureError::Mismatch)
                );
                let raw = decode_signature(&signature).unwrap();
                assert!(
                    signer
                        .verifying_key()
                        .unwrap()
                        .verify(MESSAGE, &raw)
                        .is_err()
                );
                let edge = SignedMessage::new(MESSAGE.to_vec(), &signature, &signer).unwrap();
                assert_eq!(verify_all(&[edge, honest(b"other")]), vec![false, true]);
            }
        }
    }
}
