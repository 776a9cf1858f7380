//! Permissions (configure, write and read patterns per user and vhost) and
//! topic permissions (write and read patterns on routing keys per user,
//! vhost and topic exchange), and the functions that set, clear and list
//! them.

use super::pattern::{Pattern, expand_variables};
use super::{Access, AccessError, Db, unusable_pattern};
use crate::store::access::{AccessChange, PermissionRecord, TopicPermissionRecord};

/// What an operation needs on a resource, by RabbitMQ's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Declare or delete it.
    Configure,
    /// Publish to it, or bind to it as a destination.
    Write,
    /// Consume, get or purge from it, or bind from it as a source.
    Read,
}

/// The kinds of resources permissions cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Exchange,
    Queue,
}

impl ResourceKind {
    /// As RabbitMQ names it in texts ("access to queue 'q' ...").
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::Exchange => "exchange",
            ResourceKind::Queue => "queue",
        }
    }
}

/// A user's permissions in one vhost.
#[derive(Debug, Clone)]
pub(super) struct Permissions {
    configure: Pattern,
    write: Pattern,
    read: Pattern,
}

impl Permissions {
    pub(super) fn pattern(&self, permission: Permission) -> &Pattern {
        match permission {
            Permission::Configure => &self.configure,
            Permission::Write => &self.write,
            Permission::Read => &self.read,
        }
    }

    pub(super) fn restore(record: &PermissionRecord) -> Permissions {
        Permissions {
            configure: restore_pattern(&record.configure),
            write: restore_pattern(&record.write),
            read: restore_pattern(&record.read),
        }
    }
}

/// A user's topic permissions on one exchange.
#[derive(Debug, Clone)]
pub(super) struct TopicPermissions {
    write: Pattern,
    read: Pattern,
    /// The patterns with `{username}` and `{vhost}` expanded, as RabbitMQ
    /// matches them for AMQP 0-9-1 connections (whose `{client_id}` stays
    /// as written): fixed per record, so compiled once. None when the
    /// expansion is not a pattern (it then matches nothing).
    expanded_write: Option<Pattern>,
    expanded_read: Option<Pattern>,
}

impl TopicPermissions {
    fn new(user: &str, vhost: &str, write: Pattern, read: Pattern) -> TopicPermissions {
        let variables = [("username", user), ("vhost", vhost)];
        let expand = |p: &Pattern| {
            // An empty pattern means `^$` before expansion too.
            let source = if p.as_str().is_empty() {
                "^$"
            } else {
                p.as_str()
            };
            Pattern::new(&expand_variables(source, &variables)).ok()
        };
        TopicPermissions {
            expanded_write: expand(&write),
            expanded_read: expand(&read),
            write,
            read,
        }
    }

    pub(super) fn restore(record: &TopicPermissionRecord) -> TopicPermissions {
        TopicPermissions::new(
            &record.user,
            &record.vhost,
            restore_pattern(&record.write),
            restore_pattern(&record.read),
        )
    }

    /// Whether `routing_key` may be published (`Write`) or bound (`Read`).
    pub(super) fn allows(&self, permission: Permission, routing_key: &[u8]) -> bool {
        let pattern = match permission {
            Permission::Write => &self.expanded_write,
            Permission::Read => &self.expanded_read,
            Permission::Configure => return true,
        };
        pattern.as_ref().is_some_and(|p| p.is_match(routing_key))
    }
}

/// A stored pattern; one that no longer compiles matches nothing.
fn restore_pattern(source: &str) -> Pattern {
    Pattern::new(source).unwrap_or_else(|why| {
        unusable_pattern(source, &why);
        // `[^\s\S]` matches no character, so the pattern matches nothing.
        Pattern::new("[^\\s\\S]").unwrap_or_else(|_| unreachable!("a valid pattern"))
    })
}

/// A pattern given to a setter, or RabbitMQ's `invalid_regexp` error.
fn compile(source: &str) -> Result<Pattern, AccessError> {
    Pattern::new(source).map_err(|reason| AccessError::InvalidRegexp {
        pattern: source.to_string(),
        reason,
    })
}

/// A user's permissions in a vhost, as listed (`GET /api/permissions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionInfo {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// A user's topic permissions on an exchange, as listed
/// (`GET /api/topic-permissions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPermissionInfo {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

impl Db {
    /// RabbitMQ's `with_user_and_vhost`: both must exist.
    fn user_and_vhost(&self, user: &str, vhost: &str) -> Result<(), AccessError> {
        if !self.vhosts.contains_key(vhost) {
            return Err(AccessError::NoSuchVHost(vhost.to_string()));
        }
        if !self.users.contains_key(user) {
            return Err(AccessError::NoSuchUser(user.to_string()));
        }
        Ok(())
    }
}

