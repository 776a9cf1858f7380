//! The broker: virtual hosts, access control, the store, and the registry
//! of live connections. Opening a broker recovers everything durable from
//! disk, and on a first start seeds the default user and vhost.
//!
//! Creating and deleting vhosts, and deleting users, happen here because
//! they reach past the records in [`Access`]: a vhost has exchanges and
//! queues, and a deleted vhost or user has connections to close.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use tracing::{info, warn};

use crate::access::limits::exceeded;
use crate::access::{
    Access, AccessError, AuthUser, Credentials, Put, UserLimit, UserSpec, VHostLimit,
    VHostMetadata, tag,
};
use crate::alarm::Alarms;
use crate::amqp_err;
use crate::client::handle::{ConnEvent, ConnectionHandle, shutdown_error};
use crate::config::Config;
use crate::policy::{Policy, PolicyError, PolicyKind};
use crate::protocol::{AmqpError, AmqpResult, ReplyCode};
use crate::stats::{RateTable, Totals};
use crate::store::access::{AccessChange, PolicyRecord};
use crate::store::{Store, StoreError};
use crate::timer::{TimerEvents, Timers};
use crate::vhost::VHost;

/// The description RabbitMQ gives the vhost it creates at first start.
const DEFAULT_VHOST_DESCRIPTION: &str = "Default virtual host";

/// Why a broker cannot open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot create the default user and vhost: {0}")]
    Access(#[from] AccessError),
}

#[derive(Debug)]
pub struct Broker {
    pub config: Config,
    /// Users, vhost records, permissions and limits.
    pub access: Access,
    pub store: Arc<Store>,
    pub alarms: Arc<Alarms>,
    pub timers: Timers,
    /// Taken by the server, which runs the timers.
    timer_events: Mutex<Option<TimerEvents>>,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    /// Held while a vhost is created or deleted, so the two never interleave.
    vhost_changes: Mutex<()>,
    connections: Mutex<Registry>,
    next_id: AtomicU64,
    /// What closed channels counted.
    pub totals: Arc<Totals>,
    /// Message rates, sampled by the management server.
    pub rates: RateTable,
    /// When the broker opened.
    pub started: Instant,
}

/// The open connections, counted by vhost and user for the limits, and
/// whether the broker is shutting down (a connection that opens after that
/// is told to close at once).
#[derive(Debug, Default)]
struct Registry {
    open: HashMap<u64, Arc<ConnectionHandle>>,
    closing: bool,
    per_vhost: HashMap<Arc<str>, usize>,
    per_user: HashMap<String, UserUsage>,
}

/// A user's open connections and channels.
#[derive(Debug, Default)]
struct UserUsage {
    connections: usize,
    /// Counted by the channels themselves ([`crate::access::ChannelSlot`]).
    channels: Arc<AtomicUsize>,
}

