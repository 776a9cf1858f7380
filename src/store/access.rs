//! Users, virtual hosts (with their metadata and limits), permissions and
//! topic permissions: the records of the access room, in one tree
//! (`access`), as JSON keyed by record kind and names.
//!
//! Every change is one sled batch followed by a flush, so a change the
//! caller saw succeed is on disk, and a write error reaches the caller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// A user as stored: the password as RabbitMQ exports it (base64 of salt
/// and digest, empty for none) with its algorithm's module name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserRecord {
    pub name: String,
    pub password_hash: String,
    pub hashing_algorithm: String,
    pub tags: Vec<String>,
    /// `max-connections`, `max-channels`.
    pub limits: BTreeMap<String, i64>,
}

/// A virtual host as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VHostRecord {
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub default_queue_type: Option<String>,
    /// `max-connections`, `max-queues`.
    pub limits: BTreeMap<String, i64>,
}

/// A user's permissions in a virtual host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PermissionRecord {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// A user's topic permissions on one exchange of a virtual host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicPermissionRecord {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

/// A policy or operator policy as stored: RabbitMQ's parameter body
/// (`pattern`, `apply-to`, `priority`, `definition`), validated again when
/// read back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyRecord {
    /// `policy` or `operator_policy`.
    pub component: String,
    pub vhost: String,
    pub name: String,
    pub body: serde_json::Value,
}

/// Everything the access tree holds (policies are read separately, by
/// [`Store::load_policies`]).
#[derive(Debug, Default)]
pub struct AccessRecords {
    pub users: Vec<UserRecord>,
    pub vhosts: Vec<VHostRecord>,
    pub permissions: Vec<PermissionRecord>,
    pub topic_permissions: Vec<TopicPermissionRecord>,
}

impl AccessRecords {
    /// Nothing stored: the broker's first start (or every record deleted),
    /// when RabbitMQ seeds its default user and virtual host.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.vhosts.is_empty() && self.permissions.is_empty()
    }
}

/// One change to the access records.
#[derive(Debug, Clone)]
pub enum AccessChange {
    PutUser(UserRecord),
    DeleteUser(String),
    PutVHost(VHostRecord),
    DeleteVHost(String),
    PutPermission(PermissionRecord),
    DeletePermission {
        vhost: String,
        user: String,
    },
    PutTopicPermission(TopicPermissionRecord),
    DeleteTopicPermission {
        vhost: String,
        user: String,
        exchange: String,
    },
    PutPolicy(PolicyRecord),
    DeletePolicy {
        component: String,
        vhost: String,
        name: String,
    },
}

const USER: u8 = b'u';
const VHOST: u8 = b'v';
const PERMISSION: u8 = b'p';
const TOPIC_PERMISSION: u8 = b't';
const POLICY: u8 = b'P';

