//! The fleet's certificates: a CA, server and client certificates whose identity is one URI
//! SAN, CSR signing for spokes, and inspection of certificates with x509-parser.

use std::net::IpAddr;
use std::time::Duration;

use fleetbus_schema::{Identity, IdentityError};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// A PKI operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused to build or sign.
    #[error("certificate generation failed")]
    Generate(#[from] rcgen::Error),
    /// Not a PEM certificate x509-parser can read.
    #[error("not a readable X.509 certificate")]
    Parse,
    /// The certificate carries no (or more than one) fleetbus identity.
    #[error("certificate has {0} fleetbus identity SANs, expected exactly one")]
    IdentityCount(usize),
    /// The identity SAN is malformed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The CSR does not parse or its signature is wrong.
    #[error("invalid certificate signing request")]
    Csr,
}

/// The fleet certificate authority: signs every identity and the NATS server certificate.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// A freshly issued certificate and its private key (PEM).
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8). Write it 0600.
    pub key_pem: String,
}

impl Ca {
    /// A new self-signed CA valid for `validity`.
    pub fn generate(common_name: &str, validity: Duration) -> Result<(Self, String), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = base_params(common_name, OffsetDateTime::now_utc(), validity);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        let cert_pem = cert.pem();
        let issuer = Issuer::new(params, key);
        Ok((Self { issuer, cert_pem }, key_pem))
    }

    /// Loads a CA from its PEM certificate and key.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            issuer,
            cert_pem: cert_pem.to_owned(),
        })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A client certificate with a new key for `identity`.
    pub fn issue_client(
        &self,
        identity: &Identity,
        validity: Duration,
    ) -> Result<Issued, PkiError> {
        self.issue_client_window(identity, OffsetDateTime::now_utc(), validity)
    }

    /// Like [`Ca::issue_client`] with an explicit start (tests use it for expired certificates).
    pub fn issue_client_window(
        &self,
        identity: &Identity,
        not_before: OffsetDateTime,
        validity: Duration,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let params = client_params(identity, not_before, validity)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A server certificate for the given DNS names and IP addresses.
    pub fn issue_server(
        &self,
        dns: &[String],
        ips: &[IpAddr],
        validity: Duration,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let name = dns.first().map_or("fleetbus-nats", String::as_str);
        let mut params = base_params(name, OffsetDateTime::now_utc(), validity);
        for d in dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(d.clone().try_into()?));
        }
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Client auth too, so the same certificate serves NATS cluster routes.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs the public key of `csr_pem` for `identity`. Everything else the CSR asks for is
    /// ignored: the hub decides names, usages and lifetime.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &Identity,
        validity: Duration,
    ) -> Result<String, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|_| PkiError::Csr)?;
        let params = client_params(identity, OffsetDateTime::now_utc(), validity)?;
        Ok(params.signed_by(&csr.public_key, &self.issuer)?.pem())
    }
}

/// A new private key and a CSR for it (the spoke side of registration and renewal).
pub fn new_key_and_csr(identity: &Identity) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let csr = csr_for_key(&key, identity)?;
    Ok((key.serialize_pem(), csr))
}

/// A CSR for an existing PEM key.
pub fn csr_for_key_pem(key_pem: &str, identity: &Identity) -> Result<String, PkiError> {
    csr_for_key(&KeyPair::from_pem(key_pem)?, identity)
}

fn csr_for_key(key: &KeyPair, identity: &Identity) -> Result<String, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, identity.to_string());
    Ok(params.serialize_request(key)?.pem()?)
}

/// The SHA-256 (hex) of the public key of a CSR: the same value [`inspect`] reports for the
/// certificate signed from it.
pub fn csr_key_fingerprint(csr_pem: &str) -> Result<String, PkiError> {
    use x509_parser::prelude::FromDer;
    let der = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())
        .map_err(|_| PkiError::Csr)?
        .1;
    let csr = x509_parser::certification_request::X509CertificationRequest::from_der(&der.contents)
        .map_err(|_| PkiError::Csr)?
        .1;
    Ok(fingerprint(csr.certification_request_info.subject_pki.raw))
}

/// The SHA-256 (hex) of the public key of a PEM private key: the value [`inspect`] reports for
/// a certificate of that key, so a key and a certificate can be checked to belong together.
pub fn key_fingerprint(key_pem: &str) -> Result<String, PkiError> {
    use rcgen::PublicKeyData;
    let key = KeyPair::from_pem(key_pem)?;
    Ok(fingerprint(&key.subject_public_key_info()))
}