impl Broker {
    /// Open the store in the data directory and rebuild vhosts, exchanges,
    /// queues (with their messages, in order) and bindings from it.
    pub fn open(config: Config) -> Result<Broker, OpenError> {
        let started = Instant::now();
        let store = Store::open(
            &config.data_dir,
            config.sync,
            config.store_cache_mb.saturating_mul(1 << 20),
        )?;
        let topology = store.load_topology()?;
        let (access, first_start) = Access::open(store.clone(), config.loopback_users())?;
        // Vhosts kept before access records were: give them a record.
        for name in &topology.vhosts {
            if !access.vhost_exists(name) {
                access.put_vhost(name, VHostMetadata::default())?;
            }
        }
        if first_start {
            seed_defaults(&access, &config)?;
        }
        let memory = config.queue_memory_messages;
        let (timers, timer_events) = Timers::new();
        let mut vhosts: HashMap<String, Arc<VHost>> = HashMap::new();
        for info in access.vhosts() {
            let vhost = VHost::new(
                &info.name,
                Some(store.clone()),
                memory,
                Some(timers.clone()),
            );
            vhosts.insert(info.name, vhost);
        }
        // Policies before the queues and exchanges they apply to.
        for record in store.load_policies()? {
            let parsed = PolicyKind::from_component(&record.component)
                .ok_or_else(|| {
                    PolicyError::Invalid(format!("unknown component '{}'", record.component))
                })
                .and_then(|kind| Policy::parse(kind, &record.vhost, &record.name, &record.body));
            match (parsed, vhosts.get(&record.vhost)) {
                (Ok(policy), Some(vhost)) => vhost.put_policy(policy),
                (Err(e), _) => warn!("skipping stored policy '{}': {e}", record.name),
                (_, None) => warn!(
                    "skipping policy '{}' of unknown vhost '{}'",
                    record.name, record.vhost
                ),
            }
        }
        for record in &topology.exchanges {
            match vhosts.get(&record.vhost) {
                Some(vhost) => vhost.restore_exchange(record),
                None => warn!(
                    "skipping exchange '{}' of unknown vhost '{}'",
                    record.name, record.vhost
                ),
            }
        }
        let mut shared = HashMap::new();
        let (mut queues, mut messages) = (0usize, 0usize);
        for record in &topology.queues {
            let Some(vhost) = vhosts.get(&record.vhost) else {
                warn!(
                    "skipping queue '{}' of unknown vhost '{}'",
                    record.name, record.vhost
                );
                continue;
            };
            let queue = vhost.restore_queue(record, &store)?;
            let recovered = queue.recover(&mut shared)?;
            queues += 1;
            messages += recovered.messages;
        }
        for record in &topology.bindings {
            let restored = vhosts
                .get(&record.vhost)
                .is_some_and(|vhost| vhost.restore_binding(record));
            if !restored {
                warn!(
                    "skipping binding from '{}' to {} '{}': an end is missing",
                    record.source, record.destination_type, record.destination
                );
            }
        }
        let orphans = store.delete_unreferenced_shared(&shared);
        if queues > 0 || orphans > 0 {
            info!(
                "recovered {queues} durable queues with {messages} messages from {} in {:?}",
                store.path().display(),
                started.elapsed()
            );
        }
        Ok(Broker {
            timers,
            timer_events: Mutex::new(Some(timer_events)),
            alarms: Arc::new(Alarms::new()),
            config,
            access,
            store,
            vhosts: RwLock::new(vhosts),
            vhost_changes: Mutex::new(()),
            connections: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(1),
            totals: Arc::new(Totals::default()),
            rates: RateTable::default(),
            started,
        })
    }

    /// The timers' event stream (taken once, by whoever runs [`crate::timer::run`]).
    pub fn take_timer_events(&self) -> Option<TimerEvents> {
        self.timer_events.lock().take()
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }

    /// The names of the vhosts, sorted.
    pub fn vhost_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.vhosts.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Create a vhost (with its `amq.*` exchanges), or update an existing
    /// one's description and tags, as RabbitMQ's `put_vhost`. Nobody has
    /// permissions in a new vhost until they are set.
    pub fn put_vhost(&self, name: &str, metadata: VHostMetadata) -> Result<Put, AccessError> {
        let _changing = self.vhost_changes.lock();
        let put = self.access.put_vhost(name, metadata)?;
        self.vhosts
            .write()
            .entry(name.to_string())
            .or_insert_with(|| {
                VHost::new(
                    name,
                    Some(self.store.clone()),
                    self.config.queue_memory_messages,
                    Some(self.timers.clone()),
                )
            });
        if put == Put::Created {
            info!("added vhost '{name}'");
        }
        Ok(put)
    }

    /// Delete a vhost as RabbitMQ does: its permissions first (so no new
    /// connection opens it), then its queues (their consumers are told)
    /// with their messages, its exchanges, and its records; then its
    /// connections close with 320 CONNECTION_FORCED. Blocks on the store:
    /// call it off the async workers.
    pub fn delete_vhost(&self, name: &str) -> Result<(), AccessError> {
        let _changing = self.vhost_changes.lock();
        self.access.delete_vhost(name)?;
        let Some(vhost) = self.vhosts.write().remove(name) else {
            return Ok(());
        };
        info!("deleting vhost '{name}'");
        let policies: Vec<AccessChange> = [PolicyKind::Policy, PolicyKind::Operator]
            .into_iter()
            .flat_map(|kind| vhost.policies(kind))
            .map(|p| AccessChange::DeletePolicy {
                component: p.kind.component().to_string(),
                vhost: name.to_string(),
                name: p.name.clone(),
            })
            .collect();
        if !policies.is_empty() {
            self.store.apply_access(&policies)?;
        }
        for queue in vhost.queues() {
            crate::queue::Republish::expire_queue(vhost.as_ref(), &queue);
        }
        for exchange in vhost.exchange_names() {
            if !exchange.is_empty() && !exchange.starts_with("amq.") {
                // Gone already when an earlier deletion auto-deleted it.
                let _ = vhost.delete_exchange(&exchange, false);
            }
        }
        self.close_where(
            &AmqpError::new(
                ReplyCode::ConnectionForced,
                format!("vhost '{name}' is deleted"),
            ),
            |handle| &*handle.vhost == name,
        );
        self.totals.forget_vhost(name);
        Ok(())
    }

