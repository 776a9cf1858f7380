//! The records of virtual hosts: metadata (description, tags, default
//! queue type) and limits. The broker creates and deletes the vhosts
//! themselves ([`crate::broker::Broker::put_vhost`]) and keeps these
//! records in step.

use super::{Access, AccessError, Put, VHostLimit, VHostLimits};
use crate::store::access::{AccessChange, VHostRecord};

/// A queue type, as a vhost's default names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueType {
    Classic,
    Quorum,
    Stream,
}

impl QueueType {
    /// The `x-queue-type` value.
    pub fn name(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
            QueueType::Stream => "stream",
        }
    }

    /// RabbitMQ's names; anything else is an invalid queue type.
    pub fn from_name(name: &str) -> Result<QueueType, AccessError> {
        match name {
            "classic" => Ok(QueueType::Classic),
            "quorum" => Ok(QueueType::Quorum),
            "stream" => Ok(QueueType::Stream),
            other => Err(AccessError::InvalidQueueType(other.to_string())),
        }
    }

    /// Whether a queue declared with these flags can be of this type, so a
    /// vhost's default applies to it (RabbitMQ's `is_compatible`): quorum
    /// queues and streams are durable, not exclusive, not auto-delete.
    pub fn is_compatible(self, durable: bool, exclusive: bool, auto_delete: bool) -> bool {
        match self {
            QueueType::Classic => true,
            QueueType::Quorum | QueueType::Stream => durable && !exclusive && !auto_delete,
        }
    }
}

/// What describes a vhost besides its name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VHostMetadata {
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// The type of queues declared without `x-queue-type`, where the
    /// declaration's flags allow it.
    pub default_queue_type: Option<QueueType>,
}

/// A vhost as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct VHostInfo {
    pub name: String,
    pub metadata: VHostMetadata,
    pub limits: VHostLimits,
}

/// A stored vhost record.
#[derive(Debug, Clone, Default)]
pub(super) struct VHostEntry {
    pub(super) metadata: VHostMetadata,
    pub(super) limits: VHostLimits,
}

impl VHostEntry {
    pub(super) fn from_record(record: &VHostRecord) -> VHostEntry {
        VHostEntry {
            metadata: VHostMetadata {
                description: record.description.clone(),
                tags: record.tags.clone(),
                default_queue_type: record
                    .default_queue_type
                    .as_deref()
                    .and_then(|t| QueueType::from_name(t).ok()),
            },
            limits: VHostLimits::from_map(&record.limits).unwrap_or_default(),
        }
    }

    fn record(&self, name: &str) -> VHostRecord {
        VHostRecord {
            name: name.to_string(),
            description: self.metadata.description.clone(),
            tags: self.metadata.tags.clone(),
            default_queue_type: self
                .metadata
                .default_queue_type
                .map(|t| t.name().to_string()),
            limits: self.limits.to_map(),
        }
    }

    fn info(&self, name: &str) -> VHostInfo {
        VHostInfo {
            name: name.to_string(),
            metadata: self.metadata.clone(),
            limits: self.limits.clone(),
        }
    }
}

impl Access {
    pub fn vhost(&self, name: &str) -> Option<VHostInfo> {
        self.db.read().vhosts.get(name).map(|v| v.info(name))
    }

    /// Every vhost, by name.
    pub fn vhosts(&self) -> Vec<VHostInfo> {
        self.db
            .read()
            .vhosts
            .iter()
            .map(|(name, v)| v.info(name))
            .collect()
    }

    pub fn vhost_exists(&self, name: &str) -> bool {
        self.db.read().vhosts.contains_key(name)
    }

    /// The type of queues `vhost` declares without `x-queue-type`.
    pub fn default_queue_type(&self, vhost: &str) -> Option<QueueType> {
        self.db
            .read()
            .vhosts
            .get(vhost)
            .and_then(|v| v.metadata.default_queue_type)
    }