impl Access {
    /// Set `user`'s permissions in `vhost`: three patterns, each matched
    /// anywhere in a resource name (an empty one matches only the empty
    /// name). Applies to open channels as RabbitMQ applies it: at once
    /// for checks a channel has not made yet, and for those it made once
    /// it has been idle.
    pub fn set_permissions(
        &self,
        user: &str,
        vhost: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Result<(), AccessError> {
        let permissions = Permissions {
            configure: compile(configure)?,
            write: compile(write)?,
            read: compile(read)?,
        };
        let _writer = self.writer.lock();
        self.db.read().user_and_vhost(user, vhost)?;
        let record = PermissionRecord {
            user: user.to_string(),
            vhost: vhost.to_string(),
            configure: configure.to_string(),
            write: write.to_string(),
            read: read.to_string(),
        };
        self.commit(&[AccessChange::PutPermission(record)], |db| {
            db.permissions
                .entry(vhost.to_string())
                .or_default()
                .insert(user.to_string(), permissions);
        })
    }

    /// Remove `user`'s permissions in `vhost` (it can no longer open it).
    pub fn clear_permissions(&self, user: &str, vhost: &str) -> Result<(), AccessError> {
        let _writer = self.writer.lock();
        self.db.read().user_and_vhost(user, vhost)?;
        let change = AccessChange::DeletePermission {
            vhost: vhost.to_string(),
            user: user.to_string(),
        };
        self.commit(&[change], |db| {
            if let Some(users) = db.permissions.get_mut(vhost) {
                users.remove(user);
            }
        })
    }

    /// `user`'s permissions in `vhost`, if any.
    pub fn permission(&self, user: &str, vhost: &str) -> Option<PermissionInfo> {
        let db = self.db.read();
        let p = db.permissions.get(vhost)?.get(user)?;
        Some(permission_info(user, vhost, p))
    }

    /// Every permission, by vhost then user.
    pub fn permissions(&self) -> Vec<PermissionInfo> {
        let db = self.db.read();
        let mut all: Vec<PermissionInfo> = db
            .permissions
            .iter()
            .flat_map(|(vhost, users)| {
                users
                    .iter()
                    .map(move |(user, p)| permission_info(user, vhost, p))
            })
            .collect();
        all.sort_by(|a, b| (&a.vhost, &a.user).cmp(&(&b.vhost, &b.user)));
        all
    }

    /// Set `user`'s topic permissions on `exchange` in `vhost`: patterns
    /// for the routing keys it may publish with (`write`) and bind with
    /// (`read`), where `{username}` and `{vhost}` stand for the user's and
    /// vhost's names (and `{client_id}` for the client id of protocols
    /// that have one; AMQP 0-9-1 has none, as in RabbitMQ).
    pub fn set_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: &str,
        write: &str,
        read: &str,
    ) -> Result<(), AccessError> {
        let topic = TopicPermissions::new(user, vhost, compile(write)?, compile(read)?);
        let _writer = self.writer.lock();
        self.db.read().user_and_vhost(user, vhost)?;
        let record = TopicPermissionRecord {
            user: user.to_string(),
            vhost: vhost.to_string(),
            exchange: exchange.to_string(),
            write: write.to_string(),
            read: read.to_string(),
        };
        self.commit(&[AccessChange::PutTopicPermission(record)], |db| {
            db.topic_permissions
                .entry(vhost.to_string())
                .or_default()
                .entry(user.to_string())
                .or_default()
                .insert(exchange.to_string(), topic);
        })
    }

    /// Remove `user`'s topic permissions in `vhost`: on one exchange, or
    /// on all of them.
    pub fn clear_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: Option<&str>,
    ) -> Result<(), AccessError> {
        let _writer = self.writer.lock();
        let changes: Vec<AccessChange> = {
            let db = self.db.read();
            db.user_and_vhost(user, vhost)?;
            let held = db
                .topic_permissions
                .get(vhost)
                .and_then(|users| users.get(user));
            let exchanges: Vec<String> = match exchange {
                Some(x) => vec![x.to_string()],
                None => held.into_iter().flat_map(|x| x.keys().cloned()).collect(),
            };
            exchanges
                .into_iter()
                .map(|exchange| AccessChange::DeleteTopicPermission {
                    vhost: vhost.to_string(),
                    user: user.to_string(),
                    exchange,
                })
                .collect()
        };
        self.commit(&changes, |db| {
            if let Some(exchanges) = db
                .topic_permissions
                .get_mut(vhost)
                .and_then(|users| users.get_mut(user))
            {
                match exchange {
                    Some(x) => {
                        exchanges.remove(x);
                    }
                    None => exchanges.clear(),
                }
            }
        })
    }

    /// Every topic permission, by vhost, user, then exchange.
    pub fn topic_permissions(&self) -> Vec<TopicPermissionInfo> {
        let db = self.db.read();
        let mut all = Vec::new();
        for (vhost, users) in &db.topic_permissions {
            for (user, exchanges) in users {
                for (exchange, t) in exchanges {
                    all.push(TopicPermissionInfo {
                        user: user.clone(),
                        vhost: vhost.clone(),
                        exchange: exchange.clone(),
                        write: t.write.as_str().to_string(),
                        read: t.read.as_str().to_string(),
                    });
                }
            }
        }
        all.sort_by(|a, b| (&a.vhost, &a.user, &a.exchange).cmp(&(&b.vhost, &b.user, &b.exchange)));
        all
    }
}

fn permission_info(user: &str, vhost: &str, p: &Permissions) -> PermissionInfo {
    PermissionInfo {
        user: user.to_string(),
        vhost: vhost.to_string(),
        configure: p.configure.as_str().to_string(),
        write: p.write.as_str().to_string(),
        read: p.read.as_str().to_string(),
    }
}