    /// Set (create or replace) a policy or operator policy from its body as
    /// RabbitMQ's management API takes it (`pattern`, `definition`,
    /// optional `priority` and `apply-to`). It is stored, then applied at
    /// once to the vhost's queues and exchanges. Blocks on the store.
    pub fn set_policy(
        &self,
        kind: PolicyKind,
        vhost: &str,
        name: &str,
        body: &serde_json::Value,
    ) -> Result<(), PolicyError> {
        let policy = Policy::parse(kind, vhost, name, body)?;
        let _changing = self.vhost_changes.lock();
        let Some(target) = self.vhost(vhost) else {
            return Err(PolicyError::NoSuchVHost(vhost.to_string()));
        };
        self.store
            .apply_access(&[AccessChange::PutPolicy(PolicyRecord {
                component: kind.component().to_string(),
                vhost: vhost.to_string(),
                name: name.to_string(),
                body: policy.body(),
            })])
            .map_err(|e| PolicyError::Store(e.to_string()))?;
        target.put_policy(policy);
        info!("set {} '{name}' in vhost '{vhost}'", kind.component());
        Ok(())
    }

    /// Remove a policy or operator policy; its queues and exchanges lose
    /// what it set at once.
    pub fn clear_policy(
        &self,
        kind: PolicyKind,
        vhost: &str,
        name: &str,
    ) -> Result<(), PolicyError> {
        let _changing = self.vhost_changes.lock();
        let Some(target) = self.vhost(vhost) else {
            return Err(PolicyError::NoSuchVHost(vhost.to_string()));
        };
        if !target.policies(kind).iter().any(|p| p.name == name) {
            return Err(PolicyError::NotFound {
                kind,
                vhost: vhost.to_string(),
                name: name.to_string(),
            });
        }
        self.store
            .apply_access(&[AccessChange::DeletePolicy {
                component: kind.component().to_string(),
                vhost: vhost.to_string(),
                name: name.to_string(),
            }])
            .map_err(|e| PolicyError::Store(e.to_string()))?;
        target.remove_policy(kind, name);
        info!("cleared {} '{name}' in vhost '{vhost}'", kind.component());
        Ok(())
    }

    /// The policies (or operator policies) of one vhost or of all, by
    /// vhost and then name.
    pub fn policies(&self, kind: PolicyKind, vhost: Option<&str>) -> Vec<Arc<Policy>> {
        let mut all: Vec<Arc<Policy>> = match vhost {
            Some(name) => self
                .vhost(name)
                .map(|v| v.policies(kind))
                .unwrap_or_default(),
            None => self
                .vhosts
                .read()
                .values()
                .flat_map(|v| v.policies(kind))
                .collect(),
        };
        all.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
        all
    }

    /// Delete a user with its permissions; its connections close with 320
    /// CONNECTION_FORCED, as in RabbitMQ.
    pub fn delete_user(&self, name: &str) -> Result<(), AccessError> {
        self.access.delete_user(name)?;
        info!("deleted user '{name}'");
        self.close_where(
            &AmqpError::new(
                ReplyCode::ConnectionForced,
                format!("user '{name}' is deleted"),
            ),
            |handle| handle.user == name,
        );
        Ok(())
    }

