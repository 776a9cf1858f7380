//! Access control: users (tags, RabbitMQ password hashes), the records of
//! virtual hosts (metadata, limits), permissions and topic permissions. The
//! one place that answers "may this user do this to that resource".
//!
//! The AMQP side asks here at login ([`Access::login`]), at
//! `connection.open` ([`Access::may_open`], limits) and, through each
//! channel's [`PermissionCache`], before every operation RabbitMQ checks.
//! Changes go through the typed functions of `user`, `permission`,
//! `limits` and `vhosts` (the management API and definitions will call the
//! same ones); each is written to the store and flushed before it is seen.
//! This room knows nothing of connections, queues or exchanges: the broker
//! closes the connections of a deleted user or vhost.
//!
//! Files: `password` (hash formats), `sasl` (PLAIN, AMQPLAIN), `pattern`
//! (permission regexes), `user`, `permission`, `limits`, `vhosts` (records
//! and their functions), `cache` (what a channel was already granted).

pub mod cache;
mod error;
pub mod limits;
pub mod password;
pub mod pattern;
pub mod permission;
pub mod sasl;
pub mod user;
pub mod vhosts;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use tracing::warn;

use crate::amqp_err;
use crate::protocol::AmqpResult;
use crate::store::access::{AccessChange, AccessRecords};
use crate::store::{Store, StoreError};

pub use cache::PermissionCache;
pub use error::AccessError;
pub use limits::{ChannelSlot, UserLimit, UserLimits, VHostLimit, VHostLimits};
pub use password::{HashingAlgorithm, PasswordHash};
pub use permission::{Permission, PermissionInfo, ResourceKind, TopicPermissionInfo};
pub use sasl::{AuthError, DEFAULT_MECHANISMS, KNOWN_MECHANISMS, offered as offered_mechanisms};
pub use user::{AuthUser, Credentials, Put, UserInfo, UserSpec, tag};
pub use vhosts::{QueueType, VHostInfo, VHostMetadata};

use permission::{Permissions, TopicPermissions};
use user::User;
use vhosts::VHostEntry;

/// Users, vhost records and permissions, in memory and in the store.
#[derive(Debug)]
pub struct Access {
    db: RwLock<Db>,
    /// Held by each change from its validation to its update of `db`, so
    /// changes apply one at a time, in the order they are written, while
    /// readers (logins, checks) only wait for the brief update itself.
    writer: Mutex<()>,
    /// None: records live in memory only (unit tests).
    store: Option<Arc<Store>>,
    /// Users who may connect only from a loopback address (RabbitMQ's
    /// `loopback_users`).
    loopback_users: Vec<String>,
    /// How many topic permissions exist. While none do, a publish to a
    /// topic exchange skips the topic check without a lock.
    topic_permission_count: AtomicUsize,
}

/// The records, indexed for the checks.
#[derive(Debug, Default)]
struct Db {
    users: HashMap<String, User>,
    vhosts: BTreeMap<String, VHostEntry>,
    /// By vhost, then user.
    permissions: HashMap<String, HashMap<String, Permissions>>,
    /// By vhost, then user, then exchange.
    topic_permissions: HashMap<String, HashMap<String, BTreeMap<String, TopicPermissions>>>,
}

impl Access {
    /// Records in memory only, with nothing in them.
    pub fn in_memory(loopback_users: Vec<String>) -> Access {
        Access {
            db: RwLock::new(Db::default()),
            writer: Mutex::new(()),
            store: None,
            loopback_users,
            topic_permission_count: AtomicUsize::new(0),
        }
    }

    /// Load the records from `store`. Also returns whether the store held
    /// none (a first start: the caller seeds the default user and vhost).
    pub fn open(
        store: Arc<Store>,
        loopback_users: Vec<String>,
    ) -> Result<(Access, bool), StoreError> {
        let records = store.load_access()?;
        let empty = records.is_empty();
        let access = Access {
            store: Some(store),
            ..Access::in_memory(loopback_users)
        };
        access.restore(records);
        Ok((access, empty))
    }

    fn restore(&self, records: AccessRecords) {
        let mut db = self.db.write();
        for record in records.users {
            let name = record.name.clone();
            db.users.insert(name, User::from_record(record));
        }
        for record in records.vhosts {
            db.vhosts
                .insert(record.name.clone(), VHostEntry::from_record(&record));
        }
        for record in records.permissions {
            db.permissions
                .entry(record.vhost.clone())
                .or_default()
                .insert(record.user.clone(), Permissions::restore(&record));
        }
        for record in records.topic_permissions {
            db.topic_permissions
                .entry(record.vhost.clone())
                .or_default()
                .entry(record.user.clone())
                .or_default()
                .insert(record.exchange.clone(), TopicPermissions::restore(&record));
        }
        self.count_topic_permissions(&db);
    }

    fn count_topic_permissions(&self, db: &Db) {
        let count = db
            .topic_permissions
            .values()
            .flat_map(|users| users.values())
            .map(BTreeMap::len)
            .sum();
        self.topic_permission_count.store(count, Ordering::Release);
    }

    /// Write `changes` to the store, then apply them in memory with `apply`.
    /// The caller holds `writer`.
    fn commit(
        &self,
        changes: &[AccessChange],
        apply: impl FnOnce(&mut Db),
    ) -> Result<(), AccessError> {
        if let Some(store) = &self.store {
            store.apply_access(changes)?;
        }
        let mut db = self.db.write();
        apply(&mut db);
        self.count_topic_permissions(&db);
        Ok(())
    }

    // ---- the questions ---------------------------------------------------

