//! Password hashes in RabbitMQ's formats, so that a hash exported from
//! RabbitMQ logs in to Warren and the other way round.
//!
//! RabbitMQ stores `salt ++ H(salt ++ password)`, with a random 4-byte salt
//! and H one of SHA-256 (the default since 3.6), SHA-512 or MD5 (users
//! created before 3.6, and hashes without an algorithm). Definitions files
//! and the HTTP API carry it base64-encoded, beside the algorithm's module
//! name (`rabbit_password_hashing_sha256`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};

/// Bytes of salt in front of the digest.
const SALT_LEN: usize = 4;

/// A hashing algorithm, by the name of RabbitMQ's module for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashingAlgorithm {
    #[default]
    Sha256,
    Sha512,
    Md5,
}

impl HashingAlgorithm {
    /// RabbitMQ's module name, as definitions and the HTTP API spell it.
    pub fn name(self) -> &'static str {
        match self {
            HashingAlgorithm::Sha256 => "rabbit_password_hashing_sha256",
            HashingAlgorithm::Sha512 => "rabbit_password_hashing_sha512",
            HashingAlgorithm::Md5 => "rabbit_password_hashing_md5",
        }
    }

    /// The algorithm of a module name; None for one Warren does not know.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            HashingAlgorithm::Sha256,
            HashingAlgorithm::Sha512,
            HashingAlgorithm::Md5,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }

    fn digest(self, salt: &[u8], password: &[u8]) -> Vec<u8> {
        match self {
            HashingAlgorithm::Sha256 => Sha256::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
            HashingAlgorithm::Sha512 => Sha512::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
            HashingAlgorithm::Md5 => Md5::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
        }
    }
}

/// A salted password hash: the salt followed by the digest.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    pub algorithm: HashingAlgorithm,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for PasswordHash {
    /// Never prints the hash itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordHash({})", self.algorithm.name())
    }
}

impl PasswordHash {
    /// Hash a password with a fresh random salt. Fails only when the
    /// operating system has no randomness to give.
    pub fn new(algorithm: HashingAlgorithm, password: &str) -> Result<Self, getrandom::Error> {
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt)?;
        Ok(Self::with_salt(algorithm, salt, password))
    }

    /// Hash with a given salt (for known vectors).
    pub fn with_salt(algorithm: HashingAlgorithm, salt: [u8; SALT_LEN], password: &str) -> Self {
        let mut bytes = salt.to_vec();
        bytes.extend(algorithm.digest(&salt, password.as_bytes()));
        PasswordHash { algorithm, bytes }
    }

    /// A hash as RabbitMQ exports it (base64 of salt and digest). An empty
    /// string is no hash at all (a user without a password): None.
    pub fn from_base64(algorithm: HashingAlgorithm, text: &str) -> Result<Option<Self>, String> {
        if text.is_empty() {
            return Ok(None);
        }
        let bytes = BASE64
            .decode(text)
            .map_err(|e| format!("password_hash is not valid base64: {e}"))?;
        Ok(Some(PasswordHash { algorithm, bytes }))
    }

    /// The base64 form definitions and the HTTP API carry.
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.bytes)
    }

    /// Whether `password` is the one hashed. As in RabbitMQ, a stored hash
    /// too short to hold a salt matches nothing.
    pub fn verify(&self, password: &str) -> bool {
        if self.bytes.len() <= SALT_LEN {
            return false;
        }
        let (salt, digest) = self.bytes.split_at(SALT_LEN);
        constant_time_eq(&self.algorithm.digest(salt, password.as_bytes()), digest)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_hashes_exported_by_rabbitmq() {
        // `GET /api/users/NAME` on RabbitMQ 3.10.8 after creating the user
        // with these passwords.
        let guest = PasswordHash::from_base64(
            HashingAlgorithm::Sha256,
            "gu48L/itoPIXQ94zEX7TYG3EfTIpdv+9Z2Kg6JH8QP1ATXgV",
        )
        .unwrap()
        .unwrap();
        assert!(guest.verify("guest"));
        assert!(!guest.verify("guest "));
        let secret = PasswordHash::from_base64(
            HashingAlgorithm::Sha256,
            "5a886MdzFc8/SzHvdnqDZ1S8AB7123Ai1w0qpMmKBJK70Kva",
        )
        .unwrap()
        .unwrap();
        assert!(secret.verify("secret"));
        assert!(!secret.verify("Secret"));
    }

    #[test]
    fn known_vectors_for_each_algorithm() {
        // salt 0x908DC60A, password "test12": the example of RabbitMQ's
        // password documentation for SHA-256; MD5 and SHA-512 computed the
        // same way with Python's hashlib.
        let salt = [0x90, 0x8d, 0xc6, 0x0a];
        let sha256 = PasswordHash::with_salt(HashingAlgorithm::Sha256, salt, "test12");
        assert_eq!(
            sha256.to_base64(),
            "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
        );
        let md5 = PasswordHash::with_salt(HashingAlgorithm::Md5, salt, "test12");
        assert_eq!(md5.to_base64(), "kI3GChNpte2FApYFXScl+0dIluk=");
        let sha512 = PasswordHash::with_salt(HashingAlgorithm::Sha512, salt, "test12");
        assert_eq!(
            sha512.to_base64(),
            "kI3GChuNuIYf8lRbCCxZjgjKwsY19ns6+uFO0zcXRBGA/XGJPYD8OWMy7EB8TaOmAzjP2azv84GbINYwX2cDWb4DHnc="
        );
        assert!(sha512.verify("test12"));
        assert!(!sha512.verify("test1"));
    }

    #[test]
    fn fresh_hashes_use_random_salts() {
        let a = PasswordHash::new(HashingAlgorithm::Sha256, "pw").unwrap();
        let b = PasswordHash::new(HashingAlgorithm::Sha256, "pw").unwrap();
        assert!(a.verify("pw") && b.verify("pw"));
        assert_ne!(a.to_base64(), b.to_base64());
    }

    #[test]
    fn empty_and_malformed_hashes() {
        assert_eq!(
            PasswordHash::from_base64(HashingAlgorithm::Sha256, ""),
            Ok(None)
        );
        assert!(PasswordHash::from_base64(HashingAlgorithm::Sha256, "not base64!").is_err());
        let short = PasswordHash::from_base64(HashingAlgorithm::Sha256, "AAAA")
            .unwrap()
            .unwrap();
        assert!(!short.verify(""));
        assert_eq!(
            HashingAlgorithm::from_name("rabbit_password_hashing_md5"),
            Some(HashingAlgorithm::Md5)
        );
        assert_eq!(HashingAlgorithm::from_name("bcrypt"), None);
    }
}
