//! TLS bound to identities (X01 §4, SYSTEM.md item 3): each node presents a
//! self-signed certificate whose key *is* its Ed25519 device key, so the
//! certificate names the NodeID it proves. Both sides require a
//! certificate (mutual TLS) and accept a peer only if the key in it is a
//! current member of the community, and, when dialling a known node, that
//! very node. No trust on first use, no certificate authority.
//!
//! TLS 1.3 only: it is the version that signs the handshake with Ed25519.

use std::sync::Arc;

use hearthnet_base::{DeviceKey, NodeId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// Who may connect: true for a current member of our community.
pub type Membership = Arc<dyn Fn(&NodeId) -> bool + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot build the TLS certificate: {0}")]
    Certificate(String),
    #[error("cannot configure TLS: {0}")]
    Config(#[from] rustls::Error),
    #[error("TLS: {0}")]
    Handshake(std::io::Error),
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the key's
/// 32 bytes follow it.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The NodeID whose key a certificate carries (its only Ed25519 key).
pub fn node_id_of(cert: &CertificateDer<'_>) -> Option<NodeId> {
    let der = cert.as_ref();
    let mut found = der
        .windows(ED25519_SPKI_PREFIX.len())
        .enumerate()
        .filter(|(_, w)| *w == ED25519_SPKI_PREFIX)
        .map(|(i, _)| i + ED25519_SPKI_PREFIX.len());
    let start = found.next()?;
    if found.next().is_some() {
        return None;
    }
    let bytes: [u8; 32] = der.get(start..start + 32)?.try_into().ok()?;
    Some(NodeId::from_bytes(bytes))
}

/// PKCS#8 v2 (RFC 5958, with the public key) of an Ed25519 key.
fn pkcs8(key: &DeviceKey) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x53, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&key.seed());
    der.extend_from_slice(&[0xa1, 0x23, 0x03, 0x21, 0x00]);
    der.extend_from_slice(key.node_id().as_bytes());
    der
}

/// This node's certificate and private key for TLS.
pub struct TlsIdentity {
    pub cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl TlsIdentity {
    /// A certificate for `key`, valid for ten years from now, named
    /// `<short-id>.hearthnet.local`.
    pub fn new(key: &DeviceKey) -> Result<Self, TlsError> {
        let cert_err = |e: rcgen::Error| TlsError::Certificate(e.to_string());
        let der = pkcs8(key);
        let pair =
            rcgen::KeyPair::try_from(&PrivatePkcs8KeyDer::from(der.clone())).map_err(cert_err)?;
        let short = key.node_id().short();
        let label = short.trim_start_matches("ed25519:").to_lowercase();
        let name = format!("{label}.hearthnet.local");
        let mut params =
            rcgen::CertificateParams::new(vec![name.clone(), "hearthnet.local".into()])
                .map_err(cert_err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3653);
        let cert = params.self_signed(&pair).map_err(cert_err)?;
        Ok(Self {
            cert: cert.der().clone(),
            key: der,
        })
    }

    fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }
}

/// The web UI's certificate for the household's other devices on the LAN
/// (a phone's browser). Browsers take no Ed25519 certificate, so this is
/// an ECDSA P-256 key of its own, never the device key, self-signed and
/// kept in the keys directory so a paired phone sees the same one after a
/// restart. A browser warns about it once: the person compares its SHA-256
/// fingerprint, which `hearthnet ui pair` prints, before accepting it.
pub struct LanCertificate {
    pub cert: CertificateDer<'static>,
    key: Vec<u8>,
}

const LAN_CERT_FILE: &str = "ui-lan-cert.der";
const LAN_KEY_FILE: &str = "ui-lan-key.der";