    /// Admit a connection at `connection.open`, checking what RabbitMQ
    /// checks, in its order: the vhost exists, its connection limit, the
    /// user's connection limit, the user's access to the vhost. Returns
    /// the vhost and the counter of the user's channels.
    pub fn admit(
        &self,
        handle: Arc<ConnectionHandle>,
        user: &AuthUser,
    ) -> AmqpResult<(Arc<VHost>, Arc<AtomicUsize>)> {
        let name = &*handle.vhost;
        let Some(vhost) = self.vhost(name) else {
            return Err(amqp_err!(NotAllowed, "vhost {name} not found"));
        };
        let mut registry = self.connections.lock();
        let in_vhost = registry.per_vhost.get(name).copied().unwrap_or(0);
        let limit = self.access.vhost_limit(name, VHostLimit::MaxConnections);
        if let Some(limit) = exceeded(limit, in_vhost) {
            return Err(amqp_err!(
                NotAllowed,
                "access to vhost '{name}' refused for user '{}': connection limit ({limit}) is reached",
                user.name
            ));
        }
        let of_user = registry
            .per_user
            .get(&user.name)
            .map_or(0, |u| u.connections);
        let limit = self
            .access
            .user_limit(&user.name, UserLimit::MaxConnections);
        if let Some(limit) = exceeded(limit, of_user) {
            return Err(amqp_err!(
                NotAllowed,
                "connection refused for user '{}': user connection limit ({limit}) is reached",
                user.name
            ));
        }
        if !self.access.may_open(&user.name, name) {
            return Err(amqp_err!(
                NotAllowed,
                "access to vhost '{name}' refused for user '{}'",
                user.name
            ));
        }
        *registry.per_vhost.entry(handle.vhost.clone()).or_default() += 1;
        let usage = registry.per_user.entry(user.name.clone()).or_default();
        usage.connections += 1;
        let channels = usage.channels.clone();
        if registry.closing {
            handle.send(ConnEvent::Close(shutdown_error()));
        }
        registry.open.insert(handle.id, handle);
        Ok((vhost, channels))
    }

    /// A fresh connection id.
    pub fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A connection admitted by [`Broker::admit`] ended.
    pub fn deregister(&self, id: u64) {
        let mut registry = self.connections.lock();
        let Some(handle) = registry.open.remove(&id) else {
            return;
        };
        if let Some(count) = registry.per_vhost.get_mut(&handle.vhost) {
            *count -= 1;
            if *count == 0 {
                registry.per_vhost.remove(&handle.vhost);
            }
        }
        if let Some(usage) = registry.per_user.get_mut(&handle.user) {
            usage.connections -= 1;
            if usage.connections == 0 {
                registry.per_user.remove(&handle.user);
            }
        }
    }

    /// Close the open connections `which` selects with `error`.
    fn close_where(&self, error: &AmqpError, which: impl Fn(&ConnectionHandle) -> bool) {
        for handle in self.connections.lock().open.values() {
            if which(handle) {
                handle.send(ConnEvent::Close(error.clone()));
            }
        }
    }

    /// The live connection `id`.
    pub fn connection(&self, id: u64) -> Option<Arc<ConnectionHandle>> {
        self.connections.lock().open.get(&id).cloned()
    }

    /// Close one connection with `error` (the management API's DELETE).
    pub fn close_connection(&self, id: u64, error: AmqpError) -> bool {
        match self.connections.lock().open.get(&id) {
            Some(handle) => {
                handle.send(ConnEvent::Close(error));
                true
            }
            None => false,
        }
    }

    pub fn connection_count(&self) -> usize {
        self.connections.lock().open.len()
    }

    /// The live connections.
    pub fn connections(&self) -> Vec<Arc<ConnectionHandle>> {
        self.connections.lock().open.values().cloned().collect()
    }

    /// Close every open connection, and any that opens later, with 320
    /// CONNECTION_FORCED (connections still in the handshake watch the
    /// server's shutdown signal instead).
    pub fn close_connections(&self) {
        let mut registry = self.connections.lock();
        registry.closing = true;
        for handle in registry.open.values() {
            handle.send(ConnEvent::Close(shutdown_error()));
        }
    }

    /// Tell the open connections that the alarms changed, so that blocked
    /// publishers are read again once they clear. (A connection checks the
    /// alarms itself before it blocks, so one that opens later misses
    /// nothing.)
    pub fn alarms_changed(&self) {
        for handle in self.connections.lock().open.values() {
            handle.send(ConnEvent::AlarmsChanged);
        }
    }
}

/// RabbitMQ's first-start data: the default vhost, and the default user
/// with the `administrator` tag and full permissions there.
fn seed_defaults(access: &Access, config: &Config) -> Result<(), AccessError> {
    let (user, vhost) = (&config.default_user, &config.default_vhost);
    access.put_vhost(
        vhost,
        VHostMetadata {
            description: Some(DEFAULT_VHOST_DESCRIPTION.to_string()),
            ..VHostMetadata::default()
        },
    )?;
    access.put_user(
        user,
        UserSpec {
            credentials: Credentials::Password(config.default_pass.clone()),
            tags: vec![tag::ADMINISTRATOR.to_string()],
            limits: None,
        },
    )?;
    access.set_permissions(user, vhost, ".*", ".*", ".*")?;
    info!("created the default user '{user}' and vhost '{vhost}'");
    Ok(())
}