    /// Record a new vhost, or update an existing one's description and
    /// tags (its default queue type stays), as RabbitMQ's `put_vhost`.
    pub(crate) fn put_vhost(
        &self,
        name: &str,
        metadata: VHostMetadata,
    ) -> Result<Put, AccessError> {
        if name.is_empty() {
            return Err(AccessError::EmptyName { what: "vhost" });
        }
        let _writer = self.writer.lock();
        let existing = self.db.read().vhosts.get(name).cloned();
        let (entry, put) = match existing {
            Some(mut entry) => {
                entry.metadata.description = metadata.description;
                entry.metadata.tags = metadata.tags;
                (entry, Put::Updated)
            }
            None => (
                VHostEntry {
                    metadata,
                    limits: VHostLimits::default(),
                },
                Put::Created,
            ),
        };
        self.store_vhost(name, entry)?;
        Ok(put)
    }

    /// Forget a vhost's record, limits, permissions and topic permissions
    /// (the broker deletes its contents and closes its connections).
    pub(crate) fn delete_vhost(&self, name: &str) -> Result<(), AccessError> {
        let _writer = self.writer.lock();
        let mut changes = vec![AccessChange::DeleteVHost(name.to_string())];
        {
            let db = self.db.read();
            if !db.vhosts.contains_key(name) {
                return Err(AccessError::NoSuchVHost(name.to_string()));
            }
            for user in db.permissions.get(name).into_iter().flat_map(|u| u.keys()) {
                changes.push(AccessChange::DeletePermission {
                    vhost: name.to_string(),
                    user: user.clone(),
                });
            }
            for (user, exchanges) in db.topic_permissions.get(name).into_iter().flatten() {
                for exchange in exchanges.keys() {
                    changes.push(AccessChange::DeleteTopicPermission {
                        vhost: name.to_string(),
                        user: user.clone(),
                        exchange: exchange.clone(),
                    });
                }
            }
        }
        self.commit(&changes, |db| {
            db.vhosts.remove(name);
            db.permissions.remove(name);
            db.topic_permissions.remove(name);
        })
    }

    /// Replace every limit of `vhost` (RabbitMQ's `set_vhost_limits`).
    pub fn set_vhost_limits(&self, vhost: &str, limits: VHostLimits) -> Result<(), AccessError> {
        self.update_vhost(vhost, |entry| entry.limits = limits)
    }

    /// Set one limit of `vhost` (a negative value means no limit).
    pub fn set_vhost_limit(
        &self,
        vhost: &str,
        limit: VHostLimit,
        value: i64,
    ) -> Result<(), AccessError> {
        self.update_vhost(vhost, |entry| entry.limits.set(limit, value))
    }

    /// Remove one limit of `vhost`.
    pub fn clear_vhost_limit(&self, vhost: &str, limit: VHostLimit) -> Result<(), AccessError> {
        self.update_vhost(vhost, |entry| entry.limits.clear(limit))
    }

    /// Remove every limit of `vhost`.
    pub fn clear_vhost_limits(&self, vhost: &str) -> Result<(), AccessError> {
        self.update_vhost(vhost, |entry| entry.limits = VHostLimits::default())
    }

    fn update_vhost(
        &self,
        name: &str,
        change: impl FnOnce(&mut VHostEntry),
    ) -> Result<(), AccessError> {
        let _writer = self.writer.lock();
        let mut entry = self
            .db
            .read()
            .vhosts
            .get(name)
            .cloned()
            .ok_or_else(|| AccessError::NoSuchVHost(name.to_string()))?;
        change(&mut entry);
        self.store_vhost(name, entry)
    }

    /// Write a vhost record (the caller holds `writer`).
    fn store_vhost(&self, name: &str, entry: VHostEntry) -> Result<(), AccessError> {
        let change = AccessChange::PutVHost(entry.record(name));
        self.commit(&[change], |db| {
            db.vhosts.insert(name.to_string(), entry);
        })
    }
}