fn base_params(
    common_name: &str,
    not_before: OffsetDateTime,
    validity: Duration,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.not_before = not_before;
    params.not_after = not_before + validity;
    params.serial_number = Some(SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
    params
}

fn client_params(
    identity: &Identity,
    not_before: OffsetDateTime,
    validity: Duration,
) -> Result<CertificateParams, PkiError> {
    let mut params = base_params(&identity.to_string(), not_before, validity);
    params.subject_alt_names = vec![SanType::URI(identity.uri().try_into()?)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

/// What a certificate says, as far as fleetbus cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The fleetbus identity in its URI SAN, if it has one.
    pub identity: Option<Identity>,
    /// Validity start, Unix milliseconds.
    pub not_before_ms: i64,
    /// Validity end, Unix milliseconds.
    pub not_after_ms: i64,
    /// SHA-256 (hex) of the SubjectPublicKeyInfo.
    pub key_fingerprint: String,
    /// Serial number (hex).
    pub serial: String,
}

impl CertInfo {
    /// The identity, required.
    pub fn require_identity(&self) -> Result<&Identity, PkiError> {
        self.identity.as_ref().ok_or(PkiError::IdentityCount(0))
    }

    /// When a certificate should be renewed: after `fraction` of its lifetime has passed.
    pub fn renew_at_ms(&self, fraction: f64) -> i64 {
        let life = (self.not_after_ms - self.not_before_ms) as f64;
        self.not_before_ms + (life * fraction) as i64
    }
}

/// Reads the first certificate of a PEM bundle.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, PkiError> {
    let pem = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|_| PkiError::Parse)?
        .1;
    let cert = pem.parse_x509().map_err(|_| PkiError::Parse)?;
    let mut identities = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name
                && uri.starts_with("fleetbus://")
            {
                identities.push(Identity::from_uri(uri)?);
            }
        }
    }
    if identities.len() > 1 {
        return Err(PkiError::IdentityCount(identities.len()));
    }
    let validity = cert.validity();
    Ok(CertInfo {
        identity: identities.pop(),
        not_before_ms: validity.not_before.timestamp() * 1000,
        not_after_ms: validity.not_after.timestamp() * 1000,
        key_fingerprint: fingerprint(cert.public_key().raw),
        serial: data_encoding::HEXLOWER.encode(cert.raw_serial()),
    })
}

fn fingerprint(spki_der: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(spki_der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbus_schema::ClusterName;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn issued_client_carries_identity_and_window() {
        let (ca, _) = Ca::generate("test CA", DAY).unwrap();
        let id = Identity::Spoke(ClusterName::new("c1").unwrap());
        let issued = ca.issue_client(&id, DAY).unwrap();
        let info = inspect(&issued.cert_pem).unwrap();
        assert_eq!(info.identity, Some(id));
        assert_eq!(info.not_after_ms - info.not_before_ms, 86_400_000);
        assert_eq!(info.renew_at_ms(0.75) - info.not_before_ms, 64_800_000);
    }

    #[test]
    fn csr_signing_keeps_the_requesters_key_and_sets_our_identity() {
        let (ca, _) = Ca::generate("test CA", DAY).unwrap();
        let asked = Identity::Spoke(ClusterName::new("evil").unwrap());
        let (_key, csr) = new_key_and_csr(&asked).unwrap();
        let granted = Identity::Spoke(ClusterName::new("c1").unwrap());
        let cert = ca.sign_csr(&csr, &granted, DAY).unwrap();
        let info = inspect(&cert).unwrap();
        assert_eq!(info.identity, Some(granted));
        assert_eq!(info.key_fingerprint, csr_key_fingerprint(&csr).unwrap());
    }

    #[test]
    fn a_key_and_its_certificate_have_one_fingerprint_another_key_not() {
        let (ca, _) = Ca::generate("test CA", DAY).unwrap();
        let id = Identity::Spoke(ClusterName::new("c1").unwrap());
        let (key, csr) = new_key_and_csr(&id).unwrap();
        let cert = ca.sign_csr(&csr, &id, DAY).unwrap();
        let info = inspect(&cert).unwrap();
        assert_eq!(key_fingerprint(&key).unwrap(), info.key_fingerprint);
        let (other, _) = new_key_and_csr(&id).unwrap();
        assert_ne!(key_fingerprint(&other).unwrap(), info.key_fingerprint);
        assert!(key_fingerprint("not a key").is_err());
    }

    #[test]
    fn loaded_ca_signs_like_the_original() {
        let (ca, key) = Ca::generate("test CA", DAY).unwrap();
        let again = Ca::load(ca.cert_pem(), &key).unwrap();
        let issued = again.issue_client(&Identity::Hub, DAY).unwrap();
        assert_eq!(
            inspect(&issued.cert_pem).unwrap().identity,
            Some(Identity::Hub)
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(inspect("nope"), Err(PkiError::Parse)));
        let (ca, _) = Ca::generate("test CA", DAY).unwrap();
        assert!(matches!(
            ca.sign_csr(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                &Identity::Hub,
                DAY
            ),
            Err(PkiError::Csr)
        ));
        let server = ca.issue_server(&["localhost".into()], &[], DAY).unwrap();
        assert_eq!(inspect(&server.cert_pem).unwrap().identity, None);
    }
}