impl LanCertificate {
    /// The certificate kept in `dir`, made (and kept) on first use.
    pub fn load_or_create(dir: &std::path::Path) -> Result<Self, TlsError> {
        let io = |what: &str, e: std::io::Error| {
            TlsError::Certificate(format!("{what} in {}: {e}", dir.display()))
        };
        let (cert_path, key_path) = (dir.join(LAN_CERT_FILE), dir.join(LAN_KEY_FILE));
        if cert_path.exists() && key_path.exists() {
            let cert =
                std::fs::read(&cert_path).map_err(|e| io("cannot read the UI's certificate", e))?;
            let key =
                std::fs::read(&key_path).map_err(|e| io("cannot read the UI's TLS key", e))?;
            return Ok(Self {
                cert: CertificateDer::from(cert),
                key,
            });
        }
        let cert_err = |e: rcgen::Error| TlsError::Certificate(e.to_string());
        let pair =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err)?;
        let mut params =
            rcgen::CertificateParams::new(vec!["hearthnet.local".into()]).map_err(cert_err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "HearthNet web UI");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3653);
        let cert = params.self_signed(&pair).map_err(cert_err)?;
        let key = pair.serialize_der();
        // The key first: a certificate is only ever kept beside its key.
        hearthnet_base::fsio::atomic_write(&key_path, &key, 0o600)
            .map_err(|e| io("cannot keep the UI's TLS key", e))?;
        hearthnet_base::fsio::atomic_write(&cert_path, cert.der(), 0o600)
            .map_err(|e| io("cannot keep the UI's certificate", e))?;
        Ok(Self {
            cert: cert.der().clone(),
            key,
        })
    }

    /// The SHA-256 fingerprint as browsers show it: colon-separated hex.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.cert.as_ref());
        let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
        hex.join(":")
    }

    /// A server that asks no client certificate (a browser has none):
    /// TLS 1.2 and 1.3, HTTP/1.1.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone())),
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

struct PeerVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    member: Membership,
    /// When dialling a known node: only that node.
    expected: Option<NodeId>,
}

impl std::fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("expected", &self.expected)
            .finish()
    }
}

impl PeerVerifier {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let id = node_id_of(cert).ok_or_else(|| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(std::io::Error::other(
                    "the certificate carries no single Ed25519 key",
                )),
            )))
        })?;
        if let Some(expected) = self.expected
            && expected != id
        {
            tracing::warn!(expected = %expected.short(), presented = %id.short(), "TLS peer is not the node dialled");
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        if !(self.member)(&id) {
            tracing::warn!(peer = %id.short(), "TLS peer is not a member of this community");
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(())
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

fn verifier(member: Membership, expected: Option<NodeId>) -> Arc<PeerVerifier> {
    Arc::new(PeerVerifier {
        algorithms: provider().signature_verification_algorithms,
        member,
        expected,
    })
}

/// The server side: our certificate, and a member's certificate required.
pub fn server_config(
    identity: &TlsIdentity,
    member: Membership,
) -> Result<rustls::ServerConfig, TlsError> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier(member, None))
        .with_single_cert(vec![identity.cert.clone()], identity.key_der())?;
    Ok(config)
}

/// The client side: our certificate, and the server must be a member (and
/// `expected`, when we know whom we dial).
pub fn client_config(
    identity: &TlsIdentity,
    member: Membership,
    expected: Option<NodeId>,
) -> Result<rustls::ClientConfig, TlsError> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier(member, expected))
        .with_client_auth_cert(vec![identity.cert.clone()], identity.key_der())?;
    Ok(config)
}

/// The client's side of a mutual-TLS connection.
pub type ClientStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A mutual-TLS connection over `tcp` as `identity`, to a server that
/// `member` accepts (and that is `expected`, when given).
pub async fn connect(
    tcp: tokio::net::TcpStream,
    identity: &TlsIdentity,
    member: Membership,
    expected: Option<NodeId>,
) -> Result<ClientStream, TlsError> {
    let config = client_config(identity, member, expected)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // Certificates name no host we could check: the verifier checks keys.
    let name = ServerName::try_from("hearthnet.local")
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    connector
        .connect(name, tcp)
        .await
        .map_err(TlsError::Handshake)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lan_certificate_is_kept_private_and_the_same_after_a_restart() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = LanCertificate::load_or_create(dir.path()).unwrap();
        let again = LanCertificate::load_or_create(dir.path()).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert_eq!(first.fingerprint().len(), 32 * 3 - 1);
        let mode = std::fs::metadata(dir.path().join(LAN_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        again.server_config().unwrap();
        let other = tempfile::tempdir().unwrap();
        let fresh = LanCertificate::load_or_create(other.path()).unwrap();
        assert_ne!(fresh.fingerprint(), first.fingerprint());
    }

    #[test]
    fn certificates_carry_exactly_the_device_key() {
        let key = DeviceKey::generate();
        let id = TlsIdentity::new(&key).unwrap();
        assert_eq!(node_id_of(&id.cert), Some(key.node_id()));
        let yes: Membership = Arc::new(|_| true);
        server_config(&id, yes.clone()).unwrap();
        client_config(&id, yes, Some(key.node_id())).unwrap();
    }
}
