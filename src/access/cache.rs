//! What a channel was already granted, as RabbitMQ's channels remember it:
//! the last twelve resource checks and the last twelve topic checks that
//! passed, newest first. A repeated publish to the same exchange is then a
//! few byte comparisons, with no lock and no pattern match.
//!
//! Like RabbitMQ's, the cache outlives changes of permissions: a channel
//! keeps what it was granted until it is idle (RabbitMQ clears the cache
//! when the channel process hibernates, after a second or more without
//! work), and then asks again. The connection calls [`PermissionCache::clear`]
//! when it reads after such a pause.

use super::{Access, Permission, ResourceKind};
use crate::protocol::AmqpResult;

/// RabbitMQ's `MAX_PERMISSION_CACHE_SIZE`.
const SIZE: usize = 12;

#[derive(Debug)]
struct Granted {
    kind: ResourceKind,
    permission: Permission,
    name: Box<[u8]>,
}

#[derive(Debug)]
struct GrantedTopic {
    permission: Permission,
    exchange: Box<[u8]>,
    routing_key: Box<[u8]>,
}

/// One channel's granted checks.
#[derive(Debug, Default)]
pub struct PermissionCache {
    resources: Vec<Granted>,
    topics: Vec<GrantedTopic>,
}

/// Who asks: the broker's records, the user and the vhost of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub access: &'a Access,
    pub user: &'a str,
    pub vhost: &'a str,
}

impl PermissionCache {
    /// May the asker do `permission` to the resource? Refused with 403 and
    /// RabbitMQ's text.
    ///
    /// Inlined into the publish path, it only compares the newest grant
    /// (a channel publishing to one exchange hits it every time); the rest
    /// of the list and the question to the access room are out of line, so
    /// the caller stays small.
    #[inline]
    pub fn check(
        &mut self,
        asker: Asker<'_>,
        kind: ResourceKind,
        name: &[u8],
        permission: Permission,
    ) -> AmqpResult<()> {
        match self.resources.first() {
            Some(g) if g.permission == permission && g.kind == kind && *g.name == *name => Ok(()),
            _ => self.check_listed(asker, kind, name, permission),
        }
    }

    #[inline(never)]
    fn check_listed(
        &mut self,
        asker: Asker<'_>,
        kind: ResourceKind,
        name: &[u8],
        permission: Permission,
    ) -> AmqpResult<()> {
        let hit = self
            .resources
            .iter()
            .any(|g| g.permission == permission && g.kind == kind && *g.name == *name);
        if hit {
            return Ok(());
        }
        asker
            .access
            .check_resource(asker.user, asker.vhost, kind, name, permission)?;
        self.resources.truncate(SIZE - 1);
        self.resources.insert(
            0,
            Granted {
                kind,
                permission,
                name: name.into(),
            },
        );
        Ok(())
    }

    /// May the asker publish (`Write`) or bind (`Read`) with `routing_key`
    /// on the topic exchange `exchange`? While no topic permission exists
    /// anywhere, yes at once.
    #[inline]
    pub fn check_topic(
        &mut self,
        asker: Asker<'_>,
        exchange: &[u8],
        routing_key: &[u8],
        permission: Permission,
    ) -> AmqpResult<()> {
        if !asker.access.has_topic_permissions() {
            return Ok(());
        }
        self.check_topic_listed(asker, exchange, routing_key, permission)
    }

    #[inline(never)]
    fn check_topic_listed(
        &mut self,
        asker: Asker<'_>,
        exchange: &[u8],
        routing_key: &[u8],
        permission: Permission,
    ) -> AmqpResult<()> {
        let hit = self.topics.iter().any(|g| {
            g.permission == permission && *g.routing_key == *routing_key && *g.exchange == *exchange
        });
        if hit {
            return Ok(());
        }
        asker
            .access
            .check_topic(asker.user, asker.vhost, exchange, routing_key, permission)?;
        self.topics.truncate(SIZE - 1);
        self.topics.insert(
            0,
            GrantedTopic {
                permission,
                exchange: exchange.into(),
                routing_key: routing_key.into(),
            },
        );
        Ok(())
    }

    /// Forget every grant (the channel was idle).
    pub fn clear(&mut self) {
        self.resources.clear();
        self.topics.clear();
    }
}
