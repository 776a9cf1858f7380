//! Certificates made at test time for the TLS tests: a CA, a server
//! certificate for 127.0.0.1 and localhost, and client certificates with
//! the subject a test asks for.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A test CA with a server certificate, all written to a fresh directory.
pub struct TestPki {
    pub dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    pub ca_pem: String,
}

impl TestPki {
    /// A new CA named `name`, and a server certificate it signed.
    pub fn new(name: &str) -> TestPki {
        let dir = super::temp_dir("tls");
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let ca = params.self_signed(&key).expect("CA certificate");
        let pki = TestPki {
            dir,
            issuer: Issuer::new(params, key),
            ca_pem: ca.pem(),
        };
        std::fs::write(pki.ca_path(), &pki.ca_pem).expect("write CA");
        let mut server = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        server
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = pki.sign(server);
        std::fs::write(pki.server_cert_path(), &server.cert_pem).expect("write cert");
        std::fs::write(pki.server_key_path(), &server.key_pem).expect("write key");
        pki
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// A client certificate with this subject, in this order (most
    /// significant first, as `openssl -subj` writes it).
    pub fn client(&self, subject: &[(DnType, &str)]) -> Identity {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        for (kind, value) in subject {
            dn.push(kind.clone(), *value);
        }
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Identity {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