/// A key: the record kind, then each name with its length in front (names
/// may hold any byte, NUL included).
fn key(kind: u8, parts: &[&str]) -> Vec<u8> {
    let mut key = vec![kind];
    for part in parts {
        key.extend_from_slice(&(part.len() as u32).to_be_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    key
}

impl AccessChange {
    fn key(&self) -> Vec<u8> {
        match self {
            AccessChange::PutUser(r) => key(USER, &[&r.name]),
            AccessChange::DeleteUser(name) => key(USER, &[name]),
            AccessChange::PutVHost(r) => key(VHOST, &[&r.name]),
            AccessChange::DeleteVHost(name) => key(VHOST, &[name]),
            AccessChange::PutPermission(r) => key(PERMISSION, &[&r.vhost, &r.user]),
            AccessChange::DeletePermission { vhost, user } => key(PERMISSION, &[vhost, user]),
            AccessChange::PutTopicPermission(r) => {
                key(TOPIC_PERMISSION, &[&r.vhost, &r.user, &r.exchange])
            }
            AccessChange::DeleteTopicPermission {
                vhost,
                user,
                exchange,
            } => key(TOPIC_PERMISSION, &[vhost, user, exchange]),
            AccessChange::PutPolicy(r) => key(POLICY, &[&r.vhost, &r.component, &r.name]),
            AccessChange::DeletePolicy {
                component,
                vhost,
                name,
            } => key(POLICY, &[vhost, component, name]),
        }
    }

    /// The JSON to store, or None for a deletion.
    fn value(&self) -> Option<Result<Vec<u8>, serde_json::Error>> {
        match self {
            AccessChange::PutUser(r) => Some(serde_json::to_vec(r)),
            AccessChange::PutVHost(r) => Some(serde_json::to_vec(r)),
            AccessChange::PutPermission(r) => Some(serde_json::to_vec(r)),
            AccessChange::PutTopicPermission(r) => Some(serde_json::to_vec(r)),
            AccessChange::PutPolicy(r) => Some(serde_json::to_vec(r)),
            _ => None,
        }
    }
}

impl Store {
    /// Read every access record back.
    pub fn load_access(&self) -> Result<AccessRecords, StoreError> {
        let mut records = AccessRecords::default();
        for item in self.access.iter() {
            let (key, value) = item.map_err(|e| self.sled_error(e))?;
            let corrupt = |e: serde_json::Error| self.corrupt("access", &key, e);
            match key.first() {
                Some(&USER) => records
                    .users
                    .push(serde_json::from_slice(&value).map_err(corrupt)?),
                Some(&VHOST) => records
                    .vhosts
                    .push(serde_json::from_slice(&value).map_err(corrupt)?),
                Some(&PERMISSION) => records
                    .permissions
                    .push(serde_json::from_slice(&value).map_err(corrupt)?),
                Some(&TOPIC_PERMISSION) => records
                    .topic_permissions
                    .push(serde_json::from_slice(&value).map_err(corrupt)?),
                Some(&POLICY) => {}
                _ => return Err(self.corrupt("access", &key, "unknown record kind")),
            }
        }
        Ok(records)
    }

    /// Read the stored policies and operator policies back.
    pub fn load_policies(&self) -> Result<Vec<PolicyRecord>, StoreError> {
        let mut policies = Vec::new();
        for item in self.access.scan_prefix([POLICY]) {
            let (key, value) = item.map_err(|e| self.sled_error(e))?;
            policies
                .push(serde_json::from_slice(&value).map_err(|e| self.corrupt("access", &key, e))?);
        }
        Ok(policies)
    }

    /// Apply `changes` as one batch and flush it to disk. A deleted vhost
    /// also leaves the topology's list of vhosts.
    pub fn apply_access(&self, changes: &[AccessChange]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for change in changes {
            match change.value() {
                Some(json) => {
                    let json = json.map_err(|e| self.corrupt("access", &change.key(), e))?;
                    batch.insert(change.key(), json);
                }
                None => batch.remove(change.key()),
            }
            if let AccessChange::DeleteVHost(name) = change {
                self.vhosts
                    .remove(name.as_bytes())
                    .map_err(|e| self.sled_error(e))?;
            }
        }
        self.access
            .apply_batch(batch)
            .map_err(|e| self.sled_error(e))?;
        self.db.flush().map_err(|e| self.sled_error(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_store() {
        let dir = std::env::temp_dir().join(format!("warren-access-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir, false, 1 << 20).unwrap();
        assert!(store.load_access().unwrap().is_empty());
        let user = UserRecord {
            name: "a\0b".into(),
            password_hash: String::new(),
            hashing_algorithm: "rabbit_password_hashing_sha256".into(),
            tags: vec!["administrator".into()],
            limits: BTreeMap::from([("max-channels".into(), 3)]),
        };
        let permission = PermissionRecord {
            user: "a\0b".into(),
            vhost: "/".into(),
            configure: ".*".into(),
            write: "".into(),
            read: "^q$".into(),
        };
        store
            .apply_access(&[
                AccessChange::PutUser(user.clone()),
                AccessChange::PutPermission(permission.clone()),
                AccessChange::PutTopicPermission(TopicPermissionRecord {
                    user: "a\0b".into(),
                    vhost: "/".into(),
                    exchange: "amq.topic".into(),
                    write: "x".into(),
                    read: "y".into(),
                }),
            ])
            .unwrap();
        store
            .apply_access(&[AccessChange::DeleteTopicPermission {
                vhost: "/".into(),
                user: "a\0b".into(),
                exchange: "amq.topic".into(),
            }])
            .unwrap();
        let records = store.load_access().unwrap();
        assert_eq!(records.users, vec![user]);
        assert_eq!(records.permissions, vec![permission]);
        assert!(records.topic_permissions.is_empty());
        store.close();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
