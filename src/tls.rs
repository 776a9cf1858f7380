//! AMQPS: the TLS settings of the broker (certificate, key, client
//! certificate verification), the handshake of an accepted socket, and the
//! identity a verified client certificate gives for SASL EXTERNAL.
//!
//! TLS is rustls through tokio-rustls, with ring as the crypto provider.
//! Client certificates follow RabbitMQ's `ssl_options`: `verify_peer` asks
//! for one and checks it against the CA bundle; `fail_if_no_peer_cert`
//! also refuses a client that sends none. The AMQP connection itself does
//! not know it runs over TLS but for the [`PeerCertificate`] it is handed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::prelude::{AttributeTypeAndValue, FromDer, X509Certificate, X509Name};

/// What TLS needs from the configuration.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates client certificates must chain to (PEM).
    pub ca: Option<PathBuf>,
    /// Ask clients for a certificate and verify it (RabbitMQ's
    /// `ssl_options.verify = verify_peer`).
    pub verify_peer: bool,
    /// With `verify_peer`, refuse clients that send no certificate
    /// (`ssl_options.fail_if_no_peer_cert = true`).
    pub fail_if_no_peer_cert: bool,
}

impl TlsOptions {
    /// The TLS options the flags ask for; `None` without a certificate and
    /// key (TLS off).
    pub fn from_config(config: &crate::Config) -> Result<Option<TlsOptions>, TlsError> {
        match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(TlsOptions {
                cert: cert.clone(),
                key: key.clone(),
                ca: config.tls_ca.clone(),
                verify_peer: config.tls_verify_peer,
                fail_if_no_peer_cert: config.tls_fail_if_no_peer_cert,
            })),
            (None, None)
                if config.tls_ca.is_none()
                    && !config.tls_verify_peer
                    && !config.tls_fail_if_no_peer_cert =>
            {
                Ok(None)
            }
            _ => Err(TlsError::Incomplete),
        }
    }
}

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {error}")]
    Read {
        what: &'static str,
        path: PathBuf,
        error: String,
    },
    #[error("TLS needs both --tls-cert and --tls-key")]
    Incomplete,
    #[error("no certificate in {0}")]
    NoCertificate(PathBuf),
    #[error(
        "--tls-verify-peer needs --tls-ca (the CA bundle client certificates are checked against)"
    )]
    NoCa,
    #[error("--tls-fail-if-no-peer-cert needs --tls-verify-peer")]
    FailWithoutVerify,
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

