//! Why a change to users, virtual hosts, permissions or limits was refused.
//!
//! Each variant keeps what the management API needs to answer as RabbitMQ
//! does (the name and the reason), and says whether the thing was missing
//! or the request was wrong.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("no such user '{0}'")]
    NoSuchUser(String),
    #[error("no such vhost '{0}'")]
    NoSuchVHost(String),
    #[error("user '{0}' already exists")]
    UserAlreadyExists(String),
    #[error("{what} name must not be empty")]
    EmptyName { what: &'static str },
    #[error("regular expression '{pattern}' is invalid: {reason}")]
    InvalidRegexp { pattern: String, reason: String },
    #[error("invalid password hash: {0}")]
    InvalidPasswordHash(String),
    #[error("unknown hashing algorithm '{0}'")]
    UnknownHashingAlgorithm(String),
    #[error("both password and password_hash are provided")]
    BothPasswordAndHash,
    #[error("invalid queue type '{0}'")]
    InvalidQueueType(String),
    /// A limit name or value RabbitMQ would refuse; the text is RabbitMQ's
    /// validation message ("max-queues should be a number, ...").
    #[error("Validation failed\n\n{0}\n")]
    InvalidLimit(String),
    #[error("cannot hash the password: no randomness for a salt ({0})")]
    Random(getrandom::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AccessError {
    /// The user or vhost the request names does not exist (HTTP 404 where
    /// RabbitMQ answers 404, 400 "vhost_or_user_not_found" elsewhere).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            AccessError::NoSuchUser(_) | AccessError::NoSuchVHost(_)
        )
    }

    /// The request itself was wrong (HTTP 400).
    pub fn is_bad_request(&self) -> bool {
        !self.is_not_found() && !matches!(self, AccessError::Store(_) | AccessError::Random(_))
    }
}