    /// Check a `connection.start-ok` response: the user, on success. The
    /// reasons for a refusal are RabbitMQ's log texts.
    pub fn login(
        &self,
        mechanism: &str,
        response: &[u8],
        peer: IpAddr,
    ) -> Result<AuthUser, AuthError> {
        let (name, password) = sasl::credentials(mechanism, response)?;
        self.login_with(name, Some(&password), peer)
    }

    /// SASL EXTERNAL: `name`, taken from the client's verified TLS
    /// certificate, must be a user; no password is checked (RabbitMQ's
    /// internal backend with `rabbitmq_auth_mechanism_ssl`).
    pub fn login_external(&self, name: String, peer: IpAddr) -> Result<AuthUser, AuthError> {
        self.login_with(name, None, peer)
    }

    /// The user `name`, with `password` checked when there is one.
    fn login_with(
        &self,
        name: String,
        password: Option<&str>,
        peer: IpAddr,
    ) -> Result<AuthUser, AuthError> {
        if password.is_some_and(str::is_empty) {
            return Err(AuthError::Refused(format!(
                "user '{name}' attempted to log in with a blank password, which is prohibited by \
                 the internal authN backend. To use TLS/x509 certificate-based authentication, \
                 see the rabbitmq_auth_mechanism_ssl plugin and configure the client to use the \
                 EXTERNAL authentication mechanism. Alternatively change the password for the \
                 user to be non-blank."
            )));
        }
        let user = {
            let db = self.db.read();
            db.users
                .get(&name)
                .filter(|u| match password {
                    Some(password) => u.password.as_ref().is_some_and(|h| h.verify(password)),
                    None => true,
                })
                .map(|u| AuthUser {
                    name: name.clone(),
                    tags: u.tags.clone(),
                })
        };
        let user =
            user.ok_or_else(|| AuthError::Refused(format!("user '{name}' - invalid credentials")))?;
        if self.loopback_users.contains(&name) && !is_loopback(peer) {
            return Err(AuthError::Refused(format!(
                "user '{name}' can only connect via localhost"
            )));
        }
        Ok(user)
    }

    /// Whether `user` may open `vhost`: it exists and the user has
    /// permissions there (of any kind), as RabbitMQ's internal backend decides.
    pub fn may_open(&self, user: &str, vhost: &str) -> bool {
        let db = self.db.read();
        db.vhosts.contains_key(vhost)
            && db
                .permissions
                .get(vhost)
                .is_some_and(|users| users.contains_key(user))
    }

    /// May `user` do `permission` to the resource `name` of `kind` in
    /// `vhost`? Refused with 403 and RabbitMQ's text. The default exchange
    /// is checked as `amq.default`. Channels ask through a
    /// [`PermissionCache`] instead.
    pub fn check_resource(
        &self,
        user: &str,
        vhost: &str,
        kind: ResourceKind,
        name: &[u8],
        permission: Permission,
    ) -> AmqpResult<()> {
        let name: &[u8] = match (kind, name) {
            (ResourceKind::Exchange, b"") => b"amq.default",
            _ => name,
        };
        let granted = self
            .db
            .read()
            .permissions
            .get(vhost)
            .and_then(|users| users.get(user))
            .is_some_and(|p| p.pattern(permission).is_match(name));
        if granted {
            Ok(())
        } else {
            Err(amqp_err!(
                AccessRefused,
                "access to {} '{}' in vhost '{vhost}' refused for user '{user}'",
                kind.name(),
                String::from_utf8_lossy(name)
            ))
        }
    }

    /// May `user` publish with (`Write`) or bind with (`Read`) `routing_key`
    /// on topic exchange `exchange`? Without a topic permission for the
    /// exchange, yes.
    pub fn check_topic(
        &self,
        user: &str,
        vhost: &str,
        exchange: &[u8],
        routing_key: &[u8],
        permission: Permission,
    ) -> AmqpResult<()> {
        let granted = {
            let db = self.db.read();
            let entry = std::str::from_utf8(exchange).ok().and_then(|x| {
                db.topic_permissions
                    .get(vhost)
                    .and_then(|users| users.get(user))
                    .and_then(|exchanges| exchanges.get(x))
            });
            match entry {
                None => true,
                Some(topic) => topic.allows(permission, routing_key),
            }
        };
        if granted {
            Ok(())
        } else {
            Err(amqp_err!(
                AccessRefused,
                "access to topic '{}' in exchange '{}' in vhost '{vhost}' refused for user '{user}'",
                String::from_utf8_lossy(routing_key),
                String::from_utf8_lossy(exchange)
            ))
        }
    }

    /// Whether any topic permission exists (read without a lock).
    pub fn has_topic_permissions(&self) -> bool {
        self.topic_permission_count.load(Ordering::Acquire) > 0
    }

    /// The enforced maximum of a vhost's limit (None: no limit).
    pub fn vhost_limit(&self, vhost: &str, limit: VHostLimit) -> Option<u64> {
        self.db
            .read()
            .vhosts
            .get(vhost)
            .and_then(|v| v.limits.max(limit))
    }

    /// The enforced maximum of a user's limit (None: no limit).
    pub fn user_limit(&self, user: &str, limit: UserLimit) -> Option<u64> {
        self.db
            .read()
            .users
            .get(user)
            .and_then(|u| u.limits.max(limit))
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Log a stored pattern that no longer compiles (it matches nothing).
fn unusable_pattern(pattern: &str, why: &str) {
    warn!("stored permission pattern '{pattern}' does not compile ({why}); it matches nothing");
}

#[cfg(test)]
mod tests;