/// The broker's TLS side, built once at start.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Load the certificate, key and CA bundle, and check the options.
    pub fn new(options: &TlsOptions) -> Result<Tls, TlsError> {
        if options.fail_if_no_peer_cert && !options.verify_peer {
            return Err(TlsError::FailWithoutVerify);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = read_certs("certificate", &options.cert)?;
        let key = PrivateKeyDer::from_pem_file(&options.key).map_err(|e| TlsError::Read {
            what: "private key",
            path: options.key.clone(),
            error: e.to_string(),
        })?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = if options.verify_peer {
            let ca = options.ca.as_ref().ok_or(TlsError::NoCa)?;
            let mut roots = RootCertStore::empty();
            for cert in read_certs("CA bundle", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Rustls(format!("CA bundle {}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if options.fail_if_no_peer_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The TLS handshake on an accepted socket.
    pub async fn accept(
        &self,
        socket: TcpStream,
    ) -> std::io::Result<(TlsStream<TcpStream>, TlsClient)> {
        let stream = self.acceptor.accept(socket).await?;
        let session = stream.get_ref().1;
        let certificate = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| PeerCertificate::from_der(leaf));
        let client = TlsClient {
            protocol: session
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
            cipher_suite: session
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or_default()
                .to_string(),
            certificate,
        };
        Ok((stream, client))
    }
}

/// What a connection knows of its TLS session.
#[derive(Debug, Clone, Default)]
pub struct TlsClient {
    /// The protocol version, as rustls names it (`TLSv1_3`).
    pub protocol: String,
    /// The negotiated cipher suite, as rustls names it.
    pub cipher_suite: String,
    /// The client's certificate, verified against the CA bundle; `None`
    /// when the client sent none or none was asked for.
    pub certificate: Option<PeerCertificate>,
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read {
            what,
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// The subject of a client certificate the handshake verified, as SASL
/// EXTERNAL names users from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The subject as RabbitMQ writes it: RFC 4514, last RDN first, such as
    /// `CN=app,OU=dev,O=Example\, Inc,C=GB`.
    pub subject: String,
    /// The subject's common names, in certificate order.
    pub common_names: Vec<String>,
}

impl PeerCertificate {
    /// The subject of a DER certificate; `None` if it does not parse
    /// (rustls verified it, so that does not happen).
    pub fn from_der(der: &[u8]) -> Option<PeerCertificate> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        Some(PeerCertificate::from_name(cert.subject()))
    }

    fn from_name(name: &X509Name<'_>) -> PeerCertificate {
        let mut rdns = Vec::new();
        let mut common_names = Vec::new();
        for rdn in name.iter() {
            let mut parts = Vec::new();
            for atv in rdn.iter() {
                let oid = atv.attr_type().to_id_string();
                let value = attribute_text(atv);
                if oid == OID_COMMON_NAME {
                    common_names.push(value.clone());
                }
                let label = short_name(&oid).unwrap_or(&oid);
                parts.push(format!("{label}={}", escape_rdn_value(&value)));
            }
            rdns.push(parts.join("+"));
        }
        rdns.reverse();
        PeerCertificate {
            subject: rdns.join(","),
            common_names,
        }
    }

    /// The user name for SASL EXTERNAL, by RabbitMQ's `ssl_cert_login_from`:
    /// `None` when the certificate has no common name to take.
    pub fn login_name(&self, from: CertLoginFrom) -> Option<String> {
        match from {
            CertLoginFrom::DistinguishedName => Some(self.subject.clone()),
            CertLoginFrom::CommonName if self.common_names.is_empty() => None,
            CertLoginFrom::CommonName => Some(self.common_names.join(",")),
        }
    }
}

/// An attribute's value as text: the directory string types decoded to
/// UTF-8 as RabbitMQ decodes them, anything else as `#` and hex.
fn attribute_text(atv: &AttributeTypeAndValue<'_>) -> String {
    if let Ok(text) = atv.as_str() {
        return text.to_string();
    }
    let data = atv.attr_value().data;
    let decoded = match atv.attr_value().tag() {
        Tag::BmpString => {
            let units = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString => data
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        // Teletex, as Latin-1.
        Tag::T61String => Some(data.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    };
    decoded.unwrap_or_else(|| {
        let mut hex = String::from("#");
        for b in data {
            hex.push_str(&format!("{b:02x}"));
        }
        hex
    })
}

/// Where SASL EXTERNAL takes the user name from (RabbitMQ's
/// `ssl_cert_login_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum CertLoginFrom {
    /// The whole subject, RFC 4514 style (RabbitMQ's default).
    #[default]
    DistinguishedName,
    /// The subject's common name (CN).
    CommonName,
}

const OID_COMMON_NAME: &str = "2.5.4.3";

/// The attribute names RabbitMQ writes in a subject; others stay dotted.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.4" => "SN",
        "2.5.4.42" => "GIVENNAME",
        "2.5.4.43" => "INITIALS",
        "2.5.4.44" => "GENERATIONQUALIFIER",
        OID_COMMON_NAME => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "TITLE",
        "2.5.4.6" => "C",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.65" => "PSEUDONYM",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "EMAILADDRESS",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 4514 escaping as RabbitMQ does it: a leading space or `#`, a
/// trailing space and `"+,;<>\` get a backslash; bytes outside printable
/// ASCII (and `~`) are written `\XX`, UTF-8 byte by byte.
fn escape_rdn_value(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    for (i, &b) in bytes.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == bytes.len();
        match b {
            b' ' | b'#' if first => {
                out.push('\\');
                out.push(b as char);
            }
            b' ' if last => out.push_str("\\ "),
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            b if !(32..126).contains(&b) => out.push_str(&format!("\\{b:02X}")),
            b => out.push(b as char),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_is_written_last_rdn_first_with_rabbitmq_escapes() {
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "GB");
        dn.push(rcgen::DnType::OrganizationName, "Org, Inc");
        dn.push(rcgen::DnType::OrganizationalUnitName, "dev");
        dn.push(rcgen::DnType::CommonName, "app");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let peer = PeerCertificate::from_der(cert.der()).expect("parses");
        // As RabbitMQ 3.10 logs the same subject.
        assert_eq!(peer.subject, "CN=app,OU=dev,O=Org\\, Inc,C=GB");
        assert_eq!(peer.common_names, vec!["app".to_string()]);
        assert_eq!(
            peer.login_name(CertLoginFrom::CommonName).as_deref(),
            Some("app")
        );
        assert_eq!(
            peer.login_name(CertLoginFrom::DistinguishedName).as_deref(),
            Some("CN=app,OU=dev,O=Org\\, Inc,C=GB")
        );
    }

    #[test]
    fn escapes_follow_rfc_4514_as_rabbitmq_writes_them() {
        assert_eq!(escape_rdn_value(" a "), "\\ a\\ ");
        assert_eq!(escape_rdn_value("#1"), "\\#1");
        assert_eq!(
            escape_rdn_value("a+b;c<d>\"e\\"),
            "a\\+b\\;c\\<d\\>\\\"e\\\\"
        );
        assert_eq!(escape_rdn_value("é~"), "\\C3\\A9\\7E");
    }
}
