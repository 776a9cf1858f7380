//! Users: name, password hash, tags and limits, and the functions that
//! add, change, list and delete them.

use std::collections::BTreeMap;

use super::password::{HashingAlgorithm, PasswordHash};
use super::{Access, AccessError, UserLimits};
use crate::store::access::{AccessChange, UserRecord};

/// The tags RabbitMQ gives meaning to. Others may be set and are kept.
pub mod tag {
    /// Everything the management UI and API offer.
    pub const ADMINISTRATOR: &str = "administrator";
    /// Read-only access to everything in the management API.
    pub const MONITORING: &str = "monitoring";
    /// The management API, for the user's own vhosts.
    pub const MANAGEMENT: &str = "management";
    /// Management plus policies and parameters.
    pub const POLICYMAKER: &str = "policymaker";
    /// May publish messages whose `user-id` names another user.
    pub const IMPERSONATOR: &str = "impersonator";
}

/// A stored user.
#[derive(Debug, Clone)]
pub(super) struct User {
    /// None: cannot log in with a password.
    pub(super) password: Option<PasswordHash>,
    /// The algorithm of the password (listed even without one).
    pub(super) algorithm: HashingAlgorithm,
    pub(super) tags: Vec<String>,
    pub(super) limits: UserLimits,
}

/// How [`Access::put_user`] sets a password.
#[derive(Debug, Clone, Default)]
pub enum Credentials {
    /// A clear-text password: stored hashed with SHA-256 and a fresh salt.
    Password(String),
    /// A hash as RabbitMQ exports it (base64 of salt and digest) with its
    /// algorithm (SHA-256 when None, as RabbitMQ assumes for 3.6+).
    Hash {
        hash: String,
        algorithm: Option<HashingAlgorithm>,
    },
    /// No password: the user cannot log in with PLAIN or AMQPLAIN; an
    /// existing user's password is cleared.
    #[default]
    None,
}

/// A user to create or update with [`Access::put_user`].
#[derive(Debug, Clone, Default)]
pub struct UserSpec {
    pub credentials: Credentials,
    pub tags: Vec<String>,
    /// Limits to set (merged into existing ones); None leaves them.
    pub limits: Option<UserLimits>,
}

/// A user as listed: RabbitMQ's `GET /api/users/NAME` fields.
#[derive(Debug, Clone, PartialEq)]
pub struct UserInfo {
    pub name: String,
    /// Base64 of salt and digest; empty for a user without a password.
    pub password_hash: String,
    pub hashing_algorithm: HashingAlgorithm,
    pub tags: Vec<String>,
    pub limits: UserLimits,
}

/// Who a connection logged in as: the name and the tags at login (a later
/// change of tags applies to later connections, as in RabbitMQ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub name: String,
    pub tags: Vec<String>,
}

impl AuthUser {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// Whether a put created the thing or changed an existing one (HTTP 201 or 204).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    Updated,
}

/// Tags from a comma-separated list, as RabbitMQ reads them ("a, b").
pub fn parse_tags(text: &str) -> Vec<String> {
    clean_tags(text.split(',').map(str::to_string).collect())
}

fn clean_tags(tags: Vec<String>) -> Vec<String> {
    tags.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

impl User {
    pub(super) fn from_record(record: UserRecord) -> User {
        let algorithm = HashingAlgorithm::from_name(&record.hashing_algorithm).unwrap_or_default();
        let password = match PasswordHash::from_base64(algorithm, &record.password_hash) {
            Ok(hash) => hash,
            Err(why) => {
                tracing::warn!("user '{}': stored {why}; it cannot log in", record.name);
                None
            }
        };
        User {
            password,
            algorithm,
            tags: record.tags,
            limits: UserLimits::from_map(&record.limits).unwrap_or_default(),
        }
    }

    fn record(&self, name: &str) -> UserRecord {
        UserRecord {
            name: name.to_string(),
            password_hash: self
                .password
                .as_ref()
                .map(PasswordHash::to_base64)
                .unwrap_or_default(),
            hashing_algorithm: self.algorithm.name().to_string(),
            tags: self.tags.clone(),
            limits: self.limits.to_map(),
        }
    }

    fn info(&self, name: &str) -> UserInfo {
        UserInfo {
            name: name.to_string(),
            password_hash: self
                .password
                .as_ref()
                .map(PasswordHash::to_base64)
                .unwrap_or_default(),
            hashing_algorithm: self.algorithm,
            tags: self.tags.clone(),
            limits: self.limits.clone(),
        }
    }
}

/// The hash `credentials` ask for: Ok(None) for no password.
fn hash_of(credentials: &Credentials) -> Result<Option<PasswordHash>, AccessError> {
    match credentials {
        Credentials::Password(password) => PasswordHash::new(HashingAlgorithm::Sha256, password)
            .map(Some)
            .map_err(AccessError::Random),
        Credentials::Hash { hash, algorithm } => {
            PasswordHash::from_base64(algorithm.unwrap_or_default(), hash)
                .map_err(AccessError::InvalidPasswordHash)
        }
        Credentials::None => Ok(None),
    }
}

impl Access {
    /// Every user, by name.
    pub fn users(&self) -> Vec<UserInfo> {
        let db = self.db.read();
        let mut users: Vec<UserInfo> = db.users.iter().map(|(n, u)| u.info(n)).collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        users
    }

    pub fn user(&self, name: &str) -> Option<UserInfo> {
        self.db.read().users.get(name).map(|u| u.info(name))
    }

    pub fn user_exists(&self, name: &str) -> bool {
        self.db.read().users.contains_key(name)
    }

    /// Create a user, or update an existing one, as RabbitMQ's `PUT
    /// /api/users/NAME` does: an existing user takes the new credentials
    /// (clearing the password when none are given) and tags, and the given
    /// limits are merged into its own.
    pub fn put_user(&self, name: &str, spec: UserSpec) -> Result<Put, AccessError> {
        if name.is_empty() {
            return Err(AccessError::EmptyName { what: "user" });
        }
        let _writer = self.writer.lock();
        let existing = self.db.read().users.get(name).cloned();
        // A new user without a password gets the hash of an empty one, as
        // in RabbitMQ; blank passwords are refused at login either way.
        let credentials = match (&spec.credentials, &existing) {
            (Credentials::None, None) => Credentials::Password(String::new()),
            (other, _) => other.clone(),
        };
        let password = hash_of(&credentials)?;
        let algorithm = password.as_ref().map(|h| h.algorithm).unwrap_or_default();
        let (mut limits, put) = match existing {
            Some(user) => (user.limits, Put::Updated),
            None => (UserLimits::default(), Put::Created),
        };
        if let Some(new) = spec.limits {
            for (limit, value) in new.iter() {
                limits.set(limit, value);
            }
        }
        let user = User {
            password,
            algorithm,
            tags: clean_tags(spec.tags),
            limits,
        };
        self.store_user(name, user)?;
        Ok(put)
    }

    /// Create a user with a password and tags; refused when the name is
    /// taken (RabbitMQ's `add_user`).
    pub fn add_user(
        &self,
        name: &str,
        password: &str,
        tags: Vec<String>,
    ) -> Result<(), AccessError> {
        if name.is_empty() {
            return Err(AccessError::EmptyName { what: "user" });
        }
        let _writer = self.writer.lock();
        if self.db.read().users.contains_key(name) {
            return Err(AccessError::UserAlreadyExists(name.to_string()));
        }
        let user = User {
            password: hash_of(&Credentials::Password(password.to_string()))?,
            algorithm: HashingAlgorithm::Sha256,
            tags: clean_tags(tags),
            limits: UserLimits::default(),
        };
        self.store_user(name, user)
    }

    /// Set a new password (hashed with SHA-256 and a fresh salt).
    pub fn change_password(&self, name: &str, password: &str) -> Result<(), AccessError> {
        let hash = hash_of(&Credentials::Password(password.to_string()))?;
        self.update_user(name, |user| {
            user.algorithm = HashingAlgorithm::Sha256;
            user.password = hash;
        })
    }

    /// Remove the password: the user can no longer log in with one.
    pub fn clear_password(&self, name: &str) -> Result<(), AccessError> {
        self.update_user(name, |user| user.password = None)
    }

    /// Replace the user's tags.
    pub fn set_tags(&self, name: &str, tags: Vec<String>) -> Result<(), AccessError> {
        let tags = clean_tags(tags);
        self.update_user(name, |user| user.tags = tags)
    }

    /// Set user limits, keeping the others (RabbitMQ's `set_user_limits`).
    pub fn set_user_limits(&self, name: &str, limits: &UserLimits) -> Result<(), AccessError> {
        self.update_user(name, |user| {
            for (limit, value) in limits.iter() {
                user.limits.set(limit, value);
            }
        })
    }

    /// Set one user limit (a negative value means no limit).
    pub fn set_user_limit(
        &self,
        name: &str,
        limit: super::UserLimit,
        value: i64,
    ) -> Result<(), AccessError> {
        self.update_user(name, |user| user.limits.set(limit, value))
    }

    /// Remove one user limit.
    pub fn clear_user_limit(&self, name: &str, limit: super::UserLimit) -> Result<(), AccessError> {
        self.update_user(name, |user| user.limits.clear(limit))
    }

    /// Remove every limit of the user.
    pub fn clear_user_limits(&self, name: &str) -> Result<(), AccessError> {
        self.update_user(name, |user| user.limits = UserLimits::default())
    }

    /// The limits of every user that has some, by user.
    pub fn user_limits(&self) -> BTreeMap<String, UserLimits> {
        self.db
            .read()
            .users
            .iter()
            .filter(|(_, u)| !u.limits.is_empty())
            .map(|(n, u)| (n.clone(), u.limits.clone()))
            .collect()
    }

    /// Delete a user with its permissions and topic permissions. The broker
    /// closes its connections ([`crate::broker::Broker::delete_user`]).
    pub(crate) fn delete_user(&self, name: &str) -> Result<(), AccessError> {
        let _writer = self.writer.lock();
        let mut changes = vec![AccessChange::DeleteUser(name.to_string())];
        {
            let db = self.db.read();
            if !db.users.contains_key(name) {
                return Err(AccessError::NoSuchUser(name.to_string()));
            }
            for (vhost, users) in &db.permissions {
                if users.contains_key(name) {
                    changes.push(AccessChange::DeletePermission {
                        vhost: vhost.clone(),
                        user: name.to_string(),
                    });
                }
            }
            for (vhost, users) in &db.topic_permissions {
                for exchange in users.get(name).into_iter().flat_map(|x| x.keys()) {
                    changes.push(AccessChange::DeleteTopicPermission {
                        vhost: vhost.clone(),
                        user: name.to_string(),
                        exchange: exchange.clone(),
                    });
                }
            }
        }
        self.commit(&changes, |db| {
            db.users.remove(name);
            for users in db.permissions.values_mut() {
                users.remove(name);
            }
            for users in db.topic_permissions.values_mut() {
                users.remove(name);
            }
        })
    }

    /// Change an existing user in place.
    fn update_user(&self, name: &str, change: impl FnOnce(&mut User)) -> Result<(), AccessError> {
        let _writer = self.writer.lock();
        let mut user = self
            .db
            .read()
            .users
            .get(name)
            .cloned()
            .ok_or_else(|| AccessError::NoSuchUser(name.to_string()))?;
        change(&mut user);
        self.store_user(name, user)
    }

    /// Write a user (the caller holds `writer`).
    fn store_user(&self, name: &str, user: User) -> Result<(), AccessError> {
        let change = AccessChange::PutUser(user.record(name));
        self.commit(&[change], |db| {
            db.users.insert(name.to_string(), user);
        })
    }
}
